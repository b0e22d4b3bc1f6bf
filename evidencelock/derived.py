"""The ledger's derived data, recomputed from the signed bytes and compared (docs/vault-layout.md §2, §6).

Only ``entries.canonical`` and ``entries.signature`` are the record.  Everything else in the
database is derived from them: the denormalised columns of ``entries`` (type, case_id, actor,
time, item, entry_hash, leaf_hash), the tables ``items``, ``sources`` and ``keys``, the Merkle
tree in ``tree_nodes``, and ``items.media_json`` (the full extracted metadata, whose digest or
summary the signed ingest entry carries).  Anyone with write access to the database file can
edit a derived row without a key, so nothing that states a fact (``verify``, ``export``,
``checkpoint``, ``consistency``, ``prove``) may use a derived row that has not been checked
against the signed bytes.

* :class:`Derivation` replays the entries (in seq order) into the derived rows they imply;
  ``compare`` reports every row that differs, naming table, key, column, expected and found.
* :func:`entry_column_mismatches` compares one ``entries`` row with its canonical bytes.
* :func:`check_index` does both for the whole ledger (plus the tree): what ``export`` runs
  before it reads any derived row.  :func:`require_index_consistent` raises on the first problems.
* :func:`require_tree_matches_entries` checks ``tree_nodes`` against leaf hashes recomputed
  from the canonical bytes: what ``checkpoint``, ``consistency`` and ``prove`` run before
  they sign or hand out a root or a proof computed from the table.

Nothing here writes; every function takes the caller's connection (one read transaction,
one snapshot).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, select

from . import merkle, schema, treestore
from .entry import SignedEntry, canonicalize
from .errors import EvidenceLockError, FormatError, ProofError, VerificationError

__all__ = [
    "Mismatch",
    "Derivation",
    "entry_column_mismatches",
    "media_digest",
    "check_index",
    "require_index_consistent",
    "require_tree_matches_entries",
    "MEDIA_SUMMARY_KEYS",
    "backed_index_hits",
]

# The keys of the full metadata that an ingest entry's signed ``media`` summary copies
# (docs/ledger-format.md §4.1).  For entries without ``media_sha256`` only these are signed.
MEDIA_SUMMARY_KEYS = ("kind", "summary", "flags", "errors", "extractor")
_BATCH = 5000


@dataclass(frozen=True)
class Mismatch:
    """A derived row that disagrees with the signed entries (a ``verify`` finding)."""

    code: str
    subject: str  # names the table and the row, e.g. "entries seq=5", "keys key_id=ab12…"
    message: str
    severity: str = "error"
    seq: int | None = None  # the entry the row derives from, if any


def media_digest(media: Any) -> str:
    """Hex SHA-256 of the RFC 8785 bytes of the full extracted metadata (ledger-format §4.1)."""
    return hashlib.sha256(canonicalize(media)).hexdigest()


def _short(text: Any, limit: int = 80) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 1] + "…"


def entry_column_mismatches(seq: int, found: Mapping[str, Any], signed: SignedEntry) -> list[Mismatch]:
    """The ``entries`` row columns of ``seq`` that differ from what its canonical bytes say."""
    e = signed.entry
    expected = {"type": e.type, "case_id": e.case, "actor": e.actor, "time": e.time, "item": e.item,
                "entry_hash": signed.entry_hash, "leaf_hash": signed.leaf_hash.hex()}
    out = []
    for col, want in expected.items():
        if col not in found:
            continue
        have = found[col]
        if have != want:
            out.append(Mismatch("index-entry-column", f"entries seq={seq}",
                                f"column {col}: expected={_short(want)} (from the signed entry bytes) "
                                f"found={_short(have)}; the database was edited outside evidencelock"))
    return out


@dataclass
class _Item:
    second_digest: str
    size: Any
    first_seq: int
    body: Mapping[str, Any]  # body of the first ingest entry (it carries the media summary/digest)


@dataclass
class Derivation:
    """The derived rows implied by the entries fed so far (same rules as ``ledger._update_derived``)."""

    items: dict[str, _Item] = field(default_factory=dict)
    sources: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # seq -> (sha256, case, source key)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Entries already reported (bad signature, broken chain): rows derived from them are not
    # reported a second time, so one forged entry gives one finding.
    untrusted: set[int] = field(default_factory=set)

    def feed(self, signed: SignedEntry, *, trusted: bool = True) -> None:
        e = signed.entry
        body = e.body
        if not trusted:
            self.untrusted.add(e.seq)
        try:
            if e.type == "ingest":
                sha = body["item"]
                if sha not in self.items:
                    self.items[sha] = _Item(str(body["digests"].get("blake3", "")), body["size"], e.seq, body)
                self.sources[e.seq] = (sha, e.case, body["source"]["key"])
            elif e.type == "key-enroll":
                self.keys[body["key_id"]] = {"public_key": bytes.fromhex(body["public_key"]),
                                             "name": body.get("name", ""), "enrolled_seq": e.seq, "revoked_seq": None}
            elif e.type == "key-revoke":
                if body["key_id"] in self.keys:
                    self.keys[body["key_id"]]["revoked_seq"] = e.seq
        except (KeyError, TypeError, AttributeError, ValueError):
            pass  # a malformed body is the chain check's finding; it derives nothing

    def compare(self, conn: Connection) -> list[Mismatch]:
        out: list[Mismatch] = []
        out += self._compare_items(conn)
        out += self._compare_sources(conn)
        out += self._compare_keys(conn)
        return [m for m in out if m.seq is None or m.seq not in self.untrusted]

    def _compare_items(self, conn: Connection) -> list[Mismatch]:
        out = []
        seen: set[str] = set()
        for r in conn.execute(select(schema.items)):
            sha = r.sha256
            subject = f"item {str(sha)[:16]}…"  # the items row (table items, key sha256)
            exp = self.items.get(sha)
            if exp is None:
                out.append(Mismatch("index-extra-item", subject, "in the items index but recorded by no ingest entry"))
                continue
            seen.add(sha)
            for col, want, have in (("size", exp.size, r.size), ("first_seq", exp.first_seq, r.first_seq),
                                    ("second_digest", exp.second_digest, r.second_digest),
                                    ("second_algorithm", "blake3", r.second_algorithm)):
                if have != want:
                    out.append(Mismatch("index-item-mismatch", subject,
                                        f"items row, column {col}: expected={_short(want)} found={_short(have)} "
                                        f"(ingest entry {exp.first_seq}); the database was edited outside evidencelock",
                                        seq=exp.first_seq))
            out += [replace(m, seq=exp.first_seq) for m in _compare_media(subject, exp, r.media_json)]
        for sha in sorted(self.items.keys() - seen):
            out.append(Mismatch("index-missing-item", f"item {sha[:16]}…",
                                f"recorded at entry {self.items[sha].first_seq} but missing from the items index",
                                seq=self.items[sha].first_seq))
        return out

    def _compare_sources(self, conn: Connection) -> list[Mismatch]:
        out = []
        t = schema.sources
        seen: set[int] = set()
        for r in conn.execute(select(t.c.id, t.c.sha256, t.c.case_id, t.c.source_key, t.c.seq).order_by(t.c.id)):
            subject = f"sources id={r.id} (seq={r.seq})"
            exp = self.sources.get(r.seq)
            if exp is None or r.seq in seen:
                why = ("no ingest entry has that seq" if exp is None else
                       f"ingest entry {r.seq} derives exactly one row (sha256={exp[0][:16]}…, case={_short(exp[1])})")
                out.append(Mismatch("index-source-extra", subject,
                                    f"row (sha256={str(r.sha256)[:16]}…, case={_short(r.case_id)}) is derived from no "
                                    f"entry: {why}; the database was edited outside evidencelock",
                                    seq=None if exp is None else r.seq))
                continue
            seen.add(r.seq)
            for col, want, have in (("sha256", exp[0], r.sha256), ("case_id", exp[1], r.case_id),
                                    ("source_key", exp[2], r.source_key)):
                if have != want:
                    out.append(Mismatch("index-source-mismatch", subject,
                                        f"column {col}: expected={_short(want)} found={_short(have)} "
                                        f"(ingest entry {r.seq}); the database was edited outside evidencelock",
                                        seq=r.seq))
        for seq in sorted(self.sources.keys() - seen):
            sha, case, _ = self.sources[seq]
            out.append(Mismatch("index-source-missing", f"sources seq={seq}",
                                f"ingest entry {seq} (item {sha[:16]}…, case {_short(case)}) has no row in the sources "
                                "index; the database was edited outside evidencelock", seq=seq))
        return out

    def _compare_keys(self, conn: Connection) -> list[Mismatch]:
        out = []
        seen: set[str] = set()
        for r in conn.execute(select(schema.keys)):
            subject = f"keys key_id={str(r.key_id)[:16]}…"
            exp = self.keys.get(r.key_id)
            if exp is None:
                out.append(Mismatch("index-key-extra", subject,
                                    "key in the keys index that no key-enroll entry enrols; the database was edited "
                                    "outside evidencelock"))
                continue
            seen.add(r.key_id)
            found = {"public_key": bytes(r.public_key), "name": r.name, "enrolled_seq": r.enrolled_seq,
                     "revoked_seq": r.revoked_seq}
            for col, want in exp.items():
                have = found[col]
                if have != want:
                    show = (lambda v: v.hex() if isinstance(v, bytes) else v)  # noqa: E731
                    out.append(Mismatch("index-key-mismatch", subject,
                                        f"column {col}: expected={_short(show(want))} found={_short(show(have))} "
                                        f"(key-enroll entry {exp['enrolled_seq']}"
                                        + (f", key-revoke entry {exp['revoked_seq']}" if exp["revoked_seq"] is not None else "")
                                        + "); the database was edited outside evidencelock", seq=exp["enrolled_seq"]))
        for kid in sorted(self.keys.keys() - seen):
            out.append(Mismatch("index-key-missing", f"keys key_id={kid[:16]}…",
                                f"enrolled at entry {self.keys[kid]['enrolled_seq']} but missing from the keys index",
                                seq=self.keys[kid]["enrolled_seq"]))
        return out


def _compare_media(subject: str, exp: _Item, media_json: str | None) -> list[Mismatch]:
    """``items.media_json`` against the first ingest entry: ``media_sha256`` covers all of it;
    without it (entries written before the digest existed) the signed ``media`` summary covers
    the keys it copies and the rest is unsigned (a notice)."""
    body = exp.body
    signed_digest = body.get("media_sha256")
    signed_summary = body.get("media")
    if media_json is None:
        if signed_digest is not None or signed_summary is not None:
            return [Mismatch("index-media-mismatch", subject,
                             f"items row, column media_json: expected the metadata signed in ingest entry {exp.first_seq} "
                             "found=NULL; the database was edited outside evidencelock")]
        return []
    try:
        media = json.loads(media_json)
    except ValueError:
        return [Mismatch("index-media-mismatch", subject, "items row, column media_json is not JSON; the database was edited")]
    if signed_digest is None and signed_summary is None:
        return [Mismatch("index-media-mismatch", subject,
                         f"items row, column media_json holds metadata but ingest entry {exp.first_seq} signed none; "
                         "the database was edited outside evidencelock")]
    if signed_digest is not None:
        try:
            found = media_digest(media)
        except FormatError:
            found = "(not canonicalisable)"
        if found != signed_digest:
            return [Mismatch("index-media-mismatch", subject,
                             f"items row, column media_json: sha256 of its RFC 8785 bytes expected={signed_digest} (ingest entry "
                             f"{exp.first_seq}) found={found}; the extracted metadata was edited in the database")]
        return []
    out = []
    if not isinstance(media, dict) or not isinstance(signed_summary, dict):
        return [Mismatch("index-media-mismatch", subject, "items row, column media_json is not a JSON object")]
    for k in MEDIA_SUMMARY_KEYS:
        if media.get(k) != signed_summary.get(k):
            out.append(Mismatch("index-media-mismatch", subject,
                                f"items row, column media_json, key {k!r}: expected={_short(signed_summary.get(k))} (signed in ingest "
                                f"entry {exp.first_seq}) found={_short(media.get(k))}; the extracted metadata was edited"))
    if not out and set(media) - set(MEDIA_SUMMARY_KEYS):
        out.append(Mismatch("index-media-unsigned", subject,
                            f"items row, column media_json: ingest entry {exp.first_seq} predates media_sha256, so only "
                            f"the keys {', '.join(MEDIA_SUMMARY_KEYS)} are signed and checked; the rest "
                            f"({', '.join(sorted(set(media) - set(MEDIA_SUMMARY_KEYS)))}) is unsigned", "notice"))
    return out


def backed_index_hits(conn: Connection, *, case: str, sources: dict[tuple[str, str], int],
                      first_seq: dict[str, int]) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Check the index hits an ingest consults against the signed entry at that seq.

    ``sources``: (sha256, source key) -> seq, from the ``sources`` rows of ``case``;
    ``first_seq``: sha256 -> seq, from ``items``.  A planted or edited row must not make an
    ingest skip a file as "already recorded", nor sign a ``duplicate_of`` that points at an
    entry which is not the item's first ingest: raise :class:`VerificationError` (exit 1,
    nothing written) naming the row.  Costs one lookup per hit, not a scan.  Returns the hits.
    """
    seqs = sorted(set(sources.values()) | set(first_seq.values()))
    bodies: dict[int, tuple[Any, Any, Mapping[str, Any]]] = {}
    t = schema.entries
    for i in range(0, len(seqs), 500):
        for r in conn.execute(select(t.c.seq, t.c.canonical).where(t.c.seq.in_(seqs[i:i + 500]))):
            try:
                obj = json.loads(bytes(r.canonical))
                if obj.get("seq") == r.seq and isinstance(obj.get("body"), dict):
                    bodies[r.seq] = (obj.get("type"), obj.get("case"), obj["body"])
            except ValueError:
                continue

    def ingest_of(seq: int, sha: str) -> Mapping[str, Any] | None:
        got = bodies.get(seq)
        return got[2] if got and got[0] == "ingest" and got[2].get("item") == sha else None

    def refuse(subject: str, what: str) -> None:
        raise VerificationError(f"refusing to ingest: {what}; the database was edited outside evidencelock",
                                subject=subject, hint="nothing was recorded; run `evidencelock verify` and restore "
                                                      "the ledger from a replica")

    for (sha, key), seq in sources.items():
        body = ingest_of(seq, sha)
        src = body.get("source") if body is not None else None
        if body is None or bodies[seq][1] != case or not isinstance(src, dict) or src.get("key") != key:
            refuse(f"sources seq={seq}", f"the sources row says item {sha[:16]}… is already recorded for case "
                                         f"{_short(case)} by entry {seq}, but that entry does not record it")
    for sha, seq in first_seq.items():
        body = ingest_of(seq, sha)
        if body is None or "duplicate_of" in body:
            refuse(f"item {sha[:16]}…", f"the items row says entry {seq} first recorded this item (column "
                                        "first_seq), but that entry is not its first ingest")
    return sources, first_seq


def _iter_rows(conn: Connection) -> Iterator[Any]:
    """Every ``entries`` row in seq order, including any with a negative seq, in batches."""
    t = schema.entries
    cols = (t.c.seq, t.c.canonical, t.c.signature, t.c.entry_hash, t.c.leaf_hash, t.c.type, t.c.case_id, t.c.actor,
            t.c.time, t.c.item)
    last: int | None = None
    while True:
        q = select(*cols).order_by(t.c.seq).limit(_BATCH)
        if last is not None:
            q = q.where(t.c.seq > last)
        chunk = conn.execute(q).all()
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].seq


def check_index(conn: Connection) -> list[Mismatch]:
    """Every derived column, table and tree node against the canonical entry bytes.

    Also the seq numbering itself (0, 1, 2, … with no gap, negative or duplicate), so that a
    row cannot be hidden from a reader that queries by seq.  Signatures and the hash chain
    are ``verify``'s job; this check is what a reader of derived rows (``export``) runs first.
    """
    out: list[Mismatch] = []
    derivation = Derivation()
    leaves: list[bytes] = []
    for expected_seq, r in enumerate(_iter_rows(conn)):
        subject = f"entries seq={r.seq}"
        if r.seq != expected_seq:
            out.append(Mismatch("entry-seq-gap", subject,
                                f"rows must be numbered 0, 1, 2, … without gaps: expected seq={expected_seq} "
                                f"found seq={r.seq}; rows were deleted, inserted or renumbered"))
        canonical = bytes(r.canonical)
        leaves.append(merkle.leaf_hash(canonical))
        try:
            signed = SignedEntry.from_bytes(canonical, bytes(r.signature), subject=subject)
        except EvidenceLockError as exc:
            out.append(Mismatch("entry-malformed", subject, exc.message))
            continue
        if signed.entry.seq != r.seq:
            out.append(Mismatch("entry-seq-mismatch", subject, f"row seq {r.seq} holds the entry with seq {signed.entry.seq}"))
        out += entry_column_mismatches(r.seq, r._mapping, signed)
        derivation.feed(signed)
    out += derivation.compare(conn)
    try:
        treestore.verify_nodes(conn, leaves)
    except (ProofError, EvidenceLockError) as exc:
        out.insert(0, Mismatch("tree-node-mismatch", "tree_nodes", exc.message))  # first: proofs come from it
    return out


def require_index_consistent(conn: Connection, *, action: str) -> None:
    """Raise :class:`VerificationError` (exit 1) if any derived row disagrees with the entries."""
    problems = [m for m in check_index(conn) if m.severity == "error"]
    if problems:
        shown = "; ".join(f"{m.subject}: {m.message} ({m.code})" for m in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise VerificationError(f"refusing to {action}: the ledger database's derived data disagrees with the signed "
                                f"entries: {shown}{more}", subject="ledger database",
                                hint="run `evidencelock verify` for every finding; restore the ledger from a replica")


def require_tree_matches_entries(conn: Connection, *, action: str) -> int:
    """Check ``tree_nodes`` is exactly the RFC 9162 tree over the entries' canonical bytes.

    Leaf hashes are recomputed as SHA-256(0x00 || canonical) (the ``leaf_hash`` column is
    not trusted) over rows that MUST be numbered 0..n-1.  Raises :class:`ProofError` naming
    ``tree_nodes`` (or the entries row) otherwise.  Returns n.
    """
    t = schema.entries
    leaves: list[bytes] = []
    last: int | None = None
    while True:
        q = select(t.c.seq, t.c.canonical).order_by(t.c.seq).limit(_BATCH)
        if last is not None:
            q = q.where(t.c.seq > last)
        chunk = conn.execute(q).all()
        if not chunk:
            break
        for r in chunk:
            if r.seq != len(leaves):
                raise ProofError(f"refusing to {action}: entries rows must be numbered 0..n-1: expected seq={len(leaves)} "
                                 f"found seq={r.seq}", subject=f"entries seq={r.seq}",
                                 hint="rows were deleted, inserted or renumbered; run `evidencelock verify`")
            leaves.append(merkle.leaf_hash(bytes(r.canonical)))
        last = chunk[-1].seq
    try:
        treestore.verify_nodes(conn, leaves)
    except EvidenceLockError as exc:
        raise ProofError(f"refusing to {action}: the stored Merkle tree does not match the entries: {exc.message}",
                         subject="tree_nodes",
                         hint="the tree table or the entries were modified; run `evidencelock verify`") from None
    return len(leaves)
