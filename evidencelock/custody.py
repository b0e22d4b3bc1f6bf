"""Custody acts beyond ingest: keys, two-party transfers, access, derivation, annotation,
deletion requests (docs/custody-events.md; docs/ledger-format.md §4).

Each act is one signed ledger entry (per item where it concerns one item).  A new custodian's
key is enrolled by an already enrolled custodian, so the ledger itself says who vouched for
whom.  Who holds an item is never stored: it is derived from the signed entries by
:mod:`evidencelock.timeline`, and the writers here refuse what its rules forbid (a release by
a non-holder, an acceptance by anyone but the named receiver) before anything is recorded.
The custody state a writer acts on is computed inside the ledger's append transaction, so two
writers cannot both release the same item.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, select

from . import schema, timeline
from .entry import Entry, SignedEntry, format_time
from .errors import CustodianKeyError, FormatError, InputError
from .keys import CustodianKey, PublicKey, check_passphrase_strength
from .ledger import Draft, Tail
from .show import find_item
from .vault import CONFIG_NAME, Vault, VaultConfig, _write_json_atomic

__all__ = [
    "enroll_custodian",
    "enroll_external",
    "revoke_custodian",
    "rotate_key",
    "export_public_key",
    "usable_keys",
    "transfer_items",
    "accept_transfers",
    "record_access",
    "retrieve_copy",
    "export_access_drafts",
    "append_export",
    "custody_findings",
    "access_body",
    "derive",
    "DeriveResult",
    "annotate",
    "request_deletion",
    "item_cases",
    "case_items",
    "custody_state",
    "MAX_TEXT",
    "ACCESS_ACTIONS",
]

MAX_TEXT = 4096  # notes, purposes, reasons, annotations: characters (as ingest --note)
ACCESS_ACTIONS = ("view", "retrieve", "export")
_CUSTODY_TYPES = ("ingest", "transfer", "transfer-accept")
# C0 controls other than TAB/LF, DEL, C1 controls, and the bidi embedding/override/isolate
# controls that can make recorded text read as something else (issue 9 item 17).
_BAD_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_DECIMAL = re.compile(r"\A-?(?:0|[1-9][0-9]{0,2})(?:\.[0-9]{1,10})?\Z")


# -- input checks ------------------------------------------------------------------------------


def _clean_text(label: str, value: str | None, *, required: bool = True, multiline: bool = False) -> str | None:
    """A person's text for an entry: stripped, bounded, free of control characters (refused
    with a clear message, nothing recorded: a control character in a signed note would be
    shown escaped for ever)."""
    if value is None:
        if required:
            raise InputError(f"a {label} is required")
        return None
    text = value.strip()
    if not text:
        if required:
            raise InputError(f"the {label} is empty")
        return None
    if len(text) > MAX_TEXT:
        raise InputError(f"the {label} is {len(text)} characters, over the limit of {MAX_TEXT}")
    bad = _BAD_TEXT.search(text) or (None if multiline else re.search("[\t\n]", text))
    if bad is not None:
        raise InputError(
            f"the {label} contains the control character U+{ord(bad.group()):04X} at position {bad.start()}; "
            f"nothing was recorded", hint="write it as plain text (controls and bidi overrides are refused)")
    return text


def _location(value: str | tuple[str, str] | None) -> dict[str, str] | None:
    """``"LAT,LON"`` → ``{"lat", "lon"}`` decimal strings (entries carry no floats, §2.1)."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    if len(parts) != 2:
        raise InputError(f"a location is LAT,LON in decimal degrees (e.g. 36.2021,37.1343), found {value!r}")
    lat, lon = (p.strip() for p in parts)
    for label, v, limit in (("latitude", lat, 90), ("longitude", lon, 180)):
        if not _DECIMAL.match(v) or abs(float(v)) > limit:
            raise InputError(f"the {label} must be a decimal number between -{limit} and {limit}, found {v!r}")
    return {"lat": lat, "lon": lon}


def _resolve_item(vault: Vault, query: str, case: str | None) -> tuple[str, str]:
    """The item's full SHA-256 and the case an act on it belongs to (the only case it is in, or ``case``)."""
    sha = find_item(vault, query)
    cases = item_cases(vault, sha)
    if case is not None:
        if case not in cases:
            raise InputError(f"item {sha[:16]}… is not part of case {case!r}"
                             + (f" (it is in: {', '.join(repr(c) for c in cases)})" if cases else ""))
        return sha, case
    if len(cases) == 1:
        return sha, cases[0]
    if not cases:  # pragma: no cover - every item has an ingest entry of some case
        raise InputError(f"item {sha[:16]}… belongs to no case")
    raise InputError(f"item {sha[:16]}… is in more than one case ({', '.join(repr(c) for c in cases)}); "
                     f"name one with --case")


def item_cases(vault: Vault, sha: str) -> list[str]:
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(schema.sources.c.case_id).where(schema.sources.c.sha256 == sha).distinct()).all()
    return sorted(r.case_id for r in rows)


def case_items(vault: Vault, case: str) -> list[str]:
    with vault.ledger.reader() as conn:
        rows = conn.execute(
            select(schema.sources.c.sha256).where(schema.sources.c.case_id == case).distinct()
        ).all()
    return sorted(r.sha256 for r in rows)


def _names(conn: Connection) -> dict[str, str]:
    return {r.key_id: r.name for r in conn.execute(select(schema.keys.c.key_id, schema.keys.c.name))}


# -- custody state -----------------------------------------------------------------------------


def _custody_entries(conn: Connection, case: str, items: Sequence[str] | None) -> list[SignedEntry]:
    """The custody entries (ingest, transfer, transfer-accept) of ``case`` — of ``items`` only
    when given — in seq order: one indexed query (entries.case_id / entries.item)."""
    t = schema.entries
    cols = (t.c.seq, t.c.canonical, t.c.signature)
    cond = and_(t.c.case_id == case, t.c.type.in_(_CUSTODY_TYPES))
    rows: list[Any] = []
    if items is not None and len(items) <= 500:
        rows = conn.execute(select(*cols).where(cond, t.c.item.in_(list(items))).order_by(t.c.seq)).all()
    else:
        rows = conn.execute(select(*cols).where(cond, t.c.item.is_not(None)).order_by(t.c.seq)).all()
    out = []
    for r in rows:
        s = SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}")
        if s.entry.case != case:  # the index disagrees with the signed bytes: verify names it
            continue
        out.append(s)
    return out


def custody_state(vault: Vault, case: str, items: Sequence[str] | None = None) -> timeline.Timeline:
    """Custody of the items of ``case`` (all, or ``items``) from their signed custody entries."""
    with vault.ledger.reader() as conn:
        return timeline.build(_custody_entries(conn, case, items), _names(conn))


def _pending_release(ic: timeline.ItemCustody) -> timeline.Event | None:
    if ic.in_transit_to is None and ic.holder is not None:
        return None
    for ev in reversed(ic.events):
        if ev.type == "transfer":
            return ev if ev.status == "pending" else None
    return None


def _where_is(ic: timeline.ItemCustody | None, names: dict[str, str]) -> str:
    if ic is None:
        return "it is not part of this case"
    if ic.holder is not None:
        return f"it is held by {names.get(ic.holder) or ic.holder[:16]}"
    rel = _pending_release(ic)
    if rel is not None and ic.in_transit_to:
        to = names.get(ic.in_transit_to) or ic.in_transit_to[:16]
        return (f"it is in transit to {to} (released by {names.get(rel.actor) or rel.actor[:16]} at entry {rel.seq}; "
                f"{to} has not accepted it)")
    return "no custodian holds it"


def _ingested(ic: timeline.ItemCustody | None) -> bool:
    return ic is not None and any(e.type == "ingest" for e in ic.events)


# -- transfers ---------------------------------------------------------------------------------


def transfer_items(vault: Vault, signer: CustodianKey, *, items: Sequence[str], case: str, to: str, note: str | None,
                   now: Callable[[], datetime]) -> list[SignedEntry]:
    """Record that ``signer`` releases ``items`` of ``case`` (all its items if none given) to
    custodian ``to``: one ``transfer`` entry each, in one transaction.

    Refused, with nothing recorded, unless ``signer`` holds every item (docs/custody-events.md
    §3) — or released it and it is still in transit (the new release supersedes that one)."""
    recipient = vault.resolve_custodian(to)
    keys = vault.enrolled_keys()
    with vault.ledger.reader() as conn:
        revoked = conn.execute(select(schema.keys.c.revoked_seq).where(schema.keys.c.key_id == recipient)).scalar()
    if revoked is not None:
        raise CustodianKeyError(f"custodian {keys[recipient].name!r} has a revoked key (entry {revoked})")
    if recipient == signer.key_id:
        raise InputError("the recipient is the current custodian; nothing to transfer")
    note = _clean_text("note", note, required=False)
    shas = list(dict.fromkeys(find_item(vault, i) for i in items)) if items else None

    def build(conn: Connection, tail: Tail) -> list[Draft]:
        names = _names(conn)
        tl = timeline.build(_custody_entries(conn, case, shas), names)
        held = {item: ic for (c, item), ic in tl.items.items() if c == case}
        targets = shas if shas is not None else sorted(s for s, ic in held.items() if _ingested(ic))
        if not targets:
            raise InputError(f"no items to transfer in case {case!r}")
        refused = []
        for sha in targets:
            ic = held.get(sha)
            if not _ingested(ic):
                raise InputError(f"item {sha[:16]}… is not part of case {case!r}")
            assert ic is not None
            pending = _pending_release(ic)
            if ic.holder == signer.key_id or (ic.holder is None and pending is not None and pending.actor == signer.key_id):
                continue
            refused.append(f"{sha[:16]}…: {_where_is(ic, names)}")
        if refused:
            who = names.get(signer.key_id) or signer.key_id[:16]
            raise InputError(
                f"{who} does not hold {len(refused)} of the {len(targets)} item(s), so cannot release them; "
                f"nothing was recorded: " + "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else ""),
                hint="only the custodian holding an item may release it; a receiver must `accept` it first (see `evidencelock history ITEM`)")
        drafts = []
        for sha in targets:
            body: dict[str, Any] = {"item": sha, "from": signer.key_id, "to": recipient, "to_name": keys[recipient].name}
            if note:
                body["note"] = note
            drafts.append(Draft(format_time(now()), "transfer", case, signer.key_id, body))
        return drafts

    return vault.ledger.append_many(build, signer.sign)


def accept_transfers(vault: Vault, signer: CustodianKey, *, case: str, items: Sequence[str] = (), note: str | None = None,
                     now: Callable[[], datetime]) -> list[SignedEntry]:
    """The receiver's signed acceptance (``transfer-accept``) of every release of ``case`` now in
    transit to ``signer`` — or of the given ``items``, each of which must be in transit to it."""
    note = _clean_text("note", note, required=False)
    shas = list(dict.fromkeys(find_item(vault, i) for i in items)) if items else None

    def build(conn: Connection, tail: Tail) -> list[Draft]:
        names = _names(conn)
        entries = _custody_entries(conn, case, shas)
        by_seq = {s.entry.seq: s for s in entries}
        tl = timeline.build(entries, names)
        me = names.get(signer.key_id) or signer.key_id[:16]
        chosen: list[tuple[str, timeline.Event]] = []
        if shas is not None:
            for sha in shas:
                ic = tl.items.get((case, sha))
                rel = _pending_release(ic) if ic is not None else None
                if ic is None or rel is None or ic.in_transit_to != signer.key_id:
                    raise InputError(f"item {sha[:16]}… is not in transit to {me} in case {case!r}: "
                                     f"{_where_is(ic, names)}; nothing was recorded")
                chosen.append((sha, rel))
        else:
            for (c, sha), ic in sorted(tl.items.items()):
                rel = _pending_release(ic)
                if c == case and rel is not None and ic.in_transit_to == signer.key_id:
                    chosen.append((sha, rel))
            if not chosen:
                raise InputError(f"nothing to accept: no item of case {case!r} is in transit to {me}")
        drafts = []
        for sha, rel in chosen:
            body: dict[str, Any] = {"item": sha, "transfer": {"seq": rel.seq, "entry_hash": by_seq[rel.seq].entry_hash},
                                    "from": rel.actor}
            if note:
                body["note"] = note
            drafts.append(Draft(format_time(now()), "transfer-accept", case, signer.key_id, body))
        return drafts

    return vault.ledger.append_many(build, signer.sign)


# -- access, annotation, deletion requests -------------------------------------------------------


def _append_one(vault: Vault, signer: CustodianKey, now: datetime, type: str, case: str, body: dict[str, Any]) -> SignedEntry:
    signed = vault.append(signer, now=now, type=type, case=case, body=body)
    assert signed is not None
    return signed


def access_body(item: str, *, purpose: str, action: str, bundle: str | None = None) -> dict[str, Any]:
    """The body of an ``access`` entry (docs/custody-events.md §2.3), checked."""
    if action not in ACCESS_ACTIONS:
        raise InputError(f"access action must be one of {', '.join(ACCESS_ACTIONS)}, found {action!r}")
    body: dict[str, Any] = {"item": item, "purpose": _clean_text("purpose", purpose), "action": action}
    if bundle is not None:
        body["bundle"] = bundle
    return body


def record_access(vault: Vault, signer: CustodianKey, *, item: str, purpose: str, action: str, now: datetime,
                  case: str | None = None) -> SignedEntry:
    """Record that ``signer`` opened (``view``) or took a copy of (``retrieve``) an original, and why."""
    if action == "export":
        raise InputError("export access entries are written by `export` itself")
    body = access_body("", purpose=purpose, action=action)
    sha, case = _resolve_item(vault, item, case)
    body["item"] = sha
    return _append_one(vault, signer, now, "access", case, body)


def export_access_drafts(items: Iterable[str], *, case: str, actor: str, time: str, bundle: str,
                         purpose: str | None) -> list[Draft]:
    """One ``access`` entry per exported item (action ``export``), for the export's own transaction."""
    body = access_body("", purpose=purpose or "export to evidence bundle", action="export", bundle=bundle)
    return [Draft(time, "access", case, actor, {**body, "item": sha}) for sha in items]


def annotate(vault: Vault, signer: CustodianKey, *, item: str, text: str, tags: Sequence[str] = (),
             location: str | tuple[str, str] | None = None, now: datetime, case: str | None = None) -> SignedEntry:
    """An analyst's note on an item (with tags and a geolocation finding), signed."""
    body: dict[str, Any] = {"item": "", "text": _clean_text("annotation text", text, multiline=True)}
    clean_tags = [_clean_text("tag", t) for t in tags]
    if clean_tags:
        body["tags"] = list(dict.fromkeys(t for t in clean_tags if t))
    loc = _location(location)
    if loc is not None:
        body["location"] = loc
    sha, case = _resolve_item(vault, item, case)
    body["item"] = sha
    return _append_one(vault, signer, now, "annotate", case, body)


def request_deletion(vault: Vault, signer: CustodianKey, *, item: str, reason: str, now: datetime,
                     case: str | None = None) -> SignedEntry:
    """Record a request to delete an item.  Nothing is deleted: the store is write-once; the
    entry says so in its fixed ``outcome`` (docs/custody-events.md §2.7)."""
    body: dict[str, Any] = {"item": "", "reason": _clean_text("reason", reason, multiline=True),
                            "outcome": timeline.DELETION_OUTCOME}
    sha, case = _resolve_item(vault, item, case)
    body["item"] = sha
    return _append_one(vault, signer, now, "deletion-request", case, body)


# -- derivation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeriveResult:
    original: str
    derived: str
    case: str
    ingest_status: str  # "preserved" | "duplicate" | "already-recorded"
    ingest_seq: int | None
    derive_seq: int
    already_linked: bool  # a rerun found the derive entry already recorded


def _first_ingest(conn: Connection, case: str, sha: str) -> SignedEntry | None:
    t = schema.entries
    rows = conn.execute(select(t.c.seq, t.c.canonical, t.c.signature)
                        .where(t.c.item == sha, t.c.case_id == case, t.c.type == "ingest").order_by(t.c.seq)).all()
    for r in rows:
        s = SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}")
        if s.entry.type == "ingest" and s.entry.case == case and s.entry.item == sha:
            return s
    return None


def derive(vault: Vault, signer: CustodianKey, *, original: str, derived_path: str | os.PathLike[str], action: str,
           now: Callable[[], datetime], case: str | None = None, note: str | None = None,
           extract_media: bool = True) -> DeriveResult:
    """Preserve a derived copy (redacted, trimmed, transcoded …) of ``original`` and link it.

    The derived file goes through the normal ingest (one read: hashed, stored write-once,
    metadata extracted, durable) as an ``ingest`` of the case by ``signer``; then one
    ``derive`` entry links it to the original's first ingest in the case.  Rerunning after a
    crash completes it: the ingest is skipped as already recorded, and the ``derive`` entry is
    written once only."""
    from .ingest import ingest

    action_text = _clean_text("action", action)
    note = _clean_text("note", note, required=False)
    orig_sha, case = _resolve_item(vault, original, case)
    path = Path(os.fsdecode(derived_path))
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise InputError(f"cannot read the derived file: {exc.strerror}", subject=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError("the derived copy must be one regular file (not a folder, link or device)", subject=str(path))
    with vault.ledger.reader() as conn:
        orig_size = conn.execute(select(schema.items.c.size).where(schema.items.c.sha256 == orig_sha)).scalar()
    if orig_size == st.st_size:
        # Same size: make sure it is not the original itself (only then is the file read twice).
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() == orig_sha:
            raise InputError("the derived file has exactly the bytes of the original: it is not a derived copy",
                             subject=str(path))
    report = ingest(vault, [path], key=signer, case=case, note=note, now=now, extract_media=extract_media)
    outcomes = [o for o in report.outcomes if o.sha256]
    if len(outcomes) != 1 or outcomes[0].status not in ("preserved", "duplicate", "already-recorded"):
        why = report.outcomes[0].reason if report.outcomes else "nothing was read"
        raise InputError(f"the derived file could not be preserved: {why}", subject=str(path))
    outcome = outcomes[0]
    derived_sha = outcome.sha256
    assert derived_sha is not None
    if derived_sha == orig_sha:
        raise InputError("the derived file now has exactly the bytes of the original: it is not a derived copy",
                         subject=str(path))
    found: list[SignedEntry] = []

    def build(conn: Connection, tail: Tail) -> list[Draft]:
        t = schema.entries
        for r in conn.execute(select(t.c.seq, t.c.canonical, t.c.signature)
                              .where(t.c.item == derived_sha, t.c.case_id == case, t.c.type == "derive")).all():
            s = SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}")
            if s.entry.type == "derive" and s.entry.body.get("original") == orig_sha and s.entry.case == case:
                found.append(s)
                return []
        first = _first_ingest(conn, case, orig_sha)
        if first is None:
            raise InputError(f"the original {orig_sha[:16]}… has no ingest entry in case {case!r}")
        body: dict[str, Any] = {"item": derived_sha, "original": orig_sha, "action": action_text,
                                "original_ingest": {"seq": first.entry.seq, "entry_hash": first.entry_hash}}
        return [Draft(format_time(now()), "derive", case, signer.key_id, body)]

    appended = vault.ledger.append_many(build, signer.sign)
    signed = appended[0] if appended else found[0]
    return DeriveResult(orig_sha, derived_sha, case, outcome.status, outcome.seq, signed.entry.seq, not appended)


# -- keys ----------------------------------------------------------------------------------------


def _enroll_body(key_id: str, public: PublicKey, name: str, **extra: Any) -> dict[str, Any]:
    return {"key_id": key_id, "public_key": public.raw.hex(), "name": name, "role": "custodian", **extra}


def _check_new_name(vault: Vault, name: str, *, may_reuse: str | None = None) -> str:
    clean = _clean_text("custodian name", name)
    assert clean is not None
    if len(clean) > 256:
        raise InputError("a custodian name is at most 256 characters")
    if any(pk.name == clean and k != may_reuse for k, pk in vault.enrolled_keys().items()):
        raise InputError(f"a custodian named {clean!r} is already enrolled; choose a distinct name")
    return clean


def _new_key(vault: Vault, name: str, passphrase: str, allow_weak_passphrase: bool) -> CustodianKey:
    # The passphrase is validated before anything is written (docs/vault-layout.md §8).
    if not passphrase:
        raise CustodianKeyError("an empty passphrase is not allowed for a custodian key")
    if not allow_weak_passphrase:
        check_passphrase_strength(passphrase)
    key = CustodianKey.generate(name)
    key.save(vault.key_path(key.key_id), passphrase)
    (vault.root / "keys" / f"{key.key_id}.pub.pem").write_bytes(key.public.to_pem())
    return key


def enroll_custodian(vault: Vault, signer: CustodianKey, *, name: str, passphrase: str, now: datetime,
                     allow_weak_passphrase: bool = False) -> CustodianKey:
    """Create a key for a new custodian, save it encrypted, and enrol it (signed by ``signer``)."""
    name = name.strip()
    if not name:
        raise InputError("a custodian name is required")
    name = _check_new_name(vault, name)
    key = _new_key(vault, name, passphrase, allow_weak_passphrase)
    vault.append(signer, now=now, type="key-enroll", case="", body=_enroll_body(key.key_id, key.public, name))
    return key


def enroll_external(vault: Vault, signer: CustodianKey, *, name: str, public_key: PublicKey, now: datetime) -> SignedEntry:
    """Enrol a custodian whose private key is held elsewhere (e.g. a lawyer in another
    organisation who sent the PEM written by their `keys export`): ``external: true``."""
    name = _check_new_name(vault, name)
    key_id = public_key.key_id
    if key_id in vault.enrolled_keys():
        raise InputError(f"this public key is already enrolled (key id {key_id})")
    (vault.root / "keys" / f"{key_id}.pub.pem").write_bytes(public_key.to_pem())
    return _append_one(vault, signer, now, "key-enroll", "", _enroll_body(key_id, public_key, name, external=True))


def usable_keys(vault: Vault) -> list[str]:
    """Key ids that can still sign here: enrolled, not revoked, private key file in this vault."""
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(schema.keys.c.key_id).where(schema.keys.c.revoked_seq.is_(None))).all()
    return sorted(r.key_id for r in rows if vault.key_path(r.key_id).is_file())


def _set_default(vault: Vault, key_id: str) -> None:
    """Point the vault's default custodian at ``key_id`` (after its predecessor was revoked)."""
    cfg = vault.config
    new = VaultConfig(cfg.origin, cfg.ledger_url, cfg.created, key_id, cfg.source_key_secret)
    _write_json_atomic(vault.root / CONFIG_NAME, new.to_json())
    vault.config = new


def revoke_custodian(vault: Vault, signer: CustodianKey, *, key_id: str, reason: str, now: datetime,
                     successor: str | None = None, successor_passphrase: str | None = None,
                     allow_weak_passphrase: bool = False) -> SignedEntry:
    """Record that ``key_id`` must not sign anything after this entry (e.g. a seized laptop).

    Revoking the last usable key of the vault (unrevoked, private key file here) is refused —
    no one could sign anything again, not even a new enrolment — unless ``successor`` names a
    new custodian key created, enrolled (by ``signer``) and recorded in the same transaction
    as the revocation (``body.successor``)."""
    target = vault.resolve_custodian(key_id)
    reason_text = _clean_text("reason", reason, multiline=True)
    with vault.ledger.reader() as conn:
        row = conn.execute(select(schema.keys).where(schema.keys.c.key_id == target)).one()
    if row.revoked_seq is not None:
        raise InputError(f"key {target[:16]}… was already revoked at entry {row.revoked_seq}")
    usable = usable_keys(vault)
    others = [k for k in usable if k != target]
    new_key: CustodianKey | None = None
    if successor is not None:
        name = _check_new_name(vault, successor, may_reuse=target)
        if successor_passphrase is None:
            raise CustodianKeyError("a passphrase for the successor's new key is required")
        new_key = _new_key(vault, name, successor_passphrase, allow_weak_passphrase)
    elif target in usable and not others:
        raise InputError(
            f"refusing to revoke {row.name!r}: it is the last usable key of this vault (no other unrevoked key "
            f"has its private key here), so after it no one could sign anything again — not even the enrolment "
            f"of a new key; nothing was recorded",
            hint=f'enrol a successor in the same step: keys revoke "{row.name}" --reason "..." --successor "NEW NAME"')
    # A custodian may revoke their own key (e.g. a lost laptop with a copy of it).
    time = format_time(now)
    drafts = []
    revoke_body: dict[str, Any] = {"key_id": target, "name": row.name, "reason": reason_text}
    if new_key is not None:
        drafts.append(Draft(time, "key-enroll", "", signer.key_id,
                            _enroll_body(new_key.key_id, new_key.public, new_key.name)))
        revoke_body["successor"] = new_key.key_id
    drafts.append(Draft(time, "key-revoke", "", signer.key_id, revoke_body))
    signed = vault.ledger.append_many(lambda conn, tail: drafts, signer.sign)
    if vault.config.default_custodian == target:
        if new_key is not None:
            _set_default(vault, new_key.key_id)
        elif signer.key_id != target:
            _set_default(vault, signer.key_id)
    return signed[-1]


def rotate_key(vault: Vault, old: CustodianKey, *, passphrase: str, now: datetime, reason: str | None = None,
               allow_weak_passphrase: bool = False) -> tuple[CustodianKey, list[SignedEntry]]:
    """Replace ``old`` (unlocked) by a new key of the same custodian: the OLD key signs the new
    key's enrolment (``successor_of``) and then its own revocation (``successor``), in one
    transaction; afterwards the old key may sign nothing."""
    with vault.ledger.reader() as conn:
        row = conn.execute(select(schema.keys).where(schema.keys.c.key_id == old.key_id)).one_or_none()
    if row is None:
        raise InputError(f"key {old.key_id[:16]}… is not enrolled in this vault")
    if row.revoked_seq is not None:
        raise CustodianKeyError(f"key {old.key_id[:16]}… was revoked at entry {row.revoked_seq}; it may not sign")
    reason_text = _clean_text("reason", reason or "key rotation: replaced by a new key", multiline=True)
    new = _new_key(vault, row.name, passphrase, allow_weak_passphrase)
    time = format_time(now)
    drafts = [
        Draft(time, "key-enroll", "", old.key_id, _enroll_body(new.key_id, new.public, row.name, successor_of=old.key_id)),
        Draft(time, "key-revoke", "", old.key_id,
              {"key_id": old.key_id, "name": row.name, "reason": reason_text, "successor": new.key_id}),
    ]
    signed = vault.ledger.append_many(lambda conn, tail: drafts, old.sign)
    if vault.config.default_custodian == old.key_id:
        _set_default(vault, new.key_id)
    return new, signed


def export_public_key(vault: Vault, who: str) -> tuple[str, str, bytes]:
    """(key id, name, SubjectPublicKeyInfo PEM) of an enrolled key, taken from its signed
    ``key-enroll`` entry (not from a file that could have been swapped)."""
    target = vault.resolve_custodian(who)
    with vault.ledger.reader() as conn:
        seq = conn.execute(select(schema.keys.c.enrolled_seq).where(schema.keys.c.key_id == target)).scalar_one()
        r = conn.execute(select(schema.entries.c.canonical).where(schema.entries.c.seq == seq)).one()
    e = Entry.from_canonical(bytes(r.canonical), subject=f"entry {seq}")
    raw_hex = e.body.get("public_key")
    if e.type != "key-enroll" or e.body.get("key_id") != target or not isinstance(raw_hex, str):
        raise FormatError(f"entry {seq} is not the enrolment of key {target[:16]}…; run `verify`", subject=f"entry {seq}")
    pk = PublicKey(bytes.fromhex(raw_hex), str(e.body.get("name", "")))
    if pk.key_id != target:
        raise FormatError(f"entry {seq} enrols another public key; run `verify`", subject=f"entry {seq}")
    return target, pk.name, pk.to_pem()


# -- retrieving a copy -------------------------------------------------------------------------


def retrieve_copy(vault: Vault, signer: CustodianKey, *, item: str, purpose: str, out: str | os.PathLike[str],
                  now: datetime, case: str | None = None) -> SignedEntry:
    """Write a copy of an original to ``out`` and record the ``access`` (action ``retrieve``).

    The copy is hashed while written and its SHA-256 compared with the item's signed ingest
    entry (whose signature is checked under its enrolled key) before anything is recorded or
    the file appears under ``out``: a stored object that no longer matches is refused
    (:class:`DigestMismatch`, exit 1) and nothing is written."""
    from .errors import VerificationError as DigestMismatch  # named, with expected/found (exit 1)

    body = access_body("", purpose=purpose, action="retrieve")
    sha, case = _resolve_item(vault, item, case)
    dest = Path(os.fsdecode(out))
    if dest.exists() or dest.is_symlink():
        raise InputError("the output file already exists; nothing was written", subject=str(dest))
    if not dest.parent.is_dir():
        raise InputError("the output folder does not exist", subject=str(dest.parent))
    with vault.ledger.reader() as conn:
        first = _first_ingest(conn, case, sha)
        keys = {r.key_id: PublicKey(bytes(r.public_key), r.name) for r in conn.execute(select(schema.keys))}
    if first is None:  # pragma: no cover - _resolve_item found the item in this case
        raise InputError(f"item {sha[:16]}… has no ingest entry in case {case!r}")
    signer_key = keys.get(first.entry.actor)
    if signer_key is None:
        raise DigestMismatch(f"the ingest entry {first.entry.seq} of item {sha[:16]}… is signed by a key that is "
                             f"not enrolled; run `verify`", subject=f"entry {first.entry.seq}")
    first.verify_signature(signer_key)  # raises SignatureError (exit 1)
    expected = first.entry.body.get("digests", {}).get("sha256") if isinstance(first.entry.body.get("digests"), dict) else None
    if expected != sha:
        raise DigestMismatch(f"entry {first.entry.seq} does not record item {sha[:16]}…: expected={sha} found={expected}",
                             subject=f"entry {first.entry.seq}")
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    h = hashlib.sha256()
    try:
        try:
            src = vault.store.open_object(sha)
        except OSError as exc:
            raise DigestMismatch(f"the stored object of item {sha[:16]}… cannot be read ({exc.strerror or exc}); "
                                 f"run `verify`", subject=str(vault.store.path_for(sha))) from None
        with os.fdopen(src, "rb") as f, open(tmp, "xb") as w:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                w.write(chunk)
            w.flush()
            os.fsync(w.fileno())
        if h.hexdigest() != sha:
            raise DigestMismatch(
                f"the stored object of item {sha[:16]}… does not match its signed ingest entry {first.entry.seq}: "
                f"expected={sha} found={h.hexdigest()}; no copy was written and nothing was recorded",
                subject=str(vault.store.path_for(sha)), hint="the stored copy may have been modified; run `verify`")
        body["item"] = sha
        signed = _append_one(vault, signer, now, "access", case, body)
        if dest.exists() or dest.is_symlink():
            raise InputError("the output file appeared while copying; it was not overwritten", subject=str(dest))
        os.rename(tmp, dest)
        return signed
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_export(vault: Vault, key: CustodianKey, *, now: datetime, case: str, body: dict[str, Any],
                  items: Sequence[str], bundle: str, purpose: str | None) -> SignedEntry:
    """The ``export`` entry and one ``access`` entry (action ``export``) per exported item, in
    ONE ledger transaction (docs/custody-events.md §2.3): an export is never on the record
    without the accesses it made, nor the reverse.  Returns the export entry."""
    time = format_time(now)
    drafts = [Draft(time, "export", case, key.key_id, body)]
    drafts += export_access_drafts(items, case=case, actor=key.key_id, time=time, bundle=bundle, purpose=purpose)
    return vault.ledger.append_many(lambda conn, tail: drafts, key.sign)[0]


# -- verification (called by audit.verify_vault) ---------------------------------------------------


def custody_findings(vault: Vault) -> list[timeline.Finding]:
    """Custody findings of the whole vault (docs/custody-events.md §4): the custody rules of
    :mod:`evidencelock.timeline` over every release, acceptance and derivation, with the
    ingests of the (case, item) pairs they concern and the entries derivations link to.

    Reads only those entries (by type, then by the entries.item index), inside the caller's
    snapshot; entries that do not parse are skipped here (``verify`` reports them)."""
    t = schema.entries
    cols = (t.c.seq, t.c.canonical, t.c.signature)

    def parse(rows: Iterable[Any]) -> list[SignedEntry]:
        out = []
        for r in rows:
            try:
                out.append(SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}"))
            except FormatError:
                continue
        return out

    with vault.ledger.reader() as conn:
        acts = parse(conn.execute(select(*cols).where(t.c.type.in_(("transfer", "transfer-accept", "derive")))
                                  .order_by(t.c.seq)))
        if not acts:
            return []
        pairs: set[tuple[str, str]] = set()
        linked: set[int] = set()
        for s in acts:
            e = s.entry
            if e.item is not None:
                pairs.add((e.case, e.item))
            if e.type == "derive":
                orig = e.body.get("original")
                if isinstance(orig, str):
                    pairs.add((e.case, orig))
                link = e.body.get("original_ingest")
                if isinstance(link, dict) and type(link.get("seq")) is int:
                    linked.add(link["seq"])
        items = sorted({item for _, item in pairs})
        more: list[SignedEntry] = []
        for i in range(0, len(items), 500):
            more += parse(conn.execute(select(*cols).where(t.c.type == "ingest", t.c.item.in_(items[i:i + 500]))))
        seqs = sorted(linked)
        for i in range(0, len(seqs), 500):
            more += parse(conn.execute(select(*cols).where(t.c.seq.in_(seqs[i:i + 500]))))
        names = _names(conn)
    by_seq = {s.entry.seq: s for s in acts}
    for s in more:
        e = s.entry
        if (e.case, e.item) in pairs or e.seq in linked:
            by_seq.setdefault(e.seq, s)
    return timeline.build([by_seq[k] for k in sorted(by_seq)], names).findings
