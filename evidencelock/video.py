"""Container and stream facts of video and audio files.

Runs inside the media worker process only (see :mod:`evidencelock.media`).

Why PyAV first and OpenCV only as a fallback: the facts that matter in court live in the
*container*, not in the frames -- ``creation_time``, the QuickTime
``com.apple.quicktime.location.ISO6709`` key, the ``©xyz`` / Android ``location`` atom,
``encoder``, the display-matrix rotation, per-stream codecs, languages and durations.
``cv2.VideoCapture`` exposes none of them (only width, height, fps and a frame count), so it
is used just when libavformat via PyAV cannot open the file at all.

Everything returned is JSON-safe and float-free (frame rates are exact fractions as
strings, e.g. ``"30000/1001"``), because summaries go into RFC 8785 signed entries.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

__all__ = [
    "parse_iso6709",
    "video_metadata",
    "opencv_metadata",
    "normalise_time",
]

RAW_VALUE_LIMIT = 2048
_ISO6709 = re.compile(r"^\s*([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?(?:CRS[^/]*)?/?\s*$")
_LOCATION_KEYS = (
    "com.apple.quicktime.location.ISO6709",
    "location",
    "location-eng",
    "©xyz",
)


def _dec(text: str) -> str:
    d = Decimal(text)
    out = f"{d.normalize():f}"
    return "0" if out == "-0" else out


def parse_iso6709(text: str) -> dict[str, str | None] | None:
    """ISO 6709 point (``+36.2021+037.1343+100.5/``) to decimal-degree strings.

    Only the decimal-degree form is accepted; it is what phones write.  Anything else returns
    ``None`` and the raw tag stays on the record.
    """
    m = _ISO6709.match(text)
    if not m:
        return None
    try:
        lat, lon = Decimal(m[1]), Decimal(m[2])
        if abs(lat) > 90 or abs(lon) > 180:
            return None
        return {
            "latitude": _dec(m[1]),
            "longitude": _dec(m[2]),
            "altitude": _dec(m[3]) if m[3] else None,
        }
    except InvalidOperation:
        return None


def normalise_time(text: str | None) -> str | None:
    """``2024-01-02T03:04:05.000000Z`` -> ``2024-01-02T03:04:05Z`` (RFC 3339, UTC kept)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)  # ffmpeg creation_time is UTC by definition
    when = when.astimezone(timezone.utc)
    frac = f".{when.microsecond:06d}".rstrip("0") if when.microsecond else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + frac.rstrip(".") + "Z"


def _frac(value: Any) -> str | None:
    if value is None:
        return None
    try:
        f = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if f <= 0:
        return None
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _str(value: Any) -> str:
    text = str(value)
    if len(text) > RAW_VALUE_LIMIT:
        text = text[:RAW_VALUE_LIMIT] + f"...<{len(text)} chars>"
    return text.encode("utf-8", "replace").decode("utf-8")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def _ms(duration: Any, time_base: Any) -> int | None:
    if duration is None or time_base is None:
        return None
    try:
        return int(Fraction(duration) * Fraction(time_base) * 1000)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def video_metadata(container: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(summary, raw)`` for an open ``av`` input container.  Decodes no frames."""
    tags = {str(k): _str(v) for k, v in dict(container.metadata).items()}
    raw: dict[str, Any] = {"format": _str(container.format.name), "tags": tags, "streams": []}
    streams: list[dict[str, Any]] = []
    rotation = None
    for s in container.streams:
        cc = s.codec_context
        stags = {str(k): _str(v) for k, v in dict(s.metadata).items()}
        raw["streams"].append({"index": s.index, "type": s.type, "tags": stags})
        info: dict[str, Any] = {
            "index": s.index,
            "type": s.type,
            "codec": cc.name if cc is not None else None,
            "profile": _str(cc.profile) if cc is not None and getattr(cc, "profile", None) else None,
            "bit_rate": _int(getattr(cc, "bit_rate", None)) or None,
            "duration_ms": _ms(s.duration, s.time_base),
            "frames": _int(s.frames) or None,
            "language": stags.get("language"),
        }
        if s.type == "video":
            info.update(
                width=_int(cc.width),
                height=_int(cc.height),
                pixel_format=cc.pix_fmt,
                frame_rate=_frac(s.average_rate) or _frac(s.guessed_rate),
            )
            if "rotate" in stags and rotation is None:
                rotation = _int(stags["rotate"])
        elif s.type == "audio":
            info.update(sample_rate=_int(cc.sample_rate), channels=_int(cc.channels), layout=_str(cc.layout.name))
        streams.append(info)
    location = None
    location_raw = None
    for key in _LOCATION_KEYS:
        for candidate in [tags] + [st["tags"] for st in raw["streams"]]:
            if key in candidate:
                location_raw = candidate[key]
                location = parse_iso6709(location_raw)
                break
        if location_raw is not None:
            break
    creation_raw = tags.get("com.apple.quicktime.creationdate") or tags.get("creation_time")
    if creation_raw is None:
        for st in raw["streams"]:
            if "creation_time" in st["tags"]:
                creation_raw = st["tags"]["creation_time"]
                break
    duration_ms = int(container.duration // 1000) if container.duration is not None else None
    summary: dict[str, Any] = {
        "container": container.format.name,
        "duration_ms": duration_ms,
        "bit_rate": _int(container.bit_rate) or None,
        "creation_time": normalise_time(creation_raw),
        "creation_time_raw": creation_raw,
        "location": location,
        "location_raw": location_raw,
        "make": tags.get("com.apple.quicktime.make") or tags.get("make"),
        "model": tags.get("com.apple.quicktime.model") or tags.get("model"),
        "software": tags.get("com.apple.quicktime.software") or tags.get("software"),
        "encoder": tags.get("encoder") or next((st["tags"]["encoder"].strip() or None for st in raw["streams"] if "encoder" in st["tags"]), None),
        "rotation": rotation,
        "streams": streams,
    }
    return summary, raw


def opencv_metadata(path: str) -> dict[str, Any] | None:
    """Frame facts from OpenCV when PyAV cannot open the file; ``None`` if OpenCV cannot either."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return None
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if width <= 0 or height <= 0:
            return None
        rate = _frac(Fraction(fps).limit_denominator(1001)) if fps and fps > 0 else None
        return {
            "container": None,
            "duration_ms": int(count * 1000 / fps) if fps and fps > 0 and count > 0 else None,
            "streams": [{"index": 0, "type": "video", "width": width, "height": height, "frame_rate": rate,
                         "frames": count if count > 0 else None}],
            "source": "opencv",
        }
    finally:
        cap.release()
