"""Custody benchmark (issue 10): `transfer` of a whole case and `history` of one busy item.

    python bench/custody.py                    # 10,000 items; an item with 10,000 events
    python bench/custody.py --items 2000 --events 2000

Prints the wall time of:
* ``custody.transfer_items`` releasing every item of a case of N items (one indexed query for
  the custody state, one ``append_many`` transaction, N signed entries), and
  ``custody.accept_transfers`` accepting them all (target: < 10 s for 10,000);
* ``history.item_history`` of one item with E events among the case's other entries: entries
  read through the entries.item index, every signature verified, timeline built (target:
  < 1 s for 10,000 events).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("EVIDENCELOCK_INSECURE_TEST_KDF", "1")  # key unlock cost is not what is measured

from evidencelock import custody  # noqa: E402
from evidencelock.entry import format_time  # noqa: E402
from evidencelock.history import item_history  # noqa: E402
from evidencelock.ledger import Draft  # noqa: E402
from evidencelock.vault import Vault  # noqa: E402

PASSPHRASE = "bench passphrase, long enough"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="evl-custody-", dir=args.dir))
    try:
        run(work, args.items, args.events)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, n_items: int, n_events: int) -> None:
    t0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
    tick = [t0]

    def now() -> datetime:
        tick[0] += timedelta(microseconds=10)
        return tick[0]

    vault = Vault.init(work / "vault", custodian="Team A", passphrase=PASSPHRASE, now=now(), allow_weak_passphrase=True)
    key = vault.unlock(PASSPHRASE)
    b = custody.enroll_custodian(vault, key, name="Lawyer B", passphrase=PASSPHRASE, now=now(), allow_weak_passphrase=True)
    print(f"evidencelock custody benchmark: {n_items:,} items, {n_events:,} events, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    # A case of n_items ingest entries (bodies as ingest writes them; objects are not needed here).
    import hashlib

    def ingest_drafts(conn, tail):
        out = []
        for i in range(n_items):
            sha = hashlib.sha256(f"item {i}".encode()).hexdigest()
            out.append(Draft(format_time(now()), "ingest", "C1", key.key_id, {
                "item": sha, "digests": {"sha256": sha, "blake3": "0" * 64}, "size": 10,
                "source": {"root": "card", "path": f"DCIM/IMG_{i:05d}.jpg", "key": hashlib.sha256(b"%d" % i).hexdigest()}}))
        return out

    vault.ledger.append_many(ingest_drafts, key.sign)
    start = time.perf_counter()
    released = custody.transfer_items(vault, key, items=(), case="C1", to="Lawyer B", note="sealed bag 17", now=now)
    t_transfer = time.perf_counter() - start
    start = time.perf_counter()
    accepted = custody.accept_transfers(vault, b, case="C1", now=now)
    t_accept = time.perf_counter() - start
    assert len(released) == len(accepted) == n_items
    print(f"transfer of {n_items:,} items: {t_transfer:.2f} s   accept of {n_items:,}: {t_accept:.2f} s")

    target = released[0].entry.body["item"]
    batch = 5000
    for lo in range(0, n_events, batch):
        hi = min(n_events, lo + batch)
        vault.ledger.append_many(lambda conn, tail, lo=lo, hi=hi: [
            Draft(format_time(now()), "access", "C1", b.key_id, {"item": target, "purpose": f"review {i}", "action": "view"})
            for i in range(lo, hi)], b.sign)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        h = item_history(vault, target[:12])
        runs.append(time.perf_counter() - start)
    assert h.ok and len(h.cases[0].events) == n_events + 3
    print(f"history of an item with {len(h.cases[0].events):,} events ({h.signatures_checked:,} signatures checked): "
          f"best {min(runs):.2f} s, worst {max(runs):.2f} s")
    # Baseline in the same run: the bare Ed25519 verifications history cannot avoid
    # (OpenSSL through pyca/cryptography, one call per entry, no parsing, no database).
    entries = vault.ledger.entries_for_item(target)
    pk = b.public
    start = time.perf_counter()
    for s in entries:
        pk.verify(s.canonical, s.signature) if s.entry.actor == b.key_id else key.public.verify(s.canonical, s.signature)
    t_sig = time.perf_counter() - start
    print(f"  baseline in the same run: {len(entries):,} bare Ed25519 verifications one by one in one process "
          f"{t_sig:.2f} s ({t_sig / len(entries) * 1e6:.0f} µs each); history checks them in forked workers "
          f"while it builds the timeline")
    vault.close()


if __name__ == "__main__":
    main()
