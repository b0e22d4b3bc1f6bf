"""Transparency for a live vault: checkpoints, proofs, timestamps, witnesses (docs/transparency.md §6–§9).

This module joins the pure verification core (:mod:`merkle`, :mod:`treestore`,
:mod:`checkpoint`, :mod:`timestamp`) to a vault.  It never prints, exits or imports click;
every failure is an exception from :mod:`evidencelock.errors`, and the command line maps it
to an exit code.

* :func:`create_checkpoint` signs the current tree head as a C2SP signed note (key name = the
  vault's origin), optionally asks one or more RFC 3161 TSAs to stamp it, stores it in the
  ``checkpoints`` table and records a signed ``checkpoint`` entry (§6.2).  Write order
  (STYLE.md §9): the note is signed and the TSAs are asked *before* the write transaction;
  entry and row are written in ONE transaction, so a crash leaves either both or neither.
* :func:`inclusion_proof_for_item` and :func:`consistency_proof` produce proofs and verify
  them before returning them.
* :func:`check_checkpoints` is called by ``verify``/``audit``: every stored checkpoint is
  checked against the root recomputed from the entries themselves (not the derived tree).
* :func:`witness_cosign` is what *another organisation* runs: it keeps the last checkpoint it
  saw per origin and cosigns a new one only after a consistency proof from the old one.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from . import checkpoint as cp_mod
from . import merkle, schema, timestamp, treestore
from . import proofs as proofs_mod
from .derived import require_tree_matches_entries
from .entry import Entry, SignedEntry, format_time, parse_time
from .errors import (
    EvidenceLockError,
    FormatError,
    InputError,
    ProofError,
    SignatureError,
    StorageError,
)
from .keys import CustodianKey, PublicKey, key_id_for

if TYPE_CHECKING:  # pragma: no cover
    from .audit import VerifyReport
    from .vault import Vault

__all__ = [
    "StoredCheckpoint",
    "TsaResult",
    "CheckpointResult",
    "ItemProof",
    "ConsistencyResult",
    "WitnessResult",
    "create_checkpoint",
    "attach_timestamp",
    "attach_cosignature",
    "list_checkpoints",
    "get_checkpoint",
    "latest_checkpoint",
    "verified_note",
    "ledger_keys",
    "resolve_item",
    "inclusion_proof_for_item",
    "consistency_proof",
    "bundle_checkpoint_note",
    "tlog_proofs_for_item",
    "check_checkpoints",
    "witness_cosign",
    "verify_checkpoint_policy",
    "parse_proof_file",
    "load_tsa_certificates",
]

PROOF_FORMAT = "evidencelock-consistency-proof/v1"
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")


# -- stored checkpoints ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCheckpoint:
    """A row of the ``checkpoints`` table.  The note's signature is NOT checked by loading it."""

    id: int
    tree_size: int
    root_hash: bytes
    note: str  # the signed note as created (the log's own signature line only)
    created: str
    timestamps: tuple[Mapping[str, Any], ...] = ()
    cosignatures: tuple[str, ...] = ()  # witness cosignature lines ("— name base64\n")

    @property
    def body(self) -> bytes:
        return cp_mod.parse_note(self.note).unverified_body

    @property
    def note_sha256(self) -> str:
        return hashlib.sha256(self.note.encode("utf-8")).hexdigest()

    @property
    def tokens(self) -> list[Mapping[str, Any]]:
        """Stored timestamp tokens (pending offline requests excluded)."""
        return [t for t in self.timestamps if t.get("token")]

    @property
    def pending_requests(self) -> list[Mapping[str, Any]]:
        return [t for t in self.timestamps if t.get("status") == "pending"]

    def note_with_cosignatures(self) -> str:
        """The note text with every attached witness cosignature line appended."""
        return self.note + "".join(self.cosignatures)

    def describe(self) -> str:
        return f"checkpoint #{self.id} (size {self.tree_size}, created {self.created})"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "created": self.created,
            "note": self.note_with_cosignatures(),
            "note_sha256": self.note_sha256,
            "timestamps": [
                {k: v for k, v in t.items() if k not in ("token", "chain", "tsq")} for t in self.timestamps
            ],
            "cosignatures": len(self.cosignatures),
            "timestamped": bool(self.tokens),  # false: no RFC 3161 token, only our own clock dates it
        }


def _row_to_stored(row: Any) -> StoredCheckpoint:
    try:
        stamps = json.loads(row.timestamps_json or "[]")
        cosigs = json.loads(row.cosignatures_json or "[]")
    except ValueError:
        stamps, cosigs = [], []
    stamps = [s for s in stamps if isinstance(s, dict)] if isinstance(stamps, list) else []
    cosigs = [c for c in cosigs if isinstance(c, str)] if isinstance(cosigs, list) else []
    root = bytes.fromhex(row.root_hash) if _HEX64.match(row.root_hash or "") else b""
    return StoredCheckpoint(int(row.id), int(row.tree_size), root, row.note, row.created, tuple(stamps), tuple(cosigs))


def list_checkpoints(vault: "Vault") -> list[StoredCheckpoint]:
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(schema.checkpoints).order_by(schema.checkpoints.c.id)).all()
    return [_row_to_stored(r) for r in rows]


def get_checkpoint(vault: "Vault", checkpoint_id: int) -> StoredCheckpoint:
    with vault.ledger.reader() as conn:
        row = conn.execute(select(schema.checkpoints).where(schema.checkpoints.c.id == checkpoint_id)).first()
    if row is None:
        raise InputError(f"no checkpoint #{checkpoint_id} in this vault", hint="see `evidencelock checkpoints`")
    return _row_to_stored(row)


def latest_checkpoint(vault: "Vault") -> StoredCheckpoint:
    """The stored checkpoint with the largest tree size (newest among equals)."""
    with vault.ledger.reader() as conn:
        row = conn.execute(
            select(schema.checkpoints).order_by(schema.checkpoints.c.tree_size.desc(), schema.checkpoints.c.id.desc()).limit(1)
        ).first()
    if row is None:
        raise InputError("this vault has no checkpoint yet", hint="run `evidencelock checkpoint` first")
    return _row_to_stored(row)


def _signed_of_type(conn: Connection, type_: str) -> Iterator[Entry]:
    """Entries of ``type_`` in seq order, decided by their signed bytes: the ``type`` column only
    narrows the query (an edited column is reported by verify as index-entry-column), a malformed
    row is skipped (the chain check reports it)."""
    t = schema.entries
    for r in conn.execute(select(t.c.seq, t.c.canonical, t.c.signature).where(t.c.type == type_).order_by(t.c.seq)):
        try:
            e = SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}").entry
        except EvidenceLockError:
            continue
        if e.type == type_:
            yield e


def _enrolled_from_entries(conn: Connection) -> dict[str, PublicKey]:
    """Keys enrolled by ``key-enroll`` entries, read from the entries (not the derived table)."""
    keys: dict[str, PublicKey] = {}
    for e in _signed_of_type(conn, "key-enroll"):
        try:
            raw = bytes.fromhex(str(e.body.get("public_key", "")))
            keys[key_id_for(raw)] = PublicKey(raw, str(e.body.get("name", "")))
        except (EvidenceLockError, ValueError):
            continue  # the chain check reports a malformed enrolment
    return keys


def revocations(conn: Connection) -> dict[str, int]:
    """key id -> seq of the first ``key-revoke`` entry naming it, read from the signed entries."""
    revoked: dict[str, int] = {}
    for e in _signed_of_type(conn, "key-revoke"):
        if isinstance(e.body.get("key_id"), str):
            revoked.setdefault(e.body["key_id"], e.seq)
    return revoked


def ledger_revocations(vault: "Vault") -> dict[str, int]:
    with vault.ledger.reader() as conn:
        return revocations(conn)


def ledger_keys(vault: "Vault") -> list[bytes]:
    """Raw public keys enrolled by the ledger's own ``key-enroll`` entries."""
    with vault.ledger.reader() as conn:
        return [k.raw for k in _enrolled_from_entries(conn).values()]


def verified_note(note_text: str | bytes, origin: str, keys: Iterable[bytes], *,
                  revoked: Mapping[str, int] | None = None) -> tuple[cp_mod.SignedNote, cp_mod.Checkpoint]:
    """Parse a signed checkpoint and verify it was signed, as ``origin``, by one of ``keys``.

    ``revoked`` (key id -> seq of its key-revoke entry): a checkpoint of size S signed by a key
    revoked at seq r < S is refused (transparency §4: a revoked key may not sign a tree that
    contains its revocation).

    signed-note §Signatures: lines from other keys are ignored; a matching line that fails
    rejects the note.  Raises FormatError (malformed), SignatureError (no or bad signature),
    ProofError (another log's checkpoint).
    """
    note = cp_mod.parse_note(note_text)
    origin_found = note.unverified_checkpoint.origin
    if origin_found != origin:
        raise ProofError(
            f"checkpoint is for another log: expected origin={origin!r} found origin={origin_found!r}",
            subject="checkpoint",
        )
    last: EvidenceLockError | None = None
    for raw in keys:
        try:
            head = note.verify(origin, raw)
        except SignatureError as exc:
            last = exc
            # a line that matches this key but fails verification rejects the note outright
            if any(s.key_id == cp_mod.note_key_id(origin, raw) and s.name == origin for s in note.signatures):
                raise
            continue
        r = (revoked or {}).get(key_id_for(raw))
        if r is not None and r < head.tree_size:
            raise SignatureError(f"checkpoint of size {head.tree_size} is signed by key {key_id_for(raw)[:16]}…, which entry {r} "
                                 "revoked before it: a revoked key may not sign", subject="checkpoint",
                                 hint="the checkpoint may have been forged with a stolen or retired key")
        return note, head
    raise SignatureError(
        "checkpoint is not signed by any key enrolled in this vault" + (f" ({last.message})" if last else ""),
        subject="checkpoint",
        hint="the checkpoint may have been forged or signed with another key",
    )


# -- creating checkpoints and timestamps -------------------------------------------------


@dataclass(frozen=True)
class TsaResult:
    url: str
    ok: bool
    tsa: str = ""  # name from the token (TSTInfo.tsa or certificate subject), when verified
    time: str = ""
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "tsa": self.tsa, "time": self.time, "error": self.error}


@dataclass(frozen=True)
class CheckpointResult:
    checkpoint: StoredCheckpoint
    entry_seq: int
    tsa: tuple[TsaResult, ...] = ()
    tsq: bytes | None = None  # DER TimeStampReq for the offline flow, if asked for

    @property
    def tsa_all_failed(self) -> bool:
        return bool(self.tsa) and not any(r.ok for r in self.tsa)


# TsaChain and load_tsa_certificates live in the verification core (timestamp.py): a bundle
# verifier needs them without a database.
TsaChain = timestamp.TsaChain
load_tsa_certificates = timestamp.load_tsa_certificates


def _verify_with_chains(token: bytes, body: bytes, chains: Sequence[TsaChain], now: datetime) -> tuple[timestamp.TimestampInfo, TsaChain]:
    last: EvidenceLockError | None = None
    for chain in chains:
        try:
            info = timestamp.verify_token(token, body, tsa_certificate_pem=chain.tsa_pem,
                                          root_certificates_pem=chain.roots_pem,
                                          intermediate_certificates_pem=chain.intermediates_pem, now=now)
            return info, chain
        except EvidenceLockError as exc:
            last = exc
            if "imprint mismatch" in exc.message:
                raise
    assert last is not None
    raise last


def _stamp(url: str, body: bytes, chains: Sequence[TsaChain], now: datetime, timeout: float) -> tuple[TsaResult, dict[str, Any] | None]:
    try:
        token, query = timestamp.request_token_and_query(url, body, timeout=timeout)
        record: dict[str, Any] = {"url": url, "tsa": url, "token": base64.b64encode(token).decode("ascii"),
                                  "tsq": base64.b64encode(query).decode("ascii"),
                                  "source": "online", "added": format_time(now)}
        result = TsaResult(url, True, tsa=url)
        if chains:
            info, chain = _verify_with_chains(token, body, chains, now)
            record.update(tsa=info.tsa_name, time=format_time(info.time), chain=chain.pem.decode("ascii"))
            result = TsaResult(url, True, tsa=info.tsa_name, time=format_time(info.time))
        return result, record
    except EvidenceLockError as exc:
        return TsaResult(url, False, error=str(exc)), None


def create_checkpoint(
    vault: "Vault",
    key: CustodianKey,
    *,
    now: datetime,
    tsa_urls: Sequence[str] = (),
    tsa_timeout: float = 30.0,
    tsa_certificates: Sequence[bytes] = (),
    make_tsq: bool = False,
) -> CheckpointResult:
    """Sign the current tree head, timestamp it, store it and record a ``checkpoint`` entry.

    The checkpoint covers the entries *before* its own ``checkpoint`` entry: that entry lands
    at seq >= tree_size (docs/transparency.md §6.2) and is covered by the next checkpoint.
    One TSA failing is reported in :attr:`CheckpointResult.tsa`; if *every* TSA fails the
    checkpoint is still stored and recorded (``tsa_all_failed``): the caller decides what
    that means for its exit code.  ``tsa_certificates`` (PEM files: TSA cert + CA chain)
    make every token be fully verified before it is stored.
    """
    if not vault.writable:
        raise ValueError("vault must be opened writable: the checkpoint is recorded")
    origin = vault.config.origin
    chains = [load_tsa_certificates(p, subject=f"--tsa-cert #{i + 1}") for i, p in enumerate(tsa_certificates)]
    with vault.ledger.reader() as conn:
        keys = _enrolled_from_entries(conn)
        if key.key_id not in keys:
            raise InputError("the signing key is not enrolled in this vault", subject=key.key_id[:16])
        # §6.2: never sign a root the stored tree table claims without the entries backing it.
        size = require_tree_matches_entries(conn, action="sign a checkpoint")
        root = treestore.root_at(conn, size)
    head = cp_mod.Checkpoint(origin, size, root)
    note_text = cp_mod.sign_note(head, origin, key.sign, key.public.raw)
    body = head.body_bytes()
    results: list[TsaResult] = []
    stamps: list[dict[str, Any]] = []
    for url in tsa_urls:
        res, record = _stamp(url, body, chains, now, tsa_timeout)
        results.append(res)
        if record is not None:
            stamps.append(record)
    tsq = None
    if make_tsq:
        tsq = timestamp.make_request(body)
        stamps.append({"status": "pending", "tsq": base64.b64encode(tsq).decode("ascii"), "added": format_time(now)})
    note_sha = hashlib.sha256(note_text.encode("utf-8")).hexdigest()
    entry_body = {
        "event": "created",
        "origin": origin,
        "tree_size": size,
        "root_hash": root.hex(),
        "note_sha256": note_sha,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "tsa": [r.tsa or r.url for r in results if r.ok],
        "tsa_failed": [r.url for r in results if not r.ok],
        "offline_request": make_tsq,
    }
    row_id: list[int] = []

    def after(conn: Connection, signed: SignedEntry) -> None:
        res = conn.execute(schema.checkpoints.insert().values(
            tree_size=size, root_hash=root.hex(), note=note_text, created=format_time(now),
            timestamps_json=json.dumps(stamps), cosignatures_json="[]"))
        row_id.append(int(res.inserted_primary_key[0]))

    signed = vault.append(key, now=now, type="checkpoint", case="", body=entry_body, after=after)
    assert signed is not None
    stored = StoredCheckpoint(row_id[0], size, root, note_text, format_time(now), tuple(stamps), ())
    return CheckpointResult(stored, signed.entry.seq, tuple(results), tsq)


def _update_row(vault: "Vault", key: CustodianKey, now: datetime, cp: StoredCheckpoint, body: dict[str, Any],
                **values: str) -> int:
    """Record a signed ``checkpoint`` entry for an attachment and update the row, in one transaction."""

    def after(conn: Connection, signed: SignedEntry) -> None:
        conn.execute(schema.checkpoints.update().where(schema.checkpoints.c.id == cp.id).values(**values))

    signed = vault.append(key, now=now, type="checkpoint", case="", body=body, after=after)
    assert signed is not None
    return signed.entry.seq


def attach_timestamp(vault: "Vault", key: CustodianKey, checkpoint_id: int, tsr: bytes, *, now: datetime,
                     tsa_certificates: Sequence[bytes] = ()) -> tuple[StoredCheckpoint, TsaResult]:
    """Offline flow: attach a ``.tsr`` answering a ``.tsq`` written by ``checkpoint --tsq-out``.

    The response must be ``granted``, answer one of the checkpoint's pending requests (imprint
    AND nonce, RFC 3161 §2.4.2) and stamp SHA-256 of the checkpoint body.  Raises
    :class:`ProofError` (nothing attached) if it answers another request or stamps another hash.
    """
    if not vault.writable:
        raise ValueError("vault must be opened writable")
    cp = get_checkpoint(vault, checkpoint_id)
    body = cp.body
    pending = cp.pending_requests
    if not pending:
        raise InputError(f"{cp.describe()} has no pending offline timestamp request",
                         hint="create one with `evidencelock checkpoint --tsq-out FILE`")
    token: bytes | None = None
    answered: Mapping[str, Any] | None = None
    errors: list[str] = []
    for p in pending:
        try:
            token = timestamp.token_from_response(tsr, request_der=base64.b64decode(p["tsq"]))
            answered = p
            break
        except ProofError as exc:
            errors.append(exc.message)
    if token is None or answered is None:
        raise ProofError("the timestamp response does not answer this checkpoint's request: " + "; ".join(errors),
                         subject=cp.describe(), hint="nothing was attached; check you picked the right .tsr file")
    _check_imprint(token, body, cp.describe())
    chains = [load_tsa_certificates(p) for p in tsa_certificates]
    record: dict[str, Any] = {"url": "offline", "tsa": "offline", "token": base64.b64encode(token).decode("ascii"),
                              "tsq": answered["tsq"], "source": "offline", "added": format_time(now)}
    result = TsaResult("offline", True, tsa="offline")
    if chains:
        info, chain = _verify_with_chains(token, body, chains, now)
        record.update(tsa=info.tsa_name, time=format_time(info.time), chain=chain.pem.decode("ascii"))
        result = TsaResult("offline", True, tsa=info.tsa_name, time=format_time(info.time))
    stamps = [t for t in cp.timestamps if t is not answered] + [record]
    _update_row(vault, key, now, cp, {
        "event": "timestamp-attached", "checkpoint_note_sha256": cp.note_sha256,
        "tsa": record["tsa"], "token_sha256": hashlib.sha256(token).hexdigest()},
        timestamps_json=json.dumps(stamps))
    return get_checkpoint(vault, checkpoint_id), result


def _token_imprint(token: bytes) -> tuple[str, bytes]:
    response = timestamp._parse_response(timestamp._wrap_token(token), "timestamp token")  # noqa: SLF001
    imprint = response.tst_info.message_imprint
    return imprint.hash_algorithm.dotted_string, bytes(imprint.message)


_IMPRINT_HASHES = {"2.16.840.1.101.3.4.2.1": hashlib.sha256, "2.16.840.1.101.3.4.2.2": hashlib.sha384,
                   "2.16.840.1.101.3.4.2.3": hashlib.sha512}


def _check_imprint(token: bytes, body: bytes, subject: str, also: bytes | None = None) -> None:
    """The token's message imprint must be the hash of the checkpoint body (docs §5)."""
    algorithm, found = _token_imprint(token)
    hasher = _IMPRINT_HASHES.get(algorithm)
    if hasher is None:
        raise ProofError(f"unsupported imprint hash algorithm {algorithm}", subject=subject)
    if hasher(body).digest() == found or (also is not None and hasher(also).digest() == found):
        return
    raise ProofError(f"timestamp token stamps another hash: expected={hasher(body).hexdigest()} found={found.hex()}",
                     subject=subject, hint="the token or the checkpoint may have been swapped or modified")


def attach_cosignature(vault: "Vault", key: CustodianKey, checkpoint_id: int, cosignature_text: str, *,
                       witness_public_key: bytes, now: datetime) -> StoredCheckpoint:
    """Attach a witness's ``cosignature/v1`` line(s) to a stored checkpoint after verifying them."""
    if not vault.writable:
        raise ValueError("vault must be opened writable")
    cp = get_checkpoint(vault, checkpoint_id)
    lines = [ln for ln in cosignature_text.splitlines() if ln.strip()]
    if not lines:
        raise FormatError("no cosignature line found", hint="the witness prints one line starting with '— '")
    combined = cp_mod.parse_note(cp.note + "".join(ln + "\n" for ln in lines))
    names = {s.name for s in combined.signatures[len(cp_mod.parse_note(cp.note).signatures):]}
    if len(names) != 1:
        raise FormatError(f"expected cosignature lines from one witness, found names {sorted(names)}")
    name = names.pop()
    when = cp_mod.verify_cosignature(combined, name, witness_public_key, now=now)
    new_lines = [ln + "\n" for ln in lines if ln + "\n" not in cp.cosignatures]
    _update_row(vault, key, now, cp, {
        "event": "cosignature-attached", "checkpoint_note_sha256": cp.note_sha256, "witness": name,
        "witness_key_id": key_id_for(witness_public_key), "cosigned_at": format_time(when)},
        cosignatures_json=json.dumps(list(cp.cosignatures) + new_lines))
    return get_checkpoint(vault, checkpoint_id)


# -- proofs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemProof:
    seq: int
    type: str
    time: str
    leaf_hash: bytes
    canonical: bytes
    signature: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "time": self.time, "leaf_hash": self.leaf_hash.hex(),
                "entry": self.canonical.decode("utf-8"), "signature": base64.b64encode(self.signature).decode("ascii"),
                "proof": [p.hex() for p in self.proof]}


def resolve_item(vault: "Vault", prefix: str) -> str:
    q = prefix.strip().lower().removeprefix("sha256:")
    if len(q) < 6 or not re.fullmatch(r"[0-9a-f]+", q):
        raise InputError(f"give at least 6 hex digits of an item's SHA-256, found {prefix!r}")
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(schema.items.c.sha256).where(schema.items.c.sha256.like(q + "%")).limit(3)).all()
    if len(rows) != 1:
        raise InputError(f"{'no' if not rows else 'more than one'} item matches {prefix!r}")
    return rows[0].sha256


def inclusion_proof_for_item(vault: "Vault", sha256: str, checkpoint: cp_mod.Checkpoint) -> tuple[list[ItemProof], list[int]]:
    """Inclusion proofs of every entry about item ``sha256`` in the tree of ``checkpoint``.

    ``checkpoint`` must already be verified (signature).  Each proof is produced from the
    stored tree and verified against the checkpoint's root before it is returned
    (RFC 9162 §2.1.3.2), so a proof that does not verify is never handed out: it raises
    :class:`ProofError` instead.  Returns (proofs, seqs of entries newer than the checkpoint).
    """
    entries = vault.ledger.entries_for_item(sha256)
    if not entries:
        raise InputError(f"no entries record item {sha256[:16]}…")
    proofs: list[ItemProof] = []
    later: list[int] = []
    with vault.ledger.reader() as conn:
        require_tree_matches_entries(conn, action="prove inclusion")
        if checkpoint.tree_size > treestore.tree_size(conn):
            raise ProofError(f"the checkpoint has {checkpoint.tree_size} entries but the ledger only "
                             f"{treestore.tree_size(conn)}", subject="checkpoint",
                             hint="the ledger may have been truncated")
        for s in entries:
            seq = s.entry.seq
            if seq >= checkpoint.tree_size:
                later.append(seq)
                continue
            path = treestore.inclusion_proof_at(conn, seq, checkpoint.tree_size)
            merkle.verify_inclusion(s.leaf_hash, seq, checkpoint.tree_size, path, checkpoint.root_hash)
            proofs.append(ItemProof(seq, s.entry.type, s.entry.time, s.leaf_hash, s.canonical, s.signature, tuple(path)))
    return proofs, later


@dataclass(frozen=True)
class ConsistencyResult:
    old: cp_mod.Checkpoint
    new: cp_mod.Checkpoint
    proof: tuple[bytes, ...]
    new_note: str | None  # signed note of the target, None if it is the unsigned current head
    new_checkpoint_id: int | None

    def proof_file(self) -> dict[str, Any]:
        """The consistency proof file (docs/transparency.md §7.1): a witness's PROOF_FILE, and
        what ``verify-bundle --consistency-proof`` takes."""
        return self.proof_document().to_json()

    def proof_document(self) -> proofs_mod.ConsistencyProofFile:
        return proofs_mod.ConsistencyProofFile(self.new.origin, self.old.tree_size, self.new.tree_size, self.proof,
                                               self.old.root_hash, self.new.root_hash)

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "old": {"tree_size": self.old.tree_size, "root_hash": self.old.root_hash.hex()},
                "new": {"tree_size": self.new.tree_size, "root_hash": self.new.root_hash.hex(),
                        "checkpoint_id": self.new_checkpoint_id, "note": self.new_note},
                "proof": [p.hex() for p in self.proof]}


def consistency_proof(vault: "Vault", old_checkpoint_note_text: str | bytes, *, vault_keys: Sequence[bytes] = (),
                      to_note_text: str | bytes | None = None) -> ConsistencyResult:
    """Prove that the log now extends an earlier published checkpoint; raise ProofError if not.

    The old checkpoint is verified against ``vault_keys`` (a key the observer pinned) or, if
    none is given, the keys enrolled in the ledger.  The target is ``to_note_text``, else the
    newest stored checkpoint at least as large, else the current (unsigned) tree head; a
    signed target is first checked against the ledger's own tree at its size.
    """
    origin = vault.config.origin
    with vault.ledger.reader() as conn:
        keys = list(vault_keys) or [k.raw for k in _enrolled_from_entries(conn).values()]
        _, old = verified_note(old_checkpoint_note_text, origin, keys)
        # Roots and proofs below come from tree_nodes: first check it IS the tree of the entries.
        require_tree_matches_entries(conn, action="prove consistency")
        size_now = treestore.tree_size(conn)
        new_note: str | None = None
        new_id: int | None = None
        if to_note_text is not None:
            _, new = verified_note(to_note_text, origin, keys)
            new_note = to_note_text if isinstance(to_note_text, str) else to_note_text.decode("utf-8")
        else:
            row = conn.execute(select(schema.checkpoints).where(schema.checkpoints.c.tree_size >= old.tree_size)
                               .order_by(schema.checkpoints.c.tree_size.desc(), schema.checkpoints.c.id.desc()).limit(1)).first()
            if row is not None:
                stored = _row_to_stored(row)
                _, new = verified_note(stored.note, origin, keys)
                new_note, new_id = stored.note, stored.id
            else:
                new = cp_mod.Checkpoint(origin, size_now, treestore.root_at(conn, size_now))
        # §6.5: neither checkpoint may be signed by a key revoked inside its own tree.
        revoked = revocations(conn)
        for text in (old_checkpoint_note_text, new_note):
            if text is not None:
                verified_note(text, origin, keys, revoked=revoked)
        if old.tree_size > size_now:
            raise ProofError(f"the earlier checkpoint has {old.tree_size} entries but the ledger now has only {size_now}",
                             subject=f"checkpoint of size {old.tree_size}",
                             hint="the log has been truncated: entries were removed after that checkpoint was published")
        if new.tree_size > size_now:
            raise ProofError(f"the target checkpoint has {new.tree_size} entries but the ledger only {size_now}",
                             subject=f"checkpoint of size {new.tree_size}", hint="the log may have been truncated")
        if new.tree_size < old.tree_size:
            raise ProofError(f"the target checkpoint (size {new.tree_size}) is older than the earlier one "
                             f"(size {old.tree_size}): a log never shrinks", subject="checkpoint")
        actual = treestore.root_at(conn, new.tree_size)
        if actual != new.root_hash:
            what = f"checkpoint #{new_id}" if new_id is not None else "the target checkpoint"
            raise ProofError(f"{what} (size {new.tree_size}) disagrees with the ledger: expected root "
                             f"{new.root_hash.hex()} found {actual.hex()}", subject="consistency",
                             hint="the ledger history has been rewritten since that checkpoint was signed")
        proof = treestore.consistency_proof_at(conn, old.tree_size, new.tree_size)
    try:
        merkle.verify_consistency(old.tree_size, new.tree_size, proof, old.root_hash, new.root_hash)
    except ProofError as exc:
        raise ProofError(f"the log does not extend the earlier checkpoint (size {old.tree_size}, root "
                         f"{old.root_hash.hex()}): {exc.message}", subject="consistency",
                         hint="the ledger history has been rewritten since that checkpoint was published") from None
    return ConsistencyResult(old, new, tuple(proof), new_note, new_id)


def bundle_checkpoint_note(bundle: str | os.PathLike[str]) -> str:
    """The signed checkpoint note an evidence bundle (folder or zip) is proven against.

    Read as the bundle verifier reads it (docs/bundle-format.md §4.4: ``evidence/checkpoint.txt``,
    hostile-input limits); nothing in it is trusted here: :func:`consistency_proof` verifies its
    signature against the vault's enrolled keys and its root against the vault's tree.
    Raises :class:`InputError` naming the bundle when it is not a bundle or has no checkpoint.
    """
    from .bundle.source import Limits, open_source  # the bundle reader, not the bundle verifier

    try:
        src = open_source(Path(bundle), Limits())
    except EvidenceLockError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read the bundle: {exc.strerror or exc}", subject=str(bundle)) from None
    try:
        if "evidence/checkpoint.txt" not in src.sizes:
            raise InputError("the bundle has no evidence/checkpoint.txt (not an evidencelock bundle?)", subject=str(bundle))
        data = src.read_small("evidence/checkpoint.txt", cp_mod.MAX_NOTE_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read evidence/checkpoint.txt: {exc}", subject=str(bundle)) from None
    finally:
        src.close()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("evidence/checkpoint.txt is not UTF-8", subject=str(bundle)) from None


def tlog_proofs_for_item(proofs: Sequence["ItemProof"], note_text: str) -> list[tuple[int, str]]:
    """(seq, C2SP tlog-proof text) per proven entry (docs/transparency.md §7.2): extra = the entry's
    canonical bytes, index = its seq, the inclusion proof, then the checkpoint note verbatim."""
    note = cp_mod.parse_note(note_text)
    return [(p.seq, proofs_mod.TlogProof(p.seq, p.proof, note, p.canonical).render()) for p in proofs]


def parse_proof_file(data: bytes | str) -> tuple[int, int, list[bytes]]:
    """Strictly parse a consistency PROOF_FILE; FormatError if malformed (e.g. truncated)."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise FormatError(f"proof file is not JSON: {exc}", subject="proof file") from None
    if not isinstance(obj, dict) or obj.get("format") != PROOF_FORMAT:
        raise FormatError(f"not a {PROOF_FORMAT} file", subject="proof file")
    old, new, proof = obj.get("old_size"), obj.get("new_size"), obj.get("proof")
    if type(old) is not int or type(new) is not int or old < 0 or new < 0:
        raise FormatError("old_size and new_size must be non-negative integers", subject="proof file")
    if not isinstance(proof, list) or not all(isinstance(p, str) and _HEX64.match(p) for p in proof):
        raise FormatError("proof must be a list of 64-hex-digit hashes", subject="proof file")
    return old, new, [bytes.fromhex(p) for p in proof]


# -- verify / audit ----------------------------------------------------------------------


class _CompactRange:
    """Roots of prefixes of the leaf sequence, streaming: O(log n) memory (RFC 9162 §2.1.1)."""

    def __init__(self) -> None:
        self.size = 0
        self.stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left to right

    def append(self, leaf: bytes) -> None:
        h, height = leaf, 0
        while self.stack and self.stack[-1][0] == height:
            _, left = self.stack.pop()
            h, height = merkle.node_hash(left, h), height + 1
        self.stack.append((height, h))
        self.size += 1

    def root(self) -> bytes:
        if not self.stack:
            return merkle.EMPTY_ROOT
        h = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            h = merkle.node_hash(left, h)
        return h


def _roots_at(leaf_hashes: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    wanted = sorted({s for s in sizes if 0 <= s <= len(leaf_hashes)})
    roots: dict[int, bytes] = {}
    acc = _CompactRange()
    for size in wanted:
        while acc.size < size:
            acc.append(leaf_hashes[acc.size])
        roots[size] = acc.root()
    return roots


def check_checkpoints(vault: "Vault", report: "VerifyReport", leaf_hashes: Sequence[bytes], *,
                      now: datetime | None = None) -> None:
    """``verify``/``audit`` checks of every stored checkpoint (docs/transparency.md §6.4).

    For each: it parses; it is for this vault's origin; it is signed by a key enrolled in
    the ledger; its row columns match its text; its size does not exceed the log; its root
    equals the root recomputed from the entries' own bytes at its size; its timestamp tokens
    stamp its body (and, where the TSA chain was stored, verify fully).  Across checkpoints:
    no two of the same size disagree.  Every problem is a finding; nothing is raised.
    """
    origin = vault.config.origin
    with vault.ledger.reader() as conn:
        keys = _enrolled_from_entries(conn)
        revoked = revocations(conn)
        stored = [_row_to_stored(r) for r in conn.execute(select(schema.checkpoints).order_by(schema.checkpoints.c.id))]
        recorded = _recorded_note_hashes(conn)
    if not stored:
        return
    if any(len(h) != merkle.HASH_SIZE for h in leaf_hashes):
        bad = next(i for i, h in enumerate(leaf_hashes) if len(h) != merkle.HASH_SIZE)
        report.add("checkpoint-unchecked", "checkpoints",
                   f"entry {bad} has no usable leaf hash, so checkpoint roots cannot be recomputed")
        return
    roots = _roots_at(leaf_hashes, (c.tree_size for c in stored))
    latest = _latest_times(vault, [c.tree_size for c in stored if any(t.get("chain") for t in c.timestamps)])
    by_size: dict[int, list[tuple[StoredCheckpoint, bytes]]] = {}
    for cp in stored:
        report.checkpoints_checked += 1
        subject = cp.describe()
        try:
            _, head = verified_note(cp.note, origin, [k.raw for k in keys.values()], revoked=revoked)
        except EvidenceLockError as exc:
            code = {"FormatError": "checkpoint-malformed", "SignatureError": "checkpoint-signature-invalid"}.get(
                type(exc).__name__, "checkpoint-invalid")
            report.add(code, subject, exc.message + (f" ({exc.hint})" if exc.hint else ""))
            continue
        if head.tree_size != cp.tree_size or head.root_hash != cp.root_hash:
            report.add("checkpoint-row-mismatch", subject,
                       f"the table columns disagree with the signed note: expected size={head.tree_size} "
                       f"root={head.root_hash.hex()} found size={cp.tree_size} root={cp.root_hash.hex()}")
        by_size.setdefault(head.tree_size, []).append((cp, head.root_hash))
        if head.tree_size > len(leaf_hashes):
            report.add("checkpoint-beyond-log", subject,
                       f"the checkpoint commits to {head.tree_size} entries but the ledger holds {len(leaf_hashes)}; "
                       "entries signed into this checkpoint have been removed (the log was truncated)")
        else:
            found = roots[head.tree_size]
            if found != head.root_hash:
                report.add("checkpoint-inconsistent", subject,
                           f"{subject} disagrees with the ledger: expected root {head.root_hash.hex()} found "
                           f"{found.hex()}; the ledger history before entry {head.tree_size} has been rewritten since "
                           "this checkpoint was signed (compare with published copies of this checkpoint)")
        if cp.note_sha256 not in recorded:
            report.add("checkpoint-unrecorded", subject,
                       "no checkpoint entry in the ledger records this checkpoint", "notice")
        _check_stamps(cp, head.body_bytes(), report, subject, now, latest.get(head.tree_size))
    for size, group in by_size.items():
        distinct = {root for _, root in group}
        if len(distinct) > 1:
            names = ", ".join(cp.describe() for cp, _ in group)
            report.add("checkpoint-fork", f"checkpoints of size {size}",
                       f"signed checkpoints of the same size disagree ({names}): roots "
                       + " vs ".join(sorted(r.hex() for r in distinct)) + "; the log has been forked")


def _recorded_note_hashes(conn: Connection) -> set[str]:
    t = schema.entries
    found: set[str] = set()
    for r in conn.execute(select(t.c.canonical).where(t.c.type == "checkpoint")):
        try:
            body = json.loads(bytes(r.canonical)).get("body", {})
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("note_sha256"), str):
            found.add(body["note_sha256"])
    return found


def _check_stamps(cp: StoredCheckpoint, body: bytes, report: "VerifyReport", subject: str, now: datetime | None,
                  latest_entry_time: str | None = None) -> None:
    """Each stored token (docs/transparency.md §5): over the body; with a stored chain, fully verified;
    with a stored request, answering it (nonce, policy); and no covered entry dated after its genTime."""
    for i, st in enumerate(cp.timestamps):
        if st.get("status") == "pending":
            continue  # an offline request not answered yet
        where = f"{subject}, timestamp {i + 1} ({st.get('tsa', '?')})"
        if not isinstance(st.get("token"), str):
            # §5: the only stored form is a TimeStampToken over the body (no "whole note" variant).
            report.add("checkpoint-timestamp-invalid", where, "the record holds no TimeStampToken ('token')")
            continue
        try:
            der = base64.b64decode(st["token"], validate=True)
            _check_imprint(der, body, where)
            tsq = st.get("tsq")
            if isinstance(tsq, str):
                imprint, nonce, policy = timestamp.request_facts(base64.b64decode(tsq, validate=True), subject=where)
                info = timestamp._parse_response(timestamp._wrap_token(der), where).tst_info  # noqa: SLF001
                if bytes(info.message_imprint.message) != imprint:
                    raise ProofError(f"the token does not answer the stored request: imprint expected={imprint.hex()} "
                                     f"found={bytes(info.message_imprint.message).hex()}", subject=where)
                if nonce is not None and (info.nonce is None or int(info.nonce) != nonce):
                    raise ProofError(f"nonce mismatch (RFC 3161 §2.4.2): expected={nonce} found={info.nonce}; the "
                                     "token does not answer the stored request", subject=where)
                if policy is not None and info.policy.dotted_string != policy:
                    raise ProofError(f"policy mismatch: requested={policy} found={info.policy.dotted_string}", subject=where)
            chain = st.get("chain")
            if isinstance(chain, str):
                c = load_tsa_certificates(chain.encode("ascii"), subject=where)
                checked = timestamp.verify_token(der, body, tsa_certificate_pem=c.tsa_pem, root_certificates_pem=c.roots_pem,
                                                 intermediate_certificates_pem=c.intermediates_pem,
                                                 now=now or datetime(9000, 1, 1, tzinfo=timezone.utc))
                slack = checked.accuracy + timedelta(seconds=1)
                if latest_entry_time is not None and parse_time(latest_entry_time) > checked.time + slack:
                    report.add("checkpoint-timestamp-contradicts", where,
                               f"an entry this checkpoint covers is dated {latest_entry_time}, after the token's time "
                               f"{checked.time.isoformat()}: the entry's time or the token's time is false")
        except (EvidenceLockError, ValueError) as exc:
            msg = exc.message if isinstance(exc, EvidenceLockError) else str(exc)
            report.add("checkpoint-timestamp-invalid", where, msg)


def _latest_times(vault: "Vault", sizes: Sequence[int]) -> dict[int, str]:
    """For each size n, the latest entry time among seq < n, read from the signed entry bytes in one pass."""
    wanted = sorted(set(sizes))
    out: dict[int, str] = {}
    latest: str | None = None
    t = schema.entries
    with vault.ledger.reader() as conn:
        k = 0
        for r in conn.execute(select(t.c.seq, t.c.canonical).where(t.c.seq >= 0).order_by(t.c.seq)):
            while k < len(wanted) and wanted[k] <= r.seq:
                if latest is not None:
                    out[wanted[k]] = latest
                k += 1
            try:
                when = json.loads(bytes(r.canonical)).get("time")
                parse_time(when)
            except (ValueError, TypeError, EvidenceLockError):
                continue  # the ledger check reports it
            latest = when if latest is None or when > latest else latest
        while k < len(wanted):
            if latest is not None:
                out[wanted[k]] = latest
            k += 1
    return out


# -- witnesses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessResult:
    cosignature: cp_mod.NoteSignature
    checkpoint: cp_mod.Checkpoint
    previous_size: int | None  # None on first sight of this origin (trust on first use)

    @property
    def line(self) -> str:
        return self.cosignature.line()


def _state_path(state_dir: Path, origin: str) -> Path:
    return state_dir / f"{hashlib.sha256(origin.encode('utf-8')).hexdigest()[:32]}.json"


def witness_cosign(
    state_dir: str | os.PathLike[str],
    note_text: str | bytes,
    consistency_proof: tuple[int, int, Sequence[bytes]] | bytes | str,
    vault_public_key: bytes,
    *,
    now: datetime,
    witness_key: CustodianKey,
    witness_name: str,
) -> WitnessResult:
    """A witness: verify a new checkpoint and its consistency with the last one seen, then cosign.

    docs/transparency.md §8.  Steps: (1) the log's signature by ``vault_public_key`` (key name =
    the checkpoint's origin); (2) load the last checkpoint seen for that origin from
    ``state_dir``; (3) refuse if the size shrank, if the proof does not start at the size last
    seen, or if the RFC 9162 consistency proof does not verify; (4) only then write the new
    state (atomic rename) and return a ``cosignature/v1`` (C2SP tlog-cosignature).  First
    sight of an origin is trust-on-first-use.  Refusals raise :class:`ProofError`.
    """
    if isinstance(consistency_proof, (bytes, str)):
        consistency_proof = parse_proof_file(consistency_proof)
    old_size, new_size, proof = consistency_proof
    note = cp_mod.parse_note(note_text)
    origin = note.unverified_checkpoint.origin
    head = note.verify(origin, vault_public_key)
    if new_size != head.tree_size:
        raise ProofError(f"the proof is to size {new_size} but the checkpoint has size {head.tree_size}",
                         subject="witness", hint="pair the checkpoint with the proof made for it")
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = _state_path(state_dir, origin)
    with open(state_dir / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one cosigning at a time per state dir
        previous: int | None = None
        if path.exists():
            try:
                state = json.loads(path.read_text("utf-8"))
                last_size, last_root = int(state["tree_size"]), bytes.fromhex(state["root_hash"])
                if state.get("origin") != origin:
                    raise ValueError("origin mismatch")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"witness state is unreadable: {exc}", subject=str(path),
                                   hint="restore the witness state from a backup; never reset it silently") from None
            previous = last_size
            if head.tree_size < last_size:
                raise ProofError(f"refusing to cosign: the log shrank from size {last_size} to {head.tree_size}",
                                 subject=f"witness for {origin}", hint="a log never shrinks: this is evidence of a rewrite")
            if old_size != last_size:
                raise ProofError(f"the proof starts at size {old_size} but this witness last saw size {last_size}",
                                 subject=f"witness for {origin}",
                                 hint=f"ask the log for a consistency proof from size {last_size}")
            try:
                merkle.verify_consistency(last_size, head.tree_size, proof, last_root, head.root_hash)
            except ProofError as exc:
                raise ProofError(f"refusing to cosign: the checkpoint is not consistent with the last one seen "
                                 f"(size {last_size}, root {last_root.hex()}): {exc.message}",
                                 subject=f"witness for {origin}",
                                 hint="the log may have been rewritten or forked; keep both checkpoints as evidence") from None
        cosig = cp_mod.cosign(head, witness_name, witness_key.sign, witness_key.public.raw, timestamp=int(now.timestamp()))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"origin": origin, "tree_size": head.tree_size, "root_hash": head.root_hash.hex(),
                       "note": note.text(), "updated": format_time(now)}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return WitnessResult(cosig, head, previous)


def verify_checkpoint_policy(note_text: str | bytes, vault_public_key: bytes, witnesses: Mapping[str, bytes],
                             threshold: int, *, now: datetime | None = None) -> cp_mod.Checkpoint:
    """The log's signature, then at least ``threshold`` of ``witnesses`` cosigned (k of n)."""
    note = cp_mod.parse_note(note_text)
    head = note.verify(note.unverified_checkpoint.origin, vault_public_key)
    if witnesses:
        cp_mod.require_witnesses(note, witnesses, threshold, now=now)
    return head
