"""The court report of an evidence bundle (self-contained HTML and a PDF) and the draft
certification of authenticity.

Plain words, no overclaiming: the report says what the cryptography establishes and what it
does not.  Everything comes from the export context (``evidencelock.bundle.handbook.Context``);
the HTML has no external assets (thumbnails are ``data:`` URIs made from the bundle's own
bytes in an isolated child process) and prints on A4/Letter.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from ._text import printable

__all__ = ["report_html", "report_pdf", "certification_md", "proves", "does_not_prove"]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit} ({n} bytes)"
        size /= 1024
    return f"{n} bytes"


def _names(ctx: Any) -> dict[str, str]:
    return {kid: k.name for kid, k in ctx.keys.items()}


def _verified_stamp(ctx: Any) -> dict[str, Any] | None:
    """The timestamp facts, only when its token was verified with a TSA chain at export."""
    return ctx.timestamp if ctx.timestamp and ctx.timestamp.get("verified") else None


def _stamp_line(ctx: Any) -> str:
    if _verified_stamp(ctx):
        return f"{ctx.timestamp['time']} — {ctx.timestamp['tsa']}"
    if ctx.timestamp:
        return "token attached (evidence/timestamp.tst) but no TSA certificate chain: time not verified"
    return "none (no RFC 3161 token attached)"


def proves(ctx: Any) -> list[str]:
    cp = ctx.checkpoint
    out = [
        "Each file in this bundle is byte-for-byte identical to the file the named custodian ingested: its SHA-256 "
        "digest, recomputed during export and again by anyone who verifies the bundle, equals the digest in the "
        "signed ingest record.",
        "Each custody record (ingest, transfer, access, …) was signed with the Ed25519 key shown for it, and has not "
        "been changed since it was signed.",
        f"All the custody records are part of one append-only log ({cp.origin}); the checkpoint at log size {cp.tree_size}, "
        f"signed by {ctx.checkpoint_signer.name or ctx.checkpoint_signer.key_id[:16]}, commits to them. Rewriting any "
        "of them would change that checkpoint.",
    ]
    if _verified_stamp(ctx):
        out.append(f"That checkpoint existed no later than {ctx.timestamp['time']}, according to the timestamp "
                   f"authority {ctx.timestamp['tsa']}, whose root certificate (SHA-256 {ctx.timestamp['root_sha256']}) "
                   "the exporter trusted. The time is independent only if that root is the one the authority "
                   "publishes: compare it (verify-bundle --tsa-root FILE does).")
    return out


def does_not_prove(ctx: Any) -> list[str]:
    out = [
        "Who filmed or created the files, or whether what they show is genuine, complete or staged.",
        "Anything that happened to the files before they were ingested (editing, re-encoding, selection).",
        "That capture metadata (date, place, device) is true: it is what the files claim about themselves, "
        "extracted at ingest, and can be forged before ingest.",
        "Who holds the signing keys. The keys are identified by their key ids; a reader should obtain the "
        "organisation's key ids independently and compare (verify-bundle --trusted-key).",
        "Anything about other files or other cases in the same log: only the records in this bundle were shown.",
        "That the custodian shown as holding an item really has it: custody is what the signed records say (a release "
        "by the holder, then the receiver's signed acceptance); a transfer without an acceptance is shown as pending.",
        "That no record about these files was left out: the exporter signs the list of records it included, so a "
        "record removed afterwards is detected, but someone holding an enrolled key could export a bundle that omits "
        "records; compare with a bundle or audit obtained from another custodian.",
    ]
    if not _verified_stamp(ctx):
        out.append("When the log existed: this checkpoint has no verified independent timestamp, so the times in the records "
                   "are the custodians' own statements.")
    return out


def _custody(ctx: Any, sha: str) -> list[dict[str, Any]]:
    names = _names(ctx)
    rows = []
    for seq in sorted(ctx.entries):
        e = ctx.entries[seq].entry
        if e.body.get("item") != sha:
            continue
        src = e.body.get("source") if isinstance(e.body.get("source"), dict) else {}
        what = {
            "ingest": f"Ingested from {src.get('path', '?')}"
                      + (f" on host {src['host']}" if src.get("host") else "")
                      + (" (duplicate of an earlier ingest)" if "duplicate_of" in e.body else ""),
        }.get(e.type, e.type.replace("-", " ").capitalize())
        if e.body.get("note"):
            what += f' — note: "{e.body["note"]}"'
        rows.append({"seq": seq, "time": e.time, "type": e.type, "custodian": names.get(e.actor, ""),
                     "key": e.actor, "what": what})
    return rows


# -- custody in plain words (issue 10) ---------------------------------------------------------
# State and words come from evidencelock.timeline (one module for both); the functions below only
# lay them out.  Every input is an included entry or an enrolled name (§4.7 "Human files"), so the
# verifier renders the same bytes; no clock, no host, order by seq.

_STATUS_WORDS = {"accepted": "accepted by the receiver",
                 "pending": "PENDING: not accepted by the receiver",
                 "superseded": "superseded, never accepted"}


class _CustodyView:
    """The custody timeline of the bundle's entries, with the names and item labels every row
    needs, computed once per rendering (a case has up to 10,000 items)."""

    def __init__(self, ctx: Any) -> None:
        from .timeline import build

        self.names = _names(ctx)
        tl = build([ctx.entries[s] for s in sorted(ctx.entries)], self.names)
        self.items, self.case_events, self.findings = tl.items, tl.case_events, tl.findings
        self.labels = _item_labels(ctx)
        self.revoked = {ev.body["key_id"]: ev for evs in tl.case_events.values() for ev in evs
                        if ev.type == "key-revoke" and isinstance(ev.body.get("key_id"), str)}


def _custody_timeline(ctx: Any) -> _CustodyView:
    return _CustodyView(ctx)


def _who(key_id: str, names: dict[str, str], name: str = "") -> str:
    """A custodian for a person: the enrolled name and a short key id (the full id is in the keys table)."""
    name = name or names.get(key_id, "")
    return f"{name} (key {key_id[:8]})" if name else f"key {key_id[:16]}…"


def _who_html(key_id: str, names: dict[str, str], name: str = "") -> str:
    name = name or names.get(key_id, "")
    key = f'<span class="small mono">key {key_id[:8]}</span>'
    return f"{html.escape(name)}<br>{key}" if name else key


def _item_labels(ctx: Any) -> dict[str, tuple[int, str]]:
    """sha256 -> (item number in this report, file name in the bundle)."""
    return {p["sha256"]: (n, p["path"][5:]) for n, p in enumerate(ctx.plan, 1)}


def _item_ref(sha: str, labels: dict[str, tuple[int, str]]) -> str:
    if sha in labels:
        n, name = labels[sha]
        return f"item {n}, {name} ({sha[:12]}…)"
    return f"item {sha[:12]}… (not in this bundle)"


def _holder_line(ic: Any, names: dict[str, str], revoked: dict[str, Any] | None = None) -> str:
    """Who holds the item now, from the signed entries; in transit is never worded as held.
    ``revoked``: key id -> its key-revoke event, to say when the holder's key was since revoked."""
    if ic is None:
        return "unknown: no custody record of this item in this case"
    if ic.in_transit_to:
        return (f"in transit to {_who(ic.in_transit_to, names, ic.in_transit_name)}: released, "
                "not yet accepted (no acceptance signed by the receiver)")
    if ic.holder:
        line = f"held by {_who(ic.holder, names, ic.holder_name)}"
        rev = (revoked or {}).get(ic.holder)
        if rev is not None:
            succ = rev.body.get("successor")
            line += (f"; that key was revoked at record #{rev.seq}"
                     + (f" and replaced by key {succ[:8]} of {names.get(succ) or 'another custodian'}"
                        if isinstance(succ, str) else ""))
        return line
    return "unknown: no custodian established by the signed records"


def _event_links(ev: Any, sha: str, labels: dict[str, tuple[int, str]]) -> list[tuple[str, str]]:
    """(words, item sha256) pairs linking a derived copy and its original, both ways."""
    if ev.type != "derive":
        return []
    copy, orig = ev.body.get("item"), ev.body.get("original")
    if not isinstance(copy, str) or not isinstance(orig, str):
        return []
    if sha == copy:
        return [("original: " + _item_ref(orig, labels), orig)]
    return [("derived copy: " + _item_ref(copy, labels), copy)]


def _event_rows(ctx: Any, sha: str, tl: Any) -> list[dict[str, Any]]:
    """The custody timeline of one item: one row per signed entry, ascending seq."""
    from .timeline import human_time

    names, labels = tl.names, tl.labels
    ic = tl.items.get((ctx.case, sha))
    rows = []
    for ev in (ic.events if ic else []):
        rows.append({"seq": ev.seq, "when": human_time(ev.time), "text": ev.text, "status": ev.status,
                     "status_words": _STATUS_WORDS.get(ev.status or "", ""), "who": _who(ev.actor, names, ev.actor_name),
                     "who_html": _who_html(ev.actor, names, ev.actor_name),
                     "related": list(ev.related), "links": _event_links(ev, sha, labels), "type": ev.type})
    return rows


def _signer_key_events(ctx: Any, tl: Any) -> list[Any]:
    """Key rotations and revocations that concern a key which signed a record of this bundle."""
    return signer_key_events(ctx.entries.values(), tl.case_events)


def signer_key_events(entries: Any, case_events: Any) -> list[Any]:
    """Key rotations (``key-enroll`` with ``successor_of``) and revocations (``key-revoke``) of the
    keys that signed one of ``entries`` (other than key entries), ascending seq; shared with
    verify-bundle so the report and the verifier state the same key changes."""
    signers = {s.entry.actor for s in entries if s.entry.type not in ("key-enroll", "key-revoke")}
    out = []
    for evs in case_events.values():
        for ev in evs:
            b = ev.body
            if ev.type == "key-revoke" and b.get("key_id") in signers:
                out.append(ev)
            elif ev.type == "key-enroll" and "successor_of" in b and (b.get("key_id") in signers or b.get("successor_of") in signers):
                out.append(ev)
    return sorted(out, key=lambda ev: ev.seq)


def _case_rows(ctx: Any, tl: Any) -> list[Any]:
    """Case-level events of the bundle's case (earlier exports, …), ascending seq."""
    return sorted(tl.case_events.get(ctx.case, []), key=lambda ev: ev.seq)


def _custody_html(ctx: Any, tl: Any) -> list[str]:
    """Case-level custody sections: who holds each item now, case events, key changes."""
    from .timeline import human_time

    e = html.escape
    names = _names(ctx)
    parts = ["<h2>Who holds each item now</h2>",
             '<p class="small">Derived only from the signed records in this bundle. A transfer counts as complete only '
             "when the receiving custodian signed its acceptance; until then the item is shown as in transit.</p>",
             '<table class="custody"><tr><td><strong>#</strong></td><td><strong>Item</strong></td>'
             "<td><strong>Custody now</strong></td></tr>"]
    for n, p in enumerate(ctx.plan, 1):
        ic = tl.items.get((ctx.case, p["sha256"]))
        cls = ' class="pending"' if ic is not None and ic.in_transit_to else ""
        parts.append(f'<tr{cls}><td><a href="#item-{p["sha256"][:16]}">{n}</a></td><td>{e(p["path"][5:])}'
                     f'<br><span class="small mono">{p["sha256"][:12]}…</span></td><td>{e(_holder_line(ic, names, tl.revoked))}</td></tr>')
    parts.append("</table>")
    case_events = _case_rows(ctx, tl)
    if case_events:
        parts.append("<h2>Case events</h2>")
        parts.append('<table class="timeline"><tr><td><strong>Time (UTC)</strong></td><td><strong>What happened</strong></td>'
                     "<td><strong>Signed by</strong></td><td><strong>Record</strong></td></tr>")
        for ev in case_events:
            parts.append(f"<tr><td>{e(human_time(ev.time))}</td><td>{e(ev.text)}</td>"
                         f"<td>{_who_html(ev.actor, names, ev.actor_name)}</td><td>#{ev.seq}</td></tr>")
        parts.append("</table>")
    key_events = _signer_key_events(ctx, tl)
    if key_events:
        parts.append("<h2>Key changes affecting this case's signers</h2>")
        parts.append('<table class="timeline"><tr><td><strong>Time (UTC)</strong></td><td><strong>What happened</strong></td>'
                     "<td><strong>Signed by</strong></td><td><strong>Record</strong></td></tr>")
        for ev in key_events:
            parts.append(f"<tr><td>{e(human_time(ev.time))}</td><td>{e(ev.text)}</td>"
                         f"<td>{_who_html(ev.actor, names, ev.actor_name)}</td><td>#{ev.seq}</td></tr>")
        parts.append("</table>")
    return parts


def _item_custody_html(ctx: Any, sha: str, tl: Any) -> list[str]:
    """One item's custody: who holds it now, then its timeline table in plain words."""
    e = html.escape
    ic = tl.items.get((ctx.case, sha))
    parts = [f'<p class="holder"><strong>Custody now:</strong> {e(_holder_line(ic, tl.names, tl.revoked))}</p>',
             '<table class="timeline"><tr><td><strong>Time (UTC)</strong></td><td><strong>What happened</strong></td>'
             "<td><strong>Signed by</strong></td><td><strong>Record</strong></td></tr>"]
    for r in _event_rows(ctx, sha, tl):
        cls = f' class="{r["status"]}"' if r["status"] in _STATUS_WORDS else ""
        what = e(r["text"])
        if r["status_words"]:
            what += f'<br><span class="status">{e(r["status_words"])}</span>'
        for words, other in r["links"]:
            what += f'<br><a href="#item-{other[:16]}">{e(words)}</a>' if other in tl.labels else f"<br>{e(words)}"
        rel = ", ".join(f"#{s}" for s in r["related"])
        see = f'<br><span class="small">see {rel}</span>' if rel else ""
        parts.append(f'<tr{cls}><td>{e(r["when"])}</td><td>{what}</td><td>{r["who_html"]}</td><td>#{r["seq"]}{see}</td></tr>')
    parts.append("</table>")
    return parts


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _md(text: str) -> str:
    """Text from the records as literal Markdown: a note cannot add emphasis, a link or HTML to the
    certification (CommonMark backslash escapes; an underscore inside a word, as in a file name,
    is left as it is: it never makes emphasis)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _custody_md(ctx: Any, tl: Any) -> str:
    """The certification's custody paragraph: each item's chain in sentences, pending said to be pending."""
    from .timeline import human_time

    names = _names(ctx)
    lines = []
    for p in ctx.plan:
        sha = p["sha256"]
        ic = tl.items.get((ctx.case, sha))
        lines.append(f"   - `{p['path']}` (SHA-256 `{sha[:16]}…`):")
        for r in _event_rows(ctx, sha, tl):
            s = f"     - On {r['when']} UTC: {_md(r['text'])} (record #{r['seq']}"
            s += (f"; see record{'s' if len(r['related']) > 1 else ''} " + ", ".join(f"#{x}" for x in r["related"])
                  if r["related"] else "") + ")."
            if r["status"] == "pending":
                s += (" This transfer is pending: no acceptance signed by the receiving custodian is recorded, so "
                      "this certification does not state that the receiver took custody.")
            elif r["status"] == "superseded":
                s += " This transfer was superseded by a later release and was never accepted."
            for words, _ in r["links"]:
                s += f" See {_md(words)}."
            lines.append(s)
        lines.append(f"     - At export: {_md(_holder_line(ic, names, tl.revoked))}.")
    case_events = _case_rows(ctx, tl)
    if case_events:
        lines.append("   - Case events:")
        lines += [f"     - On {human_time(ev.time)} UTC: {_md(ev.text)} (record #{ev.seq})." for ev in case_events]
    key_events = _signer_key_events(ctx, tl)
    if key_events:
        lines.append("   - Key changes affecting the signers of these records:")
        lines += [f"     - On {human_time(ev.time)} UTC: {_md(ev.text)} (record #{ev.seq})." for ev in key_events]
    return "\n".join(lines)


def _custody_json(ctx: Any, tl: Any) -> list[Any]:
    """The variable strings of the custody sections (the PDF's font choice looks at them)."""
    return [[r["text"] for p in ctx.plan for r in _event_rows(ctx, p["sha256"], tl)],
            [ev.text for ev in _case_rows(ctx, tl) + _signer_key_events(ctx, tl)]]


def _one_value(value: Any) -> str:
    """A list element for a person: ``type video, codec h264, width 1920`` rather than a dict repr."""
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items()
                         if v not in (None, "", [], {}) and not isinstance(v, (dict, list)))
    return str(value)


def _capture(media: Any) -> list[tuple[str, str]]:
    """Flatten the extracted summary into (label, value) rows, best effort."""
    if not isinstance(media, dict):
        return []
    summary = media.get("summary") if isinstance(media.get("summary"), dict) else {}
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any, depth: int = 0) -> None:
        if len(rows) >= 24 or depth > 3:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}" if not prefix else f"{prefix} › {k}", v, depth + 1)
        elif isinstance(value, list):
            rows.append((prefix, "; ".join(_one_value(v) for v in value[:8])[:400]))
        elif value not in (None, ""):
            rows.append((prefix, str(value)[:200]))

    if media.get("kind"):
        rows.append(("kind", str(media["kind"])))
    walk("", summary)
    for f in (media.get("flags") or [])[:5]:
        rows.append(("flag", str(f)[:200]))
    return rows


_CSS = """
:root{--ink:#1b1f24;--muted:#5b6570;--line:#d6dbe1;--ok:#17663a;--okbg:#e8f5ec;--warn:#8a4b00;--warnbg:#fff4e0}
*{box-sizing:border-box}body{font:14px/1.5 "DejaVu Sans",Arial,Helvetica,sans-serif;color:var(--ink);margin:0;background:#f4f6f8}
main{max-width:1000px;margin:0 auto;background:#fff;padding:36px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:2px solid var(--ink);padding-bottom:4px}
h3{font-size:15px;margin:0 0 8px;word-break:break-all}
.sub{color:var(--muted);margin:0 0 16px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}th,td{text-align:left;vertical-align:top;padding:5px 8px;border-bottom:1px solid var(--line)}
th{width:170px;color:var(--muted);font-weight:600}
code,.mono{font-family:"DejaVu Sans Mono",Consolas,monospace;font-size:12px;word-break:break-all}
.verdict{padding:12px 16px;border-radius:6px;background:var(--okbg);border-left:6px solid var(--ok);margin:16px 0}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.box{border:1px solid var(--line);border-radius:6px;padding:10px 16px}.box.yes{border-top:4px solid var(--ok)}.box.no{border-top:4px solid var(--warn)}
.box h3{margin-top:4px}.box ul{padding-left:18px;margin:6px 0}
.item{border:1px solid var(--line);border-radius:6px;padding:16px;margin:16px 0;page-break-inside:avoid;break-inside:avoid}
.thumbs{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0}.thumbs figure{margin:0}.thumbs img{max-height:180px;max-width:300px;border:1px solid var(--line)}
.thumbs figcaption{font-size:11px;color:var(--muted)}
.timeline td:first-child{white-space:nowrap}
.small{font-size:12px;color:var(--muted)}
.timeline td:nth-child(3){width:160px}.timeline td:nth-child(4){width:70px;white-space:nowrap}
.timeline tr,.custody tr{break-inside:avoid;page-break-inside:avoid}.item table.timeline{break-inside:avoid;page-break-inside:avoid}
.holder{break-after:avoid;page-break-after:avoid}
tr.pending td{background:var(--warnbg)}tr.pending .status{color:var(--warn);font-weight:600}
tr.accepted .status{color:var(--ok)}tr.superseded .status{color:var(--muted)}.holder{margin:4px 0}
@media print{body{background:#fff}main{padding:0;max-width:none}h2{break-after:avoid}.cols{display:block}.box{margin-bottom:8px}
 a{color:inherit;text-decoration:none}@page{size:A4;margin:16mm}}
"""


def report_html(ctx: Any) -> str:
    e = html.escape
    cp = ctx.checkpoint
    tl = _custody_timeline(ctx)
    total = sum(p["size"] for p in ctx.plan)
    parts = [f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evidence report — case {e(ctx.case)}</title><style>{_CSS}</style></head><body><main>
<h1>Evidence report: case {e(ctx.case)}</h1>
<p class="sub">Exported {e(ctx.created)} from log <code>{e(ctx.origin)}</code> by {e(ctx.exporter_name)} with {e(ctx.software)}.
{len(ctx.plan)} file(s), {e(_human(total))}.</p>
<div class="verdict"><strong>Verified at export.</strong> Every file's SHA-256 was recomputed while it was copied and
matched the signed ingest record; all {len(ctx.entries)} custody records' signatures and Merkle inclusion proofs were
checked against the checkpoint at log size {cp.tree_size}. Anyone can repeat this without us:
<code>evidencelock verify-bundle</code>, or by hand with <code>sha256sum</code> and <code>openssl</code> (see VERIFY.md).</div>
<h2>What this proves, and what it does not</h2>
<div class="cols"><div class="box yes"><h3>Established by the cryptography</h3><ul>"""]
    parts += [f"<li>{e(s)}</li>" for s in proves(ctx)]
    parts.append('</ul></div><div class="box no"><h3>Not established</h3><ul>')
    parts += [f"<li>{e(s)}</li>" for s in does_not_prove(ctx)]
    parts.append("</ul></div></div>")
    parts += ["<h2>Earlier custodians</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in earlier_custodians(ctx)) + "</ul>"] if earlier_custodians(ctx) else []
    parts.append(f"""<h2>The log checkpoint</h2><table>
<tr><th>Log (origin)</th><td><code>{e(cp.origin)}</code></td></tr>
<tr><th>Size</th><td>{cp.tree_size} records</td></tr>
<tr><th>Root hash (SHA-256)</th><td><code>{cp.root_hash.hex()}</code></td></tr>
<tr><th>Signed by</th><td>{e(ctx.checkpoint_signer.name)} — key <code>{ctx.checkpoint_signer.key_id}</code></td></tr>
<tr><th>Timestamp</th><td>{e(_stamp_line(ctx))}</td></tr>
</table>""")
    parts.append("<h2>Custodian keys</h2><table><tr><th>Custodian</th><td><strong>Key id</strong> (SHA-256 of the public key)</td></tr>")
    parts += [f"<tr><th>{e(k.name)}</th><td><code>{kid}</code></td></tr>" for kid, k in sorted(ctx.keys.items())]
    parts.append("</table>")
    parts += _custody_html(ctx, tl)
    parts.append("<h2>Items</h2>")
    for n, p in enumerate(ctx.plan, 1):
        media = ctx.media.get(p["sha256"])
        parts.append(f'<section class="item" id="item-{p["sha256"][:16]}"><h3>{n}. {e(p["path"][5:])}</h3>')
        thumbs = ctx.thumbs.get(p["sha256"]) or []
        if thumbs:
            parts.append('<div class="thumbs">')
            for t in thumbs:
                cap = f"frame at {t['t']} s" if t.get("t") is not None else "image"
                parts.append(f'<figure><img alt="{e(cap)}" src="data:image/jpeg;base64,{base64.b64encode(t["jpeg"]).decode()}">'
                             f"<figcaption>{e(cap)}</figcaption></figure>")
            parts.append("</div>")
        parts.append(f"""<table>
<tr><th>File in bundle</th><td><code>{e(p['path'])}</code></td></tr>
<tr><th>Original name(s)</th><td>{'<br>'.join(e(x) for x in p['original_names'])}</td></tr>
<tr><th>Size</th><td>{e(_human(p['size']))}</td></tr>
<tr><th>SHA-256</th><td><code>{p['sha256']}</code></td></tr>
<tr><th>SHA-512</th><td><code>{p['sha512']}</code></td></tr>
<tr><th>Verification</th><td>SHA-256 matched the signed ingest record at export</td></tr>""")
        for label, value in _capture(media):
            parts.append(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>")
        parts.append("</table><p class=\"small\">Capture metadata above is what the file states about itself (not verified).</p>")
        parts += _item_custody_html(ctx, p["sha256"], tl)
        parts.append("</section>")
    parts.append("""<h2>How to check this report</h2><p>This report is a convenience: it is signed indirectly (its SHA-256
is in the exporter's signed <code>evidence/bundle.json</code>), but the evidence is the files and records
themselves. <code>VERIFY.md</code> in the bundle walks through every check with standard tools.</p></main></body></html>""")
    return "\n".join(parts)


def _font(pdf: Any) -> str:
    import os

    base = "/usr/share/fonts/truetype/dejavu/"
    if os.path.exists(base + "DejaVuSans.ttf") and os.path.exists(base + "DejaVuSans-Bold.ttf"):
        pdf.add_font("DejaVu", "", base + "DejaVuSans.ttf")
        pdf.add_font("DejaVu", "B", base + "DejaVuSans-Bold.ttf")
        if os.path.exists(base + "DejaVuSansMono.ttf"):
            pdf.add_font("DejaVuMono", "", base + "DejaVuSansMono.ttf")
        return "DejaVu"
    return "Helvetica"


def report_pdf(ctx: Any) -> bytes:
    """The court report as a PDF (evidencelock.courtpdf): page numbers, a footer with the case
    and the bundle digest on every page, items kept on one page, human dates, lawyer's labels,
    a custody timeline picture and a capture-location plot.  Pinned by digest only (§4.7)."""
    from .courtpdf import court_pdf

    tl = _custody_timeline(ctx)
    return court_pdf(ctx, tl, proves=proves(ctx), does_not_prove=does_not_prove(ctx), stamp_line=_stamp_line(ctx),
                     holder_line=lambda ic: _holder_line(ic, tl.names, tl.revoked), who=_who, human_size=_human,
                     case_rows=_case_rows(ctx, tl), key_rows=_signer_key_events(ctx, tl), earlier=earlier_custodians(ctx))


def _chain_sentence(ctx: Any) -> str:
    """What was checked of the hash chain in this bundle, and no more (issue 9 item 1)."""
    seqs = set(ctx.entries)
    links = sum(1 for s in seqs if s - 1 in seqs or s == 0)
    return (f"The bundle carries {len(seqs)} custody records, listed with their Merkle leaf hashes in the signed "
            f"`evidence/bundle.json` (`record`); the link to the previous record was checked for the {links} records "
            "whose predecessor is also in the bundle (record 0: the genesis value); the others are bound to the "
            "checkpoint by their Merkle inclusion proofs only. Records of the log that are not in the bundle (other cases, "
            "checkpoints, audits) were not examined.")


def earlier_custodians(ctx: Any) -> list[str]:
    """bundle-format §4.9: one line per received item, its path through the earlier organisations
    (from verified upstream parts only; empty when no item was received from another organisation)."""
    paths = {p["item"]: p["text"] for p in getattr(ctx, "custody_paths", None) or []}
    return [f"`{p['path']}`: {paths[p['sha256']]}" for p in ctx.plan if p["sha256"] in paths]


def certification_md(ctx: Any) -> str:
    cp = ctx.checkpoint
    rows = "\n".join(f"| `{p['path']}` | {p['size']} | `{p['sha256']}` | "
                     f"{', '.join('#' + str(s) for s in p['entries'])} |" for p in ctx.plan)
    ts = (f"The checkpoint was timestamped by {ctx.timestamp['tsa']} at {ctx.timestamp['time']} (RFC 3161 token "
          "`evidence/timestamp.tst` over `evidence/checkpoint-body.txt`; the authority's root certificate has SHA-256 "
          f"`{ctx.timestamp['root_sha256']}`, to be compared with the one the authority publishes)." if _verified_stamp(ctx)
          else "An RFC 3161 token is attached to the checkpoint but was not verified (no TSA certificate chain)."
          if ctx.timestamp else "No RFC 3161 timestamp is attached to the checkpoint.")
    first_times = {}
    for p in ctx.plan:
        seq = p["entries"][0]
        e = ctx.entries[seq].entry
        first_times[p["sha256"]] = (e.time, ctx.keys.get(e.actor).name if ctx.keys.get(e.actor) else e.actor)
    ingest_lines = "\n".join(f"- `{p['path']}`: digest computed at ingest {first_times[p['sha256']][0]} by custodian "
                             f"{first_times[p['sha256']][1]}" for p in ctx.plan)
    ingest_lines += "".join(["\n\n   **Earlier custodians** (received from other organisations; bundle-format §4.9):\n"]
                            + [f"\n- {line}" for line in earlier_custodians(ctx)]) if earlier_custodians(ctx) else ""
    return f"""# DRAFT — Certification of authenticity of electronic records by process of digital identification

> **Draft for review.** Generated automatically by {ctx.software} on {ctx.created}. It must be
> reviewed, completed and signed by a qualified person with knowledge of the process
> described (for example, in the United States, a certification under Federal Rules of Evidence
> 902(13) and 902(14) and 902(11)). Nothing in this draft is a statement by that person until
> it is signed. Adapt it to the rules of the forum.

I, ______________________ [name], declare:

1. I am employed by / act for ______________________ [organisation] as ______________________
   [role]. I am familiar with the evidence-preservation system "evidencelock" used by that
   organisation, and with the process by which the records listed below were preserved and copied.

2. **The process of digital identification.** When each file was received ("ingested"), the
   system read its bytes once and computed its SHA-256 digest (FIPS 180-4) and a second digest
   (BLAKE3), stored the bytes unaltered in write-once storage addressed by the SHA-256 digest,
   and recorded the digests, size, source and time in a custody record signed with the
   custodian's Ed25519 key (RFC 8032). In the system's log each record names the SHA-256 digest
   of the previous one and is committed to an RFC 9162 Merkle tree, whose state is periodically
   signed as a checkpoint.

{ingest_lines}

3. **Copy and re-verification.** On {ctx.created} the files were copied into the enclosed
   evidence bundle (case "{ctx.case}") by {ctx.exporter_name} (key `{ctx.exporter}`). During the copy the
   SHA-256 digest of every file was recomputed and compared with the digest in its signed
   ingest record; all matched. SHA-512 digests were computed at the same time for the BagIt
   manifests. The custody records' signatures and their inclusion in the log checkpoint of
   size {cp.tree_size} (root `{cp.root_hash.hex()}`, log `{cp.origin}`) were verified. {_chain_sentence(ctx)} {ts}

4. The files listed below are true duplicates of the original records as ingested: each has
   the same SHA-256 digest as recorded at ingest.

| File | Size (bytes) | SHA-256 | Custody records |
|---|---|---|---|
{rows}

5. **Chain of custody.** The signed custody records in the bundle state the following, for each
   file in the order recorded (times in UTC, as stated by each signer's own clock). A transfer is
   complete only when the receiving custodian signed an acceptance of that release; a transfer
   without one is stated as pending, and the item as in transit.

{_custody_md(ctx, _custody_timeline(ctx))}

6. The digests can be recomputed by anyone with standard tools (`sha256sum`, `openssl`);
   `VERIFY.md` in the bundle gives the exact commands. Software: {ctx.software}.

7. This certification does not attest to who created the files, to the truth of their content
   or of their embedded metadata, or to their history before ingest.

I declare under penalty of perjury under the laws of ______________________ that the foregoing
is true and correct.

Executed on ______________ at ______________________.

Signature: ______________________    Name: ______________________
"""
