"""Ed25519 custodian keys: the only module that calls signature primitives.

* Key id = lowercase hex SHA-256 of the 32-byte raw public key (docs/ledger-format.md §3).
* Private keys are stored encrypted at rest in the evidencelock key format
  (docs/vault-layout.md §8): scrypt (N=2^17, r=8, p=1, 128 MiB) derives an AES-256-GCM key
  that seals the 32-byte Ed25519 seed.  Files of the old format (PKCS#8 with PBKDF2-SHA256
  at 2,048 iterations) are still read and are rewritten in the new format on unlock.
* Public keys are exported as SubjectPublicKeyInfo PEM so that ``openssl pkeyutl`` can use
  them to verify an entry by hand.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import CustodianKeyError, FormatError, InputError, SignatureError

__all__ = [
    "PublicKey",
    "CustodianKey",
    "key_id_for",
    "verify_ed25519",
    "unverified_positions",
    "start_unverified_positions",
    "public_key_from_pem",
    "KdfParams",
    "DEFAULT_KDF",
    "default_kdf",
    "check_passphrase_strength",
    "MIN_PASSPHRASE_CHARS",
]

ED25519_PUBLIC_LEN = 32
ED25519_SIGNATURE_LEN = 64

# -- the key file format (docs/vault-layout.md §8) ---------------------------------------------
KEY_MAGIC = b"ELOCKKEY"
KEY_VERSION = 1
KDF_SCRYPT = 1
AEAD_AES256GCM = 1
SALT_LEN = 16
NONCE_LEN = 12
PEM_LABEL = b"EVIDENCELOCK ENCRYPTED PRIVATE KEY"
LEGACY_PEM_LABEL = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
# Refused when reading (a hostile file must not make us allocate gigabytes): vault-layout.md §8.
MAX_LOG2_N, MAX_R, MAX_P = 22, 32, 16
MAX_KDF_MEMORY = 1 << 30  # 128 * r * N * p


@dataclass(frozen=True)
class KdfParams:
    """scrypt cost (RFC 7914): N = 2**log2_n, block size r, parallelism p."""

    log2_n: int = 17
    r: int = 8
    p: int = 1

    @property
    def memory_bytes(self) -> int:
        return 128 * self.r * (1 << self.log2_n)

    def weaker_than(self, other: "KdfParams") -> bool:
        return self.memory_bytes * self.p < other.memory_bytes * other.p or self.log2_n < other.log2_n


DEFAULT_KDF = KdfParams()  # 128 MiB, about 0.3 s on one 2020s laptop core
# Tests only: a cheap cost so that hundreds of test vaults do not each spend 128 MiB and
# 0.3 s per unlock.  The name says what it does; the production default is tested too.
_TEST_KDF = KdfParams(log2_n=10, r=8, p=1)


def default_kdf() -> KdfParams:
    """The cost new key files get (and below which a key is re-sealed on unlock)."""
    if os.environ.get("EVIDENCELOCK_INSECURE_TEST_KDF") == "1":
        return _TEST_KDF
    return DEFAULT_KDF


MIN_PASSPHRASE_CHARS = 12
MIN_DISTINCT_CHARS = 5
# A short blocklist of passphrases that meet the length rule but are among the first guessed.
_BLOCKLIST = frozenset({
    "123456789012", "1234567890123", "12345678901234", "123456123456", "000000000000",
    "password1234", "password12345", "passwordpassword", "password123456", "passphrase123",
    "qwertyuiopas", "qwerty123456", "qwertyqwerty", "1q2w3e4r5t6y", "iloveyou1234",
    "letmeinletmein", "abcdefghijkl", "abc123abc123", "evidencelock", "evidencelock1",
    "evidencelock123", "trustno1trustno1", "changemechangeme", "administrator",
})


def check_passphrase_strength(passphrase: str) -> None:
    """Return None if ``passphrase`` may protect a custodian key; raise InputError otherwise.

    Rule (docs/vault-layout.md §8): at least 12 characters, at least 5 distinct characters,
    and not (ignoring case, spaces and punctuation) one of a short list of common choices.
    """
    hint = "choose a longer passphrase (e.g. five random words), or pass --allow-weak-passphrase"
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InputError(f"passphrase too short: {len(passphrase)} characters, at least {MIN_PASSPHRASE_CHARS} "
                         "are required", hint=hint)
    if len(set(passphrase)) < MIN_DISTINCT_CHARS:
        raise InputError(f"passphrase too simple: fewer than {MIN_DISTINCT_CHARS} distinct characters", hint=hint)
    folded = "".join(ch for ch in passphrase.lower() if ch.isalnum())
    if folded in _BLOCKLIST:
        raise InputError("passphrase is on the list of common passphrases", hint=hint)


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    maxmem = min(params.memory_bytes * (params.p + 2) + (16 << 20), 2**31 - 1)
    return hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=1 << params.log2_n, r=params.r, p=params.p,
                          maxmem=maxmem, dklen=32)


def _seal(seed: bytes, passphrase: str, params: KdfParams) -> bytes:
    """The key file bytes (PEM-armoured) for a 32-byte Ed25519 seed."""
    salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    header = (KEY_MAGIC + struct.pack(">BBBBBB", KEY_VERSION, KDF_SCRYPT, params.log2_n, params.r, params.p, SALT_LEN)
              + salt + struct.pack(">B", AEAD_AES256GCM) + nonce)
    blob = header + AESGCM(_derive(passphrase, salt, params)).encrypt(nonce, seed, header)
    b64 = base64.b64encode(blob)
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN " + PEM_LABEL + b"-----\n" + lines + b"\n-----END " + PEM_LABEL + b"-----\n"


def _unseal(data: bytes, passphrase: str, subject: str) -> tuple[bytes, KdfParams]:
    """(seed, params) from key file bytes; CustodianKeyError naming the rule otherwise."""
    begin, end = b"-----BEGIN " + PEM_LABEL + b"-----", b"-----END " + PEM_LABEL + b"-----"
    text = data.strip()
    if not (text.startswith(begin) and text.endswith(end)):
        raise CustodianKeyError("not an evidencelock key file (no BEGIN/END " + PEM_LABEL.decode() + " lines)",
                                subject=subject)
    try:
        blob = base64.b64decode(b"".join(text[len(begin):-len(end)].split()), validate=True)
    except ValueError:
        raise CustodianKeyError("damaged key file: the armour is not base64", subject=subject) from None
    fixed = len(KEY_MAGIC) + 6
    if len(blob) < fixed or blob[:8] != KEY_MAGIC:
        raise CustodianKeyError(f"damaged key file: magic expected {KEY_MAGIC!r}", subject=subject)
    version, kdf, log2_n, r, p, salt_len = struct.unpack(">BBBBBB", blob[8:fixed])
    if version != KEY_VERSION or kdf != KDF_SCRYPT:
        raise CustodianKeyError(f"unsupported key file version {version} / KDF {kdf}", subject=subject)
    if not (1 <= log2_n <= MAX_LOG2_N and 1 <= r <= MAX_R and 1 <= p <= MAX_P and 16 <= salt_len <= 64
            and 128 * r * (1 << log2_n) * p <= MAX_KDF_MEMORY):
        raise CustodianKeyError(f"key file KDF parameters out of range: log2 N={log2_n} r={r} p={p} "
                                f"salt={salt_len} bytes", subject=subject)
    salt_end = fixed + salt_len
    header_len = salt_end + 1 + NONCE_LEN
    if len(blob) != header_len + 32 + 16 or blob[salt_end] != AEAD_AES256GCM:
        raise CustodianKeyError(f"damaged key file: expected {header_len + 48} bytes with AEAD id 1, found "
                                f"{len(blob)}", subject=subject)
    params = KdfParams(log2_n, r, p)
    salt, nonce, header = blob[fixed:salt_end], blob[salt_end + 1:header_len], blob[:header_len]
    from cryptography.exceptions import InvalidTag

    try:
        seed = AESGCM(_derive(passphrase, salt, params)).decrypt(nonce, blob[header_len:], header)
    except InvalidTag:
        raise CustodianKeyError(
            "cannot unlock the custodian key: wrong passphrase or damaged key file",
            subject=subject,
            hint="check $EVIDENCELOCK_PASSPHRASE",
        ) from None
    return seed, params


def _write_durably(path: Path, data: bytes, *, replace: bool) -> None:
    """temp + fsync + (link | rename) + fsync of the folder: the old file is never lost first."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if a key file of that name exists: never overwrite a key
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


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


# Batch state for forked workers of unverified_positions: set before the fork, read by the
# children (copy-on-write), so no entry bytes are pickled.
_BATCH: list[tuple[bytes, bytes, bytes]] = []
_PARALLEL_MIN = 4000


def _check_range(bounds: tuple[int, int]) -> list[int]:
    bad = []
    keys: dict[bytes, Ed25519PublicKey] = {}
    for i in range(bounds[0], bounds[1]):
        raw, message, signature = _BATCH[i]
        try:
            key = keys.get(raw)
            if key is None:
                key = keys[raw] = Ed25519PublicKey.from_public_bytes(raw)
            if len(signature) != ED25519_SIGNATURE_LEN:
                raise InvalidSignature()
            key.verify(signature, message)
        except (InvalidSignature, ValueError):
            bad.append(i)
    return bad


def unverified_positions(batch: list[tuple[bytes, bytes, bytes]]) -> list[int]:
    """Positions in ``batch`` of (raw public key, message, signature) whose Ed25519 signature
    does NOT verify: every signature is checked (a collecting check, as audits do; callers
    re-check the positions returned with :func:`verify_ed25519` to name the problem)."""
    return start_unverified_positions(batch)()


def start_unverified_positions(batch: list[tuple[bytes, bytes, bytes]]) -> Callable[[], list[int]]:
    """:func:`unverified_positions`, started: returns a function that waits for the result, so
    the caller can work meanwhile.

    Large batches are split over forked worker processes when this process runs a single
    thread (Ed25519 verification holds the GIL, so threads would not help); otherwise, or if a
    worker cannot be started, they are checked in this process when the result is asked for."""
    import threading

    global _BATCH
    workers = min(4, os.cpu_count() or 1)

    def here() -> list[int]:
        global _BATCH
        _BATCH = batch
        try:
            return _check_range((0, len(batch)))
        finally:
            _BATCH = []

    if len(batch) < _PARALLEL_MIN or workers < 2 or threading.active_count() != 1 or not hasattr(os, "fork"):
        return here
    import multiprocessing

    step = -(-len(batch) // workers)
    ranges = [(lo, min(len(batch), lo + step)) for lo in range(0, len(batch), step)]
    _BATCH = batch
    try:
        pool = multiprocessing.get_context("fork").Pool(len(ranges))
    except OSError:
        _BATCH = []
        return here
    try:
        result = pool.map_async(_check_range, ranges)
    except BaseException:
        pool.terminate()
        _BATCH = []
        raise
    _BATCH = []  # the children have their copy

    def wait() -> list[int]:
        try:
            return sorted(i for part in result.get() for i in part)
        finally:
            pool.terminate()
            pool.join()

    return wait


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
        self.migrated: str | None = None  # set by load() when the file was re-sealed
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

    def to_encrypted_pem(self, passphrase: str, params: KdfParams | None = None) -> bytes:
        """The key file bytes: docs/vault-layout.md §8 (scrypt + AES-256-GCM, PEM armour)."""
        if not passphrase:
            raise CustodianKeyError("an empty passphrase is not allowed for a custodian key")
        seed = self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return _seal(seed, passphrase, params or default_kdf())

    def save(self, path: Path, passphrase: str, params: KdfParams | None = None) -> None:
        """Write the encrypted private key with mode 0600, crash-safely, never overwriting."""
        _write_durably(Path(path), self.to_encrypted_pem(passphrase, params), replace=False)

    @classmethod
    def load(cls, path: Path, passphrase: str, name: str = "", *, migrate: bool = True) -> "CustodianKey":
        """Unlock a key file.  A file in the old format (PKCS#8, PBKDF2-SHA256) or sealed at a
        cost below :func:`default_kdf` is re-sealed in place (``migrate``): the new file is
        written and synced beside it and renamed over it only after it decrypts to the same key.
        ``key.migrated`` then names what was replaced; a failed rewrite leaves the old file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CustodianKeyError("custodian key file not found", subject=str(path)) from None
        except OSError as exc:
            raise CustodianKeyError(f"cannot read custodian key: {exc.strerror}", subject=str(path)) from None
        old: str | None = None
        if data.lstrip().startswith(LEGACY_PEM_LABEL):
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
            old = "PKCS#8 (PBKDF2)"
        else:
            seed, params = _unseal(data, passphrase, str(path))
            private = Ed25519PrivateKey.from_private_bytes(seed)
            if params.weaker_than(default_kdf()):
                old = f"scrypt log2 N={params.log2_n} r={params.r} p={params.p}"
        key = cls(private, name)
        key.migrated = None
        if old is not None and migrate:
            try:
                new = key.to_encrypted_pem(passphrase)
                seed2, _ = _unseal(new, passphrase, str(path))
                if Ed25519PrivateKey.from_private_bytes(seed2).public_key().public_bytes(
                        serialization.Encoding.Raw, serialization.PublicFormat.Raw) != key.public.raw:
                    raise CustodianKeyError("re-sealed key does not round-trip", subject=str(path))
                _write_durably(path, new, replace=True)
                key.migrated = old
            except (OSError, CustodianKeyError):
                pass  # the old file is intact; the key still unlocks, migration is retried next time
        return key
