"""``history ITEM``: one item's full custody timeline, signatures checked, and ``cases``.

What is checked here, and only that (the output says so):

* every shown entry's Ed25519 signature, under the key its ``actor`` names, taken from that
  key's signed ``key-enroll`` entry — itself signature-checked, back to the self-signed
  genesis enrolment (docs/ledger-format.md §5 steps 3-4, for the entries shown);
* that the key was enrolled before the entry and not revoked before it (from the signed
  ``key-enroll``/``key-revoke`` entries of the vault);
* the custody rules (evidencelock.timeline) over the item's entries.

NOT checked here: the hash chain and the Merkle tree over the whole ledger, and the stored
object's bytes — ``verify`` does that.  Entries are read through the ``entries.item`` index
(and ``entries.case_id`` for derivations of the item), never by scanning the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from . import schema, timeline
from .entry import SignedEntry
from .errors import EvidenceLockError, InputError
from .keys import PublicKey, start_unverified_positions
from .show import find_item
from .vault import Vault

__all__ = ["History", "SignatureProblem", "item_history", "list_cases", "CaseSummary"]


@dataclass(frozen=True)
class SignatureProblem:
    seq: int
    message: str


@dataclass
class History:
    item: str
    cases: list[timeline.ItemCustody]  # the item's custody in each case (the case asked for, or all)
    findings: list[timeline.Finding]  # custody findings about the entries shown
    signatures_checked: int  # entries whose signature verified (shown entries and the key enrolments behind them)
    signature_problems: list[SignatureProblem]
    names: dict[str, str] = field(default_factory=dict)
    file_names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.signature_problems and not any(f.severity == "fail" for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "ok": self.ok,
            "file_names": self.file_names,
            "cases": [_custody_json(ic) for ic in self.cases],
            "findings": [{"code": f.code, "seq": f.seq, "message": f.message, "severity": f.severity}
                         for f in self.findings],
            "signatures": {
                "checked": self.signatures_checked,
                "problems": [{"seq": p.seq, "message": p.message} for p in self.signature_problems],
                "what": "each shown entry's Ed25519 signature under its actor's enrolled key (enrolment entries "
                        "checked back to the genesis key; key not revoked before the entry)",
                "not_checked": "the hash chain and Merkle tree of the whole ledger, and the stored bytes "
                               "(run `evidencelock verify`)",
            },
        }


def _custody_json(ic: timeline.ItemCustody) -> dict[str, Any]:
    return {
        "case": ic.case, "item": ic.item, "holder": ic.holder, "holder_name": ic.holder_name,
        "in_transit_to": ic.in_transit_to, "in_transit_name": ic.in_transit_name,
        "events": [event_json(e) for e in ic.events],
    }


def event_json(e: timeline.Event) -> dict[str, Any]:
    return {"seq": e.seq, "time": e.time, "type": e.type, "case": e.case, "item": e.item, "actor": e.actor,
            "actor_name": e.actor_name, "premis": e.premis, "text": e.text, "status": e.status,
            "related": list(e.related), "body": dict(e.body)}


def _parse(rows: Sequence[Any]) -> list[SignedEntry]:
    return [SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}") for r in rows]


class _KeyBook:
    """Enrolled keys and revocations from their SIGNED entries (located through the keys
    table, then parsed and signature-checked; a table row that disagrees is a problem)."""

    def __init__(self, conn: Connection) -> None:
        self.keys: dict[str, tuple[int, PublicKey]] = {}  # key id -> (enrolled at seq, key)
        self.revoked: dict[str, int] = {}
        self.problems: list[SignatureProblem] = []
        self.checked = 0
        rows = conn.execute(select(schema.keys.c.key_id, schema.keys.c.enrolled_seq, schema.keys.c.revoked_seq)).all()
        seqs = sorted({r.enrolled_seq for r in rows} | {r.revoked_seq for r in rows if r.revoked_seq is not None})
        t = schema.entries
        entries = _parse(conn.execute(select(t.c.seq, t.c.canonical, t.c.signature).where(t.c.seq.in_(seqs))
                                      .order_by(t.c.seq)).all()) if seqs else []
        # In seq order: a key is usable for an entry only if enrolled by an earlier, valid enrolment.
        for s in entries:
            e = s.entry
            try:
                if e.type == "key-enroll":
                    raw_hex = e.body.get("public_key")
                    key = PublicKey(bytes.fromhex(raw_hex) if isinstance(raw_hex, str) else b"",
                                    str(e.body.get("name", "")))
                    signer = key if e.seq == 0 else self.key_for(e.actor, e.seq)
                    s.verify_signature(signer)
                    if key.key_id != e.body.get("key_id"):
                        raise InputError(f"key-enroll key_id mismatch: expected={key.key_id} found={e.body.get('key_id')}")
                    self.keys.setdefault(key.key_id, (e.seq, key))
                elif e.type == "key-revoke":
                    s.verify_signature(self.key_for(e.actor, e.seq))
                    kid = e.body.get("key_id")
                    if isinstance(kid, str):
                        self.revoked.setdefault(kid, e.seq)
                else:
                    raise InputError(f"the keys index points at entry {e.seq}, a {e.type!r} entry")
                self.checked += 1
            except (EvidenceLockError, ValueError) as exc:
                self.problems.append(SignatureProblem(e.seq, f"key entry {e.seq}: {_msg(exc)}"))

    def key_for(self, actor: str, seq: int) -> PublicKey:
        found = self.keys.get(actor)
        if found is None or found[0] >= seq:
            raise InputError(f"signed by key {actor[:16]}…, which no valid earlier entry enrolled")
        revoked = self.revoked.get(actor)
        if revoked is not None and revoked < seq:
            raise InputError(f"signed by key {actor[:16]}…, revoked at entry {revoked}")
        return found[1]


def signature_valid(conn: Connection, entries: Sequence[SignedEntry]) -> tuple[list[SignedEntry], list[int]]:
    """``entries`` split into those whose signature verifies under a key validly enrolled before
    them and not revoked before them, and the seqs of the others (custody-events §3: custody
    read-outs state nothing from an entry that does not verify)."""
    book = _KeyBook(conn)
    batch: list[tuple[bytes, bytes, bytes]] = []
    pending: list[SignedEntry] = []
    invalid: list[int] = [p.seq for p in book.problems]
    for s in entries:
        try:
            key = book.key_for(s.entry.actor, s.entry.seq)
        except EvidenceLockError:
            invalid.append(s.entry.seq)
            continue
        batch.append((key.raw, s.canonical, s.signature))
        pending.append(s)
    bad = set(start_unverified_positions(batch)())
    invalid += [s.entry.seq for i, s in enumerate(pending) if i in bad]
    drop = set(invalid)
    return [s for s in entries if s.entry.seq not in drop], sorted(drop)


def _msg(exc: Exception) -> str:
    return exc.message if isinstance(exc, EvidenceLockError) else str(exc)


def item_history(vault: Vault, query: str, *, case: str | None = None) -> History:
    """The custody timeline of one item (digest prefix or original file name), signatures checked."""
    sha = find_item(vault, query)
    t = schema.entries
    with vault.ledger.reader() as conn:
        cond = [t.c.item == sha] + ([t.c.case_id == case] if case is not None else [])
        own = conn.execute(select(t.c.seq, t.c.canonical, t.c.signature).where(*cond)).all()
        cases = sorted({r.case_id for r in conn.execute(select(t.c.case_id).where(*cond).distinct())})
        if case is not None and not own:
            raise InputError(f"item {sha[:16]}… has no entries in case {case!r}")
        # Derived copies of this item: derive entries of its cases whose signed body names it.
        derived = conn.execute(select(t.c.seq, t.c.canonical, t.c.signature)
                               .where(t.c.case_id.in_(cases), t.c.type == "derive", t.c.item != sha)).all()
        book = _KeyBook(conn)
        names = {r.key_id: r.name for r in conn.execute(select(schema.keys.c.key_id, schema.keys.c.name))}
    entries = _parse(own)
    for s in _parse(derived):
        if s.entry.body.get("original") == sha:
            entries.append(s)
    entries.sort(key=lambda s: s.entry.seq)
    problems = list(book.problems)
    checked = book.checked
    # Every signature in one batch (keys.unverified_positions); the ones that fail, and entries
    # whose key is unknown or revoked, are then re-checked one by one to name the problem.
    batch: list[tuple[bytes, bytes, bytes]] = []
    pending: list[SignedEntry] = []
    for s in entries:
        try:
            key = book.key_for(s.entry.actor, s.entry.seq)
        except EvidenceLockError as exc:
            problems.append(SignatureProblem(s.entry.seq, f"entry {s.entry.seq}: {_msg(exc)}"))
            continue
        batch.append((key.raw, s.canonical, s.signature))
        pending.append(s)
    bad = set(start_unverified_positions(batch)())
    for i, s in enumerate(pending):
        if i not in bad:
            checked += 1
            continue
        try:
            s.verify_signature(book.key_for(s.entry.actor, s.entry.seq))
            raise InputError("the batch and the single check of this signature disagree")  # pragma: no cover
        except EvidenceLockError as exc:
            problems.append(SignatureProblem(s.entry.seq, f"entry {s.entry.seq}: {_msg(exc)}"))
    # Custody is stated only from entries whose signature checked out (custody-events §3): an
    # acceptance with a bad signature, or by a key revoked before it, never makes a holder.
    invalid = {p.seq for p in problems}
    tl = timeline.build([s for s in entries if s.entry.seq not in invalid], names)
    shown = [ic for (c, i), ic in sorted(tl.items.items()) if i == sha and (case is None or c == case)]
    files = sorted({_path(s) for s in entries if s.entry.type == "ingest" and s.entry.item == sha} - {""})
    return History(sha, shown, tl.findings, checked, sorted(problems, key=lambda p: p.seq), names, files)


def _path(s: SignedEntry) -> str:
    src = s.entry.body.get("source")
    p = src.get("path") if isinstance(src, dict) else None
    return p if isinstance(p, str) else ""


# -- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseSummary:
    case: str
    items: int
    entries: int
    in_transit: int  # items whose latest release is not accepted
    holders: dict[str, int]  # custodian name (or key id) -> items held

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "items": self.items, "entries": self.entries,
                "pending_transfers": self.in_transit, "holders": self.holders}


def list_cases(vault: Vault) -> list[CaseSummary]:
    """Every case with its item and entry counts, pending transfers and who holds its items
    (custody from the case's signed custody entries, as ``transfer`` decides it)."""
    from sqlalchemy import func

    from .custody import _custody_entries, _names

    t = schema.entries
    out = []
    with vault.ledger.reader() as conn:
        counts = {r.case_id: r.n for r in conn.execute(select(t.c.case_id, func.count().label("n"))
                                                      .where(t.c.case_id != "").group_by(t.c.case_id))}
        items = {r.case_id: r.n for r in conn.execute(
            select(schema.sources.c.case_id, func.count(func.distinct(schema.sources.c.sha256)).label("n"))
            .group_by(schema.sources.c.case_id))}
        names = _names(conn)
        for case in sorted(set(counts) | set(items)):
            valid, _ = signature_valid(conn, _custody_entries(conn, case, None))
            tl = timeline.build(valid, names)
            holders: dict[str, int] = {}
            in_transit = 0
            for (c, _), ic in tl.items.items():
                if c != case:
                    continue
                if ic.holder is not None:
                    who = ic.holder_name or ic.holder
                    holders[who] = holders.get(who, 0) + 1
                elif ic.in_transit_to is not None:
                    in_transit += 1
            out.append(CaseSummary(case, items.get(case, 0), counts.get(case, 0), in_transit, holders))
    return out
