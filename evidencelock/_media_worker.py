"""The child side of :mod:`evidencelock.media`: the only process that parses untrusted media.

Two modes:

* ``python -m evidencelock._media_worker --serve --memory-limit N`` -- a persistent worker.
  It limits its own address space (``RLIMIT_AS``) *before* importing any parser, imports the
  parsers once, announces ``{"ready": …}`` and then answers one JSON request per line on
  stdin with one JSON line on the protocol channel.  Exits on EOF.
* ``python -m evidencelock._media_worker PATH [--mtime T] [--memory-limit N]`` -- one-shot,
  prints the JSON result (for debugging a file by hand).

The protocol channel is a private duplicate of the original stdout; file descriptor 1 is then
pointed at stderr, so a C library that prints to stdout cannot corrupt the answers.

Test hooks (request field ``hook``, or ``$EVIDENCELOCK_MEDIA_TEST_HOOK`` in one-shot mode)
simulate the failures a crafted file can cause in a native decoder: ``hang`` (sleep forever),
``abort`` (``os.abort()``, a SIGABRT like a failed assertion), ``alloc`` (allocate without
bound until ``RLIMIT_AS`` stops it), ``garbage`` (write non-JSON), ``exit`` (exit silently).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any, BinaryIO

__all__ = ["EXTRACTOR_VERSION", "detect_kind", "analyse", "extractor_name", "main"]

EXTRACTOR_VERSION = "2"  # 2: video fingerprint format v2 (keyframe sampling, docs/media.md §2.1)
HOOK_ENV = "EVIDENCELOCK_MEDIA_TEST_HOOK"
MAX_IMAGE_PIXELS = 100_000_000  # 100 MP; larger declared sizes are refused before decoding
C2PA_RAW_LIMIT = 1 << 20

# Magic numbers -> (kind, format, mime for c2pa).  "probe" = a container that may hold
# video or audio; the streams decide.
_ISO_BMFF_IMAGE_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"avif", b"heim", b"heis", b"hevc"}
_ISO_BMFF_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"F4A "}


def _set_memory_limit(limit: int | None) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files from crafted inputs
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def detect_kind(head: bytes) -> tuple[str, str | None, str | None]:
    """``(kind, format, mime)`` from the first bytes of a file, never from its name.

    ``kind`` is ``image``, ``probe`` (a container: streams decide video/audio) or ``other``.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg", "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png", "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif", "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp", "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "tiff", "image/tiff"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image", "bmp", None
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _ISO_BMFF_IMAGE_BRANDS:
            return "image", "heif", "image/heic"
        if brand in _ISO_BMFF_AUDIO_BRANDS:
            return "probe", "mp4", "audio/mp4"
        if brand == b"qt  ":
            return "probe", "mov", "video/quicktime"
        return "probe", "mp4", "video/mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip") and len(head) >= 8:
        return "probe", "mov", "video/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "probe", "matroska", None
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "probe", "avi", "video/avi"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "probe", "wav", "audio/wav"
    if head.startswith(b"FLV\x01"):
        return "probe", "flv", None
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "probe", "asf", None
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "probe", "mpeg", None
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "probe", "mpegts", None
    if head.startswith(b"OggS"):
        return "probe", "ogg", None
    if head.startswith(b"fLaC"):
        return "probe", "flac", "audio/flac"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "probe", "mp3", "audio/mpeg"
    if head.startswith(b"#!AMR"):
        return "probe", "amr", None
    return "other", None, None


def _lib_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist, label in (("exifread", "exifread"), ("av", "pyav"), ("opencv-python-headless", "opencv"),
                        ("pdqhash", "pdqhash"), ("c2pa-python", "c2pa"), ("pillow", "pillow")):
        try:
            out[label] = version(dist)
        except PackageNotFoundError:
            if label == "opencv":
                import cv2

                out[label] = cv2.__version__
    try:
        import av

        lav = av.library_versions.get("libavcodec")
        if lav:
            out["libavcodec"] = ".".join(str(x) for x in lav)
    except Exception:  # pragma: no cover - reported as missing version only
        pass
    return out


def extractor_name() -> str:
    """Name and version of this extractor and of every parser it uses, for reproducibility."""
    parts = [f"evidencelock.media/{EXTRACTOR_VERSION}"]
    parts += [f"{k}/{v}" for k, v in _lib_versions().items()]
    return " ".join(parts)


def _hook(name: str | None, memory_limit: int | None) -> None:
    if not name:
        return
    if name == "hang":
        while True:
            time.sleep(3600)
    if name == "abort":
        os.abort()
    if name == "exit":
        os._exit(3)
    if name == "alloc":
        hog = []
        while True:
            hog.append(bytearray(64 << 20))


def _c2pa(path: str, mime: str | None) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """Read and validate a C2PA manifest store; ``(summary, raw json, errors)``."""
    if mime is None:
        return None, None, []
    import c2pa

    try:
        with open(path, "rb") as fh:
            reader = c2pa.Reader(mime, fh)
            try:
                store = json.loads(reader.json())
                state = reader.get_validation_state()
            finally:
                reader.close()
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "ManifestNotFound" in str(exc):
            return None, None, []
        return None, None, [f"c2pa unavailable: {type(exc).__name__}: {str(exc)[:300]}"]
    active_label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(active_label) or {}
    sig = manifest.get("signature_info") or {}
    statuses = store.get("validation_status") or []
    summary = {
        "present": True,
        "validation_state": str(state) if state is not None else None,
        "validation_status": sorted({str(s.get("code")) for s in statuses if isinstance(s, dict)}),
        "signer": sig.get("common_name") or sig.get("issuer"),
        "issuer": sig.get("issuer"),
        "signed_time": sig.get("time"),
        "claim_generator": manifest.get("claim_generator")
        or " ".join(
            f"{g.get('name')}/{g.get('version')}" for g in manifest.get("claim_generator_info") or []
            if isinstance(g, dict)
        )
        or None,
        "title": manifest.get("title"),
        "manifests": len(store.get("manifests") or {}),
    }
    text = json.dumps(store, sort_keys=True)
    if len(text) > C2PA_RAW_LIMIT:
        text = text[:C2PA_RAW_LIMIT] + f"...<{len(text)} chars>"
    return summary, text, []


_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
              6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def _trim_black(rgb: Any) -> Any:
    """Drop letterbox bars that cameras add to 4:3 EXIF thumbnails of 3:2 images."""
    import numpy as np

    gray = rgb.mean(axis=2)
    rows = np.where(gray.mean(axis=1) > 12)[0]
    cols = np.where(gray.mean(axis=0) > 12)[0]
    if len(rows) < 8 or len(cols) < 8:
        return rgb
    return rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _analyse_image(path: str, fmt: str, mime: str | None, mtime: str | None, out: dict[str, Any]) -> None:
    import warnings

    import numpy as np
    from PIL import Image

    from . import exif, fingerprint

    summary: dict[str, Any] = {"format": fmt, "width": None, "height": None}
    with open(path, "rb") as fh:
        exif_summary, raw_exif, errors, thumb = exif.exif_metadata(fh)
    summary.update(exif_summary)
    out["raw"]["exif"] = raw_exif
    out["errors"] += errors
    out["flags"] += exif.exif_flags(exif_summary, mtime=mtime)

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    raw_hash = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                summary["width"], summary["height"] = img.size
                if img.format == "JPEG":
                    img.draft("RGB", (1024, 1024))  # DCT-domain downscale: fast, PDQ needs ~512 px
                img.load()
                rgb_img = img.convert("RGB")
        if thumb is not None:
            raw_hash, _ = fingerprint.pdq_of_rgb(np.asarray(rgb_img))
        method = _TRANSPOSE.get(summary.get("orientation") or 1)
        if method:
            rgb_img = rgb_img.transpose(getattr(Image.Transpose, method))
        out["fingerprints"] = {"scheme": fingerprint.SCHEME, "kind": "image",
                               **fingerprint.pdq_entry_rgb(np.asarray(rgb_img)),
                               "orientation_corrected": bool(method)}
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        out["errors"].append(f"fingerprint unavailable: image too large to decode ({exc})")
    except MemoryError:
        raise
    except Exception as exc:
        out["errors"].append(f"fingerprint unavailable: image undecodable ({type(exc).__name__}: {str(exc)[:300]})")

    if thumb is not None and raw_hash is not None:
        try:
            import io

            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(thumb)) as t:
                    if t.size[0] * t.size[1] > 4_000_000:
                        raise ValueError(f"thumbnail declares {t.size[0]}x{t.size[1]} pixels")
                    trgb = np.asarray(t.convert("RGB"))
            th, tq = fingerprint.pdq_of_rgb(_trim_black(trgb))
            dist = fingerprint.hamming_hex(th, raw_hash)
            summary["thumbnail_distance"] = dist
            if dist > THUMBNAIL_DIFF_THRESHOLD and tq >= 50:
                out["flags"].append(
                    f"thumbnail-differs: PDQ distance {dist} between embedded EXIF thumbnail and image "
                    f"(threshold {THUMBNAIL_DIFF_THRESHOLD}); the image may have been edited after capture"
                )
        except MemoryError:
            raise
        except Exception as exc:
            out["errors"].append(f"metadata unavailable: EXIF thumbnail undecodable ({type(exc).__name__}: {exc})")

    c2pa_summary, c2pa_raw, c2pa_errors = _c2pa(path, mime)
    summary["c2pa"] = c2pa_summary
    if c2pa_raw is not None:
        out["raw"]["c2pa"] = c2pa_raw
    out["errors"] += c2pa_errors
    out["summary"] = summary


THUMBNAIL_DIFF_THRESHOLD = 90


def _analyse_av(path: str, fmt: str, mime: str | None, mtime: str | None, out: dict[str, Any], *,
                dense: bool = False) -> None:
    import av

    from . import fingerprint, video

    out["kind"] = "video"
    try:
        container = av.open(path, mode="r", metadata_errors="replace")
    except MemoryError:
        raise
    except Exception as exc:
        out["errors"].append(f"metadata unavailable: container unreadable ({type(exc).__name__}: {str(exc)[:300]})")
        facts = video.opencv_metadata(path)
        if facts is not None:
            out["summary"] = facts
            out["flags"].append("metadata-from-opencv: PyAV could not open the container; only frame facts recorded")
        return
    try:
        summary, raw = video.video_metadata(container)
        summary["format"] = fmt
        out["raw"]["container"] = raw
        vstreams = [s for s in container.streams.video
                    if not (s.disposition & getattr(av.stream.Disposition, "attached_pic", 1 << 10))]
        if not vstreams:
            out["kind"] = "audio" if container.streams.audio else "other"
            if out["kind"] == "other":
                out["errors"].append("metadata unavailable: container holds no video or audio stream")
        else:
            stream = vstreams[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            if w * h > 8192 * 8192:
                out["errors"].append(f"fingerprint unavailable: video declares {w}x{h} pixels (limit 8192x8192)")
            else:
                try:
                    fp = fingerprint.video_fingerprint(container, stream, dense=dense)
                    rotation = fp.pop("rotation", None)
                    if summary.get("rotation") is None and rotation is not None:
                        summary["rotation"] = rotation
                    if fp["frames"]:
                        out["fingerprints"] = fp
                    else:
                        out["errors"].append("fingerprint unavailable: no frame could be decoded")
                except MemoryError:
                    raise
                except Exception as exc:
                    out["errors"].append(
                        f"fingerprint unavailable: video undecodable ({type(exc).__name__}: {str(exc)[:300]})"
                    )
        out["summary"] = summary
    finally:
        container.close()
    if out["kind"] == "video":
        flags = []
        ct = summary.get("creation_time")
        if ct and mtime:
            from .exif import parse_rfc3339

            a, b = parse_rfc3339(ct), parse_rfc3339(mtime)
            if a is not None and b is not None:
                if b.tzinfo is None:
                    from datetime import timezone

                    b = b.replace(tzinfo=timezone.utc)
                ahead = int((a - b).total_seconds())
                if ahead > 120:
                    flags.append(f"creation-time-after-mtime: creation_time={ct} is {ahead} s after file mtime={mtime}")
        sw = (summary.get("encoder") or "") + " " + (summary.get("software") or "")
        from .exif import EDITING_SOFTWARE

        if any(name in sw.lower() for name in EDITING_SOFTWARE + ("premiere", "final cut", "davinci", "capcut", "imovie")):
            flags.append(f"editing-software: encoder={summary.get('encoder')} software={summary.get('software')}")
        out["flags"] += flags
    c2pa_summary, c2pa_raw, c2pa_errors = _c2pa(path, mime)
    if isinstance(out.get("summary"), dict):
        out["summary"]["c2pa"] = c2pa_summary
    if c2pa_raw is not None:
        out["raw"]["c2pa"] = c2pa_raw
    out["errors"] += c2pa_errors


def triage(path: str) -> tuple[dict[str, Any] | None, str, str | None, str | None]:
    """The complete result for a file that needs no parser (unreadable, empty, not media),
    else ``(None, kind, format, mime)``.  Reads 512 bytes and compares prefixes only, so the
    parent process may run it: a folder of documents never waits on a worker round trip.
    """
    out: dict[str, Any] = {"kind": "other", "summary": {}, "raw": {}, "fingerprints": {}, "flags": [], "errors": []}
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        out["errors"].append(f"metadata unavailable: cannot read file ({type(exc).__name__}: {exc.strerror})")
        return out, "other", None, None
    if size == 0:
        out["errors"].append("metadata unavailable: empty file (0 bytes)")
        return out, "other", None, None
    kind, fmt, mime = detect_kind(head)
    if kind == "other":
        out["summary"] = {"format": None}
        out["errors"].append(
            f"metadata unavailable: unrecognised format (not a known image, video or audio container; "
            f"first bytes {head[:16].hex()})"
        )
        return out, "other", None, None
    return None, kind, fmt, mime


def analyse(path: str, *, mtime: str | None = None, dense: bool = False) -> dict[str, Any]:
    """Everything known about one file, as the JSON-ready fields of a MediaReport.

    ``dense``: query-side video sampling (see :func:`evidencelock.fingerprint.video_fingerprint`).
    """
    done, kind, fmt, mime = triage(path)
    if done is not None:
        return done
    out: dict[str, Any] = {"kind": "other", "summary": {}, "raw": {}, "fingerprints": {}, "flags": [], "errors": []}
    if kind == "image":
        out["kind"] = "image"
        _analyse_image(path, fmt or "", mime, mtime, out)
    else:
        _analyse_av(path, fmt or "", mime, mtime, out, dense=dense)
    return out


def _serve(proto: BinaryIO, memory_limit: int | None) -> None:
    import av  # noqa: F401  - imported once here so each request is fast
    import cv2  # noqa: F401
    import exifread  # noqa: F401
    import numpy  # noqa: F401
    import pdqhash  # noqa: F401
    from PIL import Image  # noqa: F401

    import c2pa  # noqa: F401

    from . import exif, fingerprint, video  # noqa: F401

    av.logging.set_level(av.logging.PANIC)  # ffmpeg chatter would only fill stderr
    cv2.setNumThreads(1)

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj, ensure_ascii=True).encode() + b"\n")
        proto.flush()

    send({"ready": True, "extractor": extractor_name(), "pid": os.getpid()})
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            path = str(req["path"])
            mtime = req.get("mtime")
        except (ValueError, KeyError, TypeError) as exc:
            send({"fatal": f"bad request: {exc}"})
            return
        if req.get("hook") == "garbage":
            proto.write(b"\x00not json at all\n")
            proto.flush()
            continue
        try:
            _hook(req.get("hook"), memory_limit)
            result = analyse(path, mtime=mtime if isinstance(mtime, str) else None, dense=req.get("dense") is True)
            send({"result": result})
        except MemoryError:
            # Memory state may be fragmented or a library half-initialised: answer, then exit so
            # the parent starts a fresh worker.
            send({"memory_error": True})
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point for both modes; see the module docstring."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m evidencelock._media_worker")
    parser.add_argument("path", nargs="?")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--mtime")
    parser.add_argument("--memory-limit", type=int, default=0)
    args = parser.parse_args(argv)
    _set_memory_limit(args.memory_limit or None)
    # Keep the protocol on a private descriptor; fd 1 goes to stderr from here on.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    proto = os.fdopen(proto_fd, "wb")
    if args.serve:
        _serve(proto, args.memory_limit or None)
        return 0
    if not args.path:
        parser.error("PATH or --serve is required")
    _hook(os.environ.get(HOOK_ENV), args.memory_limit or None)
    result = analyse(args.path, mtime=args.mtime)
    result["extractor"] = extractor_name()
    proto.write(json.dumps(result, indent=2, sort_keys=True).encode() + b"\n")
    proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
