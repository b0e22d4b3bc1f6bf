"""Media through the real CLI: metadata survives ingest + `show`, broken and hostile files are
preserved with their failure named, and real-world corpus files show sensible metadata."""

from __future__ import annotations

from pathlib import Path

import piexif
from conftest import run_cli
from mediagen import (
    CORPUS,
    ffmpeg,
    gps_rational,
    make_jpeg,
    make_video,
    requires_corpus,
    requires_ffmpeg,
)


def _vault(tmp_path: Path) -> Path:
    vault = tmp_path / "vault"
    r = run_cli("init", "--custodian", "Field Team A", vault=vault)
    assert r.code == 0, r.stderr
    return vault


def _ingest(vault: Path, *paths: Path, case: str = "A", env: dict[str, str] | None = None) -> dict[str, dict]:
    r = run_cli("ingest", *paths, "--case", case, "--json", vault=vault, env=env)
    assert r.code == 0, r.stderr
    return {Path(o["path"]).name: o for o in r.json()["outcomes"]}


def _show(vault: Path, sha: str) -> dict:
    r = run_cli("show", sha, "--json", vault=vault)
    assert r.code == 0, r.stderr
    return r.json()


@requires_ffmpeg
def test_metadata_round_trip_through_ingest_and_show(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    exif = {
        "0th": {piexif.ImageIFD.Make: b"Samsung", piexif.ImageIFD.Model: b"SM-A515F"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2023:02:06 14:00:05", piexif.ExifIFD.OffsetTimeOriginal: b"+03:00",
                 piexif.ExifIFD.BodySerialNumber: b"R58N12345"},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: gps_rational(36.2021),
                piexif.GPSIFD.GPSLongitudeRef: b"W", piexif.GPSIFD.GPSLongitude: gps_rational(37.1343),
                piexif.GPSIFD.GPSAltitudeRef: 0, piexif.GPSIFD.GPSAltitude: (4125, 10)},
    }
    make_jpeg(src / "photo.jpg", 7, exif=exif)
    plain = make_video(tmp_path / "plain.mp4", 5, seconds=2)
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata", "creation_time=2024-03-01T12:34:56Z",
           "-metadata", "location=+36.2021-037.1343/", str(src / "clip.mp4"))
    vault = _vault(tmp_path)
    out = _ingest(vault, src)

    photo = _show(vault, out["photo.jpg"]["sha256"])
    s = photo["media"]["summary"]
    assert photo["media"]["kind"] == "image" and photo["media"]["errors"] == []
    assert (s["camera"]["make"], s["camera"]["model"], s["camera"]["serial"]) == ("Samsung", "SM-A515F", "R58N12345")
    assert s["capture_time"] == "2023-02-06T14:00:05+03:00"
    assert (s["gps"]["latitude"], s["gps"]["longitude"], s["gps"]["altitude"]) == ("36.2021", "-37.1343", "412.5")
    assert len(photo["media"]["fingerprints"]["hash"]) == 64
    # The signed ingest entry carries the same normalised summary (not the raw tags).
    (entry,) = [c for c in photo["custody"] if c["type"] == "ingest"]
    assert entry["body"]["media"]["summary"] == s and "raw" not in entry["body"]["media"]

    clip = _show(vault, out["clip.mp4"]["sha256"])
    v = clip["media"]["summary"]
    assert clip["media"]["kind"] == "video" and clip["media"]["errors"] == []
    assert v["creation_time"] == "2024-03-01T12:34:56Z"
    assert v["location"] == {"latitude": "36.2021", "longitude": "-37.1343", "altitude": None}
    (stream,) = [st for st in v["streams"] if st["type"] == "video"]
    assert (stream["width"], stream["height"], stream["codec"]) == (320, 240, "mpeg4")
    fp = clip["media"]["fingerprints"]
    # Format v2: OpenCV writes a keyframe every 12 frames (0.8 s at 15 fps); each is hashed.
    assert fp["version"] == 2 and fp["sampling"] == "keyframes"
    assert [f["ms"] for f in fp["frames"]][:2] == [0, 800]

    # Human `show` presents it readably: where, when, which device.
    r = run_cli("show", out["photo.jpg"]["sha256"][:12], vault=vault)
    assert r.code == 0, r.stderr
    for text in ("Samsung", "SM-A515F", "2023-02-06T14:00:05+03:00", "36.2021", "-37.1343"):
        assert text in r.stdout, text
    r = run_cli("show", out["clip.mp4"]["sha256"][:12], vault=vault)
    assert "2024-03-01T12:34:56Z" in r.stdout and "mpeg4" in r.stdout


def test_malformed_media_is_preserved_and_each_failure_named(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    good_jpeg = make_jpeg(tmp_path / "good.jpg", 3, exif={"0th": {piexif.ImageIFD.Make: b"Acme"}}).read_bytes()
    (src / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    good_mp4 = make_video(tmp_path / "good.mp4", 4, seconds=2).read_bytes()
    (src / "truncated.mp4").write_bytes(good_mp4[: len(good_mp4) // 3])
    (src / "notes.mp4").write_text("meeting notes, not a video\n" * 20)
    (src / "empty.jpg").write_bytes(b"")
    vault = _vault(tmp_path)
    r = run_cli("ingest", src, "--case", "A", vault=vault)
    assert r.code == 0, r.stderr
    assert "4 files, 4 preserved" in r.stdout
    named = {
        "truncated.jpg": "fingerprint unavailable: image undecodable",
        "truncated.mp4": "metadata unavailable: container unreadable",
        "notes.mp4": "metadata unavailable: unrecognised format",
        "empty.jpg": "empty-file",
    }
    for name, text in named.items():
        assert any(name in line and text in line for line in r.stderr.splitlines()), (name, r.stderr)
    out = _ingest(vault, src)  # a rerun records nothing new: the same sources are known
    assert {o["status"] for o in out.values()} == {"already-recorded"}
    for name, text in named.items():
        d = _show(vault, out[name]["sha256"])
        assert d["object_present"] and d["size"] == (src / name).stat().st_size
        media = d["media"] or {}
        recorded = media.get("errors", []) + d["custody"][0]["body"].get("flags", [])
        assert any(text in e for e in recorded), (name, recorded)
    shown = run_cli("show", out["notes.mp4"]["sha256"], vault=vault)
    assert "unrecognised format" in shown.stdout
    assert run_cli("verify", vault=vault).code == 0


def test_a_hanging_decoder_cannot_stop_the_ingest(tmp_path: Path) -> None:
    """A decoder that never returns (simulated: the worker's test hook sleeps forever) is
    killed at the timeout; the files are preserved, the timeout is named on each."""
    src = tmp_path / "in"
    src.mkdir()
    make_jpeg(src / "a.jpg", 1)
    make_video(src / "b.mp4", 2, seconds=1)
    vault = _vault(tmp_path)
    r = run_cli("ingest", src, "--case", "A", "--json", vault=vault, env={"EVIDENCELOCK_MEDIA_TEST_HOOK": "hang"},
                timeout=200)
    assert r.code == 0, r.stderr
    outcomes = {Path(o["path"]).name: o for o in r.json()["outcomes"]}
    for name in ("a.jpg", "b.mp4"):
        o = outcomes[name]
        assert o["status"] == "preserved"
        assert o["media_errors"] == ["metadata unavailable: decoder timed out after 30 s"]
        d = _show(vault, o["sha256"])
        assert d["media"]["errors"] == o["media_errors"] and d["object_present"]
    assert outcomes["a.jpg"]["sha256"] and run_cli("verify", vault=vault).code == 0


@requires_corpus
def test_corpus_ingests_with_sensible_metadata(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    out = _ingest(vault, CORPUS / "photos" / "Canon_40D.jpg", CORPUS / "photos" / "corrupted.jpg",
                  CORPUS / "video", CORPUS / "c2pa")
    assert all(o["status"] == "preserved" for o in out.values()), out
    canon = _show(vault, out["Canon_40D.jpg"]["sha256"])["media"]
    assert canon["summary"]["camera"]["make"] == "Canon" and canon["summary"]["camera"]["model"] == "Canon EOS 40D"
    assert "editing-software: software=GIMP 2.4.5" in canon["flags"]
    broken = _show(vault, out["corrupted.jpg"]["sha256"])["media"]
    assert broken["summary"]["camera"]["make"] == "OLYMPUS IMAGING CORP."
    sample = _show(vault, out["sample.mp4"]["sha256"])["media"]
    assert sample["kind"] == "video" and sample["summary"]["creation_time"] == "2016-02-06T00:53:22Z"
    assert _show(vault, out["test.webm"]["sha256"])["media"]["fingerprints"]["frames"]
    signed = _show(vault, out["C.jpg"]["sha256"])["media"]["summary"]["c2pa"]
    assert signed["present"] is True and signed["signer"] == "C2PA Signer"
    assert signed["validation_state"] in ("Valid", "Trusted")
    assert _show(vault, out["no_manifest.jpg"]["sha256"])["media"]["summary"]["c2pa"] is None
    r = run_cli("show", out["C.jpg"]["sha256"], vault=vault)
    assert "C2PA Signer" in r.stdout and signed["validation_state"] in r.stdout
