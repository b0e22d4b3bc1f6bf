"""Ledger benchmark (issue 4): signed appends, proof latency at scale, full-tree verification.

    python bench/ledger.py                   # 1,000,000 entries (about 5-10 minutes)
    python bench/ledger.py --entries 20000   # a quick run

Prints:
* append throughput (entries/s) through ``Ledger.append_many`` (group commit), every entry
  RFC 8785-canonicalised, Ed25519-signed, hash-chained and added to the stored Merkle tree;
* median / p95 time of an inclusion proof and of a consistency proof produced from the stored
  tree (``treestore``) AND verified (RFC 9162 §2.1.3.2 / §2.1.4.2), over random leaves/sizes;
* full-tree verification: re-reading every entry's canonical bytes from the database and
  recomputing the RFC 9162 root, against ``openssl dgst -sha256`` over the same bytes written
  to a file (a lower bound: it hashes the bytes once with no tree and no database).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from evidencelock import merkle, treestore
from evidencelock.entry import format_time
from evidencelock.ledger import Draft, Tail
from evidencelock.vault import Vault

PASSPHRASE = "bench passphrase"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000, help="entries per append_many transaction")
    ap.add_argument("--proofs", type=int, default=200, help="random proofs of each kind to time")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir, removed after)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="evl-bench-", dir=args.dir))
    try:
        run(work, args.entries, args.batch, args.proofs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, n: int, batch: int, n_proofs: int) -> None:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    vault = Vault.init(work / "vault", custodian="bench", passphrase=PASSPHRASE, now=now)
    key = vault.unlock(PASSPHRASE)
    t_text = format_time(now)
    print(f"evidencelock ledger benchmark: {n:,} entries, batches of {batch}, Python {sys.version.split()[0]}")

    # 1. appends -----------------------------------------------------------------------
    done = 0
    t0 = time.perf_counter()
    last_report = t0
    while done < n:
        k = min(batch, n - done)
        base = done

        def build(_conn, _tail: Tail, base: int = base, k: int = k) -> list[Draft]:
            return [Draft(time=t_text, type="annotate", case="bench", actor=key.key_id,
                          body={"item": f"{(base + i):064x}", "note": f"bench entry {base + i}"}) for i in range(k)]

        vault.ledger.append_many(build, key.sign)
        done += k
        if time.perf_counter() - last_report > 30:
            last_report = time.perf_counter()
            print(f"  … {done:,} entries, {done / (last_report - t0):,.0f} entries/s", flush=True)
    t_append = time.perf_counter() - t0
    size = vault.ledger.tail().size
    print(f"append:      {n:,} signed entries in {t_append:.1f} s = {n / t_append:,.0f} entries/s "
          f"(ledger now {size:,} entries, {(work / 'vault' / 'ledger.sqlite').stat().st_size / 2**20:,.0f} MiB)")

    # 2. proofs ------------------------------------------------------------------------
    rng = random.Random(4)
    incl, cons = [], []
    with vault.ledger.reader() as conn:
        root = treestore.root_at(conn, size)
        for _ in range(n_proofs):
            idx = rng.randrange(size)
            leaf = bytes.fromhex(conn.exec_driver_sql("SELECT leaf_hash FROM entries WHERE seq = ?", (idx,)).scalar_one())
            t = time.perf_counter()
            path = treestore.inclusion_proof_at(conn, idx, size)
            merkle.verify_inclusion(leaf, idx, size, path, root)
            incl.append(time.perf_counter() - t)
        for _ in range(n_proofs):
            old = rng.randrange(1, size)
            old_root = treestore.root_at(conn, old)  # the verifier holds it: it is in the old checkpoint
            t = time.perf_counter()
            proof = treestore.consistency_proof_at(conn, old, size)
            merkle.verify_consistency(old, size, proof, old_root, root)
            cons.append(time.perf_counter() - t)
    for name, xs in (("inclusion", incl), ("consistency", cons)):
        xs.sort()
        med, p95 = statistics.median(xs) * 1e3, xs[int(len(xs) * 0.95) - 1] * 1e3
        verdict = "OK" if med < 10 else "OVER TARGET"
        print(f"{name + ':':12} median {med:.2f} ms, p95 {p95:.2f} ms over {len(xs)} random proofs at size {size:,} "
              f"(produce + verify; target < 10 ms: {verdict})")

    # 3. full-tree verification vs openssl dgst -------------------------------------------
    dump = work / "entries.bin"
    t = time.perf_counter()
    leaves = []
    with open(dump, "wb") as f:
        for row in vault.ledger.rows(batch=20000):
            f.write(row.canonical)
            leaves.append(merkle.leaf_hash(row.canonical))
    t_read_hash = time.perf_counter() - t
    t = time.perf_counter()
    ours = merkle.root_hash(leaves)
    t_tree = time.perf_counter() - t
    t_ours = t_read_hash + t_tree
    if ours != root:
        raise SystemExit(f"BUG: recomputed root {ours.hex()} != stored root {root.hex()}")
    nbytes = dump.stat().st_size
    openssl = shutil.which("openssl")
    if openssl:
        t = time.perf_counter()
        subprocess.run([openssl, "dgst", "-sha256", str(dump)], check=True, capture_output=True)
        t_ssl = time.perf_counter() - t
        ratio = f"{t_ours / t_ssl:.1f}x openssl"
        ssl_txt = f"openssl dgst -sha256 over the same {nbytes / 2**20:,.0f} MiB: {t_ssl:.2f} s"
    else:
        ratio, ssl_txt = "n/a", "openssl not found"
    print(f"full tree:   read {size:,} entries + leaf hashes {t_read_hash:.2f} s, interior nodes {t_tree:.2f} s, "
          f"total {t_ours:.2f} s; {ssl_txt}; ratio {ratio}")

    # 4. the tree check `checkpoint`, `consistency`, `prove` and `export` run before they use the
    #    stored tree (issue 9 item 11: every leaf recomputed from canonical bytes, every stored node
    #    compared): a linear cost per command, measured here so it is not a surprise.
    from evidencelock.derived import require_tree_matches_entries

    times = []
    for _ in range(3):
        t = time.perf_counter()
        with vault.ledger.reader() as conn:
            require_tree_matches_entries(conn, action="bench")
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"tree check:  {size:,} entries: median {times[1]:.2f} s (min {times[0]:.2f}, max {times[2]:.2f}) per "
          f"checkpoint/consistency/prove/export; {ssl_txt}")
    vault.close()


if __name__ == "__main__":
    main()
