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

from typing import Any

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
    "VIDEO_FORMAT_VERSION",
    "DENSE_INTERVAL_MS",
]

SCHEME = "pdq-256"
PDQ_INPUT_SIDE = 512
# Sample one frame per second; also hash a frame when the picture changes abruptly (a cut),
# but never two hashes closer than this, so a strobing video cannot flood the record.
SAMPLE_INTERVAL_MS = 1000
SCENE_MIN_GAP_MS = 250
SCENE_THRESHOLD = 28.0  # mean absolute luma difference (0-255) on a coarse grid
MAX_VIDEO_HASHES = 20_000  # ~5.5 h at 1/s; bounds the size of the recorded result
# Format v2 (docs/media.md §2.1): GOPs no longer than this have only their keyframe decoded.
# Phones write a keyframe every ~1 s; the margin covers 1 s GOPs of variable-frame-rate
# recordings.  Longer GOPs are decoded in full and sampled as in v1.
VIDEO_FORMAT_VERSION = 2
KEYFRAME_MAX_GAP_MS = 1250
KEYFRAME_MIN_GAP_MS = 750  # keyframes closer than this to the last hash are not decoded
# A GOP held beyond these is decoded in full (a crafted stream whose timestamps never advance
# must not make us hold it all).
_GOP_BUFFER_BYTES = 64 << 20
_GOP_BUFFER_PACKETS = 2048
DENSE_INTERVAL_MS = 100  # query-side sampling (similar FILE): 10 hashes per second

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


def _packet_ms(packet: Any, time_base: Any, start_ms: int) -> int | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or time_base is None:
        return None
    return int(round(float(ts * time_base) * 1000)) - start_ms


class _Sampler:
    """Turns decoded frames into fingerprint entries (the sampling rule of docs/media.md §2).

    Frames whose presentation time is in ``chosen`` are keyframes picked at the packet level
    (``"keyframes"`` sampling) and are always hashed.  Every other frame comes from a GOP that
    is decoded in full and follows the v1 rule: one per second of presentation time plus a
    frame at each scene cut.
    """

    def __init__(self, start_ms: int, time_base: Any, interval_ms: int = 1000) -> None:
        self.start_ms = start_ms
        self.time_base = time_base
        self.interval_ms = interval_ms
        self.frames: list[dict[str, Any]] = []
        self.chosen: dict[int, bool] = {}  # pts -> hashed as a cut (off the keyframe cadence)
        self.next_sample = 0
        self.last_hash_ms = -10**9
        self.prev_grid: np.ndarray | None = None
        self.decoded = 0
        self.truncated = False
        self.rotation: int | None = None
        self.turns = 0
        self._last_raw = -1

    def feed(self, frame: Any) -> bool:
        """Consider one decoded frame; ``False`` once the hash cap is reached."""
        self.decoded += 1
        # The stream's time base, not the frame's: frames drained from the decoder may carry none.
        pts = frame.pts
        if pts is not None and self.time_base is not None:
            raw = int(round(float(pts * self.time_base) * 1000))
        else:
            raw = self._last_raw + 40 if self._last_raw >= 0 else 0
        self._last_raw = raw
        if self.rotation is None:
            self.rotation = int(round(getattr(frame, "rotation", 0) or 0))
            # Display-matrix rotation is counter-clockwise; hash what a viewer sees, so a
            # copy re-encoded with the rotation applied to the pixels still matches.
            self.turns = (self.rotation // 90) % 4 if self.rotation % 90 == 0 else 0
        ms = max(0, raw - self.start_ms)
        keyframe = frame.pts is not None and frame.pts in self.chosen
        luma = _luma(frame)
        scene = False
        if keyframe:
            scene = self.chosen.pop(frame.pts)
            self.prev_grid = None  # keyframes ~1 s apart: a difference is motion, not a cut
        else:
            step = max(1, min(luma.shape) // 24)
            grid = luma[::step, ::step].astype(np.int16)
            if self.prev_grid is not None and self.prev_grid.shape == grid.shape:
                scene = float(np.abs(grid - self.prev_grid).mean()) > SCENE_THRESHOLD
            self.prev_grid = grid
        due = (keyframe and not scene) or (not keyframe and ms >= self.next_sample)
        if not (due or (scene and ms - self.last_hash_ms >= SCENE_MIN_GAP_MS)):
            return True
        if len(self.frames) >= MAX_VIDEO_HASHES:
            self.truncated = True
            return False
        entry: dict[str, Any] = {"ms": ms, **pdq_entry(np.rot90(luma, self.turns) if self.turns else luma)}
        if scene and not due:
            entry["scene"] = True
        self.frames.append(entry)
        self.last_hash_ms = ms
        if due:
            self.next_sample = (ms // self.interval_ms + 1) * self.interval_ms
        return True


def video_fingerprint(container: Any, stream: Any, *, dense: bool = False) -> dict[str, Any]:
    """PDQ hashes of ~1 frame per second, each with its presentation time in ms (format v2).

    ``dense=True`` is for queries (``similar FILE``), never recorded: every frame is decoded
    and one is hashed every :data:`DENSE_INTERVAL_MS`, so that whatever times an indexed copy
    was sampled at, a query frame lies within 50 ms of it (docs/media.md §2.1).

    Decoding is the cost (a 720p H.264 frame costs ~50x its PDQ hash), so the stream is
    demuxed once and read GOP by GOP (a keyframe and the packets up to the next one):

    * a GOP spanning at most :data:`KEYFRAME_MAX_GAP_MS` (phones write one keyframe per
      second) has only its keyframe decoded, and only if it is at least
      :data:`KEYFRAME_MIN_GAP_MS` after the last hashed frame: ~1 keyframe per second, no
      other frame of the GOP is ever handed to the decoder;
    * a longer GOP (messenger and editor re-encodes: 2-10 s) is decoded in full, non-reference
      frames skipped, and sampled as in v1: one frame per second plus scene cuts.

    A GOP is known to be short only when its next keyframe arrives, so its packets are held
    until then, but never more than the limit's worth of time, 64 MiB or 2048 packets.
    Samples then sit at keyframe times, not on a 1 s grid; the index matches frames by PDQ
    distance, not by time, so a copy with other keyframes still matches (its nearest sample
    is at most half a GOP away).  Timestamps are relative to the stream start, so a trimmed
    copy lines up at a constant offset (see :mod:`evidencelock.similar`).
    """
    stream.thread_type = "AUTO"
    if dense:
        return _fingerprint_all_frames(container, stream, DENSE_INTERVAL_MS, "dense")
    cc = stream.codec_context
    cc.skip_frame = "NONREF"
    tb = stream.time_base
    start = stream.start_time * tb if stream.start_time is not None and tb is not None else 0
    sampler = _Sampler(int(round(float(start) * 1000)), tb)
    # The GOP being read: its keyframe's time and its packets so far, or None when the GOP is
    # already known to be long (its packets then go straight to the decoder).
    gop: list[Any] | None = []
    key_ms: int | None = None
    held = 0
    keyframes = full_gops = 0
    last_chosen = -10**9  # packet-level: frame threading returns frames a few packets late
    gap: int | None = None  # time from the keyframe before the held one to the held one
    off_cadence = False

    def decode(packet: Any) -> bool:
        return all(sampler.feed(f) for f in cc.decode(packet))

    def close_short_gop() -> bool:
        # The held GOP turned out short: decode its keyframe alone, if it is due (~1/s) or
        # off the stream's keyframe cadence: encoders put a keyframe at a cut, so a copy
        # re-encoded by any encoder has one there too, on the same picture.
        nonlocal last_chosen
        if not gop or key_ms is None:
            return True
        since = key_ms - max(last_chosen, sampler.last_hash_ms)
        cut = off_cadence and since >= SCENE_MIN_GAP_MS
        if since < KEYFRAME_MIN_GAP_MS and not cut:
            return True
        last_chosen = key_ms
        sampler.chosen[gop[0].pts] = since < KEYFRAME_MIN_GAP_MS
        return decode(gop[0])

    ok = True
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # demuxer's end-of-stream marker; flushed below
        ms = _packet_ms(packet, tb, sampler.start_ms)
        if packet.is_keyframe and ms is not None and packet.pts is not None:
            ok = close_short_gop() if gop is not None else True
            if not ok:
                break
            keyframes += 1
            # Off cadence: clearly closer to the previous keyframe than that one was to its own.
            new_gap = ms - key_ms if key_ms is not None else None
            off_cadence = gap is not None and new_gap is not None and new_gap < 0.8 * gap
            gap = new_gap
            gop, key_ms, held = [packet], ms, packet.size
            continue
        if gop is None:
            if not decode(packet):
                ok = False
                break
            continue
        gop.append(packet)
        held += packet.size
        if (key_ms is None or ms is None or ms - key_ms > KEYFRAME_MAX_GAP_MS or held > _GOP_BUFFER_BYTES
                or len(gop) > _GOP_BUFFER_PACKETS):
            # A long GOP (or one without timestamps, or before any keyframe): decode all of it.
            full_gops += 1
            if not all(decode(p) for p in gop):
                ok = False
                break
            gop = None
    if ok and gop is not None:
        ok = close_short_gop()
    if ok:
        for frame in cc.decode(None):
            if not sampler.feed(frame):
                break
    if sampler.decoded == 0:
        # Nothing decoded (e.g. keyframe flags that do not mark decodable frames, or a
        # stream whose every frame is flagged disposable): decode it all, v1-style.
        container.seek(0)
        return _fingerprint_all_frames(container, stream, SAMPLE_INTERVAL_MS, "interval")
    return _result(sampler, "keyframes" if full_gops == 0 else ("interval" if keyframes <= full_gops else "mixed"))


def _fingerprint_all_frames(container: Any, stream: Any, interval_ms: int, sampling: str) -> dict[str, Any]:
    cc = stream.codec_context
    cc.skip_frame = "DEFAULT"
    tb = stream.time_base
    start = stream.start_time * tb if stream.start_time is not None and tb is not None else 0
    sampler = _Sampler(int(round(float(start) * 1000)), tb, interval_ms)
    for frame in container.decode(stream):
        if not sampler.feed(frame):
            break
    return _result(sampler, sampling)


def _result(sampler: _Sampler, sampling: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "scheme": SCHEME,
        "version": VIDEO_FORMAT_VERSION,
        "kind": "video",
        "interval_ms": sampler.interval_ms,
        "sampling": sampling,
        "frames": sampler.frames,
        "rotation": sampler.rotation,
    }
    if sampler.truncated:
        result["truncated"] = True
    return result
