"""Benchmark: export and verify-bundle of a generated case, against standard tools, same run.

    python bench/bundle.py [--size 2GiB] [--files 40] [--dir /tmp/...]

Measures (warm page cache, same machine, same bytes):
  export                      evidencelock export_bundle (copy + SHA-256 check + SHA-512, report, record)
  cp -r + sync                cp -r of the same payload + sync
  verify-bundle               evidencelock verify_bundle (SHA-256 + SHA-512 of every payload file, tags, evidence)
  sha256sum -c                on the bundle's manifest-sha256.txt
  openssl dgst -sha256        over the payload files
  bagit.py --validate -p 2    bagit-python, 2 processes
and prints the ratios the issue sets targets for.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.lower().rstrip("ib").rstrip("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2014, 4, 30, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sh(cmd: list[str] | str, cwd: Path | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (at least 3)")
    args = ap.parse_args()
    size, nfiles = parse_size(args.size), args.files
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from evidencelock.bundle import export_bundle, verify_bundle
    from evidencelock.ingest import ingest
    from evidencelock.vault import Vault

    work = Path(tempfile.mkdtemp(prefix="bench-bundle-", dir=args.dir))
    try:
        src = work / "src"
        src.mkdir()
        per = size // nfiles
        block = os.urandom(1 << 20)
        for i in range(nfiles):
            with open(src / f"clip-{i:04d}.bin", "wb") as f:
                left = per
                while left > 0:
                    n = min(left, len(block))
                    f.write(block[:n] if i % 2 else bytes(reversed(block[:n])) if left % 3 else block[:n])
                    left -= n
                f.write(i.to_bytes(8, "big"))  # unique bytes per file
        pw = "bench passphrase"
        clock = Clock()
        Vault.init(work / "vault", custodian="Bench", passphrase=pw, now=clock()).close()
        vault = Vault.open(work / "vault", writable=True)
        key = vault.unlock(pw)
        ingest(vault, [src], key=key, case="bench", now=clock, extract_media=False)
        total = sum(p.stat().st_size for p in src.iterdir())
        print(f"case: {nfiles} files, {total / (1 << 30):.2f} GiB in {work}; {os.cpu_count()} cores, "
              f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)

        export_bundle(vault, case="bench", out=work / "bundle", key=key, now=clock)
        bundle = work / "bundle"
        payload = sorted(str(p) for p in (bundle / "data").rglob("*") if p.is_file())
        n = [0]

        def do_export() -> None:
            n[0] += 1
            export_bundle(vault, case="bench", out=work / f"bundle{n[0]}", key=key, now=clock)

        def do_verify() -> None:
            r = verify_bundle(bundle)
            assert r.ok, r.failures

        # (name, run, cleanup): every round runs each once, in this order (interleaved), so load
        # that comes and goes hits all of them alike; medians and min-max over the rounds.
        tools = [
            ("export", do_export, lambda: shutil.rmtree(work / f"bundle{n[0]}")),
            ("cp -r + sync", lambda: (sh(["cp", "-r", str(bundle / "data"), str(work / "cpcopy")]), sh(["sync"])),
             lambda: shutil.rmtree(work / "cpcopy")),
            ("verify-bundle", do_verify, None),
            ("sha256sum -c", lambda: sh(["sha256sum", "-c", "--quiet", "manifest-sha256.txt"], cwd=bundle), None),
            ("openssl dgst -sha256", lambda: sh(["openssl", "dgst", "-sha256", *payload]), None),
        ]
        if shutil.which("bagit.py"):
            tools.append(("bagit.py --validate -p 2",
                          lambda: sh(["bagit.py", "--validate", "--processes", "2", "--quiet", "."], cwd=bundle), None))
        runs: dict[str, list[float]] = {name: [] for name, _, _ in tools}
        for rnd in range(max(3, args.repeat)):
            for name, fn, cleanup in tools:
                runs[name].append(timed(fn))
                if cleanup:
                    cleanup()
            print(f"  round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()), flush=True)
        vault.close()
        for name, xs in runs.items():
            med = statistics.median(xs)
            print(f"  {name:28s} median {med:7.2f} s (min {min(xs):.2f}, max {max(xs):.2f})  "
                  f"{total / med / (1 << 20):6.0f} MiB/s", flush=True)
        print("\nratio (median of the per-round ratios, min-max)   target")
        rows = [("verify-bundle / bagit.py --validate -p 2", "verify-bundle", "bagit.py --validate -p 2", 0.6),
                ("verify-bundle / sha256sum -c", "verify-bundle", "sha256sum -c", 0.6),
                ("verify-bundle / openssl dgst -sha256", "verify-bundle", "openssl dgst -sha256", None),
                ("export / (cp -r + sync)", "export", "cp -r + sync", 1.5)]
        for label, a, b, target in rows:
            if runs.get(a) and runs.get(b):
                ratios = [x / y for x, y in zip(runs[a], runs[b])]
                r = statistics.median(ratios)
                verdict = "" if target is None else ("ok" if r <= target else "MISSED")
                print(f"  {label:38s} {r:6.2f}x ({min(ratios):.2f}-{max(ratios):.2f})   "
                      f"{'≤ %.1fx ' % target if target else '       '}{verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
