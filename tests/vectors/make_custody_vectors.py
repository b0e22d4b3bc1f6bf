#!/usr/bin/env python3
"""Generate docs/vectors/custody.json: custody scenarios for second implementations of
docs/custody-events.md §3-§4.

Each scenario is a small ledger of real signed entries (fixed seeds, fixed times: Ed25519 is
deterministic, so the bytes are fixed) and the custody result a verifier must reach from them.
The expected results are written down here by hand, from the spec, and this script refuses to
write the file unless evidencelock.timeline reaches exactly them.  tests/test_custody_events.py
loads the file and checks it with the library and with an independent re-derivation.

    python tests/vectors/make_custody_vectors.py > docs/vectors/custody.json
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from evidencelock import timeline  # noqa: E402
from evidencelock.entry import GENESIS_PREV, Entry, SignedEntry, format_time  # noqa: E402
from evidencelock.keys import CustodianKey  # noqa: E402

SEEDS = {"A": bytes(range(100, 132)), "B": bytes(range(132, 164)), "C": bytes(range(164, 196))}
NAMES = {"A": "Aleppo Media Centre, team 2", "B": "Lawyer B", "C": "Archive C"}
CASE = "SY-2014-0430"
ITEM = hashlib.sha256(b"video of the shelling").hexdigest()
COPY = hashlib.sha256(b"video of the shelling, faces blurred").hexdigest()


class Ledger:
    def __init__(self) -> None:
        self.keys = {k: CustodianKey.from_seed(s, NAMES[k]) for k, s in SEEDS.items()}
        self.entries: list[SignedEntry] = []
        self.t = datetime(2026, 12, 2, 5, 0, tzinfo=timezone.utc)
        a = self.keys["A"]
        for k in ("A", "B", "C"):
            key = self.keys[k]
            self.add("A", "key-enroll", "", {"key_id": key.key_id, "public_key": key.public.raw.hex(),
                                             "name": NAMES[k], "role": "custodian"})
        assert self.entries[0].entry.actor == a.key_id

    def add(self, who: str, type_: str, case: str, body: dict[str, Any]) -> SignedEntry:
        self.t += timedelta(minutes=7)
        prev = self.entries[-1].entry_hash if self.entries else GENESIS_PREV
        e = Entry(seq=len(self.entries), prev=prev, time=format_time(self.t), type=type_, case=case,
                  actor=self.keys[who].key_id, body=body)
        s = SignedEntry.create(e, self.keys[who].sign)
        self.entries.append(s)
        return s

    def ingest(self, who: str, item: str = ITEM, path: str = "DCIM/100PHONE/VID_0001.mp4") -> SignedEntry:
        return self.add(who, "ingest", CASE, {"item": item, "digests": {"sha256": item, "blake3": "00" * 32}, "size": 21,
                                              "source": {"root": "sdcard", "path": path, "key": "11" * 32}})

    def release(self, who: str, to: str, item: str = ITEM, note: str | None = None) -> SignedEntry:
        body = {"item": item, "from": self.keys[who].key_id, "to": self.keys[to].key_id, "to_name": NAMES[to]}
        if note:
            body["note"] = note
        return self.add(who, "transfer", CASE, body)

    def accept(self, who: str, rel: SignedEntry) -> SignedEntry:
        return self.add(who, "transfer-accept", CASE, {
            "item": rel.entry.body["item"], "from": rel.entry.actor,
            "transfer": {"seq": rel.entry.seq, "entry_hash": rel.entry_hash}})


def scenarios() -> list[dict[str, Any]]:
    out = []

    def emit(name: str, description: str, lg: Ledger, expected: dict[str, Any]) -> None:
        tl = timeline.build(lg.entries, {})
        got = result_of(tl, lg)
        if got != expected:
            raise SystemExit(f"scenario {name}: the library disagrees with the spec's expected result:\n"
                             f"expected {json.dumps(expected, indent=1)}\nfound {json.dumps(got, indent=1)}")
        out.append({
            "name": name, "description": description,
            "entries": [{"seq": s.entry.seq, "canonical": s.canonical.decode("utf-8"),
                         "signature": base64.b64encode(s.signature).decode("ascii"), "entry_hash": s.entry_hash}
                        for s in lg.entries],
            "expected": expected,
        })

    def kid(lg: Ledger, k: str | None) -> str | None:
        return lg.keys[k].key_id if k else None

    # 1. release + accept
    lg = Ledger()
    lg.ingest("A")
    r = lg.release("A", "B", note="sealed bag 17")
    a = lg.accept("B", r)
    emit("release-and-accept", "A releases to B, B accepts: B holds the item; the release is accepted.", lg, {
        "items": [{"case": CASE, "item": ITEM, "holder": kid(lg, "B"), "in_transit_to": None,
                   "releases": {str(r.entry.seq): "accepted"}}],
        "findings": []})
    assert a

    # 2. pending release
    lg = Ledger()
    lg.ingest("A")
    r = lg.release("A", "B")
    emit("pending-release", "A releases to B; no acceptance: nobody holds it, it is in transit to B.", lg, {
        "items": [{"case": CASE, "item": ITEM, "holder": None, "in_transit_to": kid(lg, "B"),
                   "releases": {str(r.entry.seq): "pending"}}],
        "findings": []})

    # 3. superseded release, and a late acceptance of it (a failure)
    lg = Ledger()
    lg.ingest("A")
    r1 = lg.release("A", "B")
    r2 = lg.release("A", "C")
    bad = lg.accept("B", r1)
    emit("superseded-release", "A releases to B, then to C; B accepts the first release: a failure (it was "
         "superseded); the item stays in transit to C.", lg, {
        "items": [{"case": CASE, "item": ITEM, "holder": None, "in_transit_to": kid(lg, "C"),
                   "releases": {str(r1.entry.seq): "superseded", str(r2.entry.seq): "pending"}}],
        "findings": [{"code": "custody-accept", "seq": bad.entry.seq, "severity": "fail"}]})

    # 4. acceptance signed by the wrong key
    lg = Ledger()
    lg.ingest("A")
    r = lg.release("A", "B")
    bad = lg.accept("C", r)
    emit("accept-by-wrong-key", "A releases to B; C (enrolled, but not the receiver) signs an acceptance: a "
         "failure; the item stays in transit to B.", lg, {
        "items": [{"case": CASE, "item": ITEM, "holder": None, "in_transit_to": kid(lg, "B"),
                   "releases": {str(r.entry.seq): "pending"}}],
        "findings": [{"code": "custody-accept", "seq": bad.entry.seq, "severity": "fail"}]})

    # 5. release by a non-holder (a notice)
    lg = Ledger()
    lg.ingest("A")
    r = lg.release("B", "C")
    emit("release-by-non-holder", "A holds the item; B releases it to C: a notice; it is in transit to C.", lg, {
        "items": [{"case": CASE, "item": ITEM, "holder": None, "in_transit_to": kid(lg, "C"),
                   "releases": {str(r.entry.seq): "pending"}}],
        "findings": [{"code": "custody-release-by-non-holder", "seq": r.entry.seq, "severity": "notice"}]})

    # 6. derivation
    lg = Ledger()
    ing = lg.ingest("A")
    lg.ingest("B", item=COPY, path="VID_0001_blurred.mp4")
    lg.add("B", "derive", CASE, {"item": COPY, "original": ITEM, "action": "blurred faces",
                                 "original_ingest": {"seq": ing.entry.seq, "entry_hash": ing.entry_hash}})
    emit("derivation", "A preserves the original; B preserves a blurred copy and links it: B holds the copy, "
         "A the original; no finding.", lg, {
        "items": [{"case": CASE, "item": COPY, "holder": kid(lg, "B"), "in_transit_to": None, "releases": {}},
                  {"case": CASE, "item": ITEM, "holder": kid(lg, "A"), "in_transit_to": None, "releases": {}}],
        "findings": []})
    return out


def result_of(tl: timeline.Timeline, lg: Ledger) -> dict[str, Any]:
    items = []
    for (case, item), ic in sorted(tl.items.items()):
        items.append({"case": case, "item": item, "holder": ic.holder, "in_transit_to": ic.in_transit_to,
                      "releases": {str(e.seq): e.status for e in ic.events if e.type == "transfer"}})
    return {"items": items, "findings": [{"code": f.code, "seq": f.seq, "severity": f.severity} for f in tl.findings]}


def main() -> None:
    keys = {k: CustodianKey.from_seed(s, NAMES[k]) for k, s in SEEDS.items()}
    doc = {
        "description": "Custody scenarios for docs/custody-events.md §3-§4: signed entries (canonical bytes as UTF-8, "
                       "base64 Ed25519 signature, entry hash) from a self-signed genesis, and the expected custody "
                       "state and findings.",
        "keys": [{"name": NAMES[k], "seed": SEEDS[k].hex(), "public_key": key.public.raw.hex(), "key_id": key.key_id}
                 for k, key in keys.items()],
        "scenarios": scenarios(),
    }
    json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
