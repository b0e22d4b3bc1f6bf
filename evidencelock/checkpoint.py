"""Signed tree heads in the C2SP ``tlog-checkpoint`` / ``signed-note`` text format, and witness cosignatures.

Why this format: a checkpoint is what we publish (print, mail, pin elsewhere) and what a court
or a witness holds years later.  Using the C2SP formats means existing transparency tooling
(Go ``golang.org/x/mod/sumdb/note``, transparency-dev witnesses) can read and cosign our
checkpoints, and a stranger can re-implement the check from docs/transparency.md.

Part of the verification core: bytes in, :class:`Checkpoint` out or an exception; no IO.
Nothing parsed from a note is trusted until :meth:`SignedNote.verify` has checked the log's
signature: the parsed-but-unverified fields are named ``unverified_…``.

Spec references: c2sp.org/signed-note@v1 ("signed-note §Format", "§Signatures"),
c2sp.org/tlog-checkpoint@v1, c2sp.org/tlog-cosignature@v1 (Ed25519 ``cosignature/v1``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import FormatError, InputError, ProofError, SignatureError
from .keys import key_id_for, verify_ed25519

__all__ = [
    "SIG_TYPE_ED25519",
    "SIG_TYPE_COSIGNATURE_V1",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteSignature",
    "SignedNote",
    "note_key_id",
    "verifier_key",
    "parse_verifier_key",
    "sign_note",
    "parse_note",
    "cosign",
    "verify_cosignature",
    "require_witnesses",
]

SIG_TYPE_ED25519 = 0x01  # signed-note §Signature types
SIG_TYPE_COSIGNATURE_V1 = 0x04  # signed-note §Signature types; tlog-cosignature
MAX_NOTE_BYTES = 64 * 1024  # signed-note §Format: verifiers SHOULD bound the size
MAX_SIGNATURES = 100  # ... and MUST accept at least 16; Go's note.Open caps at 100
_EM_DASH = "\u2014 "
_COSIG_HEADER = b"cosignature/v1\n"
_SIG_LINE = re.compile(r"\A\u2014 ([^\s+]+) ([A-Za-z0-9+/=]+)\Z")
_DECIMAL = re.compile(r"\A(0|[1-9][0-9]{0,19})\Z")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # signed-note §Format: no controls but newline
_MAX_U64 = 2**64 - 1
_MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1


def _b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), rejecting anything that does not re-encode identically."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not valid base64: {text[:60]!r}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what} is not canonical base64: {text[:60]!r}")
    return raw


def _check_name(name: str) -> None:
    # signed-note §Format: key names are non-empty, no Unicode spaces, no "+".
    if not isinstance(name, str) or not name or any(c.isspace() or c == "+" for c in name) or _CONTROL.search(name):
        raise InputError(f"invalid signed-note key name {name!r}: must be non-empty, no spaces, no '+'")


def note_key_id(name: str, public_raw: bytes, sig_type: int = SIG_TYPE_ED25519) -> bytes:
    """signed-note §Signatures: key ID = SHA-256(key name || 0x0A || type || public key)[:4]."""
    _check_name(name)
    key_id_for(public_raw)  # raises FormatError unless 32 bytes
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_raw).digest()[:4]


def verifier_key(name: str, public_raw: bytes) -> str:
    """The C2SP verifier key ``<name>+<key hash>+<base64(0x01 || public key)>`` (signed-note §Verifier keys).

    The key hash is the note key ID (:func:`note_key_id`) as 8 lowercase hex digits; this is the
    string ``golang.org/x/mod/sumdb/note.NewVerifier`` and other C2SP tools take to pin a log key.
    """
    key_hash = note_key_id(name, public_raw, SIG_TYPE_ED25519)
    return f"{name}+{key_hash.hex()}+{base64.b64encode(bytes([SIG_TYPE_ED25519]) + public_raw).decode('ascii')}"


_VKEY = re.compile(r"\A([^\s+]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)\Z")


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """Parse an Ed25519 C2SP verifier key; return (name, 32-byte public key).

    Refused (:class:`FormatError`): not ``name+hash+base64``, a key type other than 0x01
    (Ed25519), a key that is not 32 bytes, or a key hash that does not match name and key.
    """
    m = _VKEY.match(text.strip())
    if not m:
        raise FormatError(f"not a C2SP verifier key (name+keyhash+base64): {text[:80]!r}")
    name, key_hash, blob = m.groups()
    data = _b64decode_strict(blob, "verifier key")
    if len(data) != 33 or data[0] != SIG_TYPE_ED25519:
        raise FormatError(f"verifier key is not an Ed25519 key (type 0x01 and 32 bytes), found type "
                          f"0x{data[:1].hex() or '??'} and {len(data) - 1} bytes")
    if note_key_id(name, data[1:]).hex() != key_hash:
        raise FormatError(f"verifier key hash mismatch: expected={note_key_id(name, data[1:]).hex()} found={key_hash}")
    return name, data[1:]


@dataclass(frozen=True)
class Checkpoint:
    """A tree head (tlog-checkpoint): origin, tree size, RFC 9162 root hash, extension lines."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise FormatError(f"checkpoint origin must be one non-empty line, found {self.origin!r}")
        if type(self.tree_size) is not int or not 0 <= self.tree_size <= _MAX_U64:
            raise FormatError(f"checkpoint tree size must be an unsigned 64-bit integer, found {self.tree_size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise FormatError("checkpoint root hash must be 32 bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            # tlog-checkpoint: extension lines are non-empty (an empty line would end the body).
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line):
                raise FormatError(f"checkpoint extension lines must be non-empty single lines, found {line!r}")

    def body_bytes(self) -> bytes:
        """The note text: ``origin\\nsize\\nbase64(root)\\n`` then one line per extension."""
        lines = [self.origin, str(self.tree_size), base64.b64encode(self.root_hash).decode("ascii"), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def from_body(cls, body: bytes) -> "Checkpoint":
        """Strictly parse note text into a checkpoint (structure only; no signature is checked here)."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("checkpoint is not valid UTF-8") from None
        if not text.endswith("\n"):
            raise FormatError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError(f"checkpoint needs origin, size and root hash lines, found {len(lines)} line(s)")
        origin, size_text, root_text, *extensions = lines
        if not _DECIMAL.match(size_text) or int(size_text) > _MAX_U64:
            raise FormatError(f"checkpoint tree size must be a decimal without leading zeros, found {size_text!r}")
        root = _b64decode_strict(root_text, "checkpoint root hash")
        if len(root) != 32:
            raise FormatError(f"checkpoint root hash must be 32 bytes, found {len(root)}")
        checkpoint = cls(origin, int(size_text), root, tuple(extensions))
        if checkpoint.body_bytes() != body:  # belt and braces: one byte form per checkpoint
            raise FormatError("checkpoint text is not in canonical form")
        return checkpoint


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: ``— <name> base64(key ID || signature bytes)``."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_EM_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode('ascii')}\n"


@dataclass(frozen=True)
class SignedNote:
    """A parsed note whose signatures have NOT been checked yet.  Get data out via :meth:`verify`."""

    unverified_body: bytes
    signatures: tuple[NoteSignature, ...]
    unverified_checkpoint: Checkpoint = field(repr=False)

    def text(self) -> str:
        """The note serialised again: body, blank line, one line per signature."""
        return self.unverified_body.decode("utf-8") + "\n" + "".join(s.line() for s in self.signatures)

    def with_signatures(self, *extra: NoteSignature) -> "SignedNote":
        """This note with more signature lines (e.g. witness cosignatures) appended."""
        sigs = self.signatures + tuple(extra)
        if len(sigs) > MAX_SIGNATURES:
            raise FormatError(f"a note may carry at most {MAX_SIGNATURES} signatures")
        return SignedNote(self.unverified_body, sigs, self.unverified_checkpoint)

    def verify(self, name: str, public_raw: bytes) -> Checkpoint:
        """Check the log's Ed25519 signature by (``name``, ``public_raw``); return the checkpoint.

        signed-note §Signatures: lines whose name and key ID do not both match are ignored;
        every line that matches MUST verify (we reject the whole note if one does not); and
        at least one must match.
        """
        key_id = note_key_id(name, public_raw, SIG_TYPE_ED25519)
        subject = f"checkpoint signed by {name}"
        matching = [s for s in self.signatures if s.name == name and s.key_id == key_id]
        if not matching:
            names = sorted({s.name for s in self.signatures})
            raise SignatureError(
                f"no signature from key {name} (key ID {key_id.hex()}); signatures present from {names}",
                subject=subject,
                hint="the checkpoint may come from another log or another key",
            )
        for sig in matching:
            verify_ed25519(public_raw, self.unverified_body, sig.signature, subject=subject)
        return self.unverified_checkpoint


def sign_note(checkpoint: Checkpoint, name: str, sign: Callable[[bytes], bytes], public_raw: bytes) -> str:
    """Sign ``checkpoint`` as a signed note with Ed25519 key (``name``, ``public_raw``); return the text.

    ``sign`` is e.g. :meth:`evidencelock.keys.CustodianKey.sign`.  The signature is checked
    against ``public_raw`` before returning, so a mismatched key is caught at signing time.
    """
    body = checkpoint.body_bytes()
    key_id = note_key_id(name, public_raw, SIG_TYPE_ED25519)
    signature = sign(body)
    verify_ed25519(public_raw, body, signature, subject=f"signing checkpoint as {name}")
    note = SignedNote(body, (NoteSignature(name, key_id, signature),), checkpoint)
    text = note.text()
    if len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise FormatError(f"signed checkpoint exceeds {MAX_NOTE_BYTES} bytes")
    return text


def parse_note(text: str | bytes) -> SignedNote:
    """Strictly parse signed-note text carrying a checkpoint.  Checks structure, not signatures.

    Rejects with :class:`FormatError`: over ``MAX_NOTE_BYTES``, not UTF-8, ASCII control
    characters other than newline (signed-note §Format), no final newline, no blank line
    before the signatures, a malformed signature line, more than ``MAX_SIGNATURES`` lines,
    or a body that is not a well-formed checkpoint.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_NOTE_BYTES:
        raise FormatError(f"signed note is {len(raw)} bytes, over the {MAX_NOTE_BYTES}-byte limit")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("signed note is not valid UTF-8") from None
    if _CONTROL.search(decoded):
        raise FormatError("signed note contains control characters other than newline (e.g. CR or TAB)")
    if not decoded.endswith("\n"):
        raise FormatError("signed note must end with a newline")
    # signed-note §Format: the text is separated from the signatures by the LAST empty line.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise FormatError("signed note has no blank line before its signatures")
    body, sig_block = decoded[: split + 1], decoded[split + 2 :]
    lines = sig_block[:-1].split("\n") if sig_block else []
    if not lines:
        raise FormatError("signed note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"signed note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    signatures = []
    for number, line in enumerate(lines, 1):
        match = _SIG_LINE.match(line)
        if not match:
            raise FormatError(f"signature line {number} is malformed: {line[:80]!r}")
        name, blob = match.groups()
        data = _b64decode_strict(blob, f"signature line {number}")
        if len(data) < 5:
            raise FormatError(f"signature line {number} is too short ({len(data)} bytes)")
        signatures.append(NoteSignature(name, data[:4], data[4:]))
    body_bytes = body.encode("utf-8")
    return SignedNote(body_bytes, tuple(signatures), Checkpoint.from_body(body_bytes))


def _cosigned_message(body: bytes, timestamp: int) -> bytes:
    # tlog-cosignature "Ed25519 signed message": "cosignature/v1\n", "time <decimal>\n", whole body.
    return _COSIG_HEADER + f"time {timestamp}\n".encode("ascii") + body


def cosign(
    checkpoint: Checkpoint, name: str, sign: Callable[[bytes], bytes], public_raw: bytes, *, timestamp: int
) -> NoteSignature:
    """A witness's ``cosignature/v1`` over ``checkpoint`` at POSIX time ``timestamp``.

    Takes a :class:`Checkpoint`, which callers obtain from :meth:`SignedNote.verify`: a
    witness cosigns only what it has checked (and, in a real witness, only after checking
    consistency with the last checkpoint it saw).  Append with :meth:`SignedNote.with_signatures`.
    """
    if type(timestamp) is not int or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise InputError(f"cosignature timestamp must be 0..2^63-1 seconds, found {timestamp!r}")
    key_id = note_key_id(name, public_raw, SIG_TYPE_COSIGNATURE_V1)
    message = _cosigned_message(checkpoint.body_bytes(), timestamp)
    signature = sign(message)
    verify_ed25519(public_raw, message, signature, subject=f"cosigning as {name}")
    # tlog-cosignature: timestamped_signature = u64 big-endian timestamp || Ed25519 signature.
    return NoteSignature(name, key_id, timestamp.to_bytes(8, "big") + signature)


def _cosignature_lines(note: SignedNote, name: str, public_raw: bytes) -> tuple[bytes, list[NoteSignature]]:
    # signed-note §Signatures: only lines matching both name and key ID belong to this key.
    key_id = note_key_id(name, public_raw, SIG_TYPE_COSIGNATURE_V1)
    return key_id, [s for s in note.signatures if s.name == name and s.key_id == key_id]


def verify_cosignature(
    note: SignedNote, name: str, public_raw: bytes, *, now: datetime | None = None, max_skew_seconds: int = 300
) -> datetime:
    """Check the ``cosignature/v1`` of witness (``name``, ``public_raw``); return its time (UTC).

    Raises :class:`SignatureError` if there is no cosignature from that witness or one of its
    lines does not verify, and :class:`ProofError` if its time is later than ``now`` plus
    ``max_skew_seconds`` (tlog-cosignature: verifiers MAY reject future timestamps).
    """
    subject = f"cosignature by witness {name}"
    key_id, matching = _cosignature_lines(note, name, public_raw)
    if not matching:
        raise SignatureError(f"no cosignature from witness {name} (key ID {key_id.hex()})", subject=subject)
    newest = 0
    for sig in matching:
        if len(sig.signature) != 8 + 64:
            raise SignatureError(
                f"cosignature is {len(sig.signature)} bytes, expected 72 (8-byte time + 64-byte signature)",
                subject=subject,
            )
        timestamp = int.from_bytes(sig.signature[:8], "big")
        if timestamp > _MAX_TIMESTAMP:
            raise SignatureError(f"cosignature timestamp {timestamp} exceeds 2^63-1", subject=subject)
        verify_ed25519(public_raw, _cosigned_message(note.unverified_body, timestamp), sig.signature[8:], subject=subject)
        if now is not None and timestamp > now.timestamp() + max_skew_seconds:
            raise ProofError(
                f"cosignature time {timestamp} is in the future: now={int(now.timestamp())}",
                subject=subject,
                hint="the witness clock is wrong or the cosignature is forged",
            )
        newest = max(newest, timestamp)
    return datetime.fromtimestamp(newest, tz=timezone.utc)


def require_witnesses(
    note: SignedNote, witnesses: Mapping[str, bytes], threshold: int, *, now: datetime | None = None
) -> None:
    """Witness policy: at least ``threshold`` of ``witnesses`` (name -> public key) cosigned ``note``.

    Call after :meth:`SignedNote.verify` has checked the log's own signature.  A cosignature
    line from a listed witness that fails to verify rejects the note outright (signed-note
    §Signatures: a failed known-key signature SHOULD reject the whole note); missing ones
    just do not count.  Raises :class:`ProofError` naming the witnesses that were missing.
    """
    if type(threshold) is not int or not 1 <= threshold <= len(witnesses):
        raise InputError(f"witness threshold must be between 1 and {len(witnesses)}, found {threshold!r}")
    present, missing = [], []
    for name, public_raw in sorted(witnesses.items()):
        if not _cosignature_lines(note, name, public_raw)[1]:
            missing.append(name)
            continue
        verify_cosignature(note, name, public_raw, now=now)
        present.append(name)
    if len(present) < threshold:
        raise ProofError(
            f"witness policy not met: need {threshold} of {len(witnesses)} cosignatures, "
            f"found {len(present)} (present={present} missing={missing})",
            subject="checkpoint cosignatures",
            hint="the checkpoint may not have been seen by independent witnesses (possible split view)",
        )
