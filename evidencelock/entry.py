"""Ledger entry format (docs/ledger-format.md): RFC 8785 canonical bytes, signatures, chain.

This module is part of the verification core: it takes bytes, raises on failure, and does no
IO.  A parsed :class:`Entry` is always well formed (``from_canonical`` checks the structure),
so later code never re-checks it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import rfc8785

from . import merkle
from .errors import ChainError, FormatError, SignatureError
from .keys import PublicKey, key_id_for

__all__ = [
    "FORMAT_VERSION",
    "GENESIS_PREV",
    "ENTRY_TYPES",
    "Entry",
    "SignedEntry",
    "canonicalize",
    "format_time",
    "parse_time",
    "ChainVerifier",
]

FORMAT_VERSION = 1
GENESIS_PREV = "0" * 64
ENTRY_TYPES = frozenset(
    {
        "ingest",
        "transfer",
        "transfer-accept",
        "access",
        "export",
        "derive",
        "annotate",
        "deletion-request",
        "audit",
        "key-enroll",
        "key-revoke",
        "checkpoint",
    }
)
_FIELDS = ("v", "seq", "prev", "time", "type", "case", "actor", "body")
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
# docs/ledger-format.md §2.3: UTC, microsecond precision, literal Z.
_TIME = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
MAX_ENTRY_BYTES = 1 << 20  # §2.1: an entry is at most 1 MiB of canonical bytes


def canonicalize(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 bytes of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise FormatError(f"value cannot be canonicalised as RFC 8785 JSON: {exc}") from None


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2014-04-30T09:15:00.000000Z``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC time")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    if not isinstance(text, str) or not _TIME.match(text):
        raise FormatError(f"time must look like 2014-04-30T09:15:00.000000Z, found {text!r}")
    try:
        # Fixed positions (the regex guarantees them); much cheaper than strptime.
        return datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                        int(text[17:19]), int(text[20:26]), tzinfo=timezone.utc)
    except ValueError:
        raise FormatError(f"time is not a valid date and time: {text!r}") from None


@dataclass(frozen=True)
class Entry:
    """One ledger entry (docs/ledger-format.md §2).  Values are JSON-compatible."""

    seq: int
    prev: str
    time: str
    type: str
    case: str
    actor: str
    body: Mapping[str, Any]
    v: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_fields(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "seq": self.seq,
            "prev": self.prev,
            "time": self.time,
            "type": self.type,
            "case": self.case,
            "actor": self.actor,
            "body": dict(self.body),
        }

    def canonical_bytes(self) -> bytes:
        data = canonicalize(self.to_json())
        if len(data) > MAX_ENTRY_BYTES:
            raise FormatError(f"entry {self.seq} is {len(data)} bytes, over the 1 MiB limit")
        return data

    @classmethod
    def from_canonical(cls, data: bytes, *, subject: str | None = None) -> "Entry":
        """Parse canonical bytes; raise FormatError unless they are exactly canonical."""
        if len(data) > MAX_ENTRY_BYTES:
            raise FormatError(f"entry is {len(data)} bytes, over the 1 MiB limit", subject=subject)
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"entry is not UTF-8 JSON: {exc}", subject=subject) from None
        if not isinstance(obj, dict):
            raise FormatError("entry is not a JSON object", subject=subject)
        if set(obj) != set(_FIELDS):
            missing = sorted(set(_FIELDS) - set(obj))
            extra = sorted(set(obj) - set(_FIELDS))
            raise FormatError(f"entry fields wrong: missing={missing} unexpected={extra}", subject=subject)
        try:
            entry = cls(**obj)
        except FormatError as exc:
            raise FormatError(exc.message, subject=subject) from None
        # §2.1: the stored bytes MUST be the canonical form, so that the hash and the
        # signature cover one unambiguous representation.
        if not _is_canonical(obj, data):
            raise FormatError("entry bytes are not RFC 8785 canonical", subject=subject)
        return entry

    @property
    def item(self) -> str | None:
        value = self.body.get("item")
        return value if isinstance(value, str) else None


# Bytes for which Python's C JSON encoder might agree with the data where RFC 8785 does not:
# a 4-byte UTF-8 sequence (a character beyond U+FFFF: RFC 8785 sorts member names by UTF-16
# code units, Python by code points) or a run of 16+ digits (an integer beyond the I-JSON range,
# which RFC 8785 refuses).  Those entries take the reference implementation's path.
_LONG_DIGITS = re.compile(rb"[0-9]{16}")


def _is_canonical(obj: Any, data: bytes) -> bool:
    """``data`` is exactly the RFC 8785 form of ``obj`` (already checked: no floats, §2.1).

    Fast path: for strings, booleans, null, safe integers, arrays and objects whose member
    names lie in the Basic Multilingual Plane, RFC 8785 output is byte-identical to Python's
    ``json.dumps`` with sorted keys, no whitespace and no ASCII escaping (the same escapes:
    quote, backslash, the five short forms, other controls as lowercase u00xx; code-point order
    equals UTF-16 order within the BMP).  Anything else, and any difference, is decided by the
    reference canonicaliser, so the fast path can only say yes where RFC 8785 says yes.
    """
    if max(data, default=0) < 0xF0 and not _LONG_DIGITS.search(data):
        try:
            fast = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError):
            fast = None
        if fast == data:
            return True
    return canonicalize(obj) == data


def _check_fields(e: Entry) -> None:
    if type(e.v) is not int or e.v != FORMAT_VERSION:
        raise FormatError(f"unsupported entry format version {e.v!r}, expected {FORMAT_VERSION}")
    if type(e.seq) is not int or e.seq < 0:
        raise FormatError(f"seq must be a non-negative integer, found {e.seq!r}")
    if not isinstance(e.prev, str) or not _HEX64.match(e.prev):
        raise FormatError(f"prev must be 64 lowercase hex digits, found {e.prev!r}")
    parse_time(e.time)
    if e.type not in ENTRY_TYPES:
        raise FormatError(f"unknown entry type {e.type!r}")
    if not isinstance(e.case, str) or len(e.case) > 256:
        raise FormatError("case must be a string of at most 256 characters")
    if not isinstance(e.actor, str) or not _HEX64.match(e.actor):
        raise FormatError(f"actor must be a key id (64 lowercase hex digits), found {e.actor!r}")
    if not isinstance(e.body, Mapping):
        raise FormatError("body must be a JSON object")
    _check_no_floats(e.body, "body")


def _check_no_floats(value: Any, where: str) -> None:
    """§2.1: entries carry no floating-point numbers (decimals are strings), so a second
    verifier needs no ECMAScript number formatting to reproduce the canonical bytes."""
    if isinstance(value, float):
        raise FormatError(f"{where} holds a floating-point number; write decimals as strings")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_no_floats(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_no_floats(v, f"{where}[{i}]")


@dataclass(frozen=True)
class SignedEntry:
    """Canonical entry bytes with their detached Ed25519 signature, parsed and checked."""

    entry: Entry
    canonical: bytes
    signature: bytes

    @classmethod
    def from_bytes(cls, canonical: bytes, signature: bytes, *, subject: str | None = None) -> "SignedEntry":
        return cls(Entry.from_canonical(canonical, subject=subject), bytes(canonical), bytes(signature))

    @classmethod
    def create(cls, entry: Entry, sign: Any) -> "SignedEntry":
        """Sign ``entry`` with ``sign(bytes) -> bytes`` (a :class:`CustodianKey`'s ``sign``)."""
        canonical = entry.canonical_bytes()
        return cls(entry, canonical, sign(canonical))

    @property
    def entry_hash(self) -> str:
        """Hex SHA-256 of the canonical bytes: the next entry's ``prev``."""
        return hashlib.sha256(self.canonical).hexdigest()

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.canonical)  # RFC 9162 §2.1.1

    def verify_signature(self, key: PublicKey) -> None:
        subject = f"entry {self.entry.seq}"
        if key.key_id != self.entry.actor:
            raise SignatureError(
                f"signing key mismatch: expected={self.entry.actor} found={key.key_id}", subject=subject
            )
        key.verify(self.canonical, self.signature, subject=subject)


class ChainVerifier:
    """Checks a ledger entry by entry, in order (docs/ledger-format.md §5).

    It tracks the enrolled keys from ``key-enroll``/``key-revoke`` entries, so that each
    entry's signature is checked against a key that was enrolled, and not revoked, before it.
    ``feed`` raises on the first problem with an entry; callers that audit catch the error,
    record it and may continue with the next entry (the verifier then resynchronises on the
    entry it was given, so one bad row yields one finding, not a cascade).
    """

    def __init__(self) -> None:
        self.keys: dict[str, PublicKey] = {}
        self.revoked: dict[str, int] = {}
        self.next_seq = 0
        self.prev = GENESIS_PREV

    def feed(self, signed: SignedEntry) -> None:
        e = signed.entry
        subject = f"entry {e.seq}"
        expected_seq, expected_prev = self.next_seq, self.prev
        # Resynchronise first so that a single bad entry does not poison the rest.
        self.next_seq = e.seq + 1
        self.prev = signed.entry_hash
        if e.seq != expected_seq:
            raise ChainError(
                f"sequence broken: expected seq={expected_seq} found seq={e.seq}",
                subject=subject,
                hint="an entry may have been deleted, inserted or reordered",
            )
        if e.prev != expected_prev:
            raise ChainError(
                f"hash chain broken: expected prev={expected_prev} found prev={e.prev}",
                subject=subject,
                hint="this or the previous entry may have been modified",
            )
        key = self._key_for(signed)
        signed.verify_signature(key)
        self._apply_key_changes(e, signed)

    def _key_for(self, signed: SignedEntry) -> PublicKey:
        e = signed.entry
        subject = f"entry {e.seq}"
        if e.seq == 0:
            # §5.2: the genesis entry enrols the vault's first key and is signed by it.
            if e.type != "key-enroll":
                raise ChainError("the first entry must be a key-enroll entry", subject=subject)
            return _enrolled_key(e)
        key = self.keys.get(e.actor)
        if key is None:
            raise SignatureError(
                f"signed by key {e.actor[:16]}… which was never enrolled in this ledger",
                subject=subject,
                hint="an entry signed by an unknown key is not part of the custody record",
            )
        if e.actor in self.revoked:
            raise SignatureError(
                f"signed by key {e.actor[:16]}… revoked at entry {self.revoked[e.actor]}",
                subject=subject,
            )
        return key

    def _apply_key_changes(self, e: Entry, signed: SignedEntry) -> None:
        if e.type == "key-enroll":
            key = _enrolled_key(e)
            self.keys[key.key_id] = key
        elif e.type == "key-revoke":
            key_id = e.body.get("key_id")
            if isinstance(key_id, str):
                self.revoked[key_id] = e.seq


def _enrolled_key(e: Entry) -> PublicKey:
    subject = f"entry {e.seq}"
    body = e.body
    raw_hex = body.get("public_key")
    if not isinstance(raw_hex, str) or not re.fullmatch(r"[0-9a-f]{64}", raw_hex):
        raise FormatError("key-enroll body.public_key must be 64 lowercase hex digits", subject=subject)
    raw = bytes.fromhex(raw_hex)
    if body.get("key_id") != key_id_for(raw):
        raise FormatError(
            f"key-enroll key_id mismatch: expected={key_id_for(raw)} found={body.get('key_id')}",
            subject=subject,
        )
    name = body.get("name")
    return PublicKey(raw, name if isinstance(name, str) else "")


def verify_chain(signed_entries: Iterable[SignedEntry]) -> dict[str, PublicKey]:
    """Verify a complete ledger from seq 0; return the enrolled keys.  Raises on the first problem."""
    verifier = ChainVerifier()
    for signed in signed_entries:
        verifier.feed(signed)
    return verifier.keys
