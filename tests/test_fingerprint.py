"""Derived copies are found, unrelated media are not: precision and recall over real files.

Sources are generated videos and photos; derivations are what happens to evidence on its way
to us (re-encoded by a messenger, scaled to half size, cropped 5 %, first 2 s trimmed,
re-muxed into Matroska; photos re-compressed, halved, cropped, rotated through EXIF).
"""

from __future__ import annotations

import io
from pathlib import Path

import piexif
import pytest
from PIL import Image

from evidencelock.media import extract
from evidencelock.similar import FingerprintIndex

from mediagen import DERIVATIONS, ffmpeg, make_jpeg, make_video, requires_ffmpeg

SOURCES = (11, 12, 13)
DISTRACTORS = (21, 22, 23)


@pytest.fixture(scope="module")
def video_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("videos")
    sources = {f"src{s}": make_video(base / f"src{s}.mp4", s, seconds=6) for s in SOURCES}
    derived: dict[str, tuple[str, Path]] = {}
    for sid, path in sources.items():
        for name, (fn, suffix) in DERIVATIONS.items():
            out = base / f"{sid}_{name}{suffix}"
            fn(path, out)
            derived[f"{sid}_{name}"] = (sid, out)
    distractors = {f"other{s}": make_video(base / f"other{s}.mp4", s, seconds=5) for s in DISTRACTORS}
    return {"sources": sources, "derived": derived, "distractors": distractors}


def _precision_recall(index: FingerprintIndex, queries: dict[str, tuple[str | None, Path]]) -> tuple[float, float, int]:
    tp = fp = fn = top_ok = 0
    for qid, (expected, path) in queries.items():
        report = extract(path)
        assert report.fingerprints, (qid, report.errors)
        found = [m.item_id for m in index.query(report.fingerprints)]
        if expected is not None:
            tp += expected in found
            fn += expected not in found
            top_ok += bool(found) and found[0] == expected
        fp += sum(1 for f in found if f != expected)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, top_ok


@requires_ffmpeg
def test_video_derivations_found(video_set: dict[str, object]) -> None:
    index = FingerprintIndex()
    for sid, path in video_set["sources"].items():  # type: ignore[union-attr]
        index.add(sid, extract(path).fingerprints)
    queries: dict[str, tuple[str | None, Path]] = dict(video_set["derived"])  # type: ignore[arg-type]
    queries.update({oid: (None, p) for oid, p in video_set["distractors"].items()})  # type: ignore[union-attr]
    precision, recall, top_ok = _precision_recall(index, queries)
    print(f"\nvideo fingerprint: precision={precision:.3f} recall={recall:.3f} "
          f"top-1={top_ok}/{len(video_set['derived'])} over {len(queries)} queries")  # type: ignore[arg-type]
    assert precision >= 0.95
    assert recall >= 0.9
    assert top_ok == len(video_set["derived"])  # type: ignore[arg-type]


@requires_ffmpeg
def test_trimmed_copy_segment_offset(video_set: dict[str, object]) -> None:
    index = FingerprintIndex()
    sid = "src11"
    index.add(sid, extract(video_set["sources"][sid]).fingerprints)  # type: ignore[index]
    trimmed = extract(video_set["derived"]["src11_trim2"][1]).fingerprints  # type: ignore[index]
    (match,) = index.query(trimmed)
    assert match.item_id == sid and match.kind == "video"
    (q0, q1), (i0, i1) = match.segments[0]
    assert 1800 <= i0 - q0 <= 2200  # the copy starts 2 s into the original
    # and the other way round: the original queried against the trimmed copy
    back = FingerprintIndex()
    back.add("trimmed", trimmed)
    (m2,) = back.query(extract(video_set["sources"][sid]).fingerprints)  # type: ignore[index]
    assert m2.item_id == "trimmed"


def _jpeg_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_photo_derivations_found(tmp_path: Path) -> None:
    index = FingerprintIndex()
    queries: dict[str, tuple[str | None, Path]] = {}
    for seed in SOURCES:
        src = make_jpeg(tmp_path / f"p{seed}.jpg", seed, size=(800, 600))
        index.add(f"p{seed}", extract(src).fingerprints)
        img = Image.open(src)
        w, h = img.size
        variants = {
            "q30": _jpeg_bytes(img, quality=30),
            "half": _jpeg_bytes(img.resize((w // 2, h // 2)), quality=85),
            "crop5": _jpeg_bytes(img.crop((w // 40, h // 40, w - w // 40, h - h // 40)), quality=85),
            # pixels stored rotated, EXIF orientation 6 says "rotate back on display"
            "exif-rot": _jpeg_bytes(img.transpose(Image.Transpose.ROTATE_90), quality=85,
                                    exif=piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}})),
        }
        for name, data in variants.items():
            path = tmp_path / f"p{seed}_{name}.jpg"
            path.write_bytes(data)
            queries[f"p{seed}_{name}"] = (f"p{seed}", path)
    for seed in DISTRACTORS:
        queries[f"other{seed}"] = (None, make_jpeg(tmp_path / f"o{seed}.jpg", seed, size=(800, 600)))
    precision, recall, top_ok = _precision_recall(index, queries)
    print(f"\nphoto fingerprint: precision={precision:.3f} recall={recall:.3f} top-1={top_ok}/{len(SOURCES) * 4}")
    assert precision >= 0.95 and recall >= 0.9
    assert top_ok == len(SOURCES) * 4


# -- format v2: keyframe sampling against copies with other keyframes ---------------------------


def _x264(src: Path, dst: Path, *args: str) -> Path:
    ffmpeg("-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-an", *args, str(dst))
    return dst


@pytest.fixture(scope="module")
def gop_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """30 fps clips whose keyframes fall at different times: a phone-like original every 0.5 s
    (-g 15), a copy every 1.5 s (-g 45), copies trimmed at 2.3 s (not a keyframe, not a whole
    second; scene-cut keyframes off, so no cut re-aligns the samples), and the reverse."""
    base = tmp_path_factory.mktemp("gop")
    raw = make_video(base / "raw.mp4", 31, seconds=8, fps=30)
    out = {"g15": _x264(raw, base / "g15.mp4", "-g", "15", "-b:v", "1M")}
    out["g45"] = _x264(out["g15"], base / "g45.mp4", "-g", "45", "-b:v", "300k")
    out["g45-src"] = _x264(raw, base / "g45-src.mp4", "-g", "45", "-b:v", "1M")
    out["g15-of-g45"] = _x264(out["g45-src"], base / "g15-of-g45.mp4", "-g", "15", "-b:v", "300k")
    ffmpeg("-ss", "2.3", "-i", str(out["g15"]), "-c:v", "libx264", "-preset", "veryfast", "-an", "-g", "30",
           "-sc_threshold", "0", str(base / "trim23.mp4"))
    out["trim23"] = base / "trim23.mp4"
    ffmpeg("-ss", "2.3", "-i", str(out["g15"]), "-c:v", "libx264", "-preset", "veryfast", "-an",
           str(base / "trim23-longgop.mp4"))
    out["trim23-longgop"] = base / "trim23-longgop.mp4"
    out["other"] = _x264(make_video(base / "other-raw.mp4", 32, seconds=8, fps=30), base / "other.mp4", "-g", "15")
    return out


@requires_ffmpeg
def test_sampling_follows_the_keyframes(gop_set: dict[str, Path]) -> None:
    short = extract(gop_set["g15"]).fingerprints
    assert short["version"] == 2 and short["sampling"] == "keyframes"
    times = [f["ms"] for f in short["frames"]]
    # Keyframes every 0.5 s, one hashed per second: never closer than 0.75 s, never further than 1.25 s.
    assert times[0] == 0 and all(750 <= b - a <= 1250 for a, b in zip(times, times[1:])), times
    assert extract(gop_set["g45"]).fingerprints["sampling"] in ("interval", "mixed")  # 1.5 s GOPs are decoded in full


@requires_ffmpeg
@pytest.mark.parametrize(("source", "copy"), [("g15", "g45"), ("g45", "g15"), ("g45-src", "g15-of-g45"),
                                              ("g15-of-g45", "g45-src")])
def test_copy_with_other_keyframes_matches_as_recorded(gop_set: dict[str, Path], source: str, copy: str) -> None:
    """What ingest records (sparse samples on both sides) still matches across GOP sizes."""
    index = FingerprintIndex()
    index.add(source, extract(gop_set[source]).fingerprints)
    index.add("other", extract(gop_set["other"]).fingerprints)
    matches = index.query(extract(gop_set[copy]).fingerprints)
    assert [m.item_id for m in matches] == [source], matches
    assert matches[0].score >= 0.6 and abs(matches[0].segments[0][1][0] - matches[0].segments[0][0][0]) <= 500


@requires_ffmpeg
@pytest.mark.parametrize("copy", ["trim23", "trim23-longgop"])
def test_trim_at_a_fraction_of_a_second_is_found_by_a_query(gop_set: dict[str, Path], copy: str) -> None:
    """A 2.3 s trim puts every sample of the copy 0.3 s (or more) from the original's; this clip
    pans 9 % of its width per second, so sparse samples differ by 50+ bits.  A query samples
    densely (every 100 ms), so one of its frames is within 50 ms of each indexed sample."""
    index = FingerprintIndex()
    for name in ("g15", "g45", "other"):
        index.add(name, extract(gop_set[name]).fingerprints)
    matches = index.query(extract(gop_set[copy], dense=True).fingerprints)
    assert {m.item_id for m in matches} == {"g15", "g45"}, matches
    for m in matches:
        (q0, _), (i0, _) = m.segments[0]
        assert 2000 <= i0 - q0 <= 2600, m.segments
        assert m.distance <= 31 and m.score >= 0.5
    # And the other way round: the original queried against the trimmed copy as recorded.
    back = FingerprintIndex()
    back.add(copy, extract(gop_set[copy]).fingerprints)
    back.add("other", extract(gop_set["other"]).fingerprints)
    assert [m.item_id for m in back.query(extract(gop_set["g15"], dense=True).fingerprints)] == [copy]


@requires_ffmpeg
def test_dense_query_of_unrelated_footage_matches_nothing(gop_set: dict[str, Path], video_set: dict[str, object]) -> None:
    index = FingerprintIndex()
    for name in ("g15", "g45", "trim23"):
        index.add(name, extract(gop_set[name]).fingerprints)
    for sid, path in video_set["sources"].items():  # type: ignore[union-attr]
        index.add(sid, extract(path).fingerprints)
    assert index.query(extract(gop_set["other"], dense=True).fingerprints) == []
    for oid, path in video_set["distractors"].items():  # type: ignore[union-attr]
        assert index.query(extract(path, dense=True).fingerprints) == [], oid
