"""What ``show ITEM`` reports: one item with its metadata, fingerprints and custody history.

The custody entries are parsed (so their structure is checked) but their signatures are not
verified here; the output says so, and ``verify`` / ``prove`` establish them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Text, cast, func, or_, select

from . import schema
from .entry import Entry
from .errors import FormatError, InputError
from .vault import Vault

__all__ = ["find_item", "item_details", "render_item"]


def find_item(vault: Vault, query: str) -> str:
    """Full SHA-256 of the one item named by ``query``: a digest prefix (≥ 6 hex digits), or an
    original file name — a signed ``source.path`` of an ingest entry, or its last component.

    A name that fits more than one item is refused (exit 2) with the candidates listed."""
    q = query.strip().lower()
    if q.startswith("sha256:"):
        q = q[7:]
    if re.fullmatch(r"[0-9a-f]{6,64}", q):
        with vault.ledger.reader() as conn:
            rows = conn.execute(select(schema.items.c.sha256).where(schema.items.c.sha256.like(q + "%")).limit(3)).all()
        if len(rows) > 1:
            raise InputError(f"{q} matches more than one item; give more digits")
        if rows:
            return str(rows[0].sha256)
    by_name = _items_by_name(vault, query.strip())
    if len({sha for sha, _, _ in by_name}) == 1:
        return by_name[0][0]
    if by_name:
        shown = "; ".join(f"{sha[:16]}… ({path!r}, case {case!r})" for sha, case, path in by_name[:10])
        more = f"; and {len(by_name) - 10} more" if len(by_name) > 10 else ""
        raise InputError(f"{query.strip()!r} names more than one preserved item: {shown}{more}",
                         hint="give the item's SHA-256 (at least 6 hex digits) or its full recorded path")
    if re.fullmatch(r"[0-9a-f]{6,64}", q):
        raise InputError(f"no preserved item has a SHA-256 starting with {q}", subject=str(vault.root))
    raise InputError(f"no preserved item has a SHA-256 prefix or an original file name {query.strip()!r}",
                     subject=str(vault.root),
                     hint="an item is named by its SHA-256 (at least 6 hex digits) or a file name it was ingested from")


def _items_by_name(vault: Vault, name: str) -> list[tuple[str, str, str]]:
    """(sha256, case, source.path) of ingest entries whose signed ``source.path`` is ``name``
    or ends in ``/name``; one SQL pass over the ingest entries' bytes, exact match checked
    on the parsed entry."""
    if not name or "\x00" in name:
        return []
    needle = json.dumps(name, ensure_ascii=False)[1:-1]  # as RFC 8785 writes it inside a string
    t = schema.entries
    pats = [f'"path":"{needle}"', f'/{needle}"']
    found: dict[tuple[str, str, str], None] = {}
    # The canonical bytes are UTF-8 JSON: compared as text (PostgreSQL: bytea decoded first).
    text_col = (cast(t.c.canonical, Text) if vault.ledger.is_sqlite
                else func.convert_from(t.c.canonical, "UTF8").cast(Text))
    conds = [text_col.contains(p, autoescape=True) for p in pats]
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(t.c.canonical).where(t.c.type == "ingest", or_(*conds)).order_by(t.c.seq)).all()
    for r in rows:
        try:
            e = Entry.from_canonical(bytes(r.canonical))
        except FormatError:
            continue
        src = e.body.get("source")
        path = src.get("path") if isinstance(src, dict) else None
        if e.type == "ingest" and e.item and isinstance(path, str) and (path == name or path.rsplit("/", 1)[-1] == name):
            found.setdefault((e.item, e.case, path), None)
    return list(found)


def item_details(vault: Vault, query: str) -> dict[str, Any]:
    sha = find_item(vault, query)
    with vault.ledger.reader() as conn:
        row = conn.execute(select(schema.items).where(schema.items.c.sha256 == sha)).one()
    names = {k: pk.name for k, pk in vault.enrolled_keys().items()}
    entries = vault.ledger.entries_for_item(sha)
    from .history import signature_valid
    from .timeline import build

    with vault.ledger.reader() as conn:
        valid, invalid = signature_valid(conn, entries)
    # Custody state only from entries whose signature verifies (custody-events §3).
    tl = build(valid, names)  # plain words and custody state (evidencelock/timeline.py)
    words = {(ev.seq, ev.item): ev for ic in tl.items.values() for ev in ic.events}
    custody = []
    for s in entries:
        e = s.entry
        ev = words.get((e.seq, sha))
        custody.append({
            "seq": e.seq, "time": e.time, "type": e.type, "case": e.case, "actor": e.actor,
            "custodian": names.get(e.actor, ""), "body": dict(e.body),
            "text": ev.text if ev is not None else e.type, "status": ev.status if ev is not None else None,
            "premis": ev.premis if ev is not None else "",
            "signature_valid": e.seq not in invalid,
        })
    holders = [{"case": ic.case, "holder": ic.holder, "holder_name": ic.holder_name,
                "in_transit_to": ic.in_transit_to, "in_transit_name": ic.in_transit_name}
               for (c, i), ic in sorted(tl.items.items()) if i == sha]
    media = json.loads(row.media_json) if row.media_json else None
    path = vault.store.path_for(sha)
    return {
        "item": sha,
        "digests": {"sha256": sha, row.second_algorithm: row.second_digest},
        "size": row.size,
        "object": str(path.relative_to(vault.root)),
        "object_present": path.is_file(),
        "media": media,
        "custody": custody,
        "holders": holders,
        "custody_findings": [{"code": f.code, "seq": f.seq, "message": f.message, "severity": f.severity}
                             for f in tl.findings],
        "signatures_verified": True,  # custody state from entries whose signature verified
        "invalid_entries": invalid,
    }


def _escape(text: str) -> str:
    """A value for rich output: controls/bidi shown as escapes (evidencelock._text), markup literal."""
    from rich.markup import escape as markup_escape

    from ._text import printable

    return markup_escape(printable(str(text)))


def render_item(console: Any, d: dict[str, Any]) -> None:
    from rich.table import Table

    escape = _escape

    console.print(f"[bold]Item[/] sha256:{d['item']}")
    for alg, value in d["digests"].items():
        console.print(f"  {alg:8} {value}")
    console.print(f"  size     {d['size']} bytes")
    console.print(f"  object   {d['object']}" + ("" if d["object_present"] else "  [red](MISSING)[/]"))
    media = d.get("media") or {}
    if media:
        console.print(f"[bold]Media[/] ({escape(str(media.get('kind', '?')))}, extractor {escape(str(media.get('extractor', '')))})")
        _render_tree(console, media.get("summary", {}), indent="  ")
        for flag in media.get("flags", []):
            console.print(f"  [yellow]flag[/] {escape(str(flag))}")
        for error in media.get("errors", []):
            console.print(f"  [yellow]metadata problem[/] {escape(str(error))}")
        fps = media.get("fingerprints") or {}
        if fps:
            console.print("[bold]Fingerprints[/]")
            for k, v in fps.items():
                text = v if isinstance(v, str) else (f"{len(v)} values" if isinstance(v, list) else json.dumps(v)[:80])
                if k == "frames" and isinstance(v, list) and v and isinstance(v[-1], dict):
                    text = f"{len(v)} frame hashes, 0-{v[-1].get('ms', 0) / 1000:g} s"
                console.print(f"  {escape(str(k))}: {escape(str(text))}")
    table = Table("seq", "time (UTC)", "case", "what", title="Custody (signatures checked; `verify` checks the whole ledger)")
    for c in d["custody"]:
        text = escape(c["text"]) if c.get("signature_valid", True) else \
            f"[red]SIGNATURE NOT VALID — not used for custody:[/] {escape(c['text'])}"
        table.add_row(str(c["seq"]), escape(c["time"][:16].replace("T", " ")), escape(c["case"]), text)
    console.print(table)
    for h in d.get("holders", []):
        if h["holder"] is not None:
            now = escape(h["holder_name"] or h["holder"])
        elif h["in_transit_to"] is not None:
            now = f"nobody — in transit to {escape(h['in_transit_name'] or h['in_transit_to'])} (not yet accepted)"
        else:
            now = "nobody"
        console.print(f"[bold]Holder now[/] (case {escape(h['case'])}): {now}")
    for f in d.get("custody_findings", []):
        console.print(f"[{'red' if f['severity'] == 'fail' else 'yellow'}]{'PROBLEM' if f['severity'] == 'fail' else 'notice'}[/] "
                      f"{escape(f['message'])}")


def _render_tree(console: Any, value: Any, indent: str) -> None:
    escape = _escape

    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                console.print(f"{indent}{escape(str(k))}:")
                _render_tree(console, v, indent + "  ")
            elif v not in (None, "", [], {}):
                console.print(f"{indent}{escape(str(k))}: {escape(str(v))}")
    elif isinstance(value, list):
        for v in value[:20]:
            if isinstance(v, dict):
                # One line per element (e.g. a video's streams), not one line per field.
                text = ", ".join(f"{k}={x}" if not isinstance(x, (dict, list)) else f"{k}={json.dumps(x, sort_keys=True)}"
                                 for k, x in v.items() if x not in (None, "", [], {}))
                console.print(f"{indent}- {escape(text)}")
            else:
                console.print(f"{indent}- {escape(str(v))}")
