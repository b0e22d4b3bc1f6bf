#!/usr/bin/env python3
"""Ingest and verify speed, as ratios against standard tools measured in the same run.

    python bench/ingest.py [--size-mib 2048] [--rss] [--keep DIR]

Generates a deterministic folder (a few video-sized files and ~500 photo-sized files), warms
the page cache, then times:

* ``sha256sum`` over every file (coreutils; no SHA instructions here: slow reference);
* ``openssl dgst -sha256`` over every file (one process: the fast single-core reference);
* ``cp -r`` of the folder followed by ``sync`` (the cost of just copying durably);
* ``evidencelock ingest`` (SHA-256 + BLAKE3 + durable copy + signed entries + metadata);
* ``evidencelock verify`` (SHA-256 of every object on all cores) and ``verify --all-digests``.

Targets (issue 3): ingest ≤ 2.0× openssl and ≤ 0.5× (sha256sum + cp -r + sync);
verify ≤ 0.75× openssl.  The machine is shared and noisy: read the ratios, not the seconds.
``--rss`` ingests a 256 MiB and a 4 GiB file and prints peak RSS of each: it must stay flat.
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

PASS = "bench passphrase"


def make_folder(root: Path, total_mib: int, seed: int = 2014) -> int:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    videos = root / "videos"
    photos = root / "DCIM"
    videos.mkdir()
    photos.mkdir()
    total = total_mib << 20
    photo_bytes = min(total // 4, 500 * (1 << 20))
    n_photos = 500
    per_photo = max(1, photo_bytes // n_photos)
    written = 0
    for i in range(n_photos):
        size = int(per_photo * (0.5 + rng.random()))
        (photos / f"IMG_{i:04d}.JPG").write_bytes(rng.bytes(size))
        written += size
    remaining = total - written
    n_videos = 4
    for i in range(n_videos):
        size = remaining // n_videos
        with open(videos / f"VID_{i:02d}.mp4", "wb") as f:
            left = size
            while left:
                n = min(left, 64 << 20)
                f.write(rng.bytes(n))
                left -= n
        written += size
    return written


def files_of(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def timed(cmd: list[str] | str, *, env: dict[str, str] | None = None, shell: bool = False) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, shell=shell)
    return time.perf_counter() - t


def warm(files: list[str]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(8 << 20):
                pass


def el(*args: str, vault: Path) -> list[str]:
    return [sys.executable, "-m", "evidencelock", "--vault", str(vault), *args]


def peak_rss_of(cmd: list[str], env: dict[str, str]) -> int:
    """Peak RSS (KiB) of a child process, measured with wait4's rusage (includes the
    parent's pages the child held between fork and exec: a constant here)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd} failed with status {status}")
    return usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rss", action="store_true", help="also show peak RSS flat from 256 MiB to 4 GiB")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp dir)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="el-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASS}
    try:
        src = work / "src"
        if src.exists():
            shutil.rmtree(src)
        total = make_folder(src, args.size_mib)
        files = files_of(src)
        print(f"folder: {len(files)} files, {total / (1 << 30):.2f} GiB, {os.cpu_count()} cores", flush=True)
        warm(files)

        t_sha256sum = timed(["sha256sum", *files])
        t_openssl = timed(["openssl", "dgst", "-sha256", *files])
        dst = work / "copy"
        t_cp = timed(f"cp -r '{src}' '{dst}' && sync", shell=True)
        shutil.rmtree(dst)
        subprocess.run("sync", shell=True, check=True)

        vault = work / "vault"
        if vault.exists():
            shutil.rmtree(vault)
        subprocess.run(el("init", "--custodian", "bench", vault=vault), check=True, env=env, stdout=subprocess.DEVNULL)
        warm(files)
        t_ingest = timed(el("ingest", str(src), "--case", "BENCH", vault=vault), env=env)
        t_verify = timed(el("verify", vault=vault), env=env)
        t_verify_all = timed(el("verify", "--all-digests", vault=vault), env=env)

        vault2 = work / "vault-nomedia"
        if vault2.exists():
            shutil.rmtree(vault2)
        subprocess.run(el("init", "--custodian", "bench", vault=vault2), check=True, env=env, stdout=subprocess.DEVNULL)
        warm(files)
        t_ingest_nomedia = timed(el("ingest", str(src), "--case", "BENCH", "--no-media", vault=vault2), env=env)

        gib = total / (1 << 30)
        rows = [
            ("sha256sum (coreutils)", t_sha256sum, None),
            ("openssl dgst -sha256", t_openssl, None),
            ("cp -r + sync", t_cp, None),
            ("evidencelock ingest", t_ingest, None),
            ("evidencelock ingest --no-media", t_ingest_nomedia, None),
            ("evidencelock verify", t_verify, None),
            ("evidencelock verify --all-digests", t_verify_all, None),
        ]
        print(f"\n{'what':38} {'seconds':>8} {'GiB/s':>7}")
        for name, t, _ in rows:
            print(f"{name:38} {t:8.2f} {gib / t:7.2f}")
        naive = t_sha256sum + t_cp
        print("\nratios (target in brackets)")
        print(f"  ingest / openssl dgst -sha256          {t_ingest / t_openssl:5.2f}   [≤ 2.0]")
        print(f"  ingest / (sha256sum + cp -r + sync)    {t_ingest / naive:5.2f}   [≤ 0.5]")
        print(f"  ingest --no-media / openssl            {t_ingest_nomedia / t_openssl:5.2f}")
        print(f"  verify / openssl dgst -sha256          {t_verify / t_openssl:5.2f}   [≤ 0.75]")
        print(f"  verify --all-digests / openssl         {t_verify_all / t_openssl:5.2f}")
        print(f"  sha256sum / openssl (reference)        {t_sha256sum / t_openssl:5.2f}")

        if args.rss:
            print("\npeak RSS of `ingest` by file size (must stay flat):")
            for mib in (256, 4096):
                one = work / f"one-{mib}"
                one.mkdir(exist_ok=True)
                big = one / "big.bin"
                with open(big, "wb") as f:
                    block = np.random.default_rng(mib).bytes(8 << 20)
                    for _ in range(mib // 8):
                        f.write(block)
                # ru_maxrss of a child includes the parent's pages copied at fork, before exec:
                # drop the block so both sizes start from the same parent.
                del block
                v = work / f"vault-rss-{mib}"
                if v.exists():
                    shutil.rmtree(v)
                subprocess.run(el("init", "--custodian", "bench", vault=v), check=True, env=env, stdout=subprocess.DEVNULL)
                rss = peak_rss_of(el("ingest", str(one), "--case", "RSS", vault=v), env)
                print(f"  {mib:5d} MiB file: peak RSS {rss / 1024:7.1f} MiB")
                shutil.rmtree(one)
                shutil.rmtree(v)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
