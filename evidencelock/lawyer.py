"""Words a lawyer reads: human dates and plain labels for the metadata a file states about itself.

Used by the court report (report.pdf) and the editable certification (certification.docx/.odt),
which are pinned by digest only (docs/bundle-format.md §4.7), so these words may change between
versions without breaking the verification of older bundles.  Nothing here is a verified fact:
capture metadata is what the file claims (docs/media.md §1).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any

__all__ = ["human_date", "capture_time", "media_rows", "location_of", "bundle_digest", "degrees"]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


def _parse(t: Any) -> datetime | None:
    if not isinstance(t, str) or not re.match(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", t):
        return None
    s = t.strip().replace(" ", "T", 1)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        return None


def human_date(t: Any, *, seconds: bool = False) -> str:
    """``30 April 2014, 14:05 UTC`` from an RFC 3339 / ledger time (no microseconds ever shown).
    A string that is not a time is returned as it is."""
    d = _parse(t)
    if d is None:
        return str(t)
    if d.tzinfo is not None:
        d = d.astimezone(timezone.utc)
    clock = d.strftime("%H:%M:%S" if seconds else "%H:%M")
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}, {clock} UTC"


def capture_time(t: Any) -> str:
    """A camera's own clock as the file states it: local time with the offset it gives, or
    "time zone not stated" (a camera clock without an offset is not UTC)."""
    d = _parse(t)
    if d is None:
        return str(t)
    base = f"{d.day} {_MONTHS[d.month - 1]} {d.year}, {d.strftime('%H:%M:%S')}"
    if d.tzinfo is None:
        return f"{base} (time zone not stated)"
    off = d.utcoffset()
    if off is not None and off.total_seconds() == 0:
        return f"{base} UTC"
    return f"{base} (UTC{d.strftime('%z')[:3]}:{d.strftime('%z')[3:]})"


def degrees(lat: float, lon: float) -> str:
    return f"{abs(lat):.5f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.5f}° {'E' if lon >= 0 else 'W'}"


def location_of(media: Any) -> tuple[float, float] | None:
    """(latitude, longitude) in decimal degrees that a file states (EXIF GPS or a video's
    ISO 6709 location), or None."""
    if not isinstance(media, dict) or not isinstance(media.get("summary"), dict):
        return None
    s = media["summary"]
    loc = s.get("gps") if isinstance(s.get("gps"), dict) else s.get("location")
    if not isinstance(loc, dict):
        return None
    try:
        lat, lon = float(str(loc.get("latitude"))), float(str(loc.get("longitude")))
    except ValueError:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or lat != lat or lon != lon:
        return None
    return lat, lon


_FORMATS = {"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF", "heif": "HEIF/HEIC", "heic": "HEIF/HEIC", "webp": "WebP",
            "gif": "GIF", "bmp": "BMP", "mp4": "MP4/QuickTime", "mov": "MP4/QuickTime", "matroska": "Matroska/WebM",
            "webm": "Matroska/WebM", "avi": "AVI", "3gp": "3GP (mobile)", "mpegts": "MPEG transport stream",
            "mp3": "MP3", "wav": "WAV", "ogg": "Ogg", "flac": "FLAC"}
_CODECS = {"h264": "H.264", "hevc": "H.265/HEVC", "mpeg4": "MPEG-4 Part 2", "vp8": "VP8", "vp9": "VP9", "av1": "AV1",
           "aac": "AAC", "mp3": "MP3", "opus": "Opus", "vorbis": "Vorbis", "pcm_s16le": "PCM", "mjpeg": "Motion JPEG"}


def _format_name(summary: dict[str, Any]) -> str | None:
    fmt = str(summary.get("format") or "").lower()
    if fmt in _FORMATS:
        return _FORMATS[fmt]
    container = str(summary.get("container") or "").lower()
    if "mp4" in container.split(",") or "mov" in container.split(","):
        return "MP4/QuickTime"
    for part in container.split(","):
        if part in _FORMATS:
            return _FORMATS[part]
    return fmt.upper() or None


def _duration(ms: Any) -> str | None:
    if not isinstance(ms, int) or ms < 0:
        return None
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} seconds"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def _stream(st: dict[str, Any]) -> tuple[str, str] | None:
    kind = st.get("type")
    codec = _CODECS.get(str(st.get("codec")), str(st.get("codec") or "unknown codec"))
    if kind == "video":
        parts = [codec]
        if st.get("width") and st.get("height"):
            parts.append(f"{st['width']} × {st['height']} pixels")
        rate = st.get("frame_rate")
        if isinstance(rate, str) and re.fullmatch(r"\d+(/\d+)?", rate):
            n, _, d = rate.partition("/")
            fps = int(n) / int(d or 1) if int(d or 1) else 0
            parts.append(f"{fps:.3g} frames per second")
        return "Video track", ", ".join(parts)
    if kind == "audio":
        return "Audio track", codec
    return None


def _flag(flag: str, summary: dict[str, Any]) -> str:
    code, _, rest = flag.partition(":")
    if code == "thumbnail-differs":
        m = re.search(r"distance (\d+)", rest)
        dist = m[1] if m else summary.get("thumbnail_distance", "?")
        return (f"Embedded preview differs from the image (distance {dist} of 256): the picture may have been "
                "edited after the preview was made")
    if code == "exif-gps-time-mismatch":
        m = re.search(r"differ by (-?\d+) s", rest)
        return "Camera clock and GPS clock disagree" + (f" by {abs(int(m[1]))} seconds" if m else "")
    if code == "editing-software":
        m = re.search(r"=(.*)", rest)
        return "Names editing software" + (f": {m[1].strip()}" if m else "")
    if code == "exif-modified-after-capture":
        m = re.search(r"\((\d+) s later\)", rest)
        return "Marked as changed after it was recorded" + (f" ({int(m[1])} seconds later)" if m else "")
    if code in ("exif-time-after-mtime", "creation-time-after-mtime"):
        return "States a recording time later than the file's own modification time"
    return flag


def media_rows(media: Any) -> list[tuple[str, str]]:
    """(label, value) rows a lawyer understands, from the extracted metadata (metadata.json).

    Leaves out internals (fingerprints, bit rates, stream indexes, raw tags, null fields)."""
    if not isinstance(media, dict):
        return []
    kind = media.get("kind")
    s = media.get("summary") if isinstance(media.get("summary"), dict) else {}
    rows: list[tuple[str, str]] = []
    fmt = _format_name(s)
    if kind in ("image", "video", "audio"):
        rows.append(("File type", {"image": "Photo", "video": "Video", "audio": "Audio recording"}[kind]))
        if fmt:
            rows.append(({"image": "Image format", "video": "Video format", "audio": "Audio format"}[kind], fmt))
    else:
        rows.append(("File type", "Not recognised as a photo, video or audio recording (kept and hashed as it is)"))
    cam = s.get("camera") if isinstance(s.get("camera"), dict) else {}
    make, model = cam.get("make") or s.get("make"), cam.get("model") or s.get("model")
    if make:
        rows.append(("Camera make", str(make)))
    if model:
        rows.append(("Camera model", str(model)))
    if cam.get("serial"):
        rows.append(("Camera serial number", str(cam["serial"])))
    lens = " ".join(str(cam[k]) for k in ("lens_make", "lens_model") if cam.get(k))
    if lens:
        rows.append(("Lens", lens))
    when = s.get("capture_time") or s.get("creation_time")
    if when:
        rows.append(("Recorded (camera clock)", capture_time(when)))
    if s.get("digitized_time") and s.get("digitized_time") != s.get("capture_time"):
        rows.append(("Digitised (camera clock)", capture_time(s["digitized_time"])))
    if s.get("modify_time"):
        rows.append(("Last changed (file's own clock)", capture_time(s["modify_time"])))
    loc = location_of(media)
    if loc is not None:
        rows.append(("Location (GPS)", degrees(*loc)))
        g = s.get("gps") if isinstance(s.get("gps"), dict) else s.get("location") or {}
        if isinstance(g, dict) and g.get("altitude") not in (None, ""):
            rows.append(("Altitude", f"{g['altitude']} m"))
        if isinstance(g, dict) and g.get("direction") not in (None, ""):
            ref = {"T": "true north", "M": "magnetic north"}.get(str(g.get("direction_ref")), "")
            rows.append(("Camera facing", f"{g['direction']}°" + (f" from {ref}" if ref else "")))
        if isinstance(g, dict) and g.get("timestamp"):
            rows.append(("GPS time", human_date(g["timestamp"], seconds=True)))
    dur = _duration(s.get("duration_ms"))
    if dur:
        rows.append(("Duration", dur))
    if kind == "image" and s.get("width") and s.get("height"):
        rows.append(("Picture size", f"{s['width']} × {s['height']} pixels"))
    for st in (s.get("streams") or [])[:4]:
        if isinstance(st, dict) and (r := _stream(st)):
            rows.append(r)
    if isinstance(s.get("rotation"), int) and s["rotation"]:
        rows.append(("Shown rotated by", f"{s['rotation']}°"))
    soft = [str(s[k]) for k in ("software", "processing_software", "encoder") if s.get(k)]
    if soft:
        rows.append(("Software named in the file", "; ".join(dict.fromkeys(soft))))
    c2pa = s.get("c2pa")
    if isinstance(c2pa, dict) and c2pa.get("present", True):
        state = c2pa.get("validation_state") or "unknown"
        who = c2pa.get("signer") or c2pa.get("issuer")
        rows.append(("Content credentials (C2PA)", f"{state}" + (f", signed by {who}" if who else "")))
    for f in (media.get("flags") or [])[:6]:
        rows.append(("Warning", _flag(str(f), s)))
    return [(k, v[:300]) for k, v in rows]


def bundle_digest(plan: list[dict[str, Any]]) -> str:
    """The SHA-256 of the bundle's ``manifest-sha256.txt`` (docs/bundle-format.md §2): computed
    from the plan exactly as the writer writes that file, so a reader recomputes it with
    ``sha256sum manifest-sha256.txt``.  It identifies the evidence (every payload file's name and
    SHA-256).  The tag manifest cannot be used: it covers the report itself."""
    return hashlib.sha256("".join(f"{p['sha256']}  {p['path']}\n" for p in plan).encode()).hexdigest()
