"""Issue 11, "court-ready report" and "a certification a lawyer edits and signs".

A real vault (photos with camera EXIF and GPS, a video, a text file; an accepted and a pending
transfer between custodians; an access), a real export, the real CLI.  report.pdf is read back
with pdftotext (poppler-utils); certification.docx with python-docx and certification.odt as
its content.xml.  Attacks: an edited docx / odt in a bundle is named by verify-bundle.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import run_cli
from reportworld import CASE, make_world

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("report-court"))


@pytest.fixture(scope="module")
def pages(world) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", str(world["bundle"] / "report.pdf"), "-"], capture_output=True,
                         text=True, check=True).stdout
    return out.split("\f")[:-1] if out.endswith("\f") else out.split("\f")


def _flat(s: str) -> str:
    return " ".join(s.split())


def test_every_page_has_page_n_of_m_and_a_footer_with_case_and_bundle_digest(world, pages):
    digest = hashlib.sha256((world["bundle"] / "manifest-sha256.txt").read_bytes()).hexdigest()
    assert len(pages) >= 3, "the test needs a report of several pages"
    for n, page in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in page, (n, page[-400:])
        assert f"case {CASE}" in page, n
        assert digest in page, (n, page[-400:])  # recomputable: sha256sum manifest-sha256.txt


def test_no_microsecond_timestamps_and_human_dates(pages):
    text = "\n".join(pages)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", text), re.search(r".{40}\d\d:\d\d:\d\d\.\d{6}.{10}", text)
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)
    assert "30 April 2014, 09:00 UTC" in _flat(text)


def test_metadata_has_labels_a_lawyer_understands(pages):
    text = _flat("\n".join(pages))
    for label in ("Camera make DemoCam", "Camera model Field 1", "Recorded (camera clock) 14 March 2022, 07:30:00 (UTC+03:00)",
                  "Location (GPS) 49.99000° N, 36.23000° E", "Duration 3.0 seconds", "Video format MP4/QuickTime", "Image format JPEG",
                  "Picture size 640 × 480 pixels"):
        assert label in text, label
    for internal in ("mov,mp4,m4a", "thumbnail_distance", "capture_time_offset", "bit_rate", "lens_make", "c2pa"):
        assert internal not in text, internal


def test_every_transfer_names_sender_and_receiver(world, pages):
    text = _flat("\n".join(pages))
    section = text[text.index("Custody transfers"):text.index("Custody timeline of the case")]
    b, c, a = world["b"].key_id[:8], world["c"].key_id[:8], world["a"].key_id[:8]
    rows = re.split(r"(?=30 April 2014, 09:00 \d+\. )", section)[1:]
    assert len(rows) == 3, section  # two accepted, one pending
    by_item = {re.search(r"\d+\. (\S+)", r)[1]: r for r in rows}
    for name in ("IMG_0001.JPG", "VID_0001.mp4"):
        row = by_item[name]
        assert "Field Team A (key" in row and a in row and "Lawyer B (key" in row and b in row, row
        assert "Accepted 30 April 2014" in row and "by Lawyer B" in row, row
    row = by_item["statement.txt"]
    assert "Field Team A (key" in row and "Court Registry (key" in row and c in row and "PENDING" in row, row


def test_timeline_and_location_pictures_are_there(pages):
    text = _flat("\n".join(pages))
    assert "Custody timeline of the case" in text and "Acceptance of a transfer" in text and "(pending)" in text
    assert "Capture locations" in text and "latitude (degrees)" in text and "longitude (degrees)" in text
    assert "No location stated: items" in text  # the text file and the video state none


def test_an_items_block_is_on_one_page(world, pages):
    """Each item's header and its last line are on the same page, with enough items to span pages."""
    n_items = len(world["shas"])
    seen_pages = set()
    for n in range(1, n_items + 1):
        heads = [i for i, p in enumerate(pages) if re.search(rf"^\s*Item {n}\. ", p, re.M)]
        ends = [i for i, p in enumerate(pages) if f"End of item {n}." in p]
        assert len(heads) == 1 and heads == ends, (n, heads, ends)
        seen_pages.add(heads[0])
    assert len(seen_pages) >= 4, "items must span several pages for this test to mean something"


# -- the editable certification -----------------------------------------------------------------
def _docx_text(path: Path) -> tuple[str, list[list[list[str]]]]:
    from docx import Document

    d = Document(str(path))
    tables = [[[c.text for c in r.cells] for r in t.rows] for t in d.tables]
    return "\n".join(p.text for p in d.paragraphs), tables


def _odt_text(path: Path) -> str:
    from odf import teletype
    from odf.opendocument import load
    from odf.text import H, P

    doc = load(str(path))
    return "\n".join(teletype.extractText(e) for e in doc.getElementsByType(H) + doc.getElementsByType(P))


def _md_statements(md: str) -> list[str]:
    """Sentences of certification.md, markup removed (the statements both documents must carry),
    taken per paragraph and list item; table rows are checked as tables."""
    out = []
    for block in re.split(r"\n\s*\n|\n(?=\s*- )", md):
        if block.lstrip().startswith("|"):
            continue
        text = " ".join(re.sub(r"^\s*(#|>|- )", "", ln) for ln in block.splitlines())
        text = " ".join(re.sub(r"[`*]|\\(?=.)", "", text).split())
        out += [x for x in re.split(r"(?<=[.:])\s+", text) if len(x) > 25]
    return out


def test_docx_and_odt_carry_the_statements_file_list_and_transfers(world):
    bundle = world["bundle"]
    md = (bundle / "certification.md").read_text()
    docx_text, tables = _docx_text(bundle / "certification.docx")
    odt_text = _odt_text(bundle / "certification.odt")
    odt_xml = zipfile.ZipFile(bundle / "certification.odt").read("content.xml").decode()
    for doc in (_flat(docx_text), _flat(odt_text)):
        assert len(_md_statements(md)) > 40
        for s in _md_statements(md):
            assert s in doc, s
        assert "About this document" in doc and "Annex A. Custody transfers included" in doc
        assert "Signature: ____" in doc and "Name: ____" in doc and "Date: ____" in doc
    file_table = next(t for t in tables if t[0][:3] == ["File", "Size (bytes)", "SHA-256"])
    assert sorted(r[2] for r in file_table[1:]) == sorted(world["shas"].values())
    transfers = next(t for t in tables if t[0][:1] == ["Record"])
    b, c = world["b"].key_id[:8], world["c"].key_id[:8]
    rows = {r[2].split(". ", 1)[1]: r for r in transfers[1:]}
    assert rows["IMG_0001.JPG"][3].startswith("Field Team A") and rows["IMG_0001.JPG"][4] == f"Lawyer B (key {b})"
    assert rows["IMG_0001.JPG"][5].startswith("accepted 30 April 2014")
    assert rows["statement.txt"][4] == f"Court Registry (key {c})" and rows["statement.txt"][5].startswith("PENDING")
    for sha in world["shas"].values():
        assert sha in odt_xml
    assert f"Court Registry (key {c})" in odt_xml and "PENDING" in odt_xml


def test_docx_and_odt_are_deterministic_zips(world):
    """Every member dated with the export time (no wall clock): a re-export of the same records is stable."""
    for name in ("certification.docx", "certification.odt"):
        with zipfile.ZipFile(world["bundle"] / name) as z:
            assert {i.date_time for i in z.infolist()} == {(2014, 4, 30, 9, 0, 26)}, name  # the export time
            names = z.namelist()
            if name.endswith(".odt"):
                assert names[0] == "mimetype" and z.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
                assert z.read("mimetype") == b"application/vnd.oasis.opendocument.text"
    from docx import Document

    created = Document(str(world["bundle"] / "certification.docx")).core_properties.created
    meta = zipfile.ZipFile(world["bundle"] / "certification.docx").read("docProps/core.xml").decode()
    assert created.year == 2014 and "2014-04-30T09:00" in meta


def test_bundle_with_the_documents_verifies_and_pins_them(world):
    r = run_cli("verify-bundle", world["bundle"], "--json")
    assert r.code == 0, r.stdout + r.stderr
    meta = (world["bundle"] / "evidence" / "bundle.json").read_text()
    for name in ("certification.docx", "certification.odt", "report.pdf"):
        assert hashlib.sha256((world["bundle"] / name).read_bytes()).hexdigest() in meta, name
    assert any("certification.docx" in s and "NOT checked beyond its SHA-256" in s for s in r.json()["not_established"])


@pytest.mark.parametrize("name", ["certification.docx", "certification.odt"])
def test_an_edited_certification_document_is_named(world, tmp_path, name):
    """Attack: a signed document's text changed after export (the lawyer's copy swapped)."""
    bag = tmp_path / "bag"
    shutil.copytree(world["bundle"], bag)
    member = "word/document.xml" if name.endswith(".docx") else "content.xml"
    src = bag / name
    with zipfile.ZipFile(src) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info, data in items:
            if info.filename == member:
                assert b"Lawyer B" in data
                data = data.replace(b"Lawyer B", b"Lawyer X")
            z.writestr(info, data)
    src.write_bytes(out.getvalue())
    r = run_cli("verify-bundle", bag, "--json")
    assert r.code == 1, r.stdout + r.stderr
    fails = [c for c in r.json()["checks"] if not c["ok"]]
    assert any(c.get("subject") == name for c in fails), fails
