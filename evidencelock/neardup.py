"""Vault-level near-duplicate search: which preserved items show the same picture or footage.

The index is *derived data*: it is built from ``items.media_json`` (the fingerprints the
isolated media worker recorded at ingest, see :mod:`evidencelock.media`) and searched with
:class:`evidencelock.similar.FingerprintIndex`.  Nothing here is evidence and nothing here is
signed; a match is a lead for an analyst, never a proof (docs/media.md §4).

Why an on-disk cache (``index/fingerprints.npz`` in the vault): rebuilding the index from
the ledger database costs JSON parsing of every item's report, hex decoding of every hash
and 16 sorts; at 100,000 frame hashes that is ~2 s, against ~50 ms to load the arrays.
The cache records the ledger tail (size and entry hash) it was built at:

* same tail -> used as is;
* the ledger grew (and the cached tail is still the entry at that position) -> only items
  first ingested since are added, then the cache is rewritten;
* anything else (another ledger, a rewritten tail, a malformed or foreign file, another
  format version) -> rebuilt from the database.

The cache is written to a temporary file and renamed into place, so a concurrent reader
sees the old or the new file, never half of one.  Failing to write it is not an error (a
read-only vault still answers, only slower).  A tampered cache can hide or invent matches,
but cannot touch evidence: ``similar --rebuild-index`` ignores it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from . import schema
from .errors import FormatError, InputError
from .similar import FingerprintIndex, Match
from .vault import Vault

__all__ = [
    "CACHE_PATH",
    "DEFAULT_THRESHOLD",
    "IndexInfo",
    "NearDuplicate",
    "SimilarResult",
    "find_similar",
    "load_index",
    "near_duplicates_of",
    "search",
]

CACHE_PATH = Path("index") / "fingerprints.npz"
CACHE_FORMAT = "evidencelock-fingerprint-index/1"
DEFAULT_THRESHOLD = 31  # PDQ's authors' near-duplicate distance (of 256 bits)
# The FingerprintIndex state the cache restores; if the class changes shape, the cache is
# simply not used (the index is rebuilt through its public ``add``).
_STATE = ("_ids", "_kinds", "_counts", "_pos", "_bytes", "_item", "_ms", "_built", "_sorted", "_order")
_KIND_CODES = ("image", "video", "audio", "other")


@dataclass(frozen=True)
class IndexInfo:
    """How the index was obtained: ``cache`` is ``hit``, ``updated`` or ``rebuilt``."""

    items: int
    hashes: int
    cache: str
    tail_size: int


@dataclass(frozen=True)
class NearDuplicate:
    """A preserved item resembling the query.

    ``segments`` (videos): ``((query_start_ms, query_end_ms), (item_start_ms, item_end_ms))``
    ranges matching at a consistent time offset.  ``names`` and ``cases`` come from the item's
    ingest entries *as recorded* (signatures are checked by ``verify``, not here).
    """

    item: str
    distance: int
    kind: str
    score: float
    matched_frames: int
    segments: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)
    identical: bool = False

    def segments_json(self) -> list[dict[str, list[int]]]:
        return [{"query_ms": [q0, q1], "item_ms": [i0, i1]} for (q0, q1), (i0, i1) in self.segments]

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "distance": self.distance,
            "kind": self.kind,
            "score": self.score,
            "matched_frames": self.matched_frames,
            "segments": self.segments_json(),
            "names": list(self.names),
            "cases": list(self.cases),
            "identical": self.identical,
        }


@dataclass(frozen=True)
class SimilarResult:
    """``similar FILE``: what the file is, how the index was searched, what matched."""

    path: str
    sha256: str
    kind: str
    frames: int
    errors: list[str]
    threshold: int
    index: IndexInfo
    matches: list[NearDuplicate]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "query": {"path": self.path, "sha256": self.sha256, "kind": self.kind, "frames": self.frames,
                      "errors": list(self.errors)},
            "threshold": self.threshold,
            "index": {"items": self.index.items, "hashes": self.index.hashes, "cache": self.index.cache},
            "matches": [m.to_json() for m in self.matches],
        }


# -- building the index -------------------------------------------------------------------


def _items_with_media(conn: Any, *, since_seq: int = 0) -> Iterable[tuple[str, str]]:
    t = schema.items
    q = select(t.c.sha256, t.c.media_json).where(t.c.media_json.is_not(None), t.c.first_seq >= since_seq)
    for row in conn.execute(q.order_by(t.c.first_seq)):
        yield row.sha256, row.media_json


def _add_rows(index: FingerprintIndex, rows: Iterable[tuple[str, str]]) -> None:
    for sha, media_json in rows:
        if sha in index._pos:  # pragma: no cover - first_seq is unique per item
            continue
        try:
            fps = json.loads(media_json).get("fingerprints") or {}
        except (ValueError, AttributeError):
            continue  # derived data damaged; `verify` is where the record itself is checked
        if not fps:
            continue
        try:
            index.add(sha, fps)
        except FormatError:
            continue  # a report with malformed fingerprints cannot be matched; not fatal here


def _count_with_media(conn: Any) -> int:
    t = schema.items
    return int(conn.execute(select(func.count()).select_from(t).where(t.c.media_json.is_not(None))).scalar_one())


def _restorable() -> bool:
    probe = FingerprintIndex()
    return all(hasattr(probe, a) for a in _STATE)


def _save(index: FingerprintIndex, path: Path, meta: dict[str, Any]) -> None:
    index._flush()  # pending hashes into the arrays (the sorted part is kept as the index left it)
    built = int(index._built)
    order = np.stack(index._order) if built and index._order else np.zeros((16, 0), dtype=np.int32)
    # Items with no usable hash stay out of the cache; they are recounted on load.
    arrays = {
        "meta": np.array(json.dumps({**meta, "built": built, "min_quality": index.min_quality}, sort_keys=True)),
        "ids": np.frombuffer(b"".join(bytes.fromhex(i) for i in index._ids), dtype=np.uint8).reshape(-1, 32),
        "kinds": np.array([_KIND_CODES.index(k) if k in _KIND_CODES else 3 for k in index._kinds], dtype=np.uint8),
        "counts": np.array(index._counts, dtype=np.int32),
        "bytes": index._bytes,
        "item": index._item.astype(np.int32),
        "ms": index._ms.astype(np.int64),
        "order": order.astype(np.int32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fingerprints-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load(path: Path, *, min_quality: int) -> tuple[FingerprintIndex, dict[str, Any]] | None:
    """The cached index, or ``None`` when absent or not exactly what we write (then rebuild)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            ids, kinds, counts = z["ids"], z["kinds"], z["counts"]
            hb, item, ms, order = z["bytes"], z["item"], z["ms"], z["order"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged cache is just rebuilt
    try:
        n, m, built = len(ids), len(hb), int(meta["built"])
        ok = (
            meta.get("format") == CACHE_FORMAT
            and int(meta.get("min_quality", -1)) == min_quality
            and ids.dtype == np.uint8 and ids.shape == (n, 32)
            and kinds.shape == (n,) and counts.shape == (n,)
            and hb.dtype == np.uint8 and hb.shape == (m, 32)
            and item.shape == (m,) and ms.shape == (m,)
            and 0 <= built <= m
            and order.shape == ((16, built) if built else order.shape)
            and (m == 0 or (0 <= int(item.min()) and int(item.max()) < n))
            and (built == 0 or (0 <= int(order.min()) and int(order.max()) < built))
            and (n == 0 or int(kinds.max()) < len(_KIND_CODES))
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not ok:
        return None
    index = FingerprintIndex(min_quality=min_quality)
    index._ids = [bytes(r).hex() for r in ids]
    index._kinds = [_KIND_CODES[k] for k in kinds.tolist()]
    index._counts = counts.astype(int).tolist()
    index._pos = {h: i for i, h in enumerate(index._ids)}
    index._bytes = np.ascontiguousarray(hb)
    index._item = item.astype(np.int32)
    index._ms = ms.astype(np.int64)
    index._built = built
    if built:
        chunks = FingerprintIndex._chunks(index._bytes[:built])
        index._order = [np.ascontiguousarray(order[j]) for j in range(16)]
        index._sorted = [chunks[order[j], j] for j in range(16)]
    return index, meta


def load_index(vault: Vault, *, use_cache: bool = True, write_cache: bool = True,
               min_quality: int = 50) -> tuple[FingerprintIndex, IndexInfo]:
    """The vault's fingerprint index, from the cache when it is current (module docstring)."""
    path = vault.root / CACHE_PATH
    with vault.ledger.reader() as conn:
        tail = vault.ledger._tail(conn)
        key = {"format": CACHE_FORMAT, "origin": vault.config.origin, "tail_size": tail.size, "tail_hash": tail.prev}
        media_items = _count_with_media(conn)
        status = "rebuilt"
        index: FingerprintIndex | None = None
        if use_cache and _restorable():
            loaded = _load(path, min_quality=min_quality)
            if loaded is not None:
                cached, meta = loaded
                same_origin = meta.get("origin") == key["origin"]
                size = int(meta.get("tail_size", -1))
                if same_origin and size == tail.size and meta.get("tail_hash") == tail.prev \
                        and meta.get("media_items") == media_items:
                    index, status = cached, "hit"
                elif same_origin and 0 < size < tail.size and _entry_hash(conn, size - 1) == meta.get("tail_hash"):
                    _add_rows(cached, _items_with_media(conn, since_seq=size))
                    if meta.get("media_items", -1) + _count_since(conn, size) == media_items:
                        index, status = cached, "updated"
        if index is None:
            status = "rebuilt"
            index = FingerprintIndex(min_quality=min_quality)
            _add_rows(index, _items_with_media(conn))
    if write_cache and status in ("updated", "rebuilt"):
        try:
            _save(index, path, {**key, "media_items": media_items})
        except OSError:
            pass  # a read-only vault still answers; only the next query is slower
    return index, IndexInfo(len(index), index.hash_count, status, tail.size)


def _entry_hash(conn: Any, seq: int) -> str | None:
    t = schema.entries
    return conn.execute(select(t.c.entry_hash).where(t.c.seq == seq)).scalar_one_or_none()


def _count_since(conn: Any, seq: int) -> int:
    t = schema.items
    return int(conn.execute(select(func.count()).select_from(t).where(
        t.c.media_json.is_not(None), t.c.first_seq >= seq)).scalar_one())


# -- searching ------------------------------------------------------------------------------


def _provenance(vault: Vault, shas: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Original names and cases of items, from their ingest entries as recorded."""
    out: dict[str, tuple[list[str], list[str]]] = {s: ([], []) for s in shas}
    if not shas:
        return out
    t = schema.entries
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(t.c.item, t.c.canonical, t.c.case_id).where(
            t.c.item.in_(list(shas)), t.c.type == "ingest").order_by(t.c.seq)).all()
    for row in rows:
        names, cases = out[row.item]
        try:
            src = json.loads(bytes(row.canonical))["body"].get("source") or {}
        except (ValueError, KeyError, AttributeError):
            src = {}
        name = src.get("path") if isinstance(src, dict) else None
        if isinstance(name, str) and name not in names:
            names.append(name)
        if row.case_id not in cases:
            cases.append(row.case_id)
    return out


def _case_items(vault: Vault, case: str) -> set[str]:
    t = schema.sources
    with vault.ledger.reader() as conn:
        return {r.sha256 for r in conn.execute(select(t.c.sha256).where(t.c.case_id == case).distinct())}


def search(vault: Vault, fingerprints: dict[str, Any], *, threshold: int = DEFAULT_THRESHOLD, limit: int = 10,
           case: str | None = None, exclude: Iterable[str] = (), same_bytes: str | None = None,
           index: FingerprintIndex | None = None) -> list[NearDuplicate]:
    """Preserved items resembling ``fingerprints`` (a MediaReport's), best first.

    ``case`` restricts to items with a source in that case; ``exclude`` drops items (the
    query itself); ``same_bytes`` marks the item with that SHA-256 ``identical``.
    """
    if not 0 <= threshold <= 256:
        raise InputError(f"--threshold must be 0-256 bits, found {threshold}")
    if limit < 1:
        raise InputError(f"--limit must be at least 1, found {limit}")
    if index is None:
        index, _ = load_index(vault)
    if not fingerprints or len(index) == 0:
        return []
    skip = set(exclude)
    allowed = _case_items(vault, case) if case is not None else None
    wide = limit + len(skip) if allowed is None else len(index)
    raw: list[Match] = index.query(fingerprints, threshold=threshold, limit=max(1, wide))
    picked = [m for m in raw if m.item_id not in skip and (allowed is None or m.item_id in allowed)][:limit]
    prov = _provenance(vault, [m.item_id for m in picked])
    return [
        NearDuplicate(m.item_id, m.distance, m.kind, round(float(m.score), 4), m.matched_frames,
                      [((int(q[0]), int(q[1])), (int(i[0]), int(i[1]))) for q, i in m.segments],
                      prov[m.item_id][0], prov[m.item_id][1], m.item_id == same_bytes)
        for m in picked
    ]


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def find_similar(vault: Vault, path: str | os.PathLike[str], *, threshold: int = DEFAULT_THRESHOLD, limit: int = 10,
                 case: str | None = None, timeout: float = 60.0, memory_limit: int = 2 << 30,
                 use_cache: bool = True) -> SimilarResult:
    """Fingerprint the untrusted file at ``path`` (isolated worker) and search the vault.

    Raises :class:`InputError` when the file cannot be read or no fingerprint can be made
    of it (the message says why: the worker's named error, or a kind without pictures).
    """
    from .media import (
        extract,  # lazily: importing the media side is not needed by the core
    )

    p = os.fspath(path)
    if not 0 <= threshold <= 256:
        raise InputError(f"--threshold must be 0-256 bits, found {threshold}")
    if limit < 1:
        raise InputError(f"--limit must be at least 1, found {limit}")
    if os.path.isdir(p):
        raise InputError("is a folder; give one file", subject=p)
    try:
        sha = _sha256_file(p)
    except FileNotFoundError:
        raise InputError("no such file", subject=p) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", subject=p) from None
    # Dense sampling: the query's frames lie within 50 ms of wherever an item was sampled
    # (keyframes, another trim point), so misaligned samples of a moving picture still match.
    report = extract(p, timeout=timeout, memory_limit=memory_limit, dense=True)
    fps = report.fingerprints or {}
    frames = 1 if fps.get("kind") == "image" else len(fps.get("frames") or [])
    if not fps or frames == 0:
        why = "; ".join(report.errors) if report.errors else (
            f"a file of kind {report.kind!r} has no pictures to fingerprint" if report.kind in ("audio", "other")
            else "no frame could be decoded")
        raise InputError(f"no fingerprint possible: {why}", subject=p,
                         hint="similar compares pictures: photos and video frames")
    index, info = load_index(vault, use_cache=use_cache)
    matches = search(vault, fps, threshold=threshold, limit=limit, case=case, same_bytes=sha, index=index)
    if not any(m.identical for m in matches) and _is_preserved(vault, sha, case):
        # The very bytes are preserved, but without fingerprints (ingested with --no-media,
        # or their extraction failed): still the first thing an investigator needs to know.
        names, cases = _provenance(vault, [sha])[sha]
        matches = [NearDuplicate(sha, 0, report.kind, 1.0, frames, [], names, cases, True), *matches][:limit]
    return SimilarResult(p, sha, report.kind, frames, list(report.errors), threshold, info, matches)


def _is_preserved(vault: Vault, sha: str, case: str | None) -> bool:
    with vault.ledger.reader() as conn:
        if case is None:
            t = schema.items
            return conn.execute(select(t.c.sha256).where(t.c.sha256 == sha)).first() is not None
        t2 = schema.sources
        return conn.execute(select(t2.c.sha256).where(t2.c.sha256 == sha, t2.c.case_id == case)).first() is not None


def near_duplicates_of(vault: Vault, shas: Sequence[str], *, threshold: int = DEFAULT_THRESHOLD,
                       limit: int = 5) -> dict[str, list[NearDuplicate]]:
    """For items already recorded (e.g. just ingested): their near-duplicates among all other
    items in the vault, those ingested in the same run included.  Items without fingerprints
    map to ``[]``."""
    out: dict[str, list[NearDuplicate]] = {s: [] for s in shas}
    if not shas:
        return out
    index, _ = load_index(vault)
    t = schema.items
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(t.c.sha256, t.c.media_json).where(t.c.sha256.in_(list(shas)))).all()
    for row in rows:
        try:
            fps = json.loads(row.media_json).get("fingerprints") if row.media_json else None
        except (ValueError, AttributeError):
            fps = None
        if not fps:
            continue
        try:
            out[row.sha256] = search(vault, fps, threshold=threshold, limit=limit, exclude=[row.sha256], index=index)
        except FormatError:
            continue
    return out
