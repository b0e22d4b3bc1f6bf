"""Benchmark: verify.html in headless Chromium against verify-bundle, same bundle, same run.

    python bench/browser.py [--size 1GiB] [--files 8] [--rounds 3] [--dir /tmp/...]

Generates a case of random payload files, exports it as a folder bundle, then times, in
interleaved rounds (warm page cache):
  verify.html     the page loaded from file:// in headless Chromium (Selenium), the bundle folder
                  picked through its <input webkitdirectory>; from the pick to the verdict
                  (SHA-256 of every file in JS, Ed25519 in WebCrypto)
  verify-bundle   `python3 -m evidencelock verify-bundle BUNDLE --json` (SHA-256 + SHA-512 + BLAKE3
                  of every payload file, every check of bundle-format §5)
Prints median (min–max) per tool and the machine facts.  Needs chromium and chromedriver.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.lower().rstrip("ib").rstrip("b")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2014, 4, 30, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def make_bundle(work: Path, size: int, nfiles: int) -> Path:
    from evidencelock.bundle import export_bundle
    from evidencelock.ingest import ingest
    from evidencelock.vault import Vault

    os.environ.setdefault("EVIDENCELOCK_INSECURE_TEST_KDF", "1")
    clock = Clock()
    Vault.init(work / "vault", custodian="Bench", passphrase="bench passphrase", now=clock()).close()
    vault = Vault.open(work / "vault", writable=True)
    key = vault.unlock("bench passphrase")
    src = work / "case"
    src.mkdir()
    each = size // nfiles
    for i in range(nfiles):
        with open(src / f"clip{i:03d}.bin", "wb") as f:
            left = each
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
    ingest(vault, [src], key=key, case="Bench", now=clock, extract_media=False)
    out = export_bundle(vault, case="Bench", out=work / "bundle", key=key, now=clock, report=False).path
    vault.close()
    shutil.rmtree(src)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    work = Path(tempfile.mkdtemp(prefix="bench-browser-", dir=args.dir))
    try:
        size = parse_size(args.size)
        bundle = make_bundle(work, size, args.files)
        page = bundle / "verify.html"
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={work / 'profile'}"):
            opts.add_argument(flag)
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(
            executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"))
        version = driver.capabilities.get("browserVersion", "?")

        def browser() -> float:
            driver.get(page.as_uri())
            t0 = time.perf_counter()
            driver.find_element("id", "folder").send_keys(str(bundle))
            WebDriverWait(driver, 3600, poll_frequency=0.05).until(
                lambda d: d.find_element("id", "verdict").get_attribute("data-state") in ("ok", "fail", "error"))
            dt = time.perf_counter() - t0
            state = driver.find_element("id", "verdict").get_attribute("data-state")
            if state != "ok":
                raise SystemExit(f"verify.html did not verify the bundle: {driver.find_element('id', 'verdict').text}")
            return dt

        def cli() -> float:
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "evidencelock", "verify-bundle", str(bundle), "--json"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(f"verify-bundle failed: {r.stderr.decode()[-500:]}")
            return dt

        times: dict[str, list[float]] = {"verify.html (Chromium)": [], "verify-bundle": []}
        cli()  # warm the page cache once
        for _ in range(args.rounds):
            times["verify.html (Chromium)"].append(browser())
            times["verify-bundle"].append(cli())
        driver.quit()
        total = sum(p.stat().st_size for p in (bundle / "data").rglob("*") if p.is_file())
        print(f"bundle: {args.files} payload files, {total / (1 << 30):.3f} GiB; machine: {os.cpu_count()} cores, "
              f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, Chromium {version}, "
              f"load average {os.getloadavg()[0]:.1f}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:24s} median {med:7.2f} s (min {min(ts):.2f} – max {max(ts):.2f}), "
                  f"{total / (1 << 20) / med:7.1f} MiB/s over {len(ts)} rounds")
        r = statistics.median(times["verify.html (Chromium)"]) / statistics.median(times["verify-bundle"])
        print(f"verify.html / verify-bundle: {r:.2f}×")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
