"""Near-duplicate search over PDQ fingerprints (images and sampled video frames).

Why multi-index hashing: a 256-bit PDQ hash is split into 16 chunks of 16 bits.  By the
pigeonhole principle, two hashes within Hamming distance ``d`` agree to within
``d // 16`` bits on at least one chunk (for the default ``d = 31``: one chunk differs in at
most 1 bit).  So a query looks up, in each of 16 sorted chunk tables, its own chunk value
and every value within that radius (17 probes per chunk at ``d = 31``), and only those
candidates get an exact 256-bit popcount.  The probes are vectorised with
``numpy.searchsorted``; there is no per-entry Python object, so 100,000 frames cost ~10 MB
and a query is milliseconds.  Above radius 2 probing costs more than scanning, and the index
scans with a numpy popcount instead (exact either way: this is a filter, never a guess).

Recently added hashes sit in a small unsorted tail that is scanned directly; the sorted
tables are rebuilt when the tail grows, so interleaved add/query stays cheap.

A video matches another when enough of its sampled frames match (so a trimmed, re-encoded,
rescaled or re-muxed copy is found); matching frames are grouped into segments of
consistent time offset, reported as ``(query_ms, item_ms)`` ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Iterable

import numpy as np

from .errors import FormatError

__all__ = ["Match", "FingerprintIndex", "hash_to_bytes", "frames_of"]

SCHEME = "pdq-256"  # as written by evidencelock.fingerprint (not imported: it needs cv2, pdqhash)
COMPARABLE_VERSIONS = (1, 2)
_CHUNKS = 16
_MAX_RADIUS = 2
_SEGMENT_OFFSET_TOLERANCE_MS = 1500
_SEGMENT_GAP_FRAMES = 3

if hasattr(np, "bitwise_count"):

    def _popcount_rows(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int32)

else:  # pragma: no cover - numpy < 2.0
    _TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)

    def _popcount_rows(x: np.ndarray) -> np.ndarray:
        return _TABLE[np.ascontiguousarray(x).view(np.uint8)].reshape(*x.shape[:-1], -1).sum(axis=-1)


def _masks(radius: int) -> np.ndarray:
    out = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(16), r):
            m = 0
            for b in bits:
                m |= 1 << b
            out.append(m)
    return np.array(out, dtype=np.uint16)


_MASKS = {r: _masks(r) for r in range(_MAX_RADIUS + 1)}


def hash_to_bytes(text: str) -> np.ndarray:
    """A 64-hex-digit PDQ hash as 32 uint8 (see :mod:`evidencelock.fingerprint`)."""
    if not isinstance(text, str) or len(text) != 64:
        raise FormatError(f"PDQ hash: expected 64 hex digits, found {text!r:.80}")
    try:
        return np.frombuffer(bytes.fromhex(text), dtype=np.uint8)
    except ValueError:
        raise FormatError(f"PDQ hash: not hexadecimal: {text!r:.80}") from None


def _variants(entry: dict[str, Any]) -> list[str]:
    out = [entry["hash"]]
    if isinstance(entry.get("center95"), str) and entry["center95"] != entry["hash"]:
        out.append(entry["center95"])
    return out


def frames_of(fingerprints: dict[str, Any]) -> tuple[str, list[tuple[int | None, list[str], int]]]:
    """``(kind, [(ms or None, [hex variants], quality)])`` from a MediaReport ``fingerprints``.

    Variants are the full-picture hash and, when present, the central-95 % hash.
    """
    if not isinstance(fingerprints, dict) or not fingerprints:
        return "other", []
    # docs/media.md §2: every version of the "pdq-256" scheme hashes the same pixels the same
    # way (v2 changed only which video frames are sampled), so all are comparable.  A newer
    # version may not be, so it is refused rather than matched wrongly.
    scheme = fingerprints.get("scheme", SCHEME)
    version = fingerprints.get("version", 1)
    if scheme != SCHEME:
        raise FormatError(f"fingerprints: scheme expected={SCHEME!r} found={scheme!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version not in COMPARABLE_VERSIONS:
        raise FormatError(f"fingerprints: version expected one of {list(COMPARABLE_VERSIONS)} found={version!r}; "
                          "a newer evidencelock wrote it")
    kind = fingerprints.get("kind")
    try:
        if kind == "image":
            return "image", [(None, _variants(fingerprints), int(fingerprints.get("quality", 100)))]
        if kind == "video":
            frames = fingerprints.get("frames")
            if not isinstance(frames, list):
                raise FormatError("video fingerprints: 'frames' must be a list")
            return "video", [(int(f["ms"]), _variants(f), int(f.get("quality", 100))) for f in frames]
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"fingerprints malformed: {type(exc).__name__}: {exc}") from None
    raise FormatError(f"fingerprints: unknown kind {kind!r}")


@dataclass(frozen=True)
class Match:
    """One indexed item that resembles the query.

    ``distance`` is the Hamming distance (0-256) of the best frame for images and the median
    over matched frames for videos.  ``segments`` (videos) are
    ``((query_start_ms, query_end_ms), (item_start_ms, item_end_ms))`` ranges where frames
    match at a consistent time offset.  ``score`` (0-1) ranks: the share of the shorter
    video's sampled frames that matched, or ``1 - distance/(threshold+1)`` for stills.
    """

    item_id: str
    distance: int
    kind: str
    segments: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    score: float = 0.0
    matched_frames: int = 0


class FingerprintIndex:
    """In-memory near-duplicate index over PDQ hashes; see the module docstring."""

    def __init__(self, *, min_quality: int = 50) -> None:
        # PDQ: quality below ~50 means a flat or featureless frame whose hash is unreliable;
        # such frames would match each other across unrelated videos.
        self.min_quality = min_quality
        self._ids: list[str] = []
        self._kinds: list[str] = []
        self._counts: list[int] = []
        self._pos: dict[str, int] = {}
        self._pending_bytes: list[np.ndarray] = []
        self._pending_item: list[int] = []
        self._pending_ms: list[int] = []
        self._bytes = np.zeros((0, 32), dtype=np.uint8)
        self._item = np.zeros(0, dtype=np.int32)
        self._ms = np.zeros(0, dtype=np.int64)
        self._built = 0  # entries [0, _built) are in the sorted chunk tables
        self._sorted: list[np.ndarray] = []
        self._order: list[np.ndarray] = []
        self._words_cache: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def hash_count(self) -> int:
        """Number of indexed hashes (one per picture variant)."""
        return len(self._item) + len(self._pending_item)

    def add(self, item_id: str, fingerprints: dict[str, Any]) -> int:
        """Index an item's fingerprints; returns how many hashes were indexed (low quality skipped)."""
        if item_id in self._pos:
            raise ValueError(f"{item_id}: already in the index")
        kind, frames = frames_of(fingerprints)
        idx = len(self._ids)
        self._ids.append(item_id)
        self._kinds.append(kind)
        self._pos[item_id] = idx
        n = 0
        for ms, variants, quality in frames:
            if quality < self.min_quality:
                continue
            for text in variants:
                self._pending_bytes.append(hash_to_bytes(text))
                self._pending_item.append(idx)
                self._pending_ms.append(-1 if ms is None else ms)
            n += 1
        self._counts.append(n)
        return n

    # -- storage ---------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._pending_bytes:
            self._bytes = np.concatenate([self._bytes, np.stack(self._pending_bytes)])
            self._item = np.concatenate([self._item, np.array(self._pending_item, dtype=np.int32)])
            self._ms = np.concatenate([self._ms, np.array(self._pending_ms, dtype=np.int64)])
            self._pending_bytes, self._pending_item, self._pending_ms = [], [], []
        tail = len(self._item) - self._built
        if tail > max(4096, self._built // 8):
            self._build()

    def _build(self) -> None:
        chunks = self._chunks(self._bytes)
        self._order = []
        self._sorted = []
        for j in range(_CHUNKS):
            order = np.argsort(chunks[:, j], kind="stable").astype(np.int32)
            self._order.append(order)
            self._sorted.append(chunks[order, j])
        self._built = len(self._item)

    @staticmethod
    def _chunks(b: np.ndarray) -> np.ndarray:
        return (b[:, 0::2].astype(np.uint16) << 8) | b[:, 1::2].astype(np.uint16)

    @staticmethod
    def _words(b: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(b).view(">u8").astype(np.uint64)

    # -- search ----------------------------------------------------------------------------

    def _pairs(self, qbytes: np.ndarray, threshold: int, *, brute: bool = False) -> tuple[np.ndarray, ...]:
        """All (query row, entry, distance) with distance <= threshold."""
        self._flush()
        n = len(self._item)
        m = len(qbytes)
        if n == 0 or m == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        qwords = self._words(qbytes)
        if self._words_cache is None or len(self._words_cache) != n:
            self._words_cache = self._words(self._bytes)
        words = self._words_cache
        radius = threshold // _CHUNKS
        rows_parts: list[np.ndarray] = []
        cand_parts: list[np.ndarray] = []
        scan_from = 0 if (brute or radius > _MAX_RADIUS) else self._built
        if scan_from > 0:
            qchunks = self._chunks(qbytes)
            masks = _MASKS[radius]
            for j in range(_CHUNKS):
                probes = (qchunks[:, j][:, None] ^ masks[None, :]).ravel()
                lo = np.searchsorted(self._sorted[j], probes, "left")
                hi = np.searchsorted(self._sorted[j], probes, "right")
                counts = hi - lo
                total = int(counts.sum())
                if total == 0:
                    continue
                starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
                pos = starts + np.arange(total)
                cand_parts.append(self._order[j][pos])
                rows_parts.append(np.repeat(np.repeat(np.arange(m), len(masks)), counts))
        if scan_from < n:
            tail = np.arange(scan_from, n)
            rows_parts.append(np.repeat(np.arange(m), len(tail)))
            cand_parts.append(np.tile(tail, m))
        if not cand_parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        rows = np.concatenate(rows_parts).astype(np.int64)
        cands = np.concatenate(cand_parts).astype(np.int64)
        key = np.unique(rows * n + cands)
        rows, cands = key // n, key % n
        dist = _popcount_rows(words[cands] ^ qwords[rows])
        keep = dist <= threshold
        return rows[keep], cands[keep], dist[keep].astype(np.int64)

    def query(self, fingerprints: dict[str, Any], *, threshold: int = 31, limit: int = 10,
              _brute_force: bool = False) -> list[Match]:
        """Items resembling ``fingerprints`` (a MediaReport's), best first.

        ``threshold`` is the largest Hamming distance (of 256 bits) counted as the same frame;
        PDQ's authors suggest 31 for near-duplicates.
        """
        if threshold < 0 or threshold > 256:
            raise ValueError(f"threshold must be 0-256, found {threshold}")
        qkind, qframes = frames_of(fingerprints)
        qframes = [f for f in qframes if f[2] >= self.min_quality] or qframes
        if not qframes:
            return []
        qbytes = np.stack([hash_to_bytes(h) for _, hs, _ in qframes for h in hs])
        row_frame = np.array([i for i, (_, hs, _) in enumerate(qframes) for _ in hs], dtype=np.int64)
        qms = [ms for ms, _, _ in qframes]
        rows, cands, dists = self._pairs(qbytes, threshold, brute=_brute_force)
        rows = row_frame[rows]  # several variants of one frame count as that frame
        by_item: dict[int, list[tuple[int, int, int]]] = {}
        items = self._item[cands]
        for r, c, d, it in zip(rows.tolist(), cands.tolist(), dists.tolist(), items.tolist()):
            by_item.setdefault(it, []).append((r, c, d))
        matches = [self._match(it, pairs, qkind, qms, threshold) for it, pairs in by_item.items()]
        found = [mt for mt in matches if mt is not None]
        found.sort(key=lambda mt: (-mt.score, mt.distance, mt.item_id))
        return found[:limit]

    def _match(self, it: int, pairs: list[tuple[int, int, int]], qkind: str, qms: list[int | None],
               threshold: int) -> Match | None:
        kind = self._kinds[it]
        best: dict[int, tuple[int, int]] = {}  # query row -> (distance, entry)
        for r, c, d in pairs:
            if r not in best or d < best[r][0]:
                best[r] = (d, c)
        if kind != "video" or qkind != "video":
            d, c = min(best.values())
            r = min(best, key=lambda k: best[k])
            q_ms = qms[r] if qms[r] is not None else 0
            i_ms = int(self._ms[c]) if self._ms[c] >= 0 else 0
            segs = [((q_ms, q_ms), (i_ms, i_ms))] if (qkind == "video" or kind == "video") else []
            return Match(self._ids[it], int(d), kind, segs, 1.0 - d / (threshold + 1), len(best))
        nq = sum(1 for _ in qms)
        ni = self._counts[it]
        # Frames matched on each side: a dense query (similar FILE) has ~10 frames near each
        # sampled frame of the item, so query rows alone would overstate the coverage.
        matched = min(len(best), len({int(self._ms[c]) for _, c in best.values()}))
        need = min(2, nq, ni)
        if matched < need:
            return None
        coverage = min(1.0, matched / max(1, min(nq, ni)))
        if coverage < 0.3:
            return None
        triples = sorted((qms[r] or 0, int(self._ms[c]), d) for r, (d, c) in best.items())
        segments = _segments(triples)
        dist = int(np.median([d for _, _, d in triples]))
        return Match(self._ids[it], dist, kind, segments, round(coverage, 4), matched)


def _segments(triples: Iterable[tuple[int, int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Group (query_ms, item_ms) pairs, sorted by query time, into constant-offset runs."""
    segments: list[list[int]] = []  # [q0, q1, i0, i1, offset]
    last_q = None
    for q, i, _ in triples:
        off = i - q
        if (
            segments
            and abs(off - segments[-1][4]) <= _SEGMENT_OFFSET_TOLERANCE_MS
            and last_q is not None
            and q - last_q <= _SEGMENT_GAP_FRAMES * 1000
        ):
            s = segments[-1]
            s[1] = q
            s[2] = min(s[2], i)
            s[3] = max(s[3], i)
        else:
            segments.append([q, q, i, i, off])
        last_q = q
    return [((s[0], s[1]), (s[2], s[3])) for s in segments]
