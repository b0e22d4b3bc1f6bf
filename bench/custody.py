"""Benchmark: custody at case scale (issue 10), against references measured in the same run.

    python bench/custody.py [--events 10000] [--items 10000] [--size 2GiB] [--files 40] [--repeat 3]

Measures (warm page cache; each command through the real CLI, interpreter start-up included):
  history ITEM        of one item with --events annotation entries    target < 1 s
  transfer --case     of a case of --items items (one entry per item)   target < 10 s
  import-bundle       of a --size bundle into a fresh vault              target ≤ 1.5 × (cp -r + sync)
References in the same rounds: `cryptography` verifying (history) / signing (transfer) as many Ed25519
signatures as the command handles, and `cp -r` + `sync` of the bundle (import). Rounds are
interleaved (every command once per round); medians with min–max. The machine is shared and noisy:
read the ratios, and re-measure before quoting a figure for another machine.
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

PASS = "bench passphrase for custody"


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2014, 4, 30, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.lower().rstrip("ib").rstrip("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def el(vault: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "evidencelock", "--vault", str(vault), *args]


def run(cmd: list[str] | str, env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
    return took


def ed25519_reference(n: int, *, verify: bool) -> float:
    """Seconds `cryptography` alone takes to sign (or verify) n 200-byte messages."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    msgs = [os.urandom(200) for _ in range(n)]
    sigs = [key.sign(m) for m in msgs] if verify else []
    pub = key.public_key()
    t = time.perf_counter()
    if verify:
        for m, s in zip(msgs, sigs):
            pub.verify(s, m)
    else:
        for m in msgs:
            key.sign(m)
    return time.perf_counter() - t


def report(label: str, xs: list[float], refs: list[float] | None, ref_label: str, target: str) -> None:
    med = statistics.median(xs)
    line = f"  {label:34s} median {med:7.2f} s (min {min(xs):.2f}, max {max(xs):.2f})   target {target}"
    if refs:
        ratios = [a / b for a, b in zip(xs, refs)]
        line += f"\n  {'':34s} / {ref_label}: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
    print(line, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--only", choices=["history", "transfer", "import"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["history", "transfer", "import"])
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from evidencelock import custody
    from evidencelock.bundle import export_bundle
    from evidencelock.entry import format_time
    from evidencelock.ingest import ingest
    from evidencelock.ledger import Draft
    from evidencelock.vault import Vault

    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASS}
    work = Path(tempfile.mkdtemp(prefix="bench-custody-", dir=args.dir))
    rounds = max(3, args.repeat)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; work in {work}", flush=True)
    try:
        clock = Clock()
        tools: list[tuple[str, object]] = []
        results: dict[str, list[float]] = {}

        if "history" in only:
            hv = work / "history-vault"
            Vault.init(hv, custodian="Bench", passphrase=PASS, now=clock()).close()
            (work / "one").mkdir()
            (work / "one" / "clip.bin").write_bytes(os.urandom(4096))
            with Vault.open(hv, writable=True) as vault:
                key = vault.unlock(PASS)
                rep = ingest(vault, [work / "one"], key=key, case="BENCH", now=clock, extract_media=False)
                sha = next(o.sha256 for o in rep.outcomes if o.sha256)
                n = args.events - 1  # the ingest entry is the first event

                def build(conn, tail):  # noqa: ANN001 - ledger builder signature
                    return [Draft(format_time(clock()), "annotate", "BENCH", key.key_id,
                                  {"item": sha, "text": f"analyst note {i}: frame {i % 997} checked"})
                            for i in range(n)]

                vault.ledger.append_many(build, key.sign)
            tools.append(("history (CLI)", lambda: run(el(hv, "history", sha[:16]), env)))
            tools.append(("ref: verify N Ed25519", lambda: ed25519_reference(args.events, verify=True)))

        if "transfer" in only:
            tv = work / "transfer-vault"
            Vault.init(tv, custodian="Bench", passphrase=PASS, now=clock()).close()
            src = work / "small"
            src.mkdir()
            for i in range(args.items):
                (src / f"f{i:05d}.bin").write_bytes(i.to_bytes(4, "big") + os.urandom(1020))
            with Vault.open(tv, writable=True) as vault:
                key = vault.unlock(PASS)
                ingest(vault, [src], key=key, case="BIG", now=clock, extract_media=False)
                custody.enroll_custodian(vault, key, name="Receiver", passphrase=PASS, now=clock())
            # Each round transfers the whole case again; a new release by the same custodian
            # supersedes the pending one (docs/custody-events.md), so every round does the same work.
            tools.append(("transfer 1 case (CLI)", lambda: run(el(tv, "transfer", "--case", "BIG", "--to", "Receiver",
                                                                  "--custodian", "Bench"), env)))
            tools.append(("ref: sign N Ed25519", lambda: ed25519_reference(args.items, verify=False)))

        if "import" in only:
            av = work / "org-a"
            Vault.init(av, custodian="Org A", passphrase=PASS, now=clock()).close()
            src = work / "big"
            src.mkdir()
            size = parse_size(args.size)
            per = size // args.files
            block = os.urandom(1 << 20)
            for i in range(args.files):
                with open(src / f"clip-{i:04d}.bin", "wb") as f:
                    left = per
                    while left > 0:
                        k = min(left, len(block))
                        f.write(block[:k] if (i + left) % 2 else bytes(reversed(block[:k])))
                        left -= k
                    f.write(i.to_bytes(8, "big"))
            with Vault.open(av, writable=True) as vault:
                key = vault.unlock(PASS)
                ingest(vault, [src], key=key, case="HANDOVER", now=clock, extract_media=False)
                export_bundle(vault, case="HANDOVER", out=work / "bundle", key=key, now=clock)
            bundle = work / "bundle"
            counter = [0]

            def do_import() -> float:
                counter[0] += 1
                bv = work / f"org-b-{counter[0]}"
                Vault.init(bv, custodian="Org B", passphrase=PASS, now=clock()).close()
                subprocess.run("sync", shell=True, check=True)
                took = run(el(bv, "import-bundle", str(bundle), "--case", "HANDOVER", "--no-media"), env)
                shutil.rmtree(bv)
                return took

            def do_cp() -> float:
                t = run(f"cp -r '{bundle}' '{work / 'cpcopy'}' && sync")
                shutil.rmtree(work / "cpcopy")
                return t

            tools.append(("import-bundle (CLI)", do_import))
            tools.append(("ref: cp -r + sync", do_cp))

        for name, _ in tools:
            results[name] = []
        for rnd in range(rounds):
            for name, fn in tools:
                results[name].append(fn())  # type: ignore[operator]
            print(f"  round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()), flush=True)

        print(f"\nresults (median of {rounds} interleaved rounds, min-max)")
        if "history" in only:
            report(f"history, {args.events} events", results["history (CLI)"], results["ref: verify N Ed25519"],
                   f"cryptography verifying {args.events} signatures", "< 1 s")
        if "transfer" in only:
            report(f"transfer, {args.items} items", results["transfer 1 case (CLI)"], results["ref: sign N Ed25519"],
                   f"cryptography signing {args.items} signatures", "< 10 s")
        if "import" in only:
            report(f"import-bundle, {args.size}", results["import-bundle (CLI)"], results["ref: cp -r + sync"],
                   "(cp -r + sync)", "≤ 1.5x (cp -r + sync)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
