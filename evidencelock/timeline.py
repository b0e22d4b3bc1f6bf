"""Custody timeline: plain words and custody state derived from signed ledger entries.

Pure: no database, no IO, no signature checks (callers verify signatures first and say only
what they checked).  ``history``, ``show``, ``log``, the report and certification, ``verify``
and ``verify-bundle`` all take their words and their custody state from :func:`build`, so a
person sees the same sentence for the same entry everywhere.

Custody rules (docs/custody-events.md §3; design of issue 10), per (case, item):

* the holder after the item's first ``ingest`` in the case is that entry's actor;
* a ``transfer`` (release) by the holder puts the item "in transit" to ``body.to``;
* a ``transfer-accept`` whose ``body.transfer`` names the latest pending release of the item
  in the case (seq and entry hash), signed by that release's ``to``, with ``body.from`` = the
  releaser, makes the receiver the holder; the release is then "accepted";
* a new release by the releaser while in transit supersedes the pending one ("superseded,
  never accepted");
* a release signed by one side only is never shown as complete.

An acceptance that breaks these rules is a failure (``custody-accept``, naming the seq and
the expected and found values) and changes nothing.  A release by someone who did not hold
the item (possible in vaults written before issue 10) is a notice
(``custody-release-by-non-holder``); the item is then in transit to its ``to`` as the signed
entry says, and the notice tells the reader who held it.

Every value taken from an entry is shown through :func:`evidencelock._text.printable`, so
``Event.text`` never holds a control or bidi character.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._text import printable
from .entry import SignedEntry

__all__ = [
    "Event",
    "ItemCustody",
    "Finding",
    "Timeline",
    "Receipt",
    "build",
    "human_time",
    "events_by_seq",
    "PREMIS",
    "PREMIS_CODES",
    "PREMIS_URI",
    "DELETION_OUTCOME",
]

# docs/custody-events.md §2: the fixed outcome text of a deletion request.
DELETION_OUTCOME = "recorded; a write-once store never deletes originals"

# docs/custody-events.md §5: PREMIS 3 event type (authoritative label in
# id.loc.gov/vocabulary/preservation/eventType) of each entry type; "" where PREMIS has no
# equivalent.  ``access`` depends on its action and an ``ingest`` with ``received`` is an
# accession (see _premis).
PREMIS: Mapping[str, str] = {
    "ingest": "ingestion",
    "transfer": "transfer",
    "transfer-accept": "transfer",
    "access": "dissemination",
    "derive": "creation",
    "annotate": "metadata modification",
    "deletion-request": "",  # a request, not a deaccession or deletion (none is ever performed)
    "audit": "fixity check",
    "export": "dissemination",
    "key-enroll": "",
    "key-revoke": "",
    "checkpoint": "",
}
# Label -> code of the id.loc.gov URI http://id.loc.gov/vocabulary/preservation/eventType/<code>.
PREMIS_CODES: Mapping[str, str] = {
    "ingestion": "ing",
    "accession": "acc",
    "transfer": "tra",
    "displaying": "dsp",
    "dissemination": "dis",
    "creation": "cre",
    "metadata modification": "mem",
    "fixity check": "fix",
}
PREMIS_URI = "http://id.loc.gov/vocabulary/preservation/eventType/"


def _premis(type_: str, body: Mapping[str, Any]) -> str:
    if type_ == "ingest" and isinstance(body.get("received"), Mapping):
        return "accession"
    if type_ == "access" and body.get("action") == "view":
        return "displaying"
    return PREMIS.get(type_, "")


@dataclass(frozen=True)
class Event:
    seq: int
    time: str
    type: str
    case: str
    item: str | None
    actor: str
    actor_name: str  # enrolled name of actor ("" if unknown)
    premis: str  # PREMIS event type label (docs/custody-events.md §5)
    text: str  # one line of plain words without the time
    status: str | None  # transfers: "accepted" | "pending" | "superseded"; else None
    related: tuple[int, ...]  # seqs linked (accept -> release, release -> its accept, derive -> original ingest)
    body: Mapping[str, Any]


@dataclass
class ItemCustody:
    case: str
    item: str
    holder: str | None  # None while in transit (or before any ingest of the item in the case)
    holder_name: str
    in_transit_to: str | None
    in_transit_name: str
    events: list[Event]  # ascending seq


@dataclass(frozen=True)
class Finding:
    code: str
    seq: int
    message: str
    severity: str  # "fail" | "notice"


@dataclass
class Timeline:
    items: dict[tuple[str, str], ItemCustody]  # (case, item)
    case_events: dict[str, list[Event]]  # case-level entries (export, key events, audits, …)
    findings: list[Finding]


def human_time(t: str) -> str:
    """``2026-12-02 05:12`` (UTC, minutes) from a docs/ledger-format.md §2.3 time."""
    if isinstance(t, str) and len(t) >= 16 and t[4] == "-" and t[7] == "-" and t[10] == "T" and t[13] == ":":
        return printable(t[:10] + " " + t[11:16])
    return printable(str(t))


def events_by_seq(tl: Timeline) -> dict[int, Event]:
    """One event per entry (a ``derive`` entry: the one on the derived copy), by seq: for
    listings of entries such as ``log``."""
    out: dict[int, Event] = {}
    for events in tl.case_events.values():
        for ev in events:
            out[ev.seq] = ev
    for ic in tl.items.values():
        for ev in ic.events:
            if ev.type == "derive" and ev.item != ev.body.get("item"):
                continue  # the mirror of a derivation on its original
            out[ev.seq] = ev
    return out


# --------------------------------------------------------------------------------------------
# internal records (mutable while building; frozen into Events at the end)


@dataclass
class _Rec:
    seq: int
    time: str
    type: str
    case: str
    item: str | None
    actor: str
    body: Mapping[str, Any]
    hash: str = ""
    status: str | None = None
    related: list[int] = field(default_factory=list)
    # transfer: seq/time of the accepting entry, seq of the superseding release, holder at release
    accepted_by: "_Rec | None" = None
    superseded_by: int | None = None
    non_holder: bool = False
    holder_then: str | None = None
    # transfer-accept: why it is not valid ("" = valid)
    refused: str = ""
    release: "_Rec | None" = None
    # derive: the mirror record on the original ("original") or the derived copy ("copy")
    derive_side: str = ""
    # transfer accepted by an import receipt in another organisation's ledger
    receipt: "Receipt | None" = None


@dataclass
class _State:
    holder: str | None = None
    started: bool = False
    pending: _Rec | None = None
    recs: list[_Rec] = field(default_factory=list)


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _show(v: Any) -> str:
    """A value from an entry, safe to print (printable); non-strings rendered as JSON-ish text."""
    if v is None:
        return ""
    return printable(v if isinstance(v, str) else str(v))


def _short(h: Any, n: int = 12) -> str:
    s = _show(h)
    return s[:n] + "…" if len(s) > n else s


class _Names:
    def __init__(self, names: Mapping[str, str]) -> None:
        self.given = dict(names)
        self.learned: dict[str, str] = {}

    def learn(self, key_id: Any, name: Any) -> None:
        if isinstance(key_id, str) and isinstance(name, str) and key_id not in self.learned:
            self.learned[key_id] = name

    def raw(self, key_id: str | None) -> str:
        if not key_id:
            return ""
        return self.given.get(key_id) or self.learned.get(key_id, "")

    def who(self, key_id: Any, fallback: Any = None) -> str:
        """A custodian in words: the enrolled name, else a signed name, else the key id prefix."""
        if isinstance(key_id, str):
            n = self.raw(key_id)
            if n:
                return printable(n)
        if isinstance(fallback, str) and fallback:
            return printable(fallback)
        if isinstance(key_id, str) and key_id:
            return f"key {_short(key_id)}"
        return "an unnamed custodian"


def _ref(v: Any) -> tuple[int, str] | None:
    """``{seq, entry_hash}`` of a linked entry, or None when malformed."""
    if isinstance(v, Mapping):
        seq, h = v.get("seq"), v.get("entry_hash")
        if type(seq) is int and isinstance(h, str):
            return seq, h
    return None


@dataclass(frozen=True)
class Receipt:
    """A receiving organisation's signed import receipt of a release in ``entries`` (an
    ``ingest`` entry with ``received.transfer`` in the receiver's ledger, docs/bundle-format.md):
    its acceptance of that release, made in another ledger.  The caller has verified the
    receipt's signature and that it belongs to the bundle these entries came from."""

    transfer_seq: int  # received.transfer.seq
    transfer_hash: str  # received.transfer.entry_hash
    receiver: str  # key id: the receipt's actor
    receiver_name: str
    origin: str  # the receiving log's origin
    time: str  # the receipt's time (§2.3)
    seq: int  # the receipt's seq in the receiving log


def build(entries: Iterable[SignedEntry], names: Mapping[str, str], *, receipts: Iterable[Receipt] = ()) -> Timeline:
    """Custody state, plain-words events and custody findings of ``entries`` (ascending seq).

    ``names`` maps key ids to enrolled names; names enrolled by ``key-enroll`` entries among
    ``entries`` fill in the ones it lacks.  ``receipts``: acceptances of releases in
    ``entries`` signed in another organisation's ledger (import); each must name a release that
    is still pending at the end of ``entries``, by its receiver, or it is a ``custody-accept``
    failure (naming the receipt).
    """
    who = _Names(names)
    states: dict[tuple[str, str], _State] = {}
    case_recs: dict[str, list[_Rec]] = {}
    releases: dict[int, _Rec] = {}
    first_ingest: dict[tuple[str, str], _Rec] = {}
    all_seqs: set[int] = set()
    findings: list[Finding] = []

    def state(case: str, item: str) -> _State:
        st = states.get((case, item))
        if st is None:
            st = states[(case, item)] = _State()
        return st

    for signed in entries:
        e = signed.entry
        body = e.body
        all_seqs.add(e.seq)
        item = e.item
        rec = _Rec(e.seq, e.time, e.type, e.case, item, e.actor, body)
        if e.type == "key-enroll":
            who.learn(body.get("key_id"), body.get("name"))
        if item is None:
            case_recs.setdefault(e.case, []).append(rec)
            continue
        st = state(e.case, item)
        st.recs.append(rec)
        if e.type == "ingest":
            if (e.case, item) not in first_ingest:
                rec.hash = signed.entry_hash
                first_ingest[(e.case, item)] = rec
            if not st.started:
                st.started = True
                if st.pending is None and st.holder is None:
                    st.holder = e.actor
        elif e.type == "transfer":
            rec.hash = signed.entry_hash
            rec.status = "pending"
            releases[e.seq] = rec
            prior = st.pending
            if prior is not None:
                if prior.actor != e.actor:
                    rec.non_holder = True
                    rec.holder_then = None
                prior.status = "superseded"
                prior.superseded_by = e.seq
            elif st.holder != e.actor:
                rec.non_holder = True
                rec.holder_then = st.holder
            if rec.non_holder:
                if prior is not None:
                    held = f"it was in transit from {who.who(prior.actor)} to {who.who(_str(prior.body.get('to')))}"
                elif st.holder is not None:
                    held = f"the holder was {who.who(st.holder)}"
                else:
                    held = "no custodian held it in this case"
                findings.append(Finding(
                    "custody-release-by-non-holder", e.seq,
                    f"entry {e.seq}: transfer of item {_short(item)} in case {_show(e.case)!r} released by "
                    f"{who.who(e.actor)} ({_short(e.actor, 16)}), who did not hold it: {held}",
                    "notice"))
            st.holder = None
            st.pending = rec
            st.started = True
        elif e.type == "transfer-accept":
            _accept(rec, st, releases, who, findings)
        elif e.type == "derive":
            orig = body.get("original")
            link = _ref(body.get("original_ingest"))
            rec.derive_side = "copy"
            if link is not None:
                rec.related.append(link[0])
                _check_derive_link(rec, link, first_ingest, all_seqs, orig, findings)
            if isinstance(orig, str) and orig != item:
                mirror = _Rec(e.seq, e.time, e.type, e.case, orig, e.actor, body, derive_side="original",
                              related=[link[0]] if link is not None else [])
                state(e.case, orig).recs.append(mirror)

    for rc in receipts:
        _apply_receipt(rc, releases, states, who, findings)

    items: dict[tuple[str, str], ItemCustody] = {}
    for (case, item), st in states.items():
        pend = st.pending
        to = _str(pend.body.get("to")) if pend is not None else None
        items[(case, item)] = ItemCustody(
            case=case, item=item,
            holder=st.holder, holder_name=who.raw(st.holder),
            in_transit_to=(to or None) if pend is not None else None,
            in_transit_name=(who.raw(to) or _str(pend.body.get("to_name"))) if pend is not None else "",
            events=sorted((_event(r, who) for r in st.recs), key=lambda ev: ev.seq),
        )
    case_events = {case: [_event(r, who) for r in recs] for case, recs in case_recs.items()}
    findings.sort(key=lambda f: f.seq)
    return Timeline(items, case_events, findings)


def _accept(rec: _Rec, st: _State, releases: Mapping[int, _Rec], who: _Names, findings: list[Finding]) -> None:
    """Apply a transfer-accept entry (custody rules above); record a failure if it breaks them."""
    body = rec.body
    ref = _ref(body.get("transfer"))
    release = releases.get(ref[0]) if ref is not None else None
    rec.release = release
    where = f"entry {rec.seq}: acceptance of item {_short(rec.item)} in case {_show(rec.case)!r}"
    pend = st.pending
    if ref is None:
        problem = ("body.transfer must name the release accepted ({seq, entry_hash}); "
                   f"expected=a release entry found={_show(body.get('transfer'))}")
    elif release is None:
        problem = (f"names entry {ref[0]}, which is not a transfer; expected=the pending release of this item "
                   f"({'entry ' + str(pend.seq) if pend is not None else 'none is pending'}) found=entry {ref[0]}")
    elif release.case != rec.case or release.item != rec.item:
        problem = (f"names entry {ref[0]}, a transfer of another item or case; expected=item {_short(rec.item)} "
                   f"case {_show(rec.case)!r} found=item {_short(release.item)} case {_show(release.case)!r}")
    elif ref[1] != release.hash:
        problem = f"the entry hash of release {ref[0]} does not match; expected={release.hash} found={_show(ref[1])}"
    elif release.status == "accepted":
        assert release.accepted_by is not None
        problem = (f"release {ref[0]} was already accepted at entry {release.accepted_by.seq}; "
                   f"expected=a pending release found=an accepted one")
    elif release.status == "superseded" or release is not pend:
        problem = (f"release {ref[0]} was superseded by entry {release.superseded_by} and can no longer be "
                   f"accepted; expected=release {pend.seq if pend is not None else '(none pending)'} "
                   f"found=release {ref[0]}")
    elif rec.actor != _str(release.body.get("to")):
        to = _str(release.body.get("to"))
        problem = (f"signed by {who.who(rec.actor)}, not by the receiver named in release {ref[0]}; "
                   f"expected={to} ({who.who(to, release.body.get('to_name'))}) found={rec.actor}")
    elif body.get("from") != release.actor:
        problem = (f"body.from is not the releaser of entry {ref[0]}; expected={release.actor} "
                   f"found={_show(body.get('from'))}")
    else:
        problem = ""
    if ref is not None:
        rec.related.append(ref[0])
    if problem:
        rec.refused = problem
        findings.append(Finding("custody-accept", rec.seq, f"{where}: {problem}", "fail"))
        return
    assert release is not None
    release.status = "accepted"
    release.accepted_by = rec
    release.related.append(rec.seq)
    st.pending = None
    st.holder = rec.actor


def _apply_receipt(rc: Receipt, releases: Mapping[int, _Rec], states: Mapping[tuple[str, str], _State], who: _Names,
                   findings: list[Finding]) -> None:
    rel = releases.get(rc.transfer_seq)
    where = (f"import receipt (entry {rc.seq} of {printable(rc.origin)}) of transfer entry {rc.transfer_seq}")
    st = states.get((rel.case, rel.item)) if rel is not None and rel.item is not None else None
    if rel is None or st is None:
        problem = f"no such transfer among these entries; expected=a transfer entry found=entry {rc.transfer_seq}"
    elif rc.transfer_hash != rel.hash:
        problem = f"the release's entry hash does not match; expected={rel.hash} found={printable(rc.transfer_hash)}"
    elif rc.receiver != _str(rel.body.get("to")):
        problem = (f"signed by {printable(rc.receiver_name) or rc.receiver[:16]}, not by the receiver the release names; "
                   f"expected={_str(rel.body.get('to'))} found={rc.receiver}")
    elif rel.status == "accepted":
        assert rel.accepted_by is not None
        problem = f"the release was already accepted (entry {rel.accepted_by.seq}); expected=a pending release"
    elif rel is not st.pending:
        problem = f"the release was superseded by entry {rel.superseded_by}; expected=the pending release"
    else:
        problem = ""
    if problem:
        findings.append(Finding("custody-accept", rc.transfer_seq, f"{where}: {problem}", "fail"))
        return
    assert rel is not None and st is not None
    rel.status = "accepted"
    rel.accepted_by = _Rec(rc.seq, rc.time, "transfer-accept", rel.case, rel.item, rc.receiver, {})
    rel.receipt = rc
    st.pending = None
    st.holder = rc.receiver
    who.learn(rc.receiver, rc.receiver_name)


def _check_derive_link(rec: _Rec, link: tuple[int, str], first_ingest: Mapping[tuple[str, str], _Rec],
                       seen: set[int], orig: Any, findings: list[Finding]) -> None:
    """A derive entry's ``original_ingest`` MUST be the original's first ingest in the case
    (docs/custody-events.md §2.5); checked when that ingest is among the entries given."""
    if not isinstance(orig, str):
        findings.append(Finding("custody-derive", rec.seq,
                                f"entry {rec.seq}: derive entry without body.original (the original's SHA-256)", "fail"))
        return
    first = first_ingest.get((rec.case, orig))
    if first is None:
        if link[0] in seen:
            findings.append(Finding(
                "custody-derive", rec.seq,
                f"entry {rec.seq}: derived copy {_short(rec.item)} links to entry {link[0]} as the ingest of its "
                f"original {_short(orig)}, but the original was never ingested in case {_show(rec.case)!r} before it; "
                f"expected=an ingest of {_short(orig)} found=entry {link[0]}", "fail"))
        return
    if (first.seq, first.hash) != link:
        findings.append(Finding(
            "custody-derive", rec.seq,
            f"entry {rec.seq}: derived copy {_short(rec.item)} does not link to its original's first ingest; "
            f"expected=seq {first.seq} entry_hash {first.hash} found=seq {link[0]} entry_hash {_show(link[1])}",
            "fail"))


# --------------------------------------------------------------------------------------------
# words


def _event(r: _Rec, who: _Names) -> Event:
    premis = _premis(r.type, r.body)
    return Event(
        seq=r.seq, time=r.time, type=r.type, case=r.case, item=r.item, actor=r.actor,
        actor_name=who.raw(r.actor), premis=premis, text=_text(r, who), status=r.status,
        related=tuple(r.related), body=r.body,
    )


def _note(body: Mapping[str, Any], key: str = "note") -> str:
    v = body.get(key)
    return f" — {_show(v)}" if isinstance(v, str) and v else ""


def _text(r: _Rec, who: _Names) -> str:
    fn = _TEXT.get(r.type)
    try:
        return fn(r, who) if fn is not None else f"{_show(r.type)} entry by {who.who(r.actor)}"
    except Exception:  # pragma: no cover - defensive: hostile bodies never break rendering
        return f"{_show(r.type)} entry by {who.who(r.actor)} (body not understood)"


def _source(body: Mapping[str, Any]) -> str:
    src = body.get("source")
    if not isinstance(src, Mapping):
        return ""
    root, path = _str(src.get("root")), _str(src.get("path"))
    return printable(f"{root}/{path}" if root and path else (path or root))


def _ingest_text(r: _Rec, who: _Names) -> str:
    b = r.body
    actor = who.who(r.actor)
    src = _source(b)
    received = b.get("received")
    if isinstance(received, Mapping):
        text = _received_text(received, actor, src)
    else:
        text = f"preserved by {actor}" + (f" from {src}" if src else "")
    dup = b.get("duplicate_of")
    if type(dup) is int:
        text += f" (same bytes as entry {dup}, recorded for this source too)"
    flags = b.get("flags")
    if isinstance(flags, list):
        words = {"empty-file": "empty file", "source-removed-during-ingest": "source removed during ingest"}
        shown = [words.get(f, _show(f)) for f in flags if isinstance(f, str)]
        if shown:
            text += f" [{', '.join(shown)}]"
    return text + _note(b)


def _received_text(received: Mapping[str, Any], actor: str, src: str) -> str:
    bagit = received.get("bagit")
    if isinstance(bagit, Mapping):
        version = _show(bagit.get("version")) or "?"
        algs = bagit.get("manifest_algorithms")
        alg_text = ", ".join(_show(a) for a in algs if isinstance(a, str)) if isinstance(algs, list) else ""
        return (f"received by {actor} from a plain BagIt {version} bag (not an evidence bundle; no custody record "
                f"came with it)" + (f", file {src}" if src else "")
                + (f"; the bag's own {alg_text} digests were checked and recorded" if alg_text else ""))
    origin = _show(received.get("origin")) or "another organisation"
    text = f"received by {actor} from {origin} in bundle {_short(received.get('bundle'))}"
    their_case = received.get("case")
    if isinstance(their_case, str) and their_case:
        text += f" (their case {printable(their_case)})"
    if src:
        text += f", file {src}"
    ref = _ref(received.get("transfer"))
    if ref is not None:
        text += f", accepting the transfer by {origin} (their entry {ref[0]})"
    else:
        text += f" (the bundle holds no transfer of this item to {actor})"
    return text


def _transfer_text(r: _Rec, who: _Names) -> str:
    b = r.body
    to = who.who(_str(b.get("to")) or None, b.get("to_name"))
    frm = who.who(r.actor)
    if r.status == "accepted" and r.receipt is not None:
        rc = r.receipt
        text = (f"transferred by {frm} to {to} (accepted by {who.who(rc.receiver, rc.receiver_name)} "
                f"({printable(rc.origin)}) on import, {human_time(rc.time)})")
    elif r.status == "accepted" and r.accepted_by is not None:
        text = f"transferred by {frm} to {to} (accepted {human_time(r.accepted_by.time)}, entry {r.accepted_by.seq})"
    elif r.status == "superseded":
        text = f"released by {frm} to {to} (superseded by entry {r.superseded_by}, never accepted)"
    else:
        text = f"released by {frm} to {to} — in transit, not accepted by {to}"
    if r.non_holder:
        text += " [released by a custodian who did not hold the item"
        text += f": holder was {who.who(r.holder_then)}]" if r.holder_then else "]"
    return text + _note(b)


def _accept_text(r: _Rec, who: _Names) -> str:
    b = r.body
    rel = r.release
    seq = rel.seq if rel is not None else (_ref(b.get("transfer")) or ("?",))[0]
    if r.refused:
        return f"acceptance claimed by {who.who(r.actor)} of transfer entry {seq} — NOT VALID: {r.refused}"
    frm = who.who(rel.actor) if rel is not None else who.who(_str(b.get("from")) or None)
    return f"custody accepted by {who.who(r.actor)} from {frm} (transfer entry {seq})" + _note(b)


def _access_text(r: _Rec, who: _Names) -> str:
    b = r.body
    actor = who.who(r.actor)
    action = b.get("action")
    purpose = _show(b.get("purpose"))
    if action == "view":
        text = f"viewed by {actor}"
    elif action == "retrieve":
        text = f"copy of the original retrieved by {actor}"
    elif action == "export":
        bundle = b.get("bundle")
        text = f"exported by {actor}" + (f" in bundle {printable(bundle)}" if isinstance(bundle, str) and bundle else "")
    else:
        text = f"accessed by {actor} ({_show(action)})"
    return text + (f" — purpose: {purpose}" if purpose else "")


def _derive_text(r: _Rec, who: _Names) -> str:
    b = r.body
    action = _show(b.get("action"))
    actor = who.who(r.actor)
    if r.derive_side == "original":
        return f"derived copy {_short(r.body.get('item'))} made by {actor}" + (f": {action}" if action else "")
    link = _ref(b.get("original_ingest"))
    text = f"derived from {_short(b.get('original'))} by {actor}" + (f": {action}" if action else "")
    if link is not None:
        text += f" (original preserved at entry {link[0]})"
    return text + _note(b)


def _annotate_text(r: _Rec, who: _Names) -> str:
    b = r.body
    text = f"note by {who.who(r.actor)}: {_show(b.get('text'))}"
    tags = b.get("tags")
    if isinstance(tags, list) and tags:
        text += f" [tags: {', '.join(_show(t) for t in tags)}]"
    loc = b.get("location")
    if isinstance(loc, Mapping):
        text += f" (location {_show(loc.get('lat'))}, {_show(loc.get('lon'))})"
    return text


def _deletion_text(r: _Rec, who: _Names) -> str:
    b = r.body
    reason = _show(b.get("reason"))
    return (f"deletion requested by {who.who(r.actor)}" + (f" — reason: {reason}" if reason else "")
            + ". Nothing was deleted: the request is recorded, and a write-once store never deletes originals")


def _audit_text(r: _Rec, who: _Names) -> str:
    b = r.body
    result = b.get("result")
    entries, objects = b.get("checked_entries"), b.get("objects_checked")
    scope = f"{_show(entries)} entries, {_show(objects)} objects re-hashed"
    if result == "pass":
        return f"audit by {who.who(r.actor)}: passed ({scope})"
    if result == "fail":
        return f"audit by {who.who(r.actor)}: FAILED with {_show(b.get('finding_count'))} problem(s) ({scope})"
    return f"audit by {who.who(r.actor)}: result {_show(result)} ({scope})"


def _export_text(r: _Rec, who: _Names) -> str:
    b = r.body
    bundle = b.get("bundle")
    name = _show(bundle.get("name")) if isinstance(bundle, Mapping) else ""
    items = b.get("items")
    n = len(items) if isinstance(items, list) else None
    text = f"evidence bundle {name or '(unnamed)'} exported by {who.who(r.actor)}"
    if n is not None:
        text += f" ({n} item{'s' if n != 1 else ''})"
    return text


def _enroll_text(r: _Rec, who: _Names) -> str:
    b = r.body
    key_id = _str(b.get("key_id"))
    name = _show(b.get("name")) or f"key {_short(key_id)}"
    if r.seq == 0 and r.actor == key_id:
        text = f"vault created: key of {name} enrolled (self-signed, key {_short(key_id)})"
    else:
        text = f"key of {name} enrolled by {who.who(r.actor)} (key {_short(key_id)})"
    succ = b.get("successor_of")
    if isinstance(succ, str):
        text += f"; it replaces the key {_short(succ)} of {who.who(succ)} (rotation, signed by the old key)"
    if b.get("external") is True:
        text += "; public key only: the private key is held elsewhere"
    return text


def _revoke_text(r: _Rec, who: _Names) -> str:
    b = r.body
    key_id = _str(b.get("key_id"))
    name = who.who(key_id or None, b.get("name"))
    text = f"key of {name} revoked by {who.who(r.actor)}: entries it signs later are invalid"
    reason = _show(b.get("reason"))
    if reason:
        text += f" — reason: {reason}"
    succ = b.get("successor")
    if isinstance(succ, str):
        text += f"; successor key {_short(succ)} ({who.who(succ)})"
    return text


def _checkpoint_text(r: _Rec, who: _Names) -> str:
    b = r.body
    event = b.get("event")
    if event == "created":
        return (f"checkpoint signed by {who.who(r.actor)}: the log's first {_show(b.get('tree_size'))} entries, "
                f"root {_short(b.get('root_hash'))}")
    if event == "timestamp-attached":
        return f"timestamp token attached to a checkpoint by {who.who(r.actor)}"
    if event == "cosignature-attached":
        return f"witness cosignature of {_show(b.get('witness'))} attached to a checkpoint by {who.who(r.actor)}"
    return f"checkpoint entry ({_show(event)}) by {who.who(r.actor)}"


_TEXT = {
    "ingest": _ingest_text,
    "transfer": _transfer_text,
    "transfer-accept": _accept_text,
    "access": _access_text,
    "derive": _derive_text,
    "annotate": _annotate_text,
    "deletion-request": _deletion_text,
    "audit": _audit_text,
    "export": _export_text,
    "key-enroll": _enroll_text,
    "key-revoke": _revoke_text,
    "checkpoint": _checkpoint_text,
}
