"""Proof files exchanged between a custodian and outsiders (docs/transparency.md §7.1, §7.2).

Part of the verification core: bytes in, a parsed value out or an exception; no IO, no database
(``verify-bundle`` and ``verify-checkpoint`` read these files on a laptop without a vault).

* **Consistency proof file** (``evidencelock-consistency-proof/v1``, JSON): an RFC 9162
  consistency proof between two checkpoints of one log, naming both sizes and, since issue 11,
  both roots.  Made by ``evidencelock consistency``; read by ``witness`` and by
  ``verify-bundle --consistency-proof``.  C2SP has no consistency-proof file format
  (``tlog-proof`` covers inclusion only), hence our own.
* **C2SP tlog-proof** (``c2sp.org/tlog-proof@v1``, text): an inclusion proof of one entry with the
  signed checkpoint it is proven against, readable by standard transparency clients.  Our
  ``extra`` line is base64 of the entry's canonical bytes, so the leaf hash is
  ``SHA-256(0x00 || extra)`` (§7.2).

Nothing parsed here is trusted: a consistency proof file's sizes and roots are compared with
*signed* checkpoints by the caller, and a tlog-proof's checkpoint is verified by
:meth:`evidencelock.checkpoint.SignedNote.verify` before its proof is checked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from . import _strictjson
from . import checkpoint as cp_mod
from . import merkle
from .errors import FormatError, ProofError

__all__ = [
    "CONSISTENCY_PROOF_FORMAT",
    "TLOG_PROOF_HEADER",
    "MAX_PROOF_FILE_BYTES",
    "ConsistencyProofFile",
    "TlogProof",
    "parse_consistency_proof_file",
    "verify_consistency_between",
    "parse_tlog_proof",
]

CONSISTENCY_PROOF_FORMAT = "evidencelock-consistency-proof/v1"
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
# A proof has at most 130 hashes (merkle._MAX_PROOF); with a note of 64 KiB this bounds both formats.
MAX_PROOF_FILE_BYTES = 128 * 1024
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_DECIMAL = re.compile(r"\A(0|[1-9][0-9]{0,19})\Z")
_REQUIRED = {"format", "origin", "old_size", "new_size", "proof"}
_OPTIONAL = {"old_root", "new_root"}  # written since issue 11; checked when present
_MAX_PROOF_HASHES = 130


@dataclass(frozen=True)
class ConsistencyProofFile:
    """A parsed ``evidencelock-consistency-proof/v1`` file: NOT verified (see :func:`verify_consistency_between`)."""

    origin: str
    old_size: int
    new_size: int
    proof: tuple[bytes, ...]
    old_root: bytes | None = None
    new_root: bytes | None = None

    def to_json(self) -> dict[str, object]:
        """The file's JSON object (docs/transparency.md §7.1), members in the documented order."""
        obj: dict[str, object] = {"format": CONSISTENCY_PROOF_FORMAT, "origin": self.origin,
                                  "old_size": self.old_size, "new_size": self.new_size}
        if self.old_root is not None:
            obj["old_root"] = self.old_root.hex()
        if self.new_root is not None:
            obj["new_root"] = self.new_root.hex()
        obj["proof"] = [p.hex() for p in self.proof]
        return obj

    def render(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def parse_consistency_proof_file(data: bytes | str, *, subject: str = "consistency proof file") -> ConsistencyProofFile:
    """Strictly parse a consistency proof file (§7.1); :class:`FormatError` naming the rule otherwise."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_PROOF_FILE_BYTES:
        raise FormatError(f"is {len(raw)} bytes, over the {MAX_PROOF_FILE_BYTES}-byte limit", subject=subject)
    try:
        obj = _strictjson.loads(raw)
    except ValueError as exc:  # not UTF-8, not JSON, a repeated member name, NaN
        raise FormatError(f"is not strict UTF-8 JSON: {exc}", subject=subject) from None
    if not isinstance(obj, dict) or obj.get("format") != CONSISTENCY_PROOF_FORMAT:
        raise FormatError(f"is not a {CONSISTENCY_PROOF_FORMAT} file (member 'format')", subject=subject)
    missing = sorted(_REQUIRED - obj.keys())
    extra = sorted(obj.keys() - _REQUIRED - _OPTIONAL)
    if missing or extra:
        raise FormatError(f"members: missing {missing}, unexpected {extra}", subject=subject)
    origin, old, new, proof = obj["origin"], obj["old_size"], obj["new_size"], obj["proof"]
    if not isinstance(origin, str) or not origin:
        raise FormatError("'origin' must be a non-empty string", subject=subject)
    for name, v in (("old_size", old), ("new_size", new)):
        if type(v) is not int or not 0 <= v < 2**64:
            raise FormatError(f"'{name}' must be an integer 0 … 2^64-1, found {v!r}", subject=subject)
    if old > new:
        raise FormatError(f"old_size {old} is larger than new_size {new}: a log never shrinks", subject=subject)
    if (not isinstance(proof, list) or len(proof) > _MAX_PROOF_HASHES
            or not all(isinstance(p, str) and _HEX64.match(p) for p in proof)):
        raise FormatError(f"'proof' must be a list of at most {_MAX_PROOF_HASHES} hashes of 64 lowercase hex digits",
                          subject=subject)
    roots: dict[str, bytes | None] = {}
    for name in ("old_root", "new_root"):
        if name not in obj:
            roots[name] = None
            continue
        v = obj[name]  # present means a hash: null is not "absent" (two readers must agree)
        if not (isinstance(v, str) and _HEX64.match(v)):
            raise FormatError(f"'{name}' must be 64 lowercase hex digits, found {str(v)[:80]!r}", subject=subject)
        roots[name] = bytes.fromhex(v)
    return ConsistencyProofFile(origin, old, new, tuple(bytes.fromhex(p) for p in proof),
                                roots["old_root"], roots["new_root"])


def verify_consistency_between(proof: ConsistencyProofFile, old: cp_mod.Checkpoint, new: cp_mod.Checkpoint) -> None:
    """Check ``proof`` links two *verified* checkpoints of one log (RFC 9162 §2.1.4.2); raise otherwise.

    §7.1: the file's origin and both sizes MUST be those of the checkpoints, and its roots, when
    present, MUST be theirs; then the proof MUST verify from ``old``'s root to ``new``'s root.
    Raises :class:`ProofError` naming which of these failed, with expected and found values.
    """
    if proof.origin != old.origin or old.origin != new.origin:
        raise ProofError(f"origin mismatch: the checkpoints are of {old.origin!r} and {new.origin!r}, the proof file is for "
                         f"{proof.origin!r}", subject="consistency proof file")
    if (proof.old_size, proof.new_size) != (old.tree_size, new.tree_size):
        raise ProofError(f"the proof file is for sizes {proof.old_size} → {proof.new_size}, expected "
                         f"{old.tree_size} → {new.tree_size} (the two checkpoints' sizes)", subject="consistency proof file",
                         hint="ask the custodian for a proof made for exactly these two checkpoints")
    for what, found, expected in (("old", proof.old_root, old.root_hash), ("new", proof.new_root, new.root_hash)):
        if found is not None and found != expected:
            raise ProofError(f"the proof file's {what}_root is not the root of the size-{getattr(proof, what + '_size')} "
                             f"checkpoint: expected={expected.hex()} found={found.hex()}", subject="consistency proof file",
                             hint="the proof was made for another checkpoint of that size: the log may have been forked")
    try:
        merkle.verify_consistency(old.tree_size, new.tree_size, list(proof.proof), old.root_hash, new.root_hash)
    except ProofError as exc:
        raise ProofError(f"the consistency proof from size {old.tree_size} (root {old.root_hash.hex()[:16]}…) to size "
                         f"{new.tree_size} (root {new.root_hash.hex()[:16]}…) does not verify: {exc.message}",
                         subject="consistency proof file",
                         hint="the two checkpoints are not of one append-only log (a rewrite or fork), or the proof "
                              "file was damaged") from None


# -- C2SP tlog-proof ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlogProof:
    """A parsed ``c2sp.org/tlog-proof@v1``: nothing verified (see :meth:`verify`)."""

    index: int
    proof: tuple[bytes, ...]
    unverified_note: cp_mod.SignedNote
    extra: bytes | None = None

    def render(self) -> str:
        """The text form (tlog-proof §Format)."""
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(p).decode("ascii") for p in self.proof]
        return "\n".join(lines) + "\n\n" + self.unverified_note.text()

    def verify(self, name: str, public_raw: bytes, leaf_hash: bytes | None = None) -> cp_mod.Checkpoint:
        """tlog-proof §Verifying: (2) the checkpoint is signed by (``name``, ``public_raw``); (4) the
        inclusion proof binds the leaf to its root.  Step 1, the leaf: ``leaf_hash`` if given, else
        ``SHA-256(0x00 || extra)`` (evidencelock: extra = the entry's canonical bytes).  Step 3
        (witness policy) is the caller's.  Returns the verified checkpoint; raises otherwise."""
        head = self.unverified_note.verify(name, public_raw)
        if leaf_hash is None:
            if self.extra is None:
                raise FormatError("the tlog-proof has no 'extra' line, so the leaf is unknown", subject="tlog-proof",
                                  hint="evidencelock's tlog-proofs carry the entry bytes as extra data")
            leaf_hash = merkle.leaf_hash(self.extra)
        merkle.verify_inclusion(leaf_hash, self.index, head.tree_size, list(self.proof), head.root_hash)
        return head


def _b64_strict(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not valid base64: {text[:60]!r}", subject="tlog-proof") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what} is not canonical base64: {text[:60]!r}", subject="tlog-proof")
    return raw


def parse_tlog_proof(data: bytes | str) -> TlogProof:
    """Strictly parse a tlog-proof (C2SP tlog-proof §Format); :class:`FormatError` naming the line otherwise."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_PROOF_FILE_BYTES:
        raise FormatError(f"tlog-proof is {len(raw)} bytes, over the {MAX_PROOF_FILE_BYTES}-byte limit", subject="tlog-proof")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("tlog-proof is not valid UTF-8", subject="tlog-proof") from None
    head, sep, note_text = text.partition("\n\n")  # the FIRST empty line ends the proof lines
    if not sep:
        raise FormatError("tlog-proof has no empty line before the checkpoint", subject="tlog-proof")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise FormatError(f"the first line must be {TLOG_PROOF_HEADER!r}, found {lines[0][:60]!r}", subject="tlog-proof")
    i = 1
    extra = None
    if i < len(lines) and lines[i].startswith("extra "):
        extra = _b64_strict(lines[i][len("extra "):], "the extra line")
        i += 1
    if i >= len(lines) or not lines[i].startswith("index ") or not _DECIMAL.match(lines[i][len("index "):]):
        raise FormatError("expected 'index N' (decimal, no leading zeros) after the header"
                          + (" and the extra line" if extra is not None else ""), subject="tlog-proof")
    index = int(lines[i][len("index "):])
    hashes = lines[i + 1:]
    if len(hashes) > _MAX_PROOF_HASHES:
        raise FormatError(f"more than {_MAX_PROOF_HASHES} proof hashes", subject="tlog-proof")
    proof = []
    for n, line in enumerate(hashes, 1):
        h = _b64_strict(line, f"proof line {n}")
        if len(h) != merkle.HASH_SIZE:
            raise FormatError(f"proof line {n} is {len(h)} bytes, expected 32 (SHA-256)", subject="tlog-proof")
        proof.append(h)
    return TlogProof(index, tuple(proof), cp_mod.parse_note(note_text), extra)
