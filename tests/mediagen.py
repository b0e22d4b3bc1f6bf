"""Real media for the media tests, generated on the fly (nothing binary is checked in).

* :func:`make_video` writes a moving-pattern video with OpenCV: a textured canvas unique to
  its seed, panned a few pixels per frame, with a cut to a second canvas half-way, so frames
  a second apart differ and two seeds never look alike.
* :func:`make_jpeg` writes a photo-like JPEG with Pillow and EXIF with piexif.
* :func:`ffmpeg` derives copies the way they happen in the wild: re-encoded at a low
  bitrate, scaled to half size, cropped 5 %, trimmed by 2 s, re-muxed into Matroska, or
  given container tags (creation time, ISO 6709 location).
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

__all__ = [
    "CORPUS",
    "HAVE_FFMPEG",
    "requires_ffmpeg",
    "requires_corpus",
    "canvas",
    "make_video",
    "make_jpeg",
    "gps_rational",
    "ffmpeg",
    "DERIVATIONS",
]

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
requires_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg not installed")
requires_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus absent at {CORPUS}")


def canvas(seed: int, width: int, height: int) -> np.ndarray:
    """A BGR texture unique to ``seed``: smooth noise plus random shapes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(max(4, width // 30), max(8, width // 6)))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), r, color, -1)
        else:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), color, -1)
    return img


def make_video(path: Path, seed: int, *, size: tuple[int, int] = (320, 240), seconds: float = 5,
               fps: int = 15, fourcc: str = "mp4v") -> Path:
    """Write a moving-pattern video (panning across a seed-specific canvas, one cut)."""
    w, h = size
    speed = max(1, w // 240)  # pixels per frame: a slow pan, as a hand-held phone
    n = int(seconds * fps)
    pan = speed * n
    scenes = [canvas(seed * 2 + k, w + pan, h) for k in range(2)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    try:
        for i in range(n):
            scene = scenes[0] if i < n // 2 else scenes[1]
            x = i * speed
            writer.write(np.ascontiguousarray(scene[:, x : x + w]))
    finally:
        writer.release()
    return path


def gps_rational(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Decimal degrees -> EXIF degrees/minutes/seconds rationals (seconds in 1/10000)."""
    v = Fraction(str(abs(value)))
    deg = int(v)
    minutes_f = (v - deg) * 60
    minutes = int(minutes_f)
    seconds = (minutes_f - minutes) * 60
    return (deg, 1), (minutes, 1), (int(seconds * 10000), 10000)


def make_jpeg(path: Path, seed: int, *, size: tuple[int, int] = (640, 480), exif: dict[str, Any] | None = None,
              quality: int = 92) -> Path:
    """Write a JPEG of a seed-specific canvas, with ``exif`` (a piexif dict) if given."""
    import piexif
    from PIL import Image

    bgr = canvas(seed, *size)
    img = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    kwargs: dict[str, Any] = {"quality": quality}
    if exif is not None:
        kwargs["exif"] = piexif.dump(exif)
    img.save(path, "JPEG", **kwargs)
    return path


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; raise with its stderr on failure."""
    proc = subprocess.run(["ffmpeg", "-y", "-v", "error", "-nostdin", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr[-2000:]}")


def _reencode(src: Path, dst: Path) -> None:
    ffmpeg("-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "150k", "-an", str(dst))


def _half(src: Path, dst: Path) -> None:
    ffmpeg("-i", str(src), "-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-c:v", "libx264", "-preset", "veryfast",
           "-an", str(dst))


def _crop5(src: Path, dst: Path) -> None:
    ffmpeg("-i", str(src), "-vf", "crop=trunc(iw*0.95/2)*2:trunc(ih*0.95/2)*2", "-c:v", "libx264",
           "-preset", "veryfast", "-an", str(dst))


def _trim2(src: Path, dst: Path) -> None:
    ffmpeg("-ss", "2", "-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-an", str(dst))


def _remux(src: Path, dst: Path) -> None:
    ffmpeg("-i", str(src), "-c", "copy", str(dst))


# name -> (function, suffix of the derived file)
DERIVATIONS = {
    "reencode": (_reencode, ".mp4"),
    "half": (_half, ".mp4"),
    "crop5": (_crop5, ".mp4"),
    "trim2": (_trim2, ".mp4"),
    "remux": (_remux, ".mkv"),
}
