"""Metadata written into real files comes back exactly: EXIF/GPS/time, video container tags."""

from __future__ import annotations

import io
import json
from pathlib import Path

import piexif
import pytest
from PIL import Image

from evidencelock.errors import FormatError
from evidencelock.fingerprint import hamming_hex
from evidencelock.media import MediaReport, extract

from mediagen import CORPUS, canvas, ffmpeg, gps_rational, make_jpeg, make_video, requires_corpus, requires_ffmpeg


def _floats(value, where="summary"):
    if isinstance(value, float):
        yield where
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _floats(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _floats(v, f"{where}[{i}]")


def _exif(*, gps_time=((11, 1), (0, 1), (5, 1)), software=b"Camera FW 1.0", thumbnail: bytes | None = None):
    zeroth = {
        piexif.ImageIFD.Make: b"Samsung",
        piexif.ImageIFD.Model: b"SM-A515F",
        piexif.ImageIFD.Software: software,
        piexif.ImageIFD.Orientation: 1,
        piexif.ImageIFD.DateTime: b"2023:02:06 14:00:05",
    }
    exif = {
        piexif.ExifIFD.DateTimeOriginal: b"2023:02:06 14:00:05",
        piexif.ExifIFD.OffsetTimeOriginal: b"+03:00",
        piexif.ExifIFD.BodySerialNumber: b"R58N12345",
        piexif.ExifIFD.LensModel: b"Samsung 4.6mm f/1.8",
    }
    gps = {
        piexif.GPSIFD.GPSLatitudeRef: b"N",
        piexif.GPSIFD.GPSLatitude: gps_rational(36.2021),
        piexif.GPSIFD.GPSLongitudeRef: b"E",
        piexif.GPSIFD.GPSLongitude: gps_rational(37.1343),
        piexif.GPSIFD.GPSAltitudeRef: 0,
        piexif.GPSIFD.GPSAltitude: (4125, 10),
        piexif.GPSIFD.GPSImgDirectionRef: b"T",
        piexif.GPSIFD.GPSImgDirection: (27150, 100),
        piexif.GPSIFD.GPSTimeStamp: gps_time,
        piexif.GPSIFD.GPSDateStamp: b"2023:02:06",
    }
    out = {"0th": zeroth, "Exif": exif, "GPS": gps}
    if thumbnail is not None:
        out["1st"] = {piexif.ImageIFD.JPEGInterchangeFormat: 0, piexif.ImageIFD.JPEGInterchangeFormatLength: 0}
        out["thumbnail"] = thumbnail
    return out


def _thumb(seed: int) -> bytes:
    import cv2

    img = Image.fromarray(cv2.cvtColor(canvas(seed, 640, 480), cv2.COLOR_BGR2RGB)).resize((160, 120))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def test_exif_gps_time_round_trip(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "photo.jpg", 7, exif=_exif(thumbnail=_thumb(7)))
    report = extract(path, mtime="2023-02-06T11:30:00Z")
    assert report.kind == "image" and report.errors == []
    s = report.summary
    assert s["camera"] == {
        "make": "Samsung", "model": "SM-A515F", "serial": "R58N12345",
        "lens_make": None, "lens_model": "Samsung 4.6mm f/1.8", "lens_serial": None,
    }
    assert s["capture_time"] == "2023-02-06T14:00:05+03:00"
    assert s["capture_time_offset"] == "+03:00"
    assert s["gps"] == {
        "latitude": "36.2021", "longitude": "37.1343", "altitude": "412.5", "direction": "271.5",
        "direction_ref": "T", "map_datum": None, "timestamp": "2023-02-06T11:00:05Z",
    }
    assert (s["width"], s["height"], s["orientation"], s["thumbnail"]) == (640, 480, 1, True)
    assert s["software"] == "Camera FW 1.0"
    assert report.flags == []  # same instant, camera firmware, thumbnail of the same picture
    assert report.raw["exif"]["Image Make"] == "Samsung"
    assert report.raw["exif"]["EXIF OffsetTimeOriginal"] == "+03:00"
    assert list(_floats(report.summary)) == [] and list(_floats(report.fingerprints)) == []
    assert len(report.fingerprints["hash"]) == 64 and report.fingerprints["quality"] >= 50
    assert "exifread/" in report.extractor and "pyav/" in report.extractor
    assert MediaReport.from_json(report.to_json()) == report


def test_exif_inconsistencies_are_flagged(tmp_path: Path) -> None:
    exif = _exif(gps_time=((9, 1), (17, 1), (0, 1)), software=b"Adobe Photoshop 25.0", thumbnail=_thumb(99))
    path = make_jpeg(tmp_path / "edited.jpg", 7, exif=exif)
    report = extract(path, mtime="2023-01-01T00:00:00Z")
    text = "\n".join(report.flags)
    assert "exif-gps-time-mismatch" in text and "2023-02-06T11:00:05" not in text
    assert "editing-software: software=Adobe Photoshop 25.0" in text
    assert "thumbnail-differs" in text
    assert "exif-time-after-mtime" in text


def test_southern_western_gps_negative(tmp_path: Path) -> None:
    exif = _exif()
    exif["GPS"][piexif.GPSIFD.GPSLatitudeRef] = b"S"
    exif["GPS"][piexif.GPSIFD.GPSLongitudeRef] = b"W"
    report = extract(make_jpeg(tmp_path / "sw.jpg", 3, exif=exif))
    assert (report.summary["gps"]["latitude"], report.summary["gps"]["longitude"]) == ("-36.2021", "-37.1343")


def test_kind_by_content_not_extension(tmp_path: Path) -> None:
    jpeg_named_mp4 = make_jpeg(tmp_path / "a.jpg", 1)
    renamed = tmp_path / "holiday.mp4"
    renamed.write_bytes(jpeg_named_mp4.read_bytes())
    assert extract(renamed).kind == "image"
    text = tmp_path / "clip.mp4"
    text.write_text("this is not a video, just a note\n" * 20)
    report = extract(text)
    assert report.kind == "other"
    assert any("unrecognised format" in e for e in report.errors)


@requires_ffmpeg
def test_video_container_tags_round_trip(tmp_path: Path) -> None:
    src = make_video(tmp_path / "src.mp4", 5, seconds=2)
    tagged = tmp_path / "tagged.mp4"
    ffmpeg("-i", str(src), "-c", "copy", "-metadata", "creation_time=2024-03-01T12:34:56Z",
           "-metadata", "location=+36.2021+037.1343/", "-metadata:s:v:0", "rotate=90", str(tagged))
    report = extract(tagged, mtime="2024-03-02T00:00:00Z")
    assert report.kind == "video" and report.errors == []
    s = report.summary
    assert s["creation_time"] == "2024-03-01T12:34:56Z"
    assert s["location"] == {"latitude": "36.2021", "longitude": "37.1343", "altitude": None}
    assert s["location_raw"] == "+36.2021+037.1343/"
    assert s["rotation"] == 90
    assert 1900 <= s["duration_ms"] <= 2100
    (video,) = [st for st in s["streams"] if st["type"] == "video"]
    assert (video["width"], video["height"], video["frame_rate"], video["codec"]) == (320, 240, "15", "mpeg4")
    assert report.raw["container"]["tags"]["location"] == "+36.2021+037.1343/"
    assert report.flags == []
    assert list(_floats(report.summary)) == []
    frames = report.fingerprints["frames"]
    # Format v2 samples this re-muxed OpenCV clip at its keyframes (every 0.8 s).
    assert report.fingerprints["sampling"] == "keyframes" and [f["ms"] for f in frames][:2] == [0, 800]
    late = extract(tagged, mtime="2024-02-01T00:00:00Z")
    assert any(f.startswith("creation-time-after-mtime") for f in late.flags)


def test_report_json_checks_structure() -> None:
    good = MediaReport(kind="image", summary={"gps": {"latitude": "1.5"}})
    assert MediaReport.from_json(good.to_json()) == good
    with pytest.raises(FormatError, match="floats are not allowed"):
        MediaReport.from_json(json.dumps({"kind": "image", "summary": {"gps": {"latitude": 1.5}}}))
    with pytest.raises(FormatError, match="kind"):
        MediaReport.from_json('{"kind": "spreadsheet"}')
    with pytest.raises(FormatError, match="not JSON"):
        MediaReport.from_json("{")


@requires_corpus
def test_corpus_camera_photos() -> None:
    canon = extract(CORPUS / "photos" / "Canon_40D.jpg")
    assert canon.summary["camera"]["make"] == "Canon"
    assert canon.summary["camera"]["model"] == "Canon EOS 40D"
    assert canon.summary["capture_time"] == "2008-05-30T15:56:01.00"
    assert "editing-software: software=GIMP 2.4.5" in canon.flags
    nikon = extract(CORPUS / "photos" / "Nikon_D70.jpg")
    assert nikon.summary["camera"]["model"] == "NIKON D70"
    broken = extract(CORPUS / "photos" / "corrupted.jpg")
    assert broken.kind == "image" and broken.summary["camera"]["make"] == "OLYMPUS IMAGING CORP."


@requires_corpus
def test_corpus_orientation_corrected_fingerprints() -> None:
    """All eight EXIF orientations of one picture hash alike once corrected."""
    for shape in ("landscape", "portrait"):
        reports = [extract(CORPUS / "photos" / "orientation" / f"{shape}_{i}.jpg") for i in range(1, 9)]
        assert [r.summary["orientation"] for r in reports] == list(range(1, 9))
        ref = reports[0].fingerprints["hash"]
        assert all(hamming_hex(ref, r.fingerprints["hash"]) <= 31 for r in reports), shape


@requires_corpus
def test_corpus_c2pa() -> None:
    signed = extract(CORPUS / "c2pa" / "C.jpg")
    c2pa = signed.summary["c2pa"]
    assert c2pa["present"] is True
    assert c2pa["signer"] == "C2PA Signer"
    assert c2pa["claim_generator"].startswith("make_test_images/")
    assert c2pa["validation_state"] in ("Valid", "Trusted")
    assert "claim_generator" in signed.raw["c2pa"]
    plain = extract(CORPUS / "c2pa" / "no_manifest.jpg")
    assert plain.summary["c2pa"] is None and plain.errors == []


@requires_corpus
def test_corpus_videos() -> None:
    sample = extract(CORPUS / "video" / "sample.mp4")
    assert sample.kind == "video" and sample.errors == []
    assert sample.summary["creation_time"] == "2016-02-06T00:53:22Z"
    (video,) = [st for st in sample.summary["streams"] if st["type"] == "video"]
    assert (video["width"], video["height"], video["frame_rate"]) == (1920, 1080, "24000/1001")
    webm = extract(CORPUS / "video" / "test.webm")
    assert webm.kind == "video" and webm.fingerprints["frames"]
