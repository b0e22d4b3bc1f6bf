"""certification.docx and certification.odt: the draft certification as a document a lawyer
edits and signs (docs/bundle-format.md §4.7, pinned by digest only).

The statements are those of ``certification.md`` — parsed from its exact text, so the two can
never say different things — plus an introduction to the file list, an annex listing the custody
transfers included (sender, receiver, time, accepted or pending) and a signature block with blanks.

Deterministic: the same export context gives the same bytes (every zip member dated with the
export time, document properties set from the export, no random ids), so a re-export of the same
records is byte-stable.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .lawyer import human_date

__all__ = ["certification_docx", "certification_odt", "cert_blocks", "transfer_rows"]


@dataclass(frozen=True)
class Block:
    kind: str  # "title" | "heading" | "quote" | "para" | "item" | "table" | "blank-line"
    runs: tuple[tuple[str, str], ...] = ()  # (style, text): style "", "b" (bold) or "code"
    level: int = 0  # list nesting for "item"
    rows: tuple[tuple[str, ...], ...] = ()  # "table": header row first


_INLINE = re.compile(r"(\*\*.+?\*\*|`[^`]*`)")
_UNESCAPE = re.compile(r"\\([\\`*\[\]<>|_])")


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot hold control characters: write them as visible escapes (as _text.printable does)."""
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def _runs(text: str) -> tuple[tuple[str, str], ...]:
    """CommonMark as certification.md uses it: **bold**, `code`, backslash escapes."""
    out = []
    for part in _INLINE.split(text):
        if not part:
            continue
        if part.startswith("**") and part.endswith("**") and len(part) > 4:
            out.append(("b", _UNESCAPE.sub(r"\1", part[2:-2])))
        elif part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(("code", part[1:-1]))
        else:
            out.append(("", _UNESCAPE.sub(r"\1", part)))
    return tuple(out)


def _plain(text: str) -> str:
    return "".join(t for _, t in _runs(text))


def _parse_md(md: str) -> list[Block]:
    blocks: list[Block] = []
    cur: dict[str, Any] | None = None
    table: list[tuple[str, ...]] = []

    def flush() -> None:
        nonlocal cur
        if cur is not None:
            blocks.append(Block(cur["kind"], _runs(" ".join(cur["text"])), cur.get("level", 0)))
            cur = None

    def flush_table() -> None:
        if table:
            blocks.append(Block("table", rows=tuple(table)))
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            flush()
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                table.append(tuple(_plain(c) for c in cells))
            continue
        flush_table()
        if not line.strip():
            flush()
            continue
        if line.startswith("# "):
            flush()
            blocks.append(Block("title", _runs(line[2:])))
        elif line.startswith(">"):
            if cur is None or cur["kind"] != "quote":
                flush()
                cur = {"kind": "quote", "text": []}
            cur["text"].append(line[1:].strip())
        elif m := re.match(r"^(\s*)- (.*)$", line):
            flush()
            indent = len(m[1])
            cur = {"kind": "item", "text": [m[2]], "level": 0 if indent == 0 else 1 if indent <= 3 else 2}
        elif cur is not None and line.startswith(" "):
            cur["text"].append(line.strip())  # continuation of a numbered paragraph or list item
        else:
            flush()
            cur = {"kind": "para", "text": [line.strip()]}
    flush()
    flush_table()
    return blocks


def transfer_rows(ctx: Any) -> list[dict[str, Any]]:
    """Every transfer (release) among the included records: time, item, sender, receiver, status."""
    from .report import _custody_timeline, _item_labels, _who
    from .timeline import events_by_seq

    tl = _custody_timeline(ctx)
    by_seq = events_by_seq(tl)
    labels = _item_labels(ctx)
    rows = []
    for seq in sorted(by_seq):
        ev = by_seq[seq]
        if ev.type != "transfer" or ev.case != ctx.case:
            continue
        to = ev.body.get("to")
        acc = next((by_seq[s] for s in ev.related if s in by_seq and by_seq[s].type == "transfer-accept"), None)
        if ev.status == "accepted":
            status = (f"accepted {human_date(acc.time)} by {_who(acc.actor, tl.names, acc.actor_name)} (record #{acc.seq})"
                      if acc else "accepted (on import by another organisation)")
        elif ev.status == "superseded":
            status = "superseded by a later release, never accepted"
        else:
            status = "PENDING: no acceptance signed by the receiver"
        n, name = labels.get(ev.item or "", (0, ev.item or "?"))
        rows.append({"seq": ev.seq, "time": human_date(ev.time), "item": f"{n}. {name}" if n else str(name),
                     "sender": _who(ev.actor, tl.names, ev.actor_name),
                     "receiver": _who(to, tl.names, str(ev.body.get("to_name") or "")) if isinstance(to, str) else "unknown",
                     "status": status, "pending": ev.status == "pending"})
    return rows


def cert_blocks(ctx: Any, md: str) -> list[Block]:
    """The document: certification.md's statements, an introduction to its file list, the
    transfers annex and a signature block."""
    body = _parse_md(md)
    out: list[Block] = []
    for b in body:
        out.append(b)
        if b.kind == "title":
            out.append(Block("para", (("b", "About this document. "), (
                "", "This is the editable form of certification.md in the evidence bundle: the same statements, "
                f"with blanks for the person who certifies. The bundle of case \"{ctx.case}\" holds {len(ctx.plan)} "
                "file(s); paragraph 4 lists each one with its path inside the bundle, its size in bytes, its SHA-256 "
                "digest and the custody records of its ingest. Annex A lists the custody transfers the records "
                "include, with sender, receiver, time and whether the receiver accepted. Review every statement, "
                "complete the blanks, adapt it to the rules of the forum, then sign."))))
        if b.kind == "para" and b.runs and b.runs[0][1].startswith("4. "):
            out.append(Block("para", (("", "File list. Each row below is one file of the bundle: its path inside "
                                       "the bundle (data/…), its size in bytes, its SHA-256 digest (recompute it with "
                                       "sha256sum) and the numbers of the signed custody records that ingested it."),)))
    rows = transfer_rows(ctx)
    out.append(Block("heading", (("", "Annex A. Custody transfers included"),)))
    if rows:
        out.append(Block("para", (("", "Every transfer of an item of this bundle recorded in the included custody "
                                   "records, in the order recorded (times in UTC, as stated by the signer's own "
                                   "clock). A transfer is complete only when the receiver signed its acceptance; a "
                                   "pending transfer does not show that the receiver took custody."),)))
        out.append(Block("table", rows=(("Record", "Time", "Item", "From (sender)", "To (receiver)", "Status"),)
                         + tuple((f"#{r['seq']}", r["time"], r["item"], r["sender"], r["receiver"], r["status"])
                                 for r in rows)))
    else:
        out.append(Block("para", (("", "The included custody records record no transfer of an item of this bundle."),)))
    out.append(Block("heading", (("", "Signature"),)))
    for label in ("Name", "Role / title", "Organisation", "Place", "Date", "Signature"):
        out.append(Block("para", (("b", f"{label}: "), ("", "_" * 40))))
    return out


def _when(ctx: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(ctx.created).replace("Z", "+00:00")).astimezone(timezone.utc).replace(microsecond=0)
    except ValueError:
        return datetime(1980, 1, 1, tzinfo=timezone.utc)


def _fixed_zip(data: bytes, when: datetime) -> bytes:
    """Rewrite a zip with every member dated ``when`` (member order, names, compression kept):
    the same document gives the same bytes on every export."""
    stamp = max((when.year, when.month, when.day, when.hour, when.minute, when.second), (1980, 1, 1, 0, 0, 0))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            new = zipfile.ZipInfo(info.filename, date_time=stamp)
            new.compress_type = info.compress_type
            new.external_attr = 0o644 << 16
            zout.writestr(new, zin.read(info.filename))
    return out.getvalue()


def certification_docx(ctx: Any, md: str) -> bytes:
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH  # noqa: F401 - imported for its side effect-free enum
    from docx.shared import Pt

    doc = Document()
    when = _when(ctx).replace(tzinfo=None)
    cp = doc.core_properties
    cp.title, cp.subject = _xml_safe(f"Draft certification, case {ctx.case}"), "Certification of authenticity (draft)"
    cp.author, cp.last_modified_by, cp.comments = ctx.software, ctx.software, "Generated from certification.md"
    cp.created = cp.modified = when
    cp.last_printed = when
    cp.revision = 1
    normal = doc.styles["Normal"]
    normal.font.name, normal.font.size = "Times New Roman", Pt(11)

    def fill(par: Any, runs: tuple[tuple[str, str], ...]) -> None:
        for style, text in runs:
            r = par.add_run(_xml_safe(text))
            if style == "b":
                r.bold = True
            elif style == "code":
                r.font.name, r.font.size = "Courier New", Pt(9)

    for b in cert_blocks(ctx, md):
        if b.kind == "title":
            fill(doc.add_heading(level=1), b.runs)
        elif b.kind == "heading":
            fill(doc.add_heading(level=2), b.runs)
        elif b.kind == "quote":
            fill(doc.add_paragraph(style="Intense Quote"), b.runs)
        elif b.kind == "item":
            fill(doc.add_paragraph(style="List Bullet" + ("" if b.level == 0 else f" {b.level + 1}")), b.runs)
        elif b.kind == "table":
            tbl = doc.add_table(rows=0, cols=len(b.rows[0]))
            tbl.style = "Table Grid"
            for i, row in enumerate(b.rows):
                cells = tbl.add_row().cells
                for c, text in zip(cells, row):
                    c.text = ""
                    run = c.paragraphs[0].add_run(_xml_safe(text))
                    run.font.size = Pt(8)
                    run.bold = i == 0
                    if re.fullmatch(r"[0-9a-f]{64}", text):
                        run.font.name = "Courier New"
        else:
            fill(doc.add_paragraph(), b.runs)
    buf = io.BytesIO()
    doc.save(buf)
    return _fixed_zip(buf.getvalue(), _when(ctx))


def certification_odt(ctx: Any, md: str) -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.style import ParagraphProperties, Style, TableColumnProperties, TextProperties
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, P, Span

    doc = OpenDocumentText()
    st = doc.styles
    auto = doc.automaticstyles

    def pstyle(name: str, size: str = "11pt", bold: bool = False, indent: str = "0cm", italic: bool = False,
               family: str = "Liberation Serif") -> Style:
        s = Style(name=name, family="paragraph")
        s.addElement(TextProperties(fontsize=size, fontfamily=family, fontweight="bold" if bold else "normal",
                                    fontstyle="italic" if italic else "normal"))
        s.addElement(ParagraphProperties(marginleft=indent, margintop="0.1cm", marginbottom="0.15cm"))
        st.addElement(s)
        return s

    styles = {"title": pstyle("CertTitle", "15pt", True), "heading": pstyle("CertHeading", "13pt", True),
              "quote": pstyle("CertQuote", "10pt", indent="0.8cm", italic=True), "para": pstyle("CertBody"),
              "item0": pstyle("CertItem0", indent="0.6cm"), "item1": pstyle("CertItem1", indent="1.2cm"),
              "item2": pstyle("CertItem2", indent="1.8cm"), "cell": pstyle("CertCell", "8pt"),
              "head": pstyle("CertCellHead", "8pt", True)}
    bold = Style(name="CertBold", family="text")
    bold.addElement(TextProperties(fontweight="bold"))
    code = Style(name="CertCode", family="text")
    code.addElement(TextProperties(fontfamily="Liberation Mono", fontsize="9pt"))
    st.addElement(bold)
    st.addElement(code)

    def fill(el: Any, runs: tuple[tuple[str, str], ...]) -> Any:
        for style, text in runs:
            if style == "b":
                el.addElement(Span(stylename=bold, text=_xml_safe(text)))
            elif style == "code":
                el.addElement(Span(stylename=code, text=_xml_safe(text)))
            else:
                el.addText(_xml_safe(text))
        return el

    ntable = 0
    for b in cert_blocks(ctx, md):
        if b.kind in ("title", "heading"):
            doc.text.addElement(fill(H(outlinelevel=1 if b.kind == "title" else 2, stylename=styles[b.kind]), b.runs))
        elif b.kind == "item":
            doc.text.addElement(fill(P(stylename=styles[f"item{b.level}"]), (("", "\u2022 "),) + b.runs))
        elif b.kind == "table":
            ntable += 1
            tbl = Table(name=f"Table{ntable}")
            for j in range(len(b.rows[0])):
                cs = Style(name=f"T{ntable}C{j}", family="table-column")
                cs.addElement(TableColumnProperties(columnwidth="4.5cm" if len(b.rows[0]) == 4 and j == 2 else "2.8cm"))
                auto.addElement(cs)
                tbl.addElement(TableColumn(stylename=cs))
            for i, row in enumerate(b.rows):
                tr = TableRow()
                for text in row:
                    cell = TableCell(valuetype="string")
                    cell.addElement(P(stylename=styles["head" if i == 0 else "cell"], text=_xml_safe(text)))
                    tr.addElement(cell)
                tbl.addElement(tr)
            doc.text.addElement(tbl)
        else:
            doc.text.addElement(fill(P(stylename=styles[b.kind if b.kind in styles else "para"]), b.runs))
    from odf.dc import Date, Title
    from odf.meta import CreationDate, Generator

    when = _when(ctx).strftime("%Y-%m-%dT%H:%M:%S")
    for el in list(doc.meta.childNodes):  # odfpy's own generator line names its version; ours is fixed
        doc.meta.removeChild(el)
    doc.meta.addElement(Generator(text=_xml_safe(ctx.software)))
    doc.meta.addElement(Title(text=_xml_safe(f"Draft certification, case {ctx.case}")))
    doc.meta.addElement(CreationDate(text=when))
    doc.meta.addElement(Date(text=when))
    buf = io.BytesIO()
    doc.write(buf)
    return _fixed_zip(buf.getvalue(), _when(ctx))
