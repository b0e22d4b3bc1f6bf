"""report.pdf: the court-ready report (fpdf2), pinned by digest only (docs/bundle-format.md §4.7).

Every page has a footer naming the case and the bundle digest (the SHA-256 of
``manifest-sha256.txt``: ``evidencelock.lawyer.bundle_digest``) and "Page N of M".  Layout is
measured before it is drawn: an item's block (title, thumbnails, facts, custody) is kept on one
page whenever it fits on a page.  Dates are human ("30 April 2014, 14:05 UTC"), metadata labels
are a lawyer's (``evidencelock.lawyer.media_rows``), transfers name sender and receiver, and two
pictures are drawn with fpdf2 primitives only (no network, no map tiles): the custody timeline
of the case and the capture locations the files state.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ._text import printable
from .lawyer import bundle_digest, degrees, human_date, location_of, media_rows

__all__ = ["court_pdf"]

INK, MUTED, LINE = (27, 31, 36), (91, 101, 112), (214, 219, 225)
OK, WARN = (23, 102, 58), (138, 75, 0)
_LATIN = str.maketrans({"\u2022": "-", "\u2014": "-", "\u2026": "...", "\u203a": ">", "\u2019": "'",
                        "\u2192": "->", "\u2013": "-"})
_MARK = {"ingest": ((23, 102, 58), "Ingest (preserved)"), "transfer": ((200, 110, 0), "Transfer (release)"),
         "transfer-accept": ((30, 90, 180), "Acceptance of a transfer"), "access": ((120, 120, 120), "Access"),
         "export": ((130, 60, 150), "Export")}


def _ts(t: str) -> float | None:
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except (ValueError, AttributeError):
        return None


def court_pdf(ctx: Any, tl: Any, *, proves: list[str], does_not_prove: list[str], stamp_line: str,
              holder_line: Callable[[Any], str], who: Callable[..., str], human_size: Callable[[int], str],
              case_rows: list[Any], key_rows: list[Any], earlier: list[str]) -> bytes:
    from fpdf import FPDF

    from .timeline import events_by_seq

    digest = bundle_digest(ctx.plan)
    names = tl.names
    n_of = {p["sha256"]: n for n, p in enumerate(ctx.plan, 1)}
    item_events = [ev for p in ctx.plan for ev in (tl.items.get((ctx.case, p["sha256"])).events
                                                   if tl.items.get((ctx.case, p["sha256"])) else [])]
    by_seq = events_by_seq(tl)
    transfers = sorted((ev for ev in item_events if ev.type == "transfer"), key=lambda ev: ev.seq)
    meta_rows = {p["sha256"]: media_rows(ctx.media.get(p["sha256"])) for p in ctx.plan}

    def receiver(ev: Any) -> str:
        to = ev.body.get("to")
        return who(to, names, str(ev.body.get("to_name") or "")) if isinstance(to, str) else "unknown receiver"

    def transfer_status(ev: Any) -> str:
        if ev.status == "accepted":
            acc = next((by_seq[s] for s in ev.related if s in by_seq and by_seq[s].type == "transfer-accept"), None)
            return (f"Accepted {human_date(acc.time)} by {who(acc.actor, names, acc.actor_name)} (record #{acc.seq})"
                    if acc else "Accepted (on import by another organisation)")
        if ev.status == "superseded":
            return "Superseded by a later release; never accepted"
        return "PENDING: not accepted by the receiver"

    class Doc(FPDF):
        def footer(self) -> None:  # every page: case, bundle digest, page N of M
            self.set_y(-14)
            self.set_draw_color(*LINE)
            self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
            self.set_text_color(*MUTED)
            self.set_font(family, "", 7)
            self.cell(self.epw * 0.75, 4, t(f"Evidence report, case {ctx.case}"), new_x="RIGHT", new_y="TOP")
            self.cell(self.epw * 0.25, 4, f"Page {self.page_no()} of {{nb}}", align="R", new_x="LMARGIN", new_y="NEXT")
            self.cell(34, 3.6, "Bundle digest (SHA-256 of manifest-sha256.txt):", new_x="RIGHT", new_y="TOP")
            self.set_x(self.l_margin + 60)
            self.set_font(mono, "", 6.5)
            self.cell(0, 3.6, digest)
            self.set_text_color(*INK)

    pdf = Doc(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=20)
    try:
        from .entry import parse_time

        pdf.set_creation_date(parse_time(ctx.created))  # the export time, not the wall clock
    except Exception:  # noqa: BLE001
        pass
    variable = json.dumps([ctx.case, ctx.origin, ctx.exporter_name, [k.name for k in ctx.keys.values()],
                           [(p["path"], p["original_names"]) for p in ctx.plan], meta_rows,
                           [ev.text for ev in item_events + case_rows + key_rows], ctx.timestamp, earlier],
                          ensure_ascii=False, default=str)
    family = "Helvetica"
    try:
        variable.translate(_LATIN).encode("latin-1")
    except UnicodeEncodeError:
        from .report import _font

        family = _font(pdf)
    mono = "DejaVuMono" if family == "DejaVu" and "dejavumono" in pdf.fonts else "Courier"
    unicode_ok = family == "DejaVu"
    width = pdf.w - pdf.l_margin - pdf.r_margin
    bottom = pdf.h - 20
    label_w = 42.0

    def t(s: str) -> str:
        s = printable(s, keep_layout=True)  # controls and bidi overrides shown, never drawn
        return s if unicode_ok else s.translate(_LATIN).encode("latin-1", "replace").decode("latin-1")

    def wrap(par: str, avail: float) -> list[str]:
        """Greedy word wrap by measured widths at the current font; a word wider than the
        column is cut by characters."""
        par = t(par)
        if pdf.get_string_width(par) <= avail:
            return [par]
        space = pdf.get_string_width(" ")
        lines: list[str] = []
        cur, cur_w = "", 0.0
        for word in par.split(" "):
            ww = pdf.get_string_width(word)
            while ww > avail:  # an unbreakable word (a digest, a path): cut it
                if cur:
                    lines.append(cur)
                    cur, cur_w = "", 0.0
                cut = max(1, int(len(word) * avail / ww) - 1)
                while cut > 1 and pdf.get_string_width(word[:cut]) > avail:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
                ww = pdf.get_string_width(word)
            if cur and cur_w + space + ww <= avail:
                cur, cur_w = f"{cur} {word}", cur_w + space + ww
            else:
                if cur:
                    lines.append(cur)
                cur, cur_w = word, ww
        return lines + ([cur] if cur else [])

    # -- blocks: (height, draw) measured before drawing ------------------------------------------
    Block = tuple[float, Callable[[], None]]

    def keep(height: float) -> None:
        """New page unless ``height`` fits in the space left (when it fits on a page at all)."""
        if pdf.get_y() + height > bottom and height <= bottom - pdf.t_margin:
            pdf.add_page()

    def draw(blocks: list[Block], *, together: bool = True) -> None:
        if together:
            keep(sum(h for h, _ in blocks))
        for h, fn in blocks:
            if pdf.get_y() + h > bottom:
                pdf.add_page()
            fn()

    def para(s: str, size: float = 9, style: str = "", indent: float = 0, color: tuple[int, int, int] = INK) -> Block:
        pdf.set_font(family, style, size)
        lines = wrap(s, width - indent - 1)
        lh = size * 0.45

        def fn() -> None:
            pdf.set_font(family, style, size)
            pdf.set_text_color(*color)
            for ln in lines:
                pdf.set_x(pdf.l_margin + indent)
                pdf.cell(width - indent, lh, ln, new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(*INK)
        return len(lines) * lh, fn

    def space(h: float) -> Block:
        return h, lambda: pdf.set_y(pdf.get_y() + h)

    def heading(s: str, size: float = 12) -> Block:
        def fn() -> None:
            pdf.ln(3)
            pdf.set_font(family, "B", size)
            pdf.cell(0, size * 0.5, t(s), new_x="LMARGIN", new_y="NEXT")
            pdf.set_draw_color(*INK)
            pdf.line(pdf.l_margin, pdf.get_y() + 0.5, pdf.l_margin + width, pdf.get_y() + 0.5)
            pdf.ln(2.5)
        return 3 + size * 0.5 + 2.5, fn

    def kv(label: str, value: str, *, is_mono: bool = False) -> Block:
        vw = width - label_w
        pdf.set_font(family, "B", 8)
        llines = wrap(label, label_w - 2)
        pdf.set_font(mono if is_mono else family, "", 7.5 if is_mono else 8.5)
        vlines = wrap(value, vw - 1)
        h = max(len(llines), len(vlines)) * 3.7 + 1.0

        def fn() -> None:
            y = pdf.get_y()
            pdf.set_font(family, "B", 8)
            pdf.set_text_color(*MUTED)
            for i, ln in enumerate(llines):
                pdf.set_xy(pdf.l_margin, y + 0.25 + 3.7 * i)
                pdf.cell(label_w - 2, 3.7, ln)
            pdf.set_text_color(*INK)
            pdf.set_font(mono if is_mono else family, "", 7.5 if is_mono else 8.5)
            for i, ln in enumerate(vlines):
                pdf.set_xy(pdf.l_margin + label_w, y + 0.25 + 3.7 * i)
                pdf.cell(vw, 3.7, ln)
            pdf.set_y(y + h - 0.3)
            pdf.set_draw_color(*LINE)
            pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
            pdf.set_y(y + h)
        return h, fn

    def boxed(title: str, lines: list[str], rgb: tuple[int, int, int]) -> list[Block]:
        inner = [para("\u2022 " + s, 8.5, indent=5) for s in lines]
        h = 6 + sum(b[0] + 0.8 for b in inner) + 1

        def fn() -> None:
            y0 = pdf.get_y()
            pdf.set_fill_color(*rgb)
            pdf.rect(pdf.l_margin, y0, 1.5, h - 1, style="F")
            pdf.set_x(pdf.l_margin + 5)
            pdf.set_font(family, "B", 10)
            pdf.set_text_color(*rgb)
            pdf.cell(width - 5, 6, t(title), new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(*INK)
            for _, f in inner:
                f()
                pdf.ln(0.8)
            pdf.set_y(y0 + h)
        return [(h, fn)]

    def table(cols: tuple[float, ...], header: tuple[str, ...], rows: list[tuple[tuple[str, ...], bool]]) -> list[Block]:
        """Rows never split; the header is its own block (kept with the first row by the caller)."""
        pdf.set_font(family, "", 8)
        laid = []
        for cells, warn in rows:
            cl = [sum((wrap(par, w - 2) or [""] for par in str(c).split("\n")), []) for w, c in zip(cols, cells)]
            laid.append((cl, warn, max(len(c) for c in cl) * 3.8 + 1.6))

        def head() -> None:
            pdf.set_font(family, "B", 7.5)
            pdf.set_text_color(*MUTED)
            for w, h in zip(cols, header):
                pdf.cell(w, 5, t(h), border="B")
            pdf.ln(5)
            pdf.set_text_color(*INK)

        def row(cl: list[list[str]], warn: bool, hgt: float) -> Block:
            def fn() -> None:
                y, x = pdf.get_y(), pdf.l_margin
                if warn:
                    pdf.set_fill_color(255, 244, 224)
                    pdf.rect(pdf.l_margin, y, width, hgt - 0.3, style="F")
                pdf.set_font(family, "", 8)
                for w, lines in zip(cols, cl):
                    for i, ln in enumerate(lines):
                        pdf.set_xy(x, y + 0.5 + 3.8 * i)
                        pdf.cell(w - 1, 3.8, ln)
                    x += w
                pdf.set_draw_color(*LINE)
                pdf.line(pdf.l_margin, y + hgt - 0.3, pdf.l_margin + width, y + hgt - 0.3)
                pdf.set_y(y + hgt)
            return hgt, fn

        blocks: list[Block] = [(5.0, head)]
        blocks += [row(*r) for r in laid]
        return blocks

    def draw_table(title_blocks: list[Block], tb: list[Block], first: int = 6) -> None:
        """A titled table: the title, header and first rows stay together; a row never splits;
        a table that continues on a new page repeats its header."""
        draw(title_blocks + tb[:first + 1])
        for h, fn in tb[first + 1:]:
            if pdf.get_y() + h > bottom:
                pdf.add_page()
                tb[0][1]()
            fn()

    # -- page 1 ---------------------------------------------------------------------------------
    pdf.add_page()
    pdf.set_font(family, "B", 17)
    pdf.cell(0, 9, "Evidence report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "B", 12)
    draw([para(f"Case {ctx.case}", 12, "B")])
    pdf.ln(1)
    total = sum(p["size"] for p in ctx.plan)
    draw([kv("Exported", f"{human_date(ctx.created)} by {ctx.exporter_name or 'an unnamed custodian'}"),
          kv("Files", f"{len(ctx.plan)} file(s), {human_size(total)}"),
          kv("From log", ctx.origin, is_mono=True),
          kv("Software", ctx.software),
          kv("Bundle digest", digest, is_mono=True),
          para("The bundle digest, printed at the foot of every page, is the SHA-256 of the bundle's "
               "manifest-sha256.txt (the list of every evidence file and its SHA-256). Anyone can recompute it: "
               "sha256sum manifest-sha256.txt. A page showing another digest belongs to another bundle.", 7.5,
               color=MUTED)], together=False)
    pdf.ln(3)
    cp = ctx.checkpoint
    draw(boxed("Verified at export", [
        f"Every file's SHA-256 was recomputed while it was copied and matched the signed ingest record; all "
        f"{len(ctx.entries)} custody records' signatures and Merkle inclusion proofs were checked against the "
        f"checkpoint at log size {cp.tree_size}.",
        "Anyone can repeat this without us: evidencelock verify-bundle, or by hand with sha256sum and openssl "
        "(see VERIFY.md in the bundle)."], OK))
    draw([heading("What this proves")] + boxed("Established by the cryptography", proves, OK))
    draw([heading("What this does not prove")] + boxed("Not established", does_not_prove, WARN))
    if earlier:
        draw([heading("Earlier custodians")] + [para("\u2022 " + s.replace("`", ""), 8.5) for s in earlier])
    draw([heading("The log checkpoint"), kv("Log (origin)", cp.origin, is_mono=True), kv("Size", f"{cp.tree_size} records"),
          kv("Root hash (SHA-256)", cp.root_hash.hex(), is_mono=True),
          kv("Signed by", ctx.checkpoint_signer.name or "(unnamed)"),
          kv("Signing key id", ctx.checkpoint_signer.key_id, is_mono=True), kv("Timestamp", stamp_line)])
    draw([heading("Custodian keys"), para("Key id: the SHA-256 of the custodian's public key.", 7.5, color=MUTED)]
         + [kv(k.name or "(unnamed)", kid, is_mono=True) for kid, k in sorted(ctx.keys.items())])

    # -- custody: transfers, picture, holders ---------------------------------------------------
    tr_rows = [((human_date(ev.time), f"{n_of.get(ev.item, '?')}. {ctx.plan[n_of[ev.item] - 1]['path'][5:]}"
                 if ev.item in n_of else str(ev.item)[:12], who(ev.actor, names, ev.actor_name), receiver(ev),
                 transfer_status(ev) + f"\nrecord #{ev.seq}" + (f"\nnote: {ev.body['note']}" if ev.body.get("note") else "")),
                ev.status == "pending") for ev in transfers]
    title = [heading("Custody transfers"),
             para("Each transfer names its sender (who released the item) and its receiver. A transfer is complete "
                  "only when the receiver signed its acceptance; until then it is pending and the item is in transit.",
                  7.5, color=MUTED), space(1)]
    if tr_rows:
        draw_table(title, table((30.0, 38.0, 34.0, 34.0, width - 136), ("Time", "Item", "From (sender)",
                                                                       "To (receiver)", "Status"), tr_rows))
    else:
        draw(title + [para("No item of this bundle was transferred between custodians.", 8.5)])
    _timeline_picture(pdf, ctx, tl, item_events, case_rows, draw, heading, para, space, t, family, width, receiver)
    ccols = (10.0, 62.0, width - 72)
    crows = [((str(n), f"{p['path'][5:]}\n{p['sha256'][:16]}…", holder_line(tl.items.get((ctx.case, p["sha256"])))),
              bool(tl.items.get((ctx.case, p["sha256"])) and tl.items[(ctx.case, p["sha256"])].in_transit_to))
             for n, p in enumerate(ctx.plan, 1)]
    draw_table([heading("Who holds each item now"),
                para("Derived only from the signed records in this bundle.", 7.5, color=MUTED), space(1)],
               table(ccols, ("#", "Item", "Custody now"), crows))
    tcols = (30.0, width - 30 - 46 - 16, 46.0, 16.0)
    theader = ("Time", "What happened", "Signed by", "Record")
    for ttl, evs in (("Case events", case_rows), ("Key changes affecting this case's signers", key_rows)):
        if evs:
            draw_table([heading(ttl)], table(tcols, theader, [((human_date(ev.time), ev.text, who(ev.actor, names, ev.actor_name),
                                                                f"#{ev.seq}"), False) for ev in evs]))
    _location_picture(pdf, ctx, draw, heading, para, space, t, family, width)

    # -- items, each kept on one page -------------------------------------------------------------
    from .report import _event_rows, _STATUS_WORDS  # noqa: F401 - one wording with the HTML report

    items_title = [heading("Items"), para("Each item below is kept on one page. Capture metadata is what the file "
                                          "states about itself; it is not verified.", 7.5, color=MUTED)]
    for n, p in enumerate(ctx.plan, 1):
        blocks: list[Block] = items_title if n == 1 else [space(4)]  # the heading stays with item 1
        pdf.set_font(family, "B", 11)
        tlines = wrap(f"Item {n}. {p['path'][5:]}", width)

        def title_fn(lines: list[str] = tlines) -> None:
            pdf.set_font(family, "B", 11)
            pdf.set_fill_color(238, 241, 244)
            for ln in lines:
                pdf.cell(width, 6, ln, fill=True, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        blocks.append((len(tlines) * 6 + 1, title_fn))
        thumbs = [th for th in (ctx.thumbs.get(p["sha256"]) or [])[:3] if th.get("jpeg")]
        if thumbs:
            def thumbs_fn(thumbs: list[dict[str, Any]] = thumbs) -> None:
                x, y0 = pdf.l_margin, pdf.get_y()
                for th in thumbs:
                    try:
                        img = pdf.image(io.BytesIO(th["jpeg"]), x=x, y=y0, h=26)
                        x += img.rendered_width + 3
                    except Exception:  # noqa: BLE001 - a thumbnail is optional
                        continue
                pdf.set_y(y0 + 28)
            blocks.append((28.0, thumbs_fn))
        blocks += [kv("File in bundle", p["path"], is_mono=True),
                   kv("Original name(s)", "; ".join(p["original_names"])),
                   kv("Size", human_size(p["size"])),
                   kv("SHA-256", p["sha256"], is_mono=True),
                   kv("SHA-512", p["sha512"], is_mono=True),
                   kv("Verification", "SHA-256 matched the signed ingest record at export")]
        blocks += [kv(label, value) for label, value in meta_rows[p["sha256"]]]
        ic = tl.items.get((ctx.case, p["sha256"]))
        blocks.append(kv("Custody now", holder_line(ic)))
        rows = []
        for r in _event_rows(ctx, p["sha256"], tl):
            ev = by_seq.get(r["seq"])
            what = r["text"] + (f"\n{r['status_words']}" if r["status_words"] else "")
            what += "".join(f"\n{words}" for words, _ in r["links"])
            rec = f"#{r['seq']}" + (f"\nsee {', '.join('#' + str(x) for x in r['related'])}" if r["related"] else "")
            rows.append(((human_date(ev.time) if ev else r["when"], what, r["who"], rec), r["status"] == "pending"))
        blocks += table(tcols, theader, rows)
        blocks.append(para(f"End of item {n}.", 7, color=MUTED))
        draw(blocks)
    draw([heading("How to check this report"),
          para("This report is a convenience: it is signed indirectly (its SHA-256 is in the exporter's signed "
               "evidence/bundle.json), but the evidence is the files and records themselves. VERIFY.md in the bundle "
               "walks through every check with standard tools; certification.md, certification.docx and "
               "certification.odt are a draft certification of authenticity for a qualified person to review, "
               "complete and sign.", 8.5)])
    return bytes(pdf.output())


def _axis_ticks(t0: float, t1: float) -> tuple[list[float], Callable[[float], str]]:
    span = max(t1 - t0, 1.0)
    steps = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400]
    step = next((s for s in steps if span / s <= 6), steps[-1])
    first = math.ceil(t0 / step) * step
    ticks = [first + i * step for i in range(int((t1 - first) // step) + 1)]
    if step < 60:
        fmt = "%H:%M:%S"
    elif step < 86400:
        fmt = "%d %b %H:%M"
    else:
        fmt = "%d %b %Y"
    return ticks, lambda x: datetime.fromtimestamp(x, timezone.utc).strftime(fmt)


def _timeline_picture(pdf: Any, ctx: Any, tl: Any, item_events: list[Any], case_rows: list[Any], draw: Any,
                      heading: Any, para: Any, space: Any, t: Any, family: str, width: float, receiver: Any) -> None:
    """One lane per custodian, a time axis, a marker per ingest/transfer/accept/access/export;
    a transfer is an arrow from the sender's lane to the receiver's (dashed while pending)."""
    evs = sorted([ev for ev in item_events + case_rows if ev.type in _MARK and _ts(ev.time) is not None],
                 key=lambda ev: ev.seq)
    if not evs:
        return
    lanes: list[str] = []
    for ev in evs:
        for k in ([ev.actor] + ([ev.body["to"]] if ev.type == "transfer" and isinstance(ev.body.get("to"), str) else [])):
            if k not in lanes:
                lanes.append(k)
    lanes = lanes[:12]
    names = tl.names
    lane_h, left, top_pad = 11.0, 38.0, 4.0
    plot_w = width - left - 4
    height = top_pad + lane_h * len(lanes) + 12 + 10
    times = [_ts(ev.time) or 0.0 for ev in evs]
    t0, t1 = min(times), max(times)
    pad = max((t1 - t0) * 0.04, 1.0)
    t0, t1 = t0 - pad, t1 + pad

    def x_of(ts: float) -> float:
        return pdf.l_margin + left + (ts - t0) / (t1 - t0) * plot_w

    def fn() -> None:
        y0 = pdf.get_y()
        lane_y = {k: y0 + top_pad + lane_h * (i + 0.5) for i, k in enumerate(lanes)}
        pdf.set_font(family, "", 7.5)
        for k, y in lane_y.items():
            pdf.set_draw_color(225, 229, 234)
            pdf.line(pdf.l_margin + left, y, pdf.l_margin + left + plot_w, y)
            pdf.set_text_color(27, 31, 36)
            nm = names.get(k) or f"key {k[:8]}"
            pdf.set_xy(pdf.l_margin, y - 2)
            pdf.cell(left - 2, 4, t(nm if pdf.get_string_width(t(nm)) < left - 3 else nm[:18] + "…"), align="R")
        axis_y = y0 + top_pad + lane_h * len(lanes) + 1
        pdf.set_draw_color(91, 101, 112)
        pdf.line(pdf.l_margin + left, axis_y, pdf.l_margin + left + plot_w, axis_y)
        ticks, label = _axis_ticks(t0, t1)
        pdf.set_font(family, "", 6.5)
        pdf.set_text_color(91, 101, 112)
        for tk in ticks:
            x = x_of(tk)
            pdf.line(x, axis_y, x, axis_y + 1.2)
            pdf.set_xy(x - 12, axis_y + 1.4)
            pdf.cell(24, 3, label(tk), align="C")
        pdf.set_xy(pdf.l_margin + left, axis_y + 4.5)
        pdf.cell(plot_w, 3, "time (UTC)", align="C")
        seen: set[tuple[str, str, int]] = set()
        for ev in evs:
            ts = _ts(ev.time) or 0.0
            x, y = x_of(ts), lane_y.get(ev.actor)
            if y is None:
                continue
            key = (ev.actor, ev.type, int(x * 2))
            rgb = _MARK[ev.type][0]
            pdf.set_draw_color(*rgb)
            pdf.set_fill_color(*rgb)
            if ev.type == "transfer":
                ty = lane_y.get(ev.body.get("to"))
                if ty is not None:
                    pdf.set_line_width(0.35)
                    if ev.status != "accepted":
                        pdf.set_dash_pattern(dash=1.2, gap=0.8)
                    tip = ty - 1.4 if ty > y else ty + 1.4
                    pdf.line(x, y, x, tip)
                    pdf.set_dash_pattern()
                    d = 1.2 if ty > y else -1.2
                    pdf.polygon([(x - 0.9, tip - d), (x + 0.9, tip - d), (x, tip)], style="F")
                    pdf.set_line_width(0.2)
                    if key not in seen:
                        pdf.set_font(family, "", 6)
                        pdf.set_text_color(*rgb)
                        lab = f"#{ev.seq}" + ("" if ev.status == "accepted" else " (pending)")
                        lw = pdf.get_string_width(lab) + 1
                        right = x + 0.8 + lw > pdf.l_margin + left + plot_w + 4
                        pdf.set_xy(x - 0.8 - lw if right else x + 0.8, (y + ty) / 2 - 1.5)
                        pdf.cell(lw, 3, lab)
            if key in seen:
                continue
            seen.add(key)
            if ev.type == "ingest":
                pdf.circle(x, y, 1.1, style="F")
            elif ev.type == "transfer":
                pdf.rect(x - 0.9, y - 0.9, 1.8, 1.8, style="F")
            elif ev.type == "transfer-accept":
                pdf.polygon([(x, y - 1.3), (x + 1.3, y), (x, y + 1.3), (x - 1.3, y)], style="F")
            elif ev.type == "access":
                pdf.circle(x, y, 1.0, style="D")
            else:
                pdf.polygon([(x - 1.2, y + 1.0), (x + 1.2, y + 1.0), (x, y - 1.2)], style="F")
        # legend
        ly = axis_y + 9
        lx = pdf.l_margin + left
        pdf.set_font(family, "", 6.5)
        for typ, (rgb, words) in _MARK.items():
            pdf.set_draw_color(*rgb)
            pdf.set_fill_color(*rgb)
            if typ == "ingest":
                pdf.circle(lx + 1, ly + 1.5, 1.0, style="F")
            elif typ == "transfer":
                pdf.rect(lx + 0.2, ly + 0.7, 1.6, 1.6, style="F")
            elif typ == "transfer-accept":
                pdf.polygon([(lx + 1, ly + 0.3), (lx + 2.2, ly + 1.5), (lx + 1, ly + 2.7), (lx - 0.2, ly + 1.5)], style="F")
            elif typ == "access":
                pdf.circle(lx + 1, ly + 1.5, 0.9, style="D")
            else:
                pdf.polygon([(lx, ly + 2.5), (lx + 2.2, ly + 2.5), (lx + 1.1, ly + 0.4)], style="F")
            pdf.set_text_color(27, 31, 36)
            pdf.set_xy(lx + 3, ly)
            pdf.cell(28, 3, words)
            lx += 4 + pdf.get_string_width(words) + 5
        pdf.set_text_color(27, 31, 36)
        pdf.set_y(y0 + height)

    draw([heading("Custody timeline of the case"),
          para("One lane per custodian; each mark is a signed record at the time it states (UTC). An arrow goes from "
               "the sender's lane to the receiver's: solid when the receiver accepted, dashed while pending.",
               7.5), space(1), (height, fn)])


def _location_picture(pdf: Any, ctx: Any, draw: Any, heading: Any, para: Any, space: Any, t: Any, family: str,
                      width: float) -> None:
    """The capture locations the files state, on plain axes in degrees (no map, no network)."""
    pts: dict[tuple[float, float], list[int]] = {}
    missing = []
    for n, p in enumerate(ctx.plan, 1):
        loc = location_of(ctx.media.get(p["sha256"]))
        if loc is None:
            missing.append(n)
        else:
            pts.setdefault((round(loc[0], 6), round(loc[1], 6)), []).append(n)
    title = [heading("Capture locations"),
             para("Where the files say they were recorded (EXIF GPS or the video's location tag), plotted on plain axes "
                  "in degrees of latitude and longitude, each point labelled with its item number. No map is used. "
                  "This location is what the file states about itself; it is not verified and can be forged.", 7.5),
             space(1)]
    if not pts:
        draw(title + [para("No item of this bundle states a capture location.", 8.5)])
        return
    lats = [a for a, _ in pts]
    lons = [b for _, b in pts]
    mid = (min(lats) + max(lats)) / 2
    kx = max(math.cos(math.radians(mid)), 0.05)  # degrees of longitude are shorter away from the equator
    span = max(max(lats) - min(lats), (max(lons) - min(lons)) * kx, 0.002) * 1.25
    clat, clon = mid, (min(lons) + max(lons)) / 2
    box = min(width - 30, 110.0)
    lat0, lat1 = clat - span / 2, clat + span / 2
    lon0, lon1 = clon - span / 2 / kx, clon + span / 2 / kx
    left = 22.0
    legend = [f"Item{'s' if len(v) > 1 else ''} {', '.join(map(str, v))}: {degrees(*k)}" for k, v in sorted(
        pts.items(), key=lambda kv: kv[1][0])][:40]
    if missing:
        legend.append(f"No location stated: item{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing[:60]))}"
                      + ("…" if len(missing) > 60 else ""))
    height = box + 18

    def fn() -> None:
        x0, y0 = pdf.l_margin + left, pdf.get_y() + 6  # room for the latitude axis label
        pdf.set_draw_color(91, 101, 112)
        pdf.rect(x0, y0, box, box)

        def xy(lat: float, lon: float) -> tuple[float, float]:
            return x0 + (lon - lon0) / (lon1 - lon0) * box, y0 + (lat1 - lat) / (lat1 - lat0) * box

        step = _nice(span / 6)
        dec = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
        pdf.set_font(family, "", 6.5)
        pdf.set_text_color(91, 101, 112)
        v = math.ceil(lat0 / step) * step
        while v <= lat1:
            _, y = xy(v, lon0)
            pdf.set_draw_color(230, 233, 237)
            pdf.line(x0, y, x0 + box, y)
            pdf.set_xy(x0 - left, y - 1.5)
            pdf.cell(left - 1, 3, f"{abs(v):.{dec}f}° {'N' if v >= 0 else 'S'}", align="R")
            v += step
        step_x = _nice(span / kx / 5)
        dec_x = max(0, -int(math.floor(math.log10(step_x)))) if step_x < 1 else 0
        v = math.ceil(lon0 / step_x) * step_x
        while v <= lon1:
            x, _ = xy(lat0, v)
            pdf.set_draw_color(230, 233, 237)
            pdf.line(x, y0, x, y0 + box)
            pdf.set_xy(x - 12, y0 + box + 1)
            pdf.cell(24, 3, f"{abs(v):.{dec_x}f}° {'E' if v >= 0 else 'W'}", align="C")
            v += step_x
        pdf.set_xy(x0, y0 + box + 5)
        pdf.cell(box, 3, "longitude (degrees)", align="C")
        pdf.set_xy(x0 - left, y0 - 4)
        pdf.cell(left + 10, 3, "latitude (degrees)")
        pdf.set_text_color(27, 31, 36)
        for (lat, lon), items in pts.items():
            x, y = xy(lat, lon)
            pdf.set_fill_color(180, 40, 40)
            pdf.circle(x, y, 1.1, style="F")
            pdf.set_font(family, "B", 7)
            lab = ", ".join(map(str, items[:6])) + ("…" if len(items) > 6 else "")
            pdf.set_xy(x + 1.2, y - 3.2)
            pdf.cell(pdf.get_string_width(lab) + 1, 3, lab)
        pdf.set_draw_color(91, 101, 112)
        lx, ly = x0 + box + 4, y0
        pdf.set_font(family, "", 6.5)
        for line in legend:
            pdf.set_xy(lx, ly)
            pdf.multi_cell(width - left - box - 4, 3, t(line), align="L")
            ly = pdf.get_y() + 0.6
            if ly > y0 + box + 8:
                break
        pdf.set_y(y0 + height)

    draw(title + [(height + 2, fn)])


def _nice(x: float) -> float:
    e = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e
