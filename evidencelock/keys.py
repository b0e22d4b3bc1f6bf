"""Ed25519 custodian keys: the only module that calls signature primitives.

* Key id = lowercase hex SHA-256 of the 32-byte raw public key (docs/ledger-format.md §3).
* Private keys are stored encrypted at rest as PKCS#8 PEM
  (``BestAvailableEncryption``: scrypt + AES-256-CBC in current ``cryptography``).
* Public keys are exported as SubjectPublicKeyInfo PEM so that ``openssl pkeyutl`` can use
  them to verify an entry by hand.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import CustodianKeyError, FormatError, SignatureError

__all__ = [
    "PublicKey",
    "CustodianKey",
    "key_id_for",
    "verify_ed25519",
    "public_key_from_pem",
]

ED25519_PUBLIC_LEN = 32
ED25519_SIGNATURE_LEN = 64


def key_id_for(public_raw: bytes) -> str:
    """Key id: lowercase hex SHA-256 of the 32 raw public key bytes."""
    if len(public_raw) != ED25519_PUBLIC_LEN:
        raise FormatError(f"an Ed25519 public key is 32 bytes, found {len(public_raw)}")
    return hashlib.sha256(public_raw).hexdigest()


def verify_ed25519(public_raw: bytes, message: bytes, signature: bytes, *, subject: str | None = None) -> None:
    """Return ``None`` if ``signature`` is a valid Ed25519 signature of ``message``; else raise."""
    if len(signature) != ED25519_SIGNATURE_LEN:
        raise SignatureError(
            f"an Ed25519 signature is 64 bytes, found {len(signature)}", subject=subject
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except InvalidSignature:
        raise SignatureError(
            f"Ed25519 signature does not verify under key {key_id_for(public_raw)[:16]}…",
            subject=subject,
            hint="the signed bytes or the signature may have been modified",
        ) from None
    except ValueError as exc:
        raise SignatureError(f"unusable public key: {exc}", subject=subject) from None


def public_key_from_pem(data: bytes) -> bytes:
    """Raw 32 bytes of an Ed25519 SubjectPublicKeyInfo PEM; raise FormatError otherwise."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise FormatError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise FormatError("not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PublicKey:
    """An enrolled custodian's public key."""

    raw: bytes
    name: str = ""

    @property
    def key_id(self) -> str:
        return key_id_for(self.raw)

    def verify(self, message: bytes, signature: bytes, *, subject: str | None = None) -> None:
        verify_ed25519(self.raw, message, signature, subject=subject)

    def to_pem(self) -> bytes:
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class CustodianKey:
    """An unlocked private key.  Create with :meth:`generate` or :meth:`load`."""

    def __init__(self, private: Ed25519PrivateKey, name: str):
        self._private = private
        self.name = name
        self.public = PublicKey(
            private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
            name,
        )

    @property
    def key_id(self) -> str:
        return self.public.key_id

    @classmethod
    def generate(cls, name: str) -> "CustodianKey":
        return cls(Ed25519PrivateKey.generate(), name)

    @classmethod
    def from_seed(cls, seed: bytes, name: str) -> "CustodianKey":
        """Deterministic key from a 32-byte seed: for test vectors only."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed), name)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def to_encrypted_pem(self, passphrase: str) -> bytes:
        if not passphrase:
            raise CustodianKeyError("an empty passphrase is not allowed for a custodian key")
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode("utf-8")),
        )

    def save(self, path: Path, passphrase: str) -> None:
        """Write the encrypted private key with mode 0600, crash-safely, never overwriting."""
        data = self.to_encrypted_pem(passphrase)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if a key file of that name exists: never overwrite a key
        os.unlink(tmp)

    @classmethod
    def load(cls, path: Path, passphrase: str, name: str = "") -> "CustodianKey":
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CustodianKeyError("custodian key file not found", subject=str(path)) from None
        except OSError as exc:
            raise CustodianKeyError(f"cannot read custodian key: {exc.strerror}", subject=str(path)) from None
        try:
            private = serialization.load_pem_private_key(data, password=passphrase.encode("utf-8"))
        except (ValueError, TypeError):
            raise CustodianKeyError(
                "cannot unlock the custodian key: wrong passphrase or damaged key file",
                subject=str(path),
                hint="check $EVIDENCELOCK_PASSPHRASE",
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise CustodianKeyError("not an Ed25519 private key", subject=str(path))
        return cls(private, name)
