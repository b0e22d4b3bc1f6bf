"""Benchmark: video fingerprinting speed and near-duplicate query latency.

    python bench/media.py [--quick] [--ingest [--folder DIR]]

Generates 720p and 1080p moving-pattern videos with OpenCV, then H.264 copies with ffmpeg
the way phones write them (sensor-like grain, 8 Mbit/s, a keyframe every 30 frames = 1 s:
``-c:v libx264 -g 30 -b:v 8M``) and the way messengers and editors re-encode (x264's default
keyframe interval, up to 250 frames), and reports for each:

* ``vs ffmpeg``: fingerprint wall time / ``ffmpeg -threads 2 -i F -f null -`` wall time
  (the cost of decoding every frame);
* ``x realtime``: fingerprint wall time / playback duration (target <= 0.25);
* ``query x rt``: the same for the dense sampling of a ``similar FILE`` query;

the latency of :meth:`FingerprintIndex.query` at 10k and 100k indexed hashes, for an
image query and for a 60-frame video query.  The full :func:`evidencelock.media.extract`
(worker process, metadata, fingerprints) is timed, with a warm worker pool.

``--ingest`` (also part of the full run) measures the issue's second target: the wall time
of ``evidencelock ingest FOLDER`` of a folder of phone-like 720p videos (6 x 20 s, or 3 x 6 s
with ``--quick``) against ``evidencelock ingest --no-media`` of the same folder, each into a
fresh vault, through the real CLI, alternating the order; every run is printed with the load
average at its start (the reference machine is shared), then the ratio of the best times
(target: media adds <= 30 %, i.e. ratio <= 1.30).  ``--long-gop`` uses x264's default
keyframe interval instead (every GOP decoded in full); ``--folder DIR`` your own footage.
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


def _fingerprint(path: Path) -> tuple[float, int, str]:
    t = time.perf_counter()
    report = extract(path, timeout=600)
    took = time.perf_counter() - t
    if report.errors:
        raise RuntimeError(f"{path}: {report.errors}")
    return took, len(report.fingerprints["frames"]), str(report.fingerprints.get("sampling"))


PHONE = ("-g", "30", "-b:v", "8M", "-maxrate", "8M", "-bufsize", "16M")  # a keyframe per second
LONG_GOP = ("-b:v", "8M", "-maxrate", "8M", "-bufsize", "16M")  # x264 default: keyint 250


def _h264(src: Path, dst: Path, rate: tuple[str, ...]) -> Path:
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-nostdin", "-i", str(src), "-c:v", "libx264",
                    "-preset", "veryfast", "-vf", "noise=alls=12:allf=t", *rate, str(dst)], check=True)
    return dst


def _query(path: Path) -> float:
    t = time.perf_counter()
    report = extract(path, timeout=600, dense=True)
    if report.errors:
        raise RuntimeError(f"{path}: {report.errors}")
    return time.perf_counter() - t


def bench_video(seconds: float, sizes: list[tuple[int, int]], workdir: Path) -> list[tuple[str, ...]]:
    rows = []
    extract(make_video(workdir / "warm.mp4", 0, seconds=1))  # start a worker
    for w, h in sizes:
        src = make_video(workdir / f"v{h}.mp4", h, size=(w, h), seconds=seconds, fps=30)
        files = [("mpeg4", src)]
        if shutil.which("ffmpeg"):
            files.append(("h264 phone g30 8M", _h264(src, workdir / f"v{h}_phone.mp4", PHONE)))
            files.append(("h264 long-GOP 8M", _h264(src, workdir / f"v{h}_long.mp4", LONG_GOP)))
        for codec, path in files:
            fp, n, sampling = _fingerprint(path)
            q = _query(path)
            dec = _ffmpeg_decode(path) if shutil.which("ffmpeg") else float("nan")
            rows.append((f"{h}p {codec} {seconds:g}s", sampling, f"{fp:.2f}", f"{dec:.2f}", f"{fp / dec:.2f}",
                         f"{fp / seconds:.3f}", f"{q / seconds:.3f}", str(n)))
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


def make_video_folder(folder: Path, count: int, seconds: float, *, long_gop: bool = False) -> Path:
    """``count`` 720p 30 fps H.264 videos as a phone writes them (8 Mbit/s, keyframe every 1 s).

    The generated pattern alone compresses to ~100 kbit/s, which would make ``--no-media``
    ingest nothing but start-up; temporal noise (a sensor's grain) and a constant 8 Mbit/s
    give files of the size a phone writes, so hashing and storing cost what they cost.
    ``long_gop``: x264's default keyframe interval instead (a messenger's or editor's output).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        raw = folder.parent / f"raw{i}.mp4"
        make_video(raw, 100 + i, size=(1280, 720), seconds=seconds, fps=30)
        if shutil.which("ffmpeg"):
            _h264(raw, folder / f"clip{i}.mp4", LONG_GOP if long_gop else PHONE)
            raw.unlink()
        else:
            raw.rename(folder / f"clip{i}.mp4")
    return folder


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_ingest(folder: Path, workdir: Path, *, repeats: int = 2) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Wall time of `ingest` with and without media extraction, fresh vault each run.

    Returns (every run, summary row over the best of each mode)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    times: dict[str, list[float]] = {"--no-media": [], "media": []}
    runs: list[tuple[str, ...]] = []
    for r in range(repeats):
        for mode in ("--no-media", "media") if r % 2 == 0 else ("media", "--no-media"):
            vault = workdir / f"vault-{mode.strip('-')}-{r}"
            _cli("init", "--custodian", "bench", vault=vault)
            args = ["ingest", str(folder), "--case", "bench"] + (["--no-media"] if mode == "--no-media" else [])
            load = _load()
            took = _cli(*args, vault=vault)
            times[mode].append(took)
            runs.append((str(r + 1), mode, f"{took:.2f}", load))
            shutil.rmtree(vault, ignore_errors=True)
    for r in range(repeats):
        runs.append((str(r + 1), "ratio", f"{times['media'][r] / times['--no-media'][r]:.2f}", ""))
    plain, media = min(times["--no-media"]), min(times["media"])
    return runs, [(f"{len(files)} files, {total / 2**20:.0f} MiB", f"{plain:.2f}", f"{media:.2f}",
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
    parser.add_argument("--long-gop", action="store_true", help="ingest folder: x264 default keyframe interval")
    parser.add_argument("--folder", type=Path, default=None, help="ingest this folder instead of generated videos")
    parser.add_argument("--repeats", type=int, default=2, help="ingest runs per mode (default 2)")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; load average at start: {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or make_video_folder(Path(tmp) / "videos", 3 if args.quick else 6,
                                                  6.0 if args.quick else 20.0, long_gop=args.long_gop)
        runs, summary = bench_ingest(folder, Path(tmp), repeats=args.repeats)
        _table("ingest runs (load average 1/5/15 min at the start of each run)", ("run", "mode", "wall s", "load"), runs)
        _table("ingest wall time: media extraction on vs --no-media, best of each (target ratio <= 1.30)",
               ("folder", "--no-media s", "with media s", "ratio", "media adds", "<= 30 %"), summary)
    if args.ingest:
        return
    seconds = 6.0 if args.quick else 20.0
    sizes = [(1280, 720)] if args.quick else [(1280, 720), (1920, 1080)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_video(seconds, sizes, Path(tmp))
    _table("video fingerprinting (extract(), warm worker)",
           ("file", "sampling", "fingerprint s", "ffmpeg -f null s", "vs ffmpeg", "x realtime", "query x rt", "hashes"),
           rows)
    counts = [10_000] if args.quick else [10_000, 100_000]
    _table("similar: FingerprintIndex.query",
           ("hashes", "add s", "build ms", "image query ms", "60-frame video query ms"), bench_similar(counts))
    print(f"\nload average at end: {_load()}")


if __name__ == "__main__":
    main()
