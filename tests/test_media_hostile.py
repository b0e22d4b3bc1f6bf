"""Hostile and broken files: every one yields a report with a named error, never an exception
or a hang.  Native-decoder failures (hang, abort, memory blow-up, garbage output) are
simulated with the worker's test hook, since a real crashing file for today's decoders would
be a zero-day."""

from __future__ import annotations

import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import piexif
import pytest

from evidencelock.media import extract

from mediagen import make_jpeg, make_video

HOOK = "EVIDENCELOCK_MEDIA_TEST_HOOK"


def _timed(path: Path, **kw: object):
    t = time.monotonic()
    report = extract(path, **kw)  # type: ignore[arg-type]
    return report, time.monotonic() - t


def _exif_jpeg(tmp_path: Path) -> Path:
    exif = {"0th": {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"X1"},
            "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2022:01:01 10:00:00"}}
    return make_jpeg(tmp_path / "good.jpg", 4, exif=exif)


def _has(report, text: str) -> bool:
    return any(text in e for e in report.errors)


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    report = extract(empty)
    assert report.kind == "other" and _has(report, "empty file (0 bytes)")


def test_missing_file_is_a_named_error(tmp_path: Path) -> None:
    report = extract(tmp_path / "nope.mp4")
    assert _has(report, "cannot read file (FileNotFoundError")


def test_text_named_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "attack.mp4"
    fake.write_bytes(b"<html><script>alert(1)</script></html>\n")
    report = extract(fake)
    assert report.kind == "other" and _has(report, "unrecognised format")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _exif_jpeg(tmp_path).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    report = extract(cut)
    assert report.kind == "image"
    assert report.summary["camera"]["make"] == "Acme"  # metadata before the cut survives
    assert _has(report, "fingerprint unavailable: image undecodable")


def test_truncated_mp4(tmp_path: Path) -> None:
    data = make_video(tmp_path / "v.mp4", 3, seconds=2).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    report = extract(cut)
    assert report.kind == "video"
    assert report.errors and report.errors[0].startswith("metadata unavailable: container unreadable")


def _app1_exif(jpeg: bytes, tiff: bytes) -> bytes:
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_exif_ifd_loop(tmp_path: Path) -> None:
    """IFD0's next-IFD pointer points back at IFD0, and its ExifOffset points at itself."""
    plain = make_jpeg(tmp_path / "plain.jpg", 5).read_bytes()
    entries = [
        struct.pack(">HHI4s", 0x010F, 2, 4, b"Loo\x00"),  # Make, ASCII, inline
        struct.pack(">HHII", 0x8769, 4, 1, 8),  # ExifOffset -> IFD0 again
    ]
    ifd = struct.pack(">H", len(entries)) + b"".join(entries) + struct.pack(">I", 8)
    looped = tmp_path / "loop.jpg"
    looped.write_bytes(_app1_exif(plain, b"MM\x00\x2a" + struct.pack(">I", 8) + ifd))
    report, took = _timed(looped, timeout=10)
    assert took < 20
    assert report.kind == "image"
    assert report.fingerprints or report.errors  # recorded either way, never raised


def test_exif_offsets_out_of_range(tmp_path: Path) -> None:
    plain = make_jpeg(tmp_path / "plain.jpg", 6).read_bytes()
    entries = [
        struct.pack(">HHII", 0x010F, 2, 4000, 0xFFFFFF00),  # Make: 4000 chars far past the end
        struct.pack(">HHII", 0x8825, 4, 1, 0x7FFFFFF0),  # GPSInfo -> nowhere
        struct.pack(">HHII", 0x0132, 2, 0xFFFFFFFF, 12),  # DateTime: count overflows
    ]
    ifd = struct.pack(">H", len(entries)) + b"".join(entries) + struct.pack(">I", 0xFFFFFFF0)
    bad = tmp_path / "offsets.jpg"
    bad.write_bytes(_app1_exif(plain, b"MM\x00\x2a" + struct.pack(">I", 8) + ifd))
    report = extract(bad, timeout=10)
    assert report.kind == "image"
    assert report.fingerprints.get("hash")  # the pixels are still fingerprinted


def test_enormous_declared_frame_size(tmp_path: Path) -> None:
    data = bytearray(make_jpeg(tmp_path / "small.jpg", 8).read_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", data, sof + 5, 65500, 65500)  # height, width
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    report = extract(bomb)
    assert report.kind == "image"
    assert _has(report, "fingerprint unavailable: image too large to decode")


def test_hanging_decoder_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _exif_jpeg(tmp_path)
    monkeypatch.setenv(HOOK, "hang")
    report, took = _timed(photo, timeout=1.5)
    assert report.errors == ["metadata unavailable: decoder timed out after 1.5 s"]
    assert report.kind == "image"  # from magic bytes, read by the parent
    assert took < 10


def test_crashing_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _exif_jpeg(tmp_path)
    monkeypatch.setenv(HOOK, "abort")
    report = extract(photo)
    assert _has(report, "worker crashed during decoding (SIGABRT)")
    monkeypatch.delenv(HOOK)
    assert extract(photo).summary["camera"]["make"] == "Acme"  # a fresh worker takes over


def test_garbage_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOOK, "garbage")
    report = extract(_exif_jpeg(tmp_path))
    assert _has(report, "worker returned malformed output")


def test_memory_blow_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _exif_jpeg(tmp_path)
    monkeypatch.setenv(HOOK, "alloc")
    report, took = _timed(photo, memory_limit=1 << 30, timeout=20)
    assert _has(report, "memory limit exceeded (1073741824 bytes)")
    assert took < 25


def test_memory_limit_too_low_for_parsers(tmp_path: Path) -> None:
    report = extract(_exif_jpeg(tmp_path), memory_limit=32 << 20)
    assert report.kind == "image"
    assert report.errors and report.errors[0].startswith("metadata unavailable: worker")
    assert "memory_limit=33554432" in report.errors[0]


def test_concurrent_calls_agree(tmp_path: Path) -> None:
    paths = [make_jpeg(tmp_path / f"p{i}.jpg", 100 + i) for i in range(6)]
    paths.append(make_video(tmp_path / "v.mp4", 9, seconds=2))
    sequential = [extract(p).to_json() for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda p: extract(p).to_json(), paths))
    assert parallel == sequential
