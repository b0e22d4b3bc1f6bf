"""The human files a court reads (docs/bundle-format.md §4.7): re-rendered from verified data.

``certification.md``, ``VERIFY.md`` and ``report.html`` are deterministic functions of the
bundle's verified contents (bundle.json, entries, checkpoint, timestamp) plus, for the report
only, the exporter's presentation (``evidence/metadata.json`` and the thumbnails embedded in the
report itself).  The verifier renders them again with the same code and requires byte equality,
so a holder of the exporter key cannot make them say what the signed records do not (issue 9
item 9).  ``report.pdf`` is not re-rendered (fonts and the PDF library vary between machines):
it is pinned by its SHA-256 in bundle.json only, and the verifier says so under "Not established".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from html.parser import HTMLParser
from typing import Any, Mapping

from ..checkpoint import Checkpoint
from ..entry import SignedEntry
from ..errors import EvidenceLockError
from ..keys import PublicKey

__all__ = ["check_human_files", "scan_active_content"]

_SAFE_URL = re.compile(r"\A\s*(data:image/(jpeg|png);base64,|#)", re.I)
_URL_ATTRS = {"src", "href", "action", "formaction", "poster", "srcset", "background", "data", "xlink:href",
              "codebase", "cite", "longdesc", "manifest", "ping", "lowsrc", "dynsrc"}
_ACTIVE_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "link", "form",
                "portal", "svg", "math", "noscript", "template"}


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _ACTIVE_TAGS:
            self.found.append(f"<{tag}> element")
        if tag == "style":
            self._in_style = True
        for name, value in attrs:
            v = value or ""
            if name.startswith("on"):
                self.found.append(f"event-handler attribute {name}= on <{tag}>")
            elif name in _URL_ATTRS and not _SAFE_URL.match(v):
                self.found.append(f"{name}={v[:60]!r} on <{tag}> (only data:image/jpeg|png and #fragment are allowed)")
            elif name == "style" and _css_problem(v):
                self.found.append(f"style attribute on <{tag}> {_css_problem(v)}")
            elif name == "http-equiv":
                self.found.append(f"<meta http-equiv={v[:30]!r}>")
            if "javascript:" in re.sub(r"\s", "", v).lower() or "vbscript:" in re.sub(r"\s", "", v).lower():
                self.found.append(f"script URL in {name}= on <{tag}>")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and _css_problem(data):
            self.found.append(f"<style> {_css_problem(data)}")

    def handle_pi(self, data: str) -> None:
        self.found.append("processing instruction")


def _css_problem(css: str) -> str:
    low = re.sub(r"\s|\\", "", css).lower()
    if "@import" in low:
        return "uses @import"
    if "expression(" in low or "behavior:" in low or "-moz-binding" in low:
        return "uses a scripted CSS property"
    for m in re.finditer(r"url\(([^)]*)\)", low):
        if not m.group(1).strip("'\"").startswith("data:image/"):
            return f"loads url({m.group(1)[:40]})"
    return ""


def scan_active_content(text: str) -> list[str]:
    """Every piece of active content or network reference in ``text`` (HTML), as words; [] if none.

    §4.7: report.html is static: no script, no event handler, no frame or plug-in, no
    refresh, no URL other than an embedded JPEG/PNG ``data:`` image or a ``#`` fragment.
    """
    found: list[str] = []
    low = text.lower()
    for needle in ("<script", "javascript:", "vbscript:", "<iframe", "<object", "<embed"):
        if needle in low:
            found.append(f"{needle!r} appears in the text")
    s = _Scanner()
    try:
        s.feed(text)
        s.close()
    except Exception as exc:  # noqa: BLE001 - html.parser on hostile input: any failure is a refusal
        found.append(f"unparsable HTML ({type(exc).__name__})")
    return found + s.found


class _Thumbs(HTMLParser):
    """The thumbnails report_html embedded, per item section: the exporter's rendering, kept as is."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[dict[str, Any]]] = []
        self._cap: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "item":
            self.sections.append([])
        elif tag == "img" and self.sections and (a.get("src") or "").startswith("data:image/jpeg;base64,"):
            raw = base64.b64decode((a.get("src") or "")[len("data:image/jpeg;base64,"):], validate=True)
            alt = a.get("alt") or ""
            t = alt[len("frame at "):-len(" s")] if alt.startswith("frame at ") and alt.endswith(" s") else None
            self.sections[-1].append({"t": t, "jpeg": raw})


def _context(meta: Mapping[str, Any], entries: Mapping[int, SignedEntry], enrolled: Mapping[str, tuple[PublicKey, int]],
             cp: Checkpoint, signer: PublicKey, stamp: dict[str, Any] | None) -> Any:
    from .handbook import Context

    keys = {kid: k for kid, (k, _) in enrolled.items()}
    exporter = str(meta["exporter"])
    return Context(case=str(meta["case"]), origin=cp.origin, created=str(meta["created"]),
                   software=str(meta["software"]), exporter=exporter, exporter_name=keys[exporter].name,
                   checkpoint=cp, checkpoint_signer=signer, timestamp=stamp, plan=list(meta["items"]),
                   entries=dict(entries), keys=keys, media={}, bag=None)  # type: ignore[arg-type]


def _first_difference(expected: bytes, found: bytes) -> str:
    """The first differing line, shown from a little before its first differing character."""
    end = "(end of file)"
    a, b = expected.decode("utf-8", "replace").split("\n"), found.decode("utf-8", "replace").split("\n")
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    x, y = (a[n] if n < len(a) else end), (b[n] if n < len(b) else end)
    col = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    start = max(0, col - 30)
    cut = (lambda s: ("…" if start else "") + s[start:start + 120]) if end not in (x, y) else (lambda s: s[:120])
    return f"line {n + 1}: expected={cut(x)!r} found={cut(y)!r}"


def check_human_files(src: Any, report: Any, meta: Mapping[str, Any], entries: Mapping[int, SignedEntry],
                      enrolled: Mapping[str, tuple[PublicKey, int]], cp: Checkpoint | None, signer: PublicKey | None,
                      stamp: dict[str, Any] | None, stamp_present: bool) -> None:
    """§4.7: certification.md, VERIFY.md and report.html equal their rendering from verified data;
    report.html holds no active content.  Findings go to ``report``; nothing is raised."""
    from .. import report as render
    from .handbook import _shown, verify_md

    html_text: str | None = None
    if "report.html" in src.sizes:
        try:
            html_text = src.read_small("report.html", 256 << 20).decode("utf-8")
        except (KeyError, OSError, EvidenceLockError, UnicodeDecodeError) as exc:
            report.fail("evidence-report-content", f"unreadable or not UTF-8: {exc!s}", "report.html")
        if html_text is not None:
            found = scan_active_content(html_text)
            for f in found[:20]:
                report.fail("evidence-report-content", f"active content or a network reference: {f}; a static report "
                            "holds none (§4.7): it may run code or show other words when opened", "report.html")
            if found:
                html_text = None
    # Re-rendering compares only bundles whose records verified: otherwise the inputs are not facts.
    if report.failures or cp is None or signer is None:
        return
    if stamp is not None:
        stamp = {"verified": True, "time": stamp["time"], "tsa": stamp["tsa"], "root_sha256": stamp["root_sha256"]}
    elif stamp_present:
        stamp = {"verified": False, "time": "", "tsa": "unknown (no TSA certificate chain was given)", "root_sha256": ""}
    try:
        ctx = _context(meta, entries, enrolled, cp, signer, stamp)
        ctx.custody_paths = list(getattr(report, "custody_paths", []))  # §4.9: from verified upstream parts only
        expected = {"certification.md": ("evidence-certification", _shown(render.certification_md(ctx))),
                    "VERIFY.md": ("evidence-verify-md", _shown(verify_md(ctx)))}
        if html_text is not None:
            media = json.loads(src.read_small("evidence/metadata.json", 64 << 20)).get("items")
            ctx.media = media if isinstance(media, dict) else {}
            thumbs = _Thumbs()
            thumbs.feed(html_text)
            ctx.thumbs = {p["sha256"]: t for p, t in zip(ctx.plan, thumbs.sections) if t}
            expected["report.html"] = ("evidence-report-content", _shown(render.report_html(ctx)))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, binascii.Error, EvidenceLockError, OSError) as exc:
        report.fail("evidence-certification", f"cannot be rendered from the verified records: {type(exc).__name__}: "
                    f"{exc!s:.200}", "certification.md")
        return
    for name, (check, data) in expected.items():
        try:
            found_bytes = src.read_small(name, 256 << 20)
        except KeyError:
            report.fail(check, "missing: every bundle carries it (§4.7)", name)
            continue
        except (OSError, EvidenceLockError) as exc:
            report.fail(check, f"unreadable: {exc!s}", name)
            continue
        if found_bytes != data and _equals_first_v2_rendering(name, found_bytes, ctx, entries):
            report.add(check, True, "equals its rendering from the verified records by the templates of bundle format 2 "
                       "as first published (§4.7: exported before the custody presentation)", name)
            _say_first_v2(report)
        elif found_bytes != data:
            report.fail(check, f"differs from its rendering from the verified records (§4.7), first at "
                        f"{_first_difference(data, found_bytes)}: it states something the signed records do not", name)
        else:
            report.add(check, True, "equals its rendering from the verified records (§4.7)", name)


# Entry types no log had before the custody presentation (issue 10): a bundle holding one was
# exported by the current templates, so the first templates are not accepted for it.
_NEWER_TYPES = frozenset({"transfer-accept", "deletion-request"})


def _equals_first_v2_rendering(name: str, found: bytes, ctx: Any, entries: Mapping[int, SignedEntry]) -> bool:
    """§4.7: certification.md / report.html of a bundle exported before issue 10 equal their
    rendering by the first format-2 templates (frozen in ``_human_v2_0``).  Those files state
    less (no custody chain); they are accepted only for bundles without entry types that are
    newer than those templates, and the verifier says what they do not state."""
    if name not in ("certification.md", "report.html") or any(
            s.entry.type in _NEWER_TYPES or (s.entry.type == "ingest" and "received" in s.entry.body)
            for s in entries.values()):
        return False  # newer entries (acceptances, deletion requests, receipts of imports): current templates only
    from . import _human_v2_0 as first
    from .handbook import _shown

    render = first.certification_md if name == "certification.md" else first.report_html
    try:
        return found == _shown(render(ctx))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return False


def _say_first_v2(report: Any) -> None:
    text = ("The custody chain in the bundle's certification.md / report.html: they were made by the first templates "
            "of bundle format 2 (before the custody presentation) and do not say who received each transfer, whether "
            "it was accepted, or list derivations and accesses; the Custody section of this verifier does.")
    if text not in report.not_established:
        report.not_established.append(text)


def not_established(report: Any, src: Any) -> None:
    """§4.7 (c): what of the report the verifier did not check, in plain words."""
    if "report.html" in src.sizes or "report.pdf" in src.sizes:
        report.not_established.append(
            "The reports' presentation: report.html was re-rendered from the verified records, but its thumbnails and "
            "capture metadata (evidence/metadata.json) are the exporter's rendering of what the files claim, not checked "
            "facts; report.pdf was NOT checked beyond its SHA-256 in the signed bundle.json (it is the exporter's layout "
            "and may say anything the exporter wrote). Rely on this verifier's output, not on the reports.")
    if "certification.docx" in src.sizes or "certification.odt" in src.sizes:
        report.not_established.append(
            "The editable certification (certification.docx, certification.odt): NOT checked beyond its SHA-256 in the "
            "signed bundle.json; certification.md is the text compared with the records. Compare the documents with it "
            "before signing.")
