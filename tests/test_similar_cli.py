"""`similar FILE` and ingest's near-duplicate report, through the real CLI, on real media.

Sources are generated videos and photos; their derived copies are made the way copies
happen in the wild (ffmpeg re-encode at a low bitrate, half scale, 5 % crop, first 2 s
trimmed, re-muxed into Matroska; JPEG recompression, half scale, 5 % crop).  Each copy must
find its source as the top match; unrelated media must match nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli
from mediagen import DERIVATIONS, make_jpeg, make_video, requires_ffmpeg

from evidencelock import neardup
from evidencelock.similar import FingerprintIndex
from evidencelock.vault import Vault

pytestmark = requires_ffmpeg

VIDEO_SEEDS = (11, 12)
PHOTO_SEEDS = (21, 22, 23)


def _photo_copy(src: Path, dst: Path, how: str) -> Path:
    img = cv2.imread(str(src))
    h, w = img.shape[:2]
    if how == "recompress":
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, 35])
    elif how == "half":
        cv2.imwrite(str(dst), cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    elif how == "crop5":
        dy, dx = round(h * 0.025), round(w * 0.025)
        cv2.imwrite(str(dst), img[dy : h - dy, dx : w - dx])
    else:  # pragma: no cover
        raise ValueError(how)
    return dst


PHOTO_DERIVATIONS = ("recompress", "half", "crop5")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A vault with 2 videos and 3 photos preserved, their derived copies, and unrelated media."""
    root = tmp_path_factory.mktemp("similar")
    src = root / "sources"
    src.mkdir()
    videos = {s: make_video(src / f"clip{s}.mp4", s, seconds=6) for s in VIDEO_SEEDS}
    photos = {s: make_jpeg(src / f"photo{s}.jpg", s) for s in PHOTO_SEEDS}
    derived = root / "derived"
    derived.mkdir()
    copies: list[tuple[str, Path, Path]] = []  # (derivation, copy, source)
    for s, v in videos.items():
        for name, (fn, suffix) in DERIVATIONS.items():
            dst = derived / f"clip{s}_{name}{suffix}"
            fn(v, dst)
            copies.append((name, dst, v))
    for s, p in photos.items():
        for how in PHOTO_DERIVATIONS:
            copies.append((f"photo-{how}", _photo_copy(p, derived / f"photo{s}_{how}.jpg", how), p))
    other = root / "other"
    other.mkdir()
    unrelated = [make_video(other / "unrelated.mp4", 77, seconds=6), make_jpeg(other / "unrelated.jpg", 78)]
    vault = root / "vault"
    assert run_cli("init", "--custodian", "Field Team A", vault=vault).code == 0
    r = run_cli("ingest", src, "--case", "A", "--json", vault=vault)
    assert r.code == 0, r.stderr
    shas = {Path(o["path"]).name: o["sha256"] for o in r.json()["outcomes"]}
    return {"vault": vault, "copies": copies, "unrelated": unrelated, "shas": shas, "root": root,
            "videos": videos, "photos": photos}


def _similar(world: dict, path: Path, *args: str) -> dict:
    r = run_cli("similar", path, "--json", *args, vault=world["vault"])
    assert r.code == 0, r.stderr
    return r.json()


@pytest.mark.parametrize("derivation", list(DERIVATIONS))
def test_derived_video_finds_its_source_with_segments(world: dict, derivation: str) -> None:
    src = world["videos"][VIDEO_SEEDS[0]]
    copy = next(c for d, c, s in world["copies"] if d == derivation and s == src)
    data = _similar(world, copy)
    assert data["query"]["kind"] == "video" and data["query"]["frames"] >= 3
    top = data["matches"][0]
    assert top["item"] == world["shas"][src.name], data["matches"]
    assert top["names"] == [src.name] and top["cases"] == ["A"] and top["kind"] == "video"
    assert top["distance"] <= 31 and top["segments"]
    seg = top["segments"][0]
    if derivation == "trim2":
        # The copy's first second is the source's third: a constant 2 s offset.
        assert 1500 <= seg["item_ms"][0] - seg["query_ms"][0] <= 2500, seg
    else:
        assert abs(seg["item_ms"][0] - seg["query_ms"][0]) <= 500, seg
    assert seg["query_ms"][1] - seg["query_ms"][0] >= 2000
    # No other source is matched by a copy of this one.
    assert all(m["item"] == top["item"] for m in data["matches"])


@pytest.mark.parametrize("derivation", PHOTO_DERIVATIONS)
def test_derived_photo_finds_its_source(world: dict, derivation: str) -> None:
    src = world["photos"][PHOTO_SEEDS[0]]
    copy = next(c for d, c, s in world["copies"] if d == f"photo-{derivation}" and s == src)
    data = _similar(world, copy)
    assert [m["item"] for m in data["matches"]] == [world["shas"][src.name]]
    assert data["matches"][0]["kind"] == "image" and data["matches"][0]["segments"] == []


def test_unrelated_media_match_nothing(world: dict) -> None:
    video, photo = world["unrelated"]
    assert _similar(world, video)["matches"] == []
    r = run_cli("similar", photo, vault=world["vault"])
    assert r.code == 0 and "No near-duplicates found" in r.stdout


def test_human_output_names_item_and_segments(world: dict) -> None:
    src = world["videos"][VIDEO_SEEDS[1]]
    copy = next(c for d, c, s in world["copies"] if d == "trim2" and s == src)
    r = run_cli("similar", copy, vault=world["vault"])
    assert r.code == 0, r.stderr
    assert world["shas"][src.name][:12] in r.stdout and src.name in r.stdout
    # The copy's first seconds are the source's from 0:02 on.  Items are sampled at their
    # keyframes (here every 0.8 s), so a segment may start a fraction of a second in: 0:00.1.
    assert re.search(r"0:00(\.\d)?–0:0\d(\.\d)? ↔ 0:02(\.\d)?–", r.stdout), r.stdout


def test_the_preserved_file_itself_is_marked_identical(world: dict) -> None:
    src = world["photos"][PHOTO_SEEDS[1]]
    data = _similar(world, src)
    assert data["matches"][0]["identical"] is True and data["matches"][0]["distance"] == 0
    assert data["query"]["sha256"] == world["shas"][src.name]


def test_precision_and_recall_over_the_derived_set(world: dict) -> None:
    """Every copy (2 videos x 5 derivations, 3 photos x 3) and every unrelated file is
    searched; recall = copies whose top match is their source; precision = matches that
    are the right source.  Printed for the design note (docs/media.md §5)."""
    vault = Vault.open(world["vault"])
    try:
        hits = relevant = returned = correct = 0
        for _, copy, src in world["copies"]:
            result = neardup.find_similar(vault, copy)
            want = world["shas"][src.name]
            relevant += 1
            hits += bool(result.matches) and result.matches[0].item == want
            returned += len(result.matches)
            correct += sum(m.item == want for m in result.matches)
        for path in world["unrelated"]:
            returned += len(neardup.find_similar(vault, path).matches)
    finally:
        vault.close()
    recall, precision = hits / relevant, correct / max(1, returned)
    print(f"near-duplicates: recall {recall:.3f} ({hits}/{relevant}), precision {precision:.3f} ({correct}/{returned})")
    assert recall == 1.0 and precision == 1.0


def test_case_filter(world: dict) -> None:
    src = world["photos"][PHOTO_SEEDS[2]]
    assert _similar(world, src, "--case", "no-such-case")["matches"] == []  # it is in case A only


def test_bad_input_exits_2_and_says_why(world: dict, tmp_path: Path) -> None:
    (tmp_path / "note.mp4").write_text("not a video\n" * 10)
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases = [(tmp_path / "missing.mp4", "no such file"), (tmp_path, "is a folder"),
             (tmp_path / "note.mp4", "no fingerprint possible: metadata unavailable: unrecognised format"),
             (tmp_path / "empty.jpg", "empty file")]
    for path, expect in cases:
        r = run_cli("similar", path, vault=world["vault"])
        assert r.code == 2 and expect in r.stderr, (path, r.stdout, r.stderr)
    j = run_cli("similar", tmp_path / "note.mp4", "--json", vault=world["vault"])
    assert j.code == 2 and "unrecognised format" in j.json()["error"]["message"]


def test_ingest_reports_near_duplicates_of_a_reencoded_copy(world: dict, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    src = world["videos"][VIDEO_SEEDS[0]]
    batch = tmp_path / "batch"
    batch.mkdir()
    for name in ("reencode", "half"):
        copy = next(c for d, c, s in world["copies"] if d == name and s == src)
        (batch / f"{name}.mp4").write_bytes(copy.read_bytes())
    assert run_cli("init", "--custodian", "T", vault=vault).code == 0
    first = run_cli("ingest", src, "--case", "A", "--json", vault=vault)
    assert first.code == 0 and first.json()["outcomes"][0]["near_duplicates"] == []
    original = first.json()["outcomes"][0]["sha256"]
    r = run_cli("ingest", batch, "--new-case", "--case", "B", "--json", vault=vault)
    assert r.code == 0, r.stderr
    by_name = {Path(o["path"]).name: o for o in r.json()["outcomes"]}
    for name, other in (("reencode.mp4", "half.mp4"), ("half.mp4", "reencode.mp4")):
        nds = by_name[name]["near_duplicates"]
        # Against the item already in the vault, and against the copy preserved in this run.
        assert {nd["item"] for nd in nds} == {original, by_name[other]["sha256"]}, nds
        nd = next(nd for nd in nds if nd["item"] == original)
        assert nd["kind"] == "video" and nd["distance"] <= 31 and nd["segments"]
        assert set(nd) == {"item", "distance", "kind", "segments", "names"}
        assert nd["names"] == [src.name]  # the name the matched item was ingested under
        assert set(nd["segments"][0]) == {"query_ms", "item_ms"}
    # The human output names it too.
    again = tmp_path / "again"
    again.mkdir()
    trim = next(c for d, c, s in world["copies"] if d == "trim2" and s == src)
    (again / "trim.mp4").write_bytes(trim.read_bytes())
    h = run_cli("ingest", again, "--new-case", "--case", "C", vault=vault)
    assert h.code == 0, h.stderr
    # One summary line naming both files (not hashes); details with --verbose.
    assert len([ln for ln in h.stderr.splitlines() if "near-duplicate pair" in ln]) == 1, h.stderr
    assert "trim.mp4 ~ " in h.stderr and "--verbose" in h.stderr, h.stderr
    assert original[:16] not in h.stderr


def test_index_cache_is_used_updated_and_rebuilt(world: dict, tmp_path: Path) -> None:
    import shutil

    vault_dir = tmp_path / "vault"
    shutil.copytree(world["vault"], vault_dir)  # a vault with a cache, built by its ingest
    cache = vault_dir / "index" / "fingerprints.npz"
    assert cache.is_file()
    photo = world["photos"][PHOTO_SEEDS[0]]
    copy = next(c for d, c, s in world["copies"] if d == "photo-half" and s == photo)
    with Vault.open(vault_dir) as v:
        index, info = neardup.load_index(v)
        assert info.cache == "hit" and info.items == len(VIDEO_SEEDS) + len(PHOTO_SEEDS)
        fresh, _ = neardup.load_index(v, use_cache=False, write_cache=False)
        fp = {"kind": "image", "hash": index._bytes[0].tobytes().hex(), "quality": 100}
        assert index.query(fp) == fresh.query(fp)
    assert run_cli("ingest", world["unrelated"][1], "--new-case", "--case", "Z", vault=vault_dir).code == 0
    with Vault.open(vault_dir) as v:
        assert neardup.load_index(v)[1].cache == "hit"  # the ingest brought it up to date
        # The ledger grew behind the cache's back (e.g. an ingest with --no-media elsewhere).
        neardup._save(index, cache, {"format": neardup.CACHE_FORMAT, "origin": v.config.origin,
                                     "tail_size": info.tail_size, "tail_hash": _hash_at(v, info.tail_size - 1),
                                     "media_items": info.items})
        _, uinfo = neardup.load_index(v)
        assert uinfo.cache == "updated" and uinfo.items == info.items + 1
    # Bytes preserved without fingerprints (--no-media) are still reported: same bytes.
    video = world["unrelated"][0]
    assert run_cli("ingest", video, "--new-case", "--case", "Z", "--no-media", vault=vault_dir).code == 0
    (m,) = _similar({"vault": vault_dir}, video)["matches"]
    assert m["identical"] is True and m["names"] == [video.name] and m["cases"] == ["Z"]
    # A damaged (or tampered) cache is never trusted: it is rebuilt from the ledger database.
    cache.write_bytes(b"PK\x03\x04 not really a zip")
    data = _similar({"vault": vault_dir}, copy)
    assert data["index"]["cache"] == "rebuilt" and len(data["matches"]) == 1
    with Vault.open(vault_dir) as v:
        assert neardup.load_index(v)[1].cache == "hit"
        assert neardup.load_index(v, use_cache=False)[1].cache == "rebuilt"  # similar --rebuild-index


def _hash_at(v: Vault, seq: int) -> str:
    from evidencelock import schema

    with v.ledger.reader() as conn:
        return conn.execute(schema.entries.select().where(schema.entries.c.seq == seq)).one().entry_hash


def test_cache_round_trip_agrees_with_a_fresh_index(tmp_path: Path) -> None:
    """The cached arrays (sorted chunk tables included) answer exactly as the index they
    were saved from, past the size where the index sorts its tables."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (12_000, 32), dtype=np.uint8)
    index = FingerprintIndex()
    for i in range(0, len(base), 60):
        index.add(f"{i:064x}", {"kind": "video", "frames": [
            {"ms": k * 1000, "hash": base[j].tobytes().hex(), "quality": 90} for k, j in enumerate(range(i, i + 60))]})
    index.query({"kind": "image", "hash": base[0].tobytes().hex(), "quality": 100})  # sorts the tables
    index.add(f"{99999:064x}", {"kind": "image", "hash": base[5].tobytes().hex(), "quality": 100})  # unsorted tail
    path = tmp_path / "fp.npz"
    neardup._save(index, path, {"format": neardup.CACHE_FORMAT})
    loaded = neardup._load(path, min_quality=50)
    assert loaded is not None
    again, meta = loaded
    assert meta["built"] >= 12_000 and again.hash_count == index.hash_count
    for k in range(30):
        q = base[int(rng.integers(0, len(base)))].copy()
        q[: k % 4] ^= 0x21
        fp = {"kind": "video", "frames": [{"ms": 0, "hash": q.tobytes().hex(), "quality": 100},
                                          {"ms": 1000, "hash": base[(k * 61) % len(base)].tobytes().hex(), "quality": 100}]}
        assert again.query(fp, threshold=31) == index.query(fp, threshold=31) == index.query(fp, _brute_force=True)
    # Structure is checked before use: an out-of-range row is refused, not indexed.
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["item"][0] = 10**6
    np.savez(path, **arrays)
    assert neardup._load(path, min_quality=50) is None
    meta_bad = json.loads(str(arrays["meta"]))
    assert meta_bad["format"] == neardup.CACHE_FORMAT
