"""Benchmark: video fingerprinting speed and near-duplicate query latency.

    python bench/media.py [--quick]

Generates 720p and 1080p moving-pattern videos with OpenCV (MPEG-4 part 2, as OpenCV
writes) and an H.264 copy of each with ffmpeg (what phones and messengers produce), then
reports for each:

* ``vs ffmpeg``: fingerprint wall time / ``ffmpeg -threads 2 -i F -f null -`` wall time
  (how close we are to just decoding);
* ``x realtime``: fingerprint wall time / playback duration (target <= 0.25);

the latency of :meth:`FingerprintIndex.query` at 10k and 100k indexed hashes, for an
image query and for a 60-frame video query.  The full :func:`evidencelock.media.extract`
(worker process, metadata, fingerprints) is timed, with a warm worker pool.

``--ingest`` (also part of the full run) measures what the issue's second target is about:
the wall time of ``evidencelock ingest FOLDER`` of a folder of 720p 8 Mbit/s H.264 videos (6 x 20 s,
or 3 x 6 s with ``--quick``) against ``evidencelock ingest --no-media`` of the same folder,
each into a fresh vault, through the real CLI; the ratio is printed (target: media adds
<= 30 %, i.e. ratio <= 1.30).  ``--folder DIR`` uses your own footage instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from mediagen import make_video

from evidencelock.media import extract
from evidencelock.similar import FingerprintIndex


def _ffmpeg_decode(path: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-threads", "2", "-i", str(path), "-f", "null", "-"],
                   check=True, capture_output=True)
    return time.perf_counter() - t


def _fingerprint(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    report = extract(path, timeout=600)
    took = time.perf_counter() - t
    if report.errors:
        raise RuntimeError(f"{path}: {report.errors}")
    return took, len(report.fingerprints["frames"])


def bench_video(seconds: float, sizes: list[tuple[int, int]], workdir: Path) -> list[tuple[str, ...]]:
    rows = []
    extract(make_video(workdir / "warm.mp4", 0, seconds=1))  # start a worker
    for w, h in sizes:
        src = make_video(workdir / f"v{h}.mp4", h, size=(w, h), seconds=seconds, fps=30)
        files = [("mpeg4", src)]
        if shutil.which("ffmpeg"):
            h264 = workdir / f"v{h}_h264.mp4"
            subprocess.run(["ffmpeg", "-y", "-v", "error", "-nostdin", "-i", str(src), "-c:v", "libx264",
                            "-preset", "veryfast", "-crf", "23", str(h264)], check=True)
            files.append(("h264", h264))
        for codec, path in files:
            fp, n = _fingerprint(path)
            dec = _ffmpeg_decode(path) if shutil.which("ffmpeg") else float("nan")
            rows.append((f"{h}p {codec} {seconds:g}s", f"{fp:.2f}", f"{dec:.2f}", f"{fp / dec:.2f}",
                         f"{fp / seconds:.3f}", str(n)))
    return rows


def bench_similar(counts: list[int]) -> list[tuple[str, ...]]:
    rng = np.random.default_rng(1)
    rows = []
    for n in counts:
        base = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        index = FingerprintIndex()
        t = time.perf_counter()
        for i in range(0, n, 60):  # videos of 60 frames each
            frames = [{"ms": k * 1000, "hash": base[j].tobytes().hex(), "quality": 100}
                      for k, j in enumerate(range(i, min(n, i + 60)))]
            index.add(f"v{i}", {"kind": "video", "frames": frames})
        add_s = time.perf_counter() - t
        t = time.perf_counter()
        index.query({"kind": "image", "hash": base[0].tobytes().hex(), "quality": 100})
        build_s = time.perf_counter() - t
        reps = 50
        t = time.perf_counter()
        for _ in range(reps):
            q = base[int(rng.integers(0, n))].copy()
            q[:3] ^= 0x11
            index.query({"kind": "image", "hash": q.tobytes().hex(), "quality": 100})
        img_ms = (time.perf_counter() - t) / reps * 1000
        start = int(rng.integers(0, n - 60))
        video_q = {"kind": "video", "frames": [{"ms": k * 1000, "hash": base[start + k].tobytes().hex(), "quality": 100}
                                               for k in range(60)]}
        t = time.perf_counter()
        for _ in range(10):
            index.query(video_q)
        vid_ms = (time.perf_counter() - t) / 10 * 1000
        rows.append((f"{n:,}", f"{add_s:.2f}", f"{build_s * 1000:.0f}", f"{img_ms:.2f}", f"{vid_ms:.1f}"))
    return rows


def _cli(*args: str, vault: Path) -> float:
    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": os.environ.get("EVIDENCELOCK_PASSPHRASE", "bench")}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evidencelock", "--vault", str(vault), *args], check=True,
                   capture_output=True, env=env)
    return time.perf_counter() - t


def make_video_folder(folder: Path, count: int, seconds: float) -> Path:
    """``count`` 720p 30 fps H.264 videos at a phone's bitrate (8 Mbit/s).

    The generated pattern alone compresses to ~100 kbit/s, which would make ``--no-media``
    ingest nothing but start-up; temporal noise (a sensor's grain) and a constant 8 Mbit/s
    give files of the size a phone writes, so hashing and storing cost what they cost.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        raw = folder.parent / f"raw{i}.mp4"
        make_video(raw, 100 + i, size=(1280, 720), seconds=seconds, fps=30)
        if shutil.which("ffmpeg"):
            subprocess.run(["ffmpeg", "-y", "-v", "error", "-nostdin", "-i", str(raw), "-c:v", "libx264",
                            "-preset", "veryfast", "-vf", "noise=alls=12:allf=t", "-b:v", "8M", "-maxrate", "8M",
                            "-bufsize", "16M", str(folder / f"clip{i}.mp4")], check=True)
            raw.unlink()
        else:
            raw.rename(folder / f"clip{i}.mp4")
    return folder


def bench_ingest(folder: Path, workdir: Path, *, repeats: int = 2) -> list[tuple[str, ...]]:
    """Wall time of `ingest` with and without media extraction, fresh vault each run; best of N."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    times: dict[str, list[float]] = {"--no-media": [], "media": []}
    for r in range(repeats):
        for mode in ("--no-media", "media") if r % 2 == 0 else ("media", "--no-media"):
            vault = workdir / f"vault-{mode.strip('-')}-{r}"
            _cli("init", "--custodian", "bench", vault=vault)
            args = ["ingest", str(folder), "--case", "bench"] + (["--no-media"] if mode == "--no-media" else [])
            times[mode].append(_cli(*args, vault=vault))
            shutil.rmtree(vault, ignore_errors=True)
    plain, media = min(times["--no-media"]), min(times["media"])
    return [(f"{len(files)} files, {total / 2**20:.0f} MiB", f"{plain:.2f}", f"{media:.2f}",
             f"{media / plain:.2f}", f"{(media - plain) / plain:+.0%}", "yes" if media / plain <= 1.30 else "NO")]


def _table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 s videos, 720p only; 10k index only")
    parser.add_argument("--ingest", action="store_true", help="only the ingest with/without media comparison")
    parser.add_argument("--folder", type=Path, default=None, help="ingest this folder instead of generated videos")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or make_video_folder(Path(tmp) / "videos", 3 if args.quick else 6,
                                                  6.0 if args.quick else 20.0)
        _table("ingest wall time: media extraction on vs --no-media (target ratio <= 1.30)",
               ("folder", "--no-media s", "with media s", "ratio", "media adds", "<= 30 %"),
               bench_ingest(folder, Path(tmp)))
    if args.ingest:
        return
    seconds = 6.0 if args.quick else 20.0
    sizes = [(1280, 720)] if args.quick else [(1280, 720), (1920, 1080)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_video(seconds, sizes, Path(tmp))
    _table("video fingerprinting (extract(), warm worker)",
           ("file", "fingerprint s", "ffmpeg -f null s", "vs ffmpeg", "x realtime", "hashes"), rows)
    counts = [10_000] if args.quick else [10_000, 100_000]
    _table("similar: FingerprintIndex.query",
           ("hashes", "add s", "build ms", "image query ms", "60-frame video query ms"), bench_similar(counts))


if __name__ == "__main__":
    main()
