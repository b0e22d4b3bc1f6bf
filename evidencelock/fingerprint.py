"""Perceptual fingerprints (PDQ) of images and video frames.

Runs inside the media worker process only (see :mod:`evidencelock.media`): it decodes
untrusted pixels.

Why PDQ: it is the open perceptual hash (Meta/ThreatExchange) that trust-and-safety and
investigation teams already exchange, it is 256 bits (fewer false matches than 64-bit
dHash/pHash), it reports a *quality* so flat frames can be ignored, and ``pdqhash`` is a
small C++ binding.  Near-duplicates are within Hamming distance ~31 of each other.

Every frame is first reduced with an area filter so that its longer side is at most
:data:`PDQ_INPUT_SIDE` pixels.  That makes hashing ~25x cheaper on 1080p frames, and a
half-size copy of a large original then hashes from nearly the same pixels.

Hash text format: the 256 PDQ bits, bit 0 first, packed most-significant-bit first into 32
bytes, written as 64 lowercase hex digits.  :func:`evidencelock.similar.hash_to_words` reads it.
"""

from __future__ import annotations

from typing import Any, Iterator

import cv2
import numpy as np
import pdqhash

__all__ = [
    "PDQ_INPUT_SIDE",
    "SCHEME",
    "pdq_of_rgb",
    "pdq_of_luma",
    "pdq_entry",
    "pdq_entry_rgb",
    "hamming_hex",
    "video_fingerprint",
]

SCHEME = "pdq-256"
PDQ_INPUT_SIDE = 512
# Sample one frame per second; also hash a frame when the picture changes abruptly (a cut),
# but never two hashes closer than this, so a strobing video cannot flood the record.
SAMPLE_INTERVAL_MS = 1000
SCENE_MIN_GAP_MS = 250
SCENE_THRESHOLD = 28.0  # mean absolute luma difference (0-255) on a coarse grid
MAX_VIDEO_HASHES = 20_000  # ~5.5 h at 1/s; bounds the size of the recorded result

_FAST_LUMA_FORMATS = frozenset(
    {
        "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
        "yuv411p", "yuv410p", "yuv440p", "yuvj440p", "nv12", "nv21", "gray",
    }
)


def _shrink(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape[:2]
    side = max(h, w)
    if side > PDQ_INPUT_SIDE:
        scale = PDQ_INPUT_SIDE / side
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return gray


def _hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def _pdq(small: np.ndarray) -> tuple[str, int]:
    small = np.ascontiguousarray(small)
    bits, quality = pdqhash.compute(np.dstack([small, small, small]))
    return _hex(bits), int(quality)


def pdq_of_luma(gray: np.ndarray) -> tuple[str, int]:
    """PDQ of a 2-D uint8 luma image: ``(hex, quality 0-100)``."""
    return _pdq(_shrink(gray))


def pdq_of_rgb(rgb: np.ndarray) -> tuple[str, int]:
    """PDQ of an HxWx3 uint8 RGB image, via BT.601 luma (what PDQ itself uses)."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return pdq_of_luma(gray)


def pdq_entry(gray: np.ndarray) -> dict[str, Any]:
    """``{"hash", "quality", "center95"}`` for a 2-D uint8 luma image.

    PDQ is barely tolerant of cropping (a 5 % crop rescales everything by 5 % and moves
    30-60 bits).  So each picture also gets a hash of its central 95 %: a copy cropped by
    ~5 % matches the original's ``center95``, and the index compares every variant of the
    query with every variant of the item.
    """
    small = _shrink(gray)
    h, w = small.shape
    dy, dx = round(h * 0.025), round(w * 0.025)
    full, quality = _pdq(small)
    center, _ = _pdq(small[dy : h - dy, dx : w - dx]) if dy and dx else (full, quality)
    return {"hash": full, "quality": quality, "center95": center}


def pdq_entry_rgb(rgb: np.ndarray) -> dict[str, Any]:
    """:func:`pdq_entry` of an HxWx3 uint8 RGB image."""
    return pdq_entry(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))


def hamming_hex(a: str, b: str) -> int:
    """Hamming distance between two hex hashes of equal length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _luma(frame: Any) -> np.ndarray:
    """The luma plane of a PyAV VideoFrame as a 2-D uint8 array, without a full RGB conversion."""
    if frame.format.name in _FAST_LUMA_FORMATS:
        plane = frame.planes[0]
        buf = np.frombuffer(plane, dtype=np.uint8)
        return buf.reshape(-1, plane.line_size)[: frame.height, : frame.width]
    return frame.to_ndarray(format="gray")


def _frames_ms(frames: Iterator[Any]) -> Iterator[tuple[int, Any]]:
    last = -1
    for n, frame in enumerate(frames):
        t = frame.time
        ms = int(round(t * 1000)) if t is not None else (last + 40 if last >= 0 else 0)
        if ms < 0:
            ms = 0
        last = ms
        yield ms, frame


def video_fingerprint(container: Any, stream: Any, *, skip_nonref: bool = True) -> dict[str, Any]:
    """PDQ hashes of ~1 frame per second plus scene cuts, each with its time in ms.

    Decoding is the cost, so: frame threading on, non-reference frames skipped (they are
    never needed to decode others, and one frame per second does not need all of them), luma
    read straight from the decoded plane, and only the sampled frames are resized and hashed.
    Timestamps are presentation times relative to the stream, so a trimmed copy's frames line
    up with the original at a constant offset (see :mod:`evidencelock.similar`).
    """
    cc = stream.codec_context
    stream.thread_type = "AUTO"
    cc.skip_frame = "NONREF" if skip_nonref else "DEFAULT"
    start = stream.start_time * stream.time_base if stream.start_time is not None else 0
    start_ms = int(round(float(start) * 1000))
    frames: list[dict[str, Any]] = []
    next_sample = 0
    last_hash_ms = -10**9
    prev_grid: np.ndarray | None = None
    decoded = 0
    truncated = False
    rotation: int | None = None
    turns = 0
    for ms, frame in _frames_ms(container.decode(stream)):
        decoded += 1
        if rotation is None:
            rotation = int(round(getattr(frame, "rotation", 0) or 0))
            # Display-matrix rotation is counter-clockwise; hash what a viewer sees, so a
            # copy re-encoded with the rotation applied to the pixels still matches.
            turns = (rotation // 90) % 4 if rotation % 90 == 0 else 0
        ms = max(0, ms - start_ms)
        luma = _luma(frame)
        step = max(1, min(luma.shape) // 24)
        grid = luma[::step, ::step].astype(np.int16)
        scene = False
        if prev_grid is not None and prev_grid.shape == grid.shape:
            scene = float(np.abs(grid - prev_grid).mean()) > SCENE_THRESHOLD
        prev_grid = grid
        due = ms >= next_sample
        if due or (scene and ms - last_hash_ms >= SCENE_MIN_GAP_MS):
            if len(frames) >= MAX_VIDEO_HASHES:
                truncated = True
                break
            entry: dict[str, Any] = {"ms": ms, **pdq_entry(np.rot90(luma, turns) if turns else luma)}
            if scene and not due:
                entry["scene"] = True
            frames.append(entry)
            last_hash_ms = ms
            if due:
                next_sample = (ms // SAMPLE_INTERVAL_MS + 1) * SAMPLE_INTERVAL_MS
    if decoded == 0 and skip_nonref:
        # A stream whose every frame is flagged disposable: decode it all instead.
        container.seek(0)
        return video_fingerprint(container, stream, skip_nonref=False)
    result: dict[str, Any] = {
        "scheme": SCHEME,
        "kind": "video",
        "interval_ms": SAMPLE_INTERVAL_MS,
        "frames": frames,
        "rotation": rotation,
    }
    if truncated:
        result["truncated"] = True
    return result
