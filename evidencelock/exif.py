"""EXIF metadata of still images: camera, capture time, GPS, editing traces.

Runs inside the media worker process only (see :mod:`evidencelock.media`): exifread walks
offsets an attacker controls.  Everything returned is JSON-safe and float-free, because the
summary ends up inside RFC 8785 signed ledger entries: decimals are strings
(``"36.2021"``), times are RFC 3339 strings.

Capture time is kept as the camera wrote it (local wall-clock time) plus the offset
(``OffsetTimeOriginal``, EXIF 2.31) when the camera recorded one; without an offset the time
is *not* converted to UTC, since guessing a time zone would put a fact on the record that
the file does not contain.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, BinaryIO

import exifread

__all__ = [
    "EDITING_SOFTWARE",
    "exif_metadata",
    "exif_flags",
    "parse_rfc3339",
]

RAW_VALUE_LIMIT = 2048  # characters kept per raw tag; maker notes can hold megabytes
RAW_TAG_LIMIT = 2000  # tags kept; a crafted IFD can declare tens of thousands
TIME_TOLERANCE_S = 120

# Lower-case substrings of Software / ProcessingSoftware values written by editors rather
# than by a camera's own firmware.
EDITING_SOFTWARE = (
    "photoshop", "lightroom", "gimp", "snapseed", "picasa", "paint.net", "affinity",
    "pixelmator", "acdsee", "photoscape", "facetune", "picsart", "vsco", "luminar",
    "capture one", "darktable", "rawtherapee", "photos 1", "paintshop", "corel",
    "fotor", "canva", "inshot", "meitu", "airbrush", "imagemagick", "graphicsmagick",
)

_EXIF_DT = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})\s*$")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):(\d{2})\s*$")


def _clean(value: Any) -> str | None:
    text = str(value).replace("\x00", "").strip()
    return text or None


def _tag(tags: dict[str, Any], *names: str) -> str | None:
    for name in names:
        if name in tags:
            text = _clean(tags[name].printable if hasattr(tags[name], "printable") else tags[name])
            if text:
                return text
    return None


def _decimal(value: Any) -> Decimal:
    num = getattr(value, "num", None)
    den = getattr(value, "den", None)
    if num is None or den is None:
        return Decimal(str(value))
    if den == 0:
        raise ZeroDivisionError("rational with zero denominator")
    with localcontext() as ctx:
        ctx.prec = 40
        return Decimal(num) / Decimal(den)


def _dec_str(value: Decimal, places: int = 7) -> str:
    """A decimal as a plain string, rounded to ``places`` and without trailing zeros."""
    q = value.quantize(Decimal(1).scaleb(-places))
    text = f"{q.normalize():f}"
    return "0" if text in ("-0", "") else text


def _exif_time(text: str | None, subsec: str | None = None, offset: str | None = None) -> str | None:
    if not text:
        return None
    m = _EXIF_DT.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = m.groups()
    out = f"{y}-{mo}-{d}T{h}:{mi}:{s}"
    if subsec and subsec.strip().isdigit():
        out += "." + subsec.strip()
    if offset and _OFFSET.match(offset):
        out += offset.strip()
    return out


def parse_rfc3339(text: str | None) -> datetime | None:
    """Parse the times this module and :mod:`evidencelock.video` produce; ``None`` if unparsable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _gps(tags: dict[str, Any], errors: list[str]) -> dict[str, Any] | None:
    if not any(k.startswith("GPS ") and k != "GPS GPSVersionID" for k in tags):
        return None
    out: dict[str, Any] = {}

    def dms(key: str, ref_key: str, negative: str) -> str | None:
        tag = tags.get(key)
        if tag is None:
            return None
        vals = list(getattr(tag, "values", []))
        if not 1 <= len(vals) <= 3:
            errors.append(f"metadata unavailable: {key} has {len(vals)} values, expected 3")
            return None
        total = Decimal(0)
        for i, v in enumerate(vals):
            total += _decimal(v) / (Decimal(60) ** i)
        ref = _tag(tags, ref_key)
        if ref and ref.upper().startswith(negative):
            total = -total
        return _dec_str(total)

    try:
        out["latitude"] = dms("GPS GPSLatitude", "GPS GPSLatitudeRef", "S")
        out["longitude"] = dms("GPS GPSLongitude", "GPS GPSLongitudeRef", "W")
        alt = tags.get("GPS GPSAltitude")
        if alt is not None and getattr(alt, "values", None):
            a = _decimal(alt.values[0])
            ref = tags.get("GPS GPSAltitudeRef")
            if ref is not None and getattr(ref, "values", None) and ref.values[0] == 1:
                a = -a  # EXIF 2.32 GPSAltitudeRef 1: below sea level
            out["altitude"] = _dec_str(a, 3)
        else:
            out["altitude"] = None
        direction = tags.get("GPS GPSImgDirection")
        out["direction"] = _dec_str(_decimal(direction.values[0]), 3) if direction is not None and direction.values else None
        out["direction_ref"] = _tag(tags, "GPS GPSImgDirectionRef")
        out["map_datum"] = _tag(tags, "GPS GPSMapDatum")
        out["timestamp"] = None
        stamp = tags.get("GPS GPSTimeStamp")
        date = _tag(tags, "GPS GPSDate")
        if stamp is not None and date and len(getattr(stamp, "values", [])) == 3:
            h, m, s = (_decimal(v) for v in stamp.values)
            dm = re.match(r"^(\d{4}):(\d{2}):(\d{2})$", date)
            if dm:
                base = datetime(int(dm[1]), int(dm[2]), int(dm[3]), tzinfo=timezone.utc)
                secs = h * 3600 + m * 60 + s
                when = base + timedelta(seconds=int(secs))
                out["timestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ZeroDivisionError, InvalidOperation, ValueError, OverflowError, TypeError, IndexError) as exc:
        errors.append(f"metadata unavailable: GPS tags malformed ({type(exc).__name__}: {exc})")
    return out


def _raw(tags: dict[str, Any]) -> dict[str, str]:
    raw: dict[str, str] = {}
    for key, value in list(tags.items())[:RAW_TAG_LIMIT]:
        if key in ("JPEGThumbnail", "TIFFThumbnail"):
            raw[key] = f"<{len(value)} bytes>" if isinstance(value, (bytes, bytearray)) else "<present>"
            continue
        text = str(getattr(value, "printable", value))
        if len(text) > RAW_VALUE_LIMIT:
            text = text[:RAW_VALUE_LIMIT] + f"...<{len(text)} chars>"
        raw[str(key)] = text.encode("utf-8", "replace").decode("utf-8")
    return raw


def exif_metadata(fh: BinaryIO) -> tuple[dict[str, Any], dict[str, str], list[str], bytes | None]:
    """Read EXIF from an open file: ``(summary, raw, errors, embedded thumbnail bytes)``.

    ``details=True`` (maker notes) is tried first; if maker-note parsing fails on a crafted
    file, the standard IFDs alone are read again so the camera and time still get recorded.
    """
    errors: list[str] = []
    tags: dict[str, Any] = {}
    try:
        tags = exifread.process_file(fh, details=True, extract_thumbnail=True)
    except Exception as exc:  # exifread raises bare exceptions on crafted IFDs
        errors.append(f"metadata unavailable: exif maker notes unreadable ({type(exc).__name__}: {exc})")
        try:
            fh.seek(0)
            tags = exifread.process_file(fh, details=False, extract_thumbnail=True)
        except Exception as exc2:
            errors.append(f"metadata unavailable: exif unreadable ({type(exc2).__name__}: {exc2})")
            tags = {}
    thumb = tags.get("JPEGThumbnail")
    thumb_bytes = thumb if isinstance(thumb, (bytes, bytearray)) else None
    orientation = None
    otag = tags.get("Image Orientation")
    if otag is not None and getattr(otag, "values", None):
        try:
            orientation = int(otag.values[0])
        except (TypeError, ValueError):
            orientation = None
    summary: dict[str, Any] = {
        "camera": {
            "make": _tag(tags, "Image Make"),
            "model": _tag(tags, "Image Model"),
            "serial": _tag(
                tags, "EXIF BodySerialNumber", "MakerNote SerialNumber",
                "MakerNote InternalSerialNumber", "Image CameraSerialNumber",
            ),
            "lens_make": _tag(tags, "EXIF LensMake"),
            "lens_model": _tag(tags, "EXIF LensModel", "MakerNote LensModel", "MakerNote LensType"),
            "lens_serial": _tag(tags, "EXIF LensSerialNumber"),
        },
        "capture_time": _exif_time(
            _tag(tags, "EXIF DateTimeOriginal"), _tag(tags, "EXIF SubSecTimeOriginal"),
            _tag(tags, "EXIF OffsetTimeOriginal"),
        ),
        "capture_time_offset": _tag(tags, "EXIF OffsetTimeOriginal"),
        "digitized_time": _exif_time(
            _tag(tags, "EXIF DateTimeDigitized"), None, _tag(tags, "EXIF OffsetTimeDigitized")
        ),
        "modify_time": _exif_time(_tag(tags, "Image DateTime"), None, _tag(tags, "EXIF OffsetTime")),
        "gps": _gps(tags, errors),
        "orientation": orientation,
        "software": _tag(tags, "Image Software"),
        "processing_software": _tag(tags, "Image ProcessingSoftware"),
        "thumbnail": thumb_bytes is not None,
    }
    return summary, _raw(tags), errors, bytes(thumb_bytes) if thumb_bytes else None


def _local_vs_utc_suspicious(local_naive: datetime, utc: datetime) -> tuple[bool, int]:
    """Without an offset, a local time may differ from UTC by a whole time zone
    (multiples of 15 minutes, within UTC-12..UTC+14); anything else disagrees."""
    diff = (local_naive.replace(tzinfo=timezone.utc) - utc).total_seconds()
    if diff < -12 * 3600 - TIME_TOLERANCE_S or diff > 14 * 3600 + TIME_TOLERANCE_S:
        return True, int(diff)
    rem = diff % 900
    return min(rem, 900 - rem) > TIME_TOLERANCE_S, int(diff)


def exif_flags(summary: dict[str, Any], *, mtime: str | None) -> list[str]:
    """Inconsistencies an analyst should look at; each names both values."""
    flags: list[str] = []
    capture = parse_rfc3339(summary.get("capture_time"))
    gps = summary.get("gps") or {}
    gps_time = parse_rfc3339(gps.get("timestamp"))
    if capture is not None and gps_time is not None:
        if capture.tzinfo is not None:
            diff = int((capture - gps_time).total_seconds())
            bad = abs(diff) > TIME_TOLERANCE_S
        else:
            bad, diff = _local_vs_utc_suspicious(capture, gps_time)
        if bad:
            flags.append(
                f"exif-gps-time-mismatch: DateTimeOriginal={summary['capture_time']} "
                f"GPS={gps['timestamp']} differ by {diff} s"
            )
    for field in ("software", "processing_software"):
        value = summary.get(field)
        if value and any(name in value.lower() for name in EDITING_SOFTWARE):
            flags.append(f"editing-software: {field}={value}")
    modify = parse_rfc3339(summary.get("modify_time"))
    if capture is not None and modify is not None and (capture.tzinfo is None) == (modify.tzinfo is None):
        delta = int((modify - capture).total_seconds())
        if delta > TIME_TOLERANCE_S:
            flags.append(
                f"exif-modified-after-capture: DateTime={summary['modify_time']} "
                f"DateTimeOriginal={summary['capture_time']} ({delta} s later)"
            )
    file_time = parse_rfc3339(mtime)
    if capture is not None and file_time is not None:
        if file_time.tzinfo is None:
            file_time = file_time.replace(tzinfo=timezone.utc)
        if capture.tzinfo is not None:
            ahead = int((capture - file_time).total_seconds())
            slack = TIME_TOLERANCE_S
        else:
            ahead = int((capture.replace(tzinfo=timezone.utc) - file_time).total_seconds())
            slack = 14 * 3600 + TIME_TOLERANCE_S  # unknown zone: allow the widest offset
        if ahead > slack:
            flags.append(
                f"exif-time-after-mtime: DateTimeOriginal={summary['capture_time']} "
                f"is {ahead} s after file mtime={mtime}"
            )
    return flags
