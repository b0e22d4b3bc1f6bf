"""The near-duplicate index agrees with brute force and groups video frames into segments."""

from __future__ import annotations

import time

import numpy as np
import pytest

from evidencelock.errors import FormatError
from evidencelock.similar import FingerprintIndex, Match


def _hex(b: np.ndarray) -> str:
    return b.tobytes().hex()


def _flip(rng: np.random.Generator, b: np.ndarray, k: int) -> np.ndarray:
    bits = np.unpackbits(b.copy())
    bits[rng.choice(256, k, replace=False)] ^= 1
    return np.packbits(bits)


def _image(h: str, q: int = 100) -> dict:
    return {"scheme": "pdq-256", "kind": "image", "hash": h, "quality": q}


def _video(frames: list[tuple[int, str]]) -> dict:
    return {"scheme": "pdq-256", "kind": "video", "frames": [{"ms": ms, "hash": h, "quality": 100} for ms, h in frames]}


@pytest.mark.parametrize("threshold", [0, 15, 31, 47, 70])
def test_index_matches_brute_force(threshold: int) -> None:
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    index = FingerprintIndex()
    for i, b in enumerate(base):
        index.add(f"i{i}", _image(_hex(b)))
        if i == 1500:
            index.query(_image(_hex(base[0])))  # forces a build; the rest stays in the tail
    for k in range(60):
        q = _flip(rng, base[rng.integers(0, len(base))], int(rng.integers(0, 2 * threshold + 2)))
        got = index.query(_image(_hex(q)), threshold=threshold, limit=50)
        want = index.query(_image(_hex(q)), threshold=threshold, limit=50, _brute_force=True)
        assert got == want
        expected = sorted(
            (int(np.unpackbits(q ^ b).sum()), f"i{i}") for i, b in enumerate(base)
            if int(np.unpackbits(q ^ b).sum()) <= threshold
        )
        assert sorted((m.distance, m.item_id) for m in got) == expected[:50]


def test_video_segments_and_ranking() -> None:
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, 32, dtype=np.uint8) for _ in range(20)]
    index = FingerprintIndex()
    index.add("original", _video([(i * 1000, _hex(f)) for i, f in enumerate(frames)]))
    index.add("partial", _video([(i * 1000, _hex(f)) for i, f in enumerate(frames[:3])]
                                + [(3000 + i * 1000, _hex(rng.integers(0, 256, 32, dtype=np.uint8))) for i in range(17)]))
    index.add("noise", _video([(i * 1000, _hex(rng.integers(0, 256, 32, dtype=np.uint8))) for i in range(20)]))
    # a copy trimmed by 5 s, slightly altered, with a 4 s gap of unrelated footage spliced in
    query = [(i * 1000, _hex(_flip(rng, f, 10))) for i, f in enumerate(frames[5:10])]
    query += [(5000 + i * 1000, _hex(rng.integers(0, 256, 32, dtype=np.uint8))) for i in range(4)]
    query += [(9000 + i * 1000, _hex(_flip(rng, f, 10))) for i, f in enumerate(frames[10:20])]
    matches = index.query(_video(query))
    assert [m.item_id for m in matches] == ["original"]
    best = matches[0]
    assert best.kind == "video" and best.distance == 10 and best.matched_frames == 15
    assert best.segments == [((0, 4000), (5000, 9000)), ((9000, 18000), (10000, 19000))]
    # an image query against video frames names the frame time
    still = index.query(_image(_hex(frames[7])))
    assert still[0] == Match("original", 0, "video", [((0, 0), (7000, 7000))], 1.0, 1)


def test_low_quality_hashes_are_not_indexed() -> None:
    index = FingerprintIndex()
    flat = "00" * 32
    assert index.add("white", _image(flat, q=0)) == 0
    assert index.query(_image(flat, q=0)) == []


def test_bad_input_is_named() -> None:
    index = FingerprintIndex()
    with pytest.raises(FormatError, match="64 hex digits"):
        index.add("x", _image("abc"))
    with pytest.raises(FormatError, match="unknown kind"):
        index.add("y", {"kind": "hologram"})
    index.add("z", _image("ab" * 32))
    with pytest.raises(ValueError, match="already in the index"):
        index.add("z", _image("ab" * 32))


def test_hundred_thousand_entries() -> None:
    rng = np.random.default_rng(100_000)
    base = rng.integers(0, 256, (100_000, 32), dtype=np.uint8)
    index = FingerprintIndex()
    for i in range(len(base)):
        index.add(f"i{i}", _image(_hex(base[i])))
    assert index.hash_count == 100_000
    index.query(_image(_hex(base[0])))  # build
    t = time.perf_counter()
    for k in range(20):
        target = int(rng.integers(0, len(base)))
        (m,) = index.query(_image(_hex(_flip(rng, base[target], 25))))
        assert m.item_id == f"i{target}" and m.distance == 25
    print(f"\n100k-entry query: {(time.perf_counter() - t) / 20 * 1000:.2f} ms")  # reported, not asserted


def test_fingerprint_versions_one_and_two_compare_a_newer_one_is_refused() -> None:
    """v2 (docs/media.md §2.1) changed which video frames are sampled, not how a frame is
    hashed: records of both versions are in one index.  A version this code does not know
    may hash differently, so matching it would be a guess: refused (and skipped by the
    vault's index, like any malformed record)."""
    rng = np.random.default_rng(11)
    frames = [_hex(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in range(6)]
    v1 = _video([(i * 1000, h) for i, h in enumerate(frames)])  # v1 records carry no version
    v2 = {**_video([(i * 967, h) for i, h in enumerate(frames)]), "version": 2, "sampling": "keyframes"}
    index = FingerprintIndex()
    index.add("old", v1)
    assert [m.item_id for m in index.query(v2)] == ["old"]
    index.add("new", v2)
    assert {m.item_id for m in index.query(v1)} == {"old", "new"}
    for bad, what in (({**v2, "version": 3}, "version"), ({**v2, "version": "2"}, "version"),
                      ({**v2, "scheme": "vpdq"}, "scheme")):
        with pytest.raises(FormatError, match=what):
            index.add(f"bad-{what}", bad)
        with pytest.raises(FormatError, match=what):
            index.query(bad)
