"""Minimal C2SP signed-note checkpoints, as far as bundles need them.

Written here because ``evidencelock/checkpoint.py`` did not exist yet when bundles were built;
it follows the public specs so any conforming implementation interoperates:

* c2sp.org/signed-note: the note text is UTF-8, ends in ``\\n``; a blank line; then one line
  per signature, ``"\\u2014 " + name + " " + base64(key_hash[4] || signature) + "\\n"``.
  For Ed25519 the key hash is ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]`` and the
  signature is over the note text exactly.
* c2sp.org/tlog-checkpoint: the text is ``origin\\n``, ``tree size (decimal)\\n``,
  ``base64(root hash)\\n`` and optional extension lines.

Parsing is strict (parsed means checked, STYLE.md §3); bounded sizes; verification raises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from ..errors import FormatError, SignatureError
from ..keys import PublicKey, verify_ed25519

__all__ = ["Checkpoint", "NoteSignature", "SignedNote", "note_key_hash", "sign_checkpoint"]

MAX_NOTE_BYTES = 1 << 16
_SIG_PREFIX = "\u2014 "
_ED25519 = b"\x01"
_DECIMAL = re.compile(r"\A(0|[1-9][0-9]{0,19})\Z")


def note_key_hash(name: str, public_raw: bytes) -> bytes:
    """c2sp.org/signed-note: 4-byte key id of an Ed25519 verifier key."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519 + public_raw).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> bytes:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def from_text(cls, text: bytes, *, subject: str = "checkpoint") -> "Checkpoint":
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("checkpoint text is not UTF-8", subject=subject) from None
        if not s.endswith("\n"):
            raise FormatError("checkpoint text must end with a newline", subject=subject)
        lines = s[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError(f"checkpoint needs origin, size and root lines, found {len(lines)} lines", subject=subject)
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if not origin or any(ch.isspace() for ch in origin):
            raise FormatError("checkpoint origin must be non-empty without spaces", subject=subject)
        if not _DECIMAL.match(size_s):
            raise FormatError(f"checkpoint tree size must be a decimal number, found {size_s[:40]!r}", subject=subject)
        try:
            root = base64.b64decode(root_s, validate=True)
        except (binascii.Error, ValueError):
            raise FormatError("checkpoint root hash is not base64", subject=subject) from None
        if len(root) != 32:
            raise FormatError(f"checkpoint root hash must be 32 bytes, found {len(root)}", subject=subject)
        if any(not ln for ln in lines[3:]):
            raise FormatError("empty extension line in checkpoint", subject=subject)
        return cls(origin, int(size_s), root, tuple(lines[3:]))


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(self.key_hash + self.signature).decode()}\n"


@dataclass(frozen=True)
class SignedNote:
    """A signed note, parsed; signatures NOT yet verified (call :meth:`verify`)."""

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        return self.text + b"\n" + "".join(s.line() for s in self.signatures).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, *, subject: str = "checkpoint") -> "SignedNote":
        if len(data) > MAX_NOTE_BYTES:
            raise FormatError(f"signed note is {len(data)} bytes, over {MAX_NOTE_BYTES}", subject=subject)
        try:
            s = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("signed note is not UTF-8", subject=subject) from None
        if any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F for c in s):
            raise FormatError("signed note contains control characters", subject=subject)
        split = s.rfind("\n\n")
        if split < 0 or not s.endswith("\n"):
            raise FormatError("signed note lacks the blank line before its signatures", subject=subject)
        text, sig_block = s[: split + 1], s[split + 2:]
        sigs = []
        for line in sig_block[:-1].split("\n"):
            if not line.startswith(_SIG_PREFIX):
                raise FormatError(f"malformed signature line {line[:60]!r}", subject=subject)
            name, _, b64 = line[len(_SIG_PREFIX):].partition(" ")
            if not name or " " in b64 or "+" in name:
                raise FormatError(f"malformed signature line {line[:60]!r}", subject=subject)
            try:
                raw = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise FormatError("signature is not base64", subject=subject) from None
            if len(raw) < 5:
                raise FormatError("signature too short", subject=subject)
            sigs.append(NoteSignature(name, raw[:4], raw[4:]))
        if not sigs:
            raise FormatError("signed note has no signature", subject=subject)
        return cls(text.encode("utf-8"), tuple(sigs))

    def verify(self, keys: list[PublicKey], *, name: str, subject: str = "checkpoint") -> PublicKey:
        """Return the key (among ``keys``) whose signature under ``name`` verifies; else raise."""
        candidates = {note_key_hash(name, k.raw): k for k in keys}
        matched = False
        for sig in self.signatures:
            if sig.name != name or sig.key_hash not in candidates:
                continue
            matched = True
            key = candidates[sig.key_hash]
            verify_ed25519(key.raw, self.text, sig.signature, subject=subject)
            return key
        if not matched:
            raise SignatureError(
                f"no signature by any known key under name {name!r}: found signers "
                f"{[(s.name, s.key_hash.hex()) for s in self.signatures]}",
                subject=subject,
                hint="the checkpoint was signed by a key that is not enrolled in this bundle",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def signature_for(self, name: str, key: PublicKey) -> NoteSignature | None:
        kh = note_key_hash(name, key.raw)
        return next((s for s in self.signatures if s.name == name and s.key_hash == kh), None)


def sign_checkpoint(cp: Checkpoint, name: str, public_raw: bytes, sign) -> SignedNote:
    text = cp.text()
    return SignedNote(text, (NoteSignature(name, note_key_hash(name, public_raw), sign(text)),))
