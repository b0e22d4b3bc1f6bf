"""Build a real A → B → C custody chain across three vaults, and the expected results of the
chain attacks (docs/bundle-format.md §4.9, §5 step 16; docs/vectors/chain.json).

Run from the repository root:  PYTHONPATH=.:tests python tests/vectors/make_chain_vectors.py OUT_FOLDER
writes the three vaults and bundles into OUT_FOLDER (fixed clock: entry times are reproducible;
keys are fresh Ed25519 keys each run) and prints, per mutation of C's bundle, the failing checks.
tests/test_upstream_chain.py builds the same chain, applies the same mutations and asserts
exactly the failing checks that docs/vectors/chain.json lists, so the vectors cannot drift.

Organisation A (vault A) ingests two files into "Case A", enrols B's PUBLIC key (key-enroll
with ``external: true``), transfers both items to B and exports bundle A.  B imports bundle A
into "Case B" (its receipts accept A's transfers), enrols C's public key, transfers to C and
exports bundle B (which carries A's tag files under evidence/upstream/<U_A>/).  C imports
bundle B into "Case C" and exports bundle C (evidence/upstream/<U_B>/…/evidence/upstream/<U_A>/).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evidencelock.bundle import export_bundle
from evidencelock.custody import case_items, transfer_items
from evidencelock.entry import Entry, SignedEntry
from evidencelock.importer import import_bundle
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey, PublicKey
from evidencelock.vault import Vault

OUT = Path(__file__).resolve().parent.parent.parent / "docs" / "vectors" / "chain.json"
PASSPHRASE = "correct horse battery staple"
START = datetime(2026, 12, 1, 8, 0, 0, tzinfo=timezone.utc)


class _Clock:
    def __init__(self, start: datetime = START) -> None:
        from datetime import timedelta

        self.t, self.step = start, timedelta(seconds=1)

    def __call__(self) -> datetime:
        self.t += self.step
        return self.t


def make_org(root: Path, name: str, clock: _Clock) -> tuple[Vault, CustodianKey]:
    v = Vault.init(root / name, custodian=f"{name} custodian", passphrase=PASSPHRASE, now=clock(),
                   origin=f"{name.lower()}.example/log")
    v.close()
    v = Vault.open(root / name, writable=True)
    return v, v.unlock(PASSPHRASE)


def enrol_external(vault: Vault, signer: CustodianKey, public: PublicKey, name: str, clock: _Clock) -> None:
    """What `keys add NAME --public-key FILE` records (design10): a key-enroll of a key held elsewhere."""
    vault.append(signer, now=clock(), type="key-enroll", case="",
                 body={"key_id": public.key_id, "public_key": public.raw.hex(), "name": name, "role": "custodian",
                       "external": True})


def hand_over(src: Vault, src_key: CustodianKey, case: str, dst: Vault, dst_key: CustodianKey, dst_case: str,
              bundle: Path, clock: _Clock, *, items: list[str] | None = None) -> dict[str, Any]:
    """``src`` releases ``case`` to ``dst``'s custodian, exports, and ``dst`` imports it."""
    enrol_external(src, src_key, dst_key.public, dst_key.name, clock)
    transfer_items(src, src_key, items=case_items(src, case), case=case, to=dst_key.key_id, note="sealed bag 17", now=clock)
    export_bundle(src, case=case, out=bundle, key=src_key, now=clock, items=items)
    res = import_bundle(dst, bundle, key=dst_key, now=clock, case=dst_case, extract_media=False)
    assert res.ok, [c for c in res.report.failures] if res.report else res
    return {"bundle": bundle, "u": res.tagmanifest_sha256, "result": res}


def build_chain(root: Path, n: int = 3) -> dict[str, Any]:
    """n organisations in a row (A → B → C for n = 3); returns vaults, keys and bundles by name."""
    root.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    names = [chr(ord("A") + i) for i in range(n)]
    orgs = {nm: make_org(root, nm, clock) for nm in names}
    files = root / "files"
    files.mkdir()
    (files / "statement.txt").write_bytes(b"witness statement, signed\n")
    (files / "clip.bin").write_bytes(bytes(range(256)) * 8)
    va, ka = orgs["A"]
    ingest(va, [files], key=ka, case="Case A", now=clock, extract_media=False)
    world: dict[str, Any] = {"root": root, "clock": clock, "orgs": orgs, "names": names, "u": {}, "bundles": {},
                             "imports": {}}
    for i in range(n - 1):
        a, b = names[i], names[i + 1]
        hop = hand_over(orgs[a][0], orgs[a][1], f"Case {a}", orgs[b][0], orgs[b][1], f"Case {b}",
                        root / f"bundle{a}", clock)
        world["u"][a], world["bundles"][a], world["imports"][b] = hop["u"], hop["bundle"], hop["result"]
    last = names[-1]
    export_bundle(orgs[last][0], case=f"Case {last}", out=root / f"bundle{last}", key=orgs[last][1], now=clock)
    world["bundles"][last] = root / f"bundle{last}"
    return world


# -- tampering tools (what an attacker does to a copy of bundle C) --------------------------------
def regen_tag_manifests(bag: Path) -> None:
    files = sorted(str(p.relative_to(bag)) for p in bag.rglob("*") if p.is_file() and not p.is_symlink()
                   and not str(p.relative_to(bag)).startswith("data/") and not (p.parent == bag and p.name.startswith("tagmanifest-")))
    for alg in ("sha256", "sha512"):
        (bag / f"tagmanifest-{alg}.txt").write_text(
            "".join(f"{hashlib.new(alg, (bag / f).read_bytes()).hexdigest()}  {f}\n" for f in files))


def regen_all(outer: Path, part: Path) -> None:
    """Regenerate the tag manifests of ``part`` and of every bag between it and ``outer``."""
    p = part
    while True:
        regen_tag_manifests(p)
        if p == outer:
            return
        p = p.parent.parent.parent  # <bag>/evidence/upstream/<U> -> <bag>


def drop_entry(bag: Path, seq: int) -> None:
    lines = [ln for ln in (bag / "evidence/entries.jsonl").read_text().splitlines() if json.loads(ln)["seq"] != seq]
    (bag / "evidence/entries.jsonl").write_text("\n".join(lines) + "\n")
    (bag / f"evidence/entries/{seq}.json").unlink()
    (bag / f"evidence/entries/{seq}.sig").unlink()
    proofs = json.loads((bag / "evidence/proofs.json").read_text())
    del proofs["inclusion"][str(seq)]
    (bag / "evidence/proofs.json").write_text(json.dumps(proofs))


def entries_of(bag: Path) -> dict[int, dict[str, Any]]:
    return {json.loads(ln)["seq"]: json.loads(base64.b64decode(json.loads(ln)["canonical"]))
            for ln in (bag / "evidence/entries.jsonl").read_text().splitlines()}


def rewrite_entry(bag: Path, seq: int, change: Callable[[dict[str, Any]], None], sign: Callable[[bytes], bytes]) -> None:
    out = []
    for line in (bag / "evidence/entries.jsonl").read_text().splitlines():
        obj = json.loads(line)
        if obj["seq"] == seq:
            e = json.loads(base64.b64decode(obj["canonical"]))
            change(e)
            signed = SignedEntry.create(Entry(**e), sign)
            obj = {"seq": seq, "canonical": base64.b64encode(signed.canonical).decode(),
                   "signature": base64.b64encode(signed.signature).decode()}
            (bag / f"evidence/entries/{seq}.json").write_bytes(signed.canonical)
            (bag / f"evidence/entries/{seq}.sig").write_bytes(signed.signature)
        out.append(json.dumps(obj, sort_keys=True))
    (bag / "evidence/entries.jsonl").write_text("\n".join(out) + "\n")


def part(bag: Path, *us: str) -> Path:
    for u in us:
        bag = bag / "evidence" / "upstream" / u
    return bag


def _receipt_seq(bag: Path) -> int:
    return min(s for s, e in entries_of(bag).items() if e["type"] == "ingest" and "received" in e["body"])


def _transfer_seq(bag: Path) -> int:
    return min(s for s, e in entries_of(bag).items() if e["type"] == "transfer")


def mutations(world: dict[str, Any]) -> dict[str, Callable[[Path], None]]:
    """Attacks on a copy of bundle C (three organisations); each must be refused, named."""
    ua, ub = world["u"]["A"], world["u"]["B"]
    kb = world["orgs"]["B"][1]

    def drop_b_receipt(bag: Path) -> None:  # B's receipt (in B's part), no key: manifests regenerated
        p = part(bag, ub)
        drop_entry(p, _receipt_seq(p))
        regen_all(bag, p)

    def drop_c_receipt(bag: Path) -> None:  # C's own receipt in the outer bundle
        drop_entry(bag, _receipt_seq(bag))
        regen_tag_manifests(bag)

    def drop_a_transfer(bag: Path) -> None:  # A's release, from A's part nested in B's part
        p = part(bag, ub, ua)
        drop_entry(p, _transfer_seq(p))
        regen_all(bag, p)

    def flip_upstream_entry(bag: Path) -> None:  # one byte of an entry in B's part; outer manifests regenerated
        p = part(bag, ub)
        f = p / "evidence" / "entries" / f"{_receipt_seq(p)}.json"
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
        regen_tag_manifests(bag)

    def remove_upstream(bag: Path) -> None:
        shutil.rmtree(bag / "evidence" / "upstream")
        regen_tag_manifests(bag)

    def swap_upstream(bag: Path) -> None:  # another bundle's tag files under U_B (B's first bundle of the case)
        other = world["root"] / "other-bundleB"
        if not other.exists():
            vb, kb_ = world["orgs"]["B"]
            export_bundle(vb, case="Case B", out=other, key=kb_, now=world["clock"])
        shutil.rmtree(part(bag, ub))
        shutil.copytree(other, part(bag, ub), ignore=shutil.ignore_patterns("data"))
        regen_tag_manifests(bag)

    def resign_b_receipt_transfer(bag: Path) -> None:  # B's key signs a receipt naming another release
        p = part(bag, ub)
        seq = _receipt_seq(p)

        def change(e: dict[str, Any]) -> None:
            e["body"]["received"]["transfer"]["seq"] = e["body"]["received"]["transfer"]["seq"] + 1
        rewrite_entry(p, seq, change, kb.sign)
        regen_all(bag, p)

    def unnamed_upstream(bag: Path) -> None:  # an upstream folder that no receipt names
        stray = bag / "evidence" / "upstream" / ("ab" * 32)
        stray.mkdir(parents=True)
        (stray / "bagit.txt").write_bytes(b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
        regen_tag_manifests(bag)

    return {"drop-b-receipt": drop_b_receipt, "drop-c-receipt": drop_c_receipt, "drop-a-transfer": drop_a_transfer,
            "flip-upstream-entry": flip_upstream_entry, "remove-upstream": remove_upstream,
            "swap-upstream": swap_upstream, "resign-b-receipt-transfer": resign_b_receipt_transfer,
            "unnamed-upstream": unnamed_upstream}


def failing_checks(report: Any) -> list[str]:
    return sorted({c.name for c in report.failures})


ATTACKS = {
    "drop-b-receipt": "B's receipt entry removed from B's part (no key; every tag manifest regenerated)",
    "drop-c-receipt": "C's receipt entry removed from the outer bundle",
    "drop-a-transfer": "A's transfer entry removed from A's part nested in B's part (tag manifests regenerated)",
    "flip-upstream-entry": "one byte of an entry file in B's part flipped (outer tag manifests regenerated)",
    "remove-upstream": "evidence/upstream/ removed (outer tag manifests regenerated)",
    "swap-upstream": "B's part replaced by the tag files of another bundle of B's case, under the same folder name",
    "resign-b-receipt-transfer": "received.transfer of B's receipt edited and the entry re-signed with B's real key",
    "unnamed-upstream": "an evidence/upstream/<U>/ folder that no receipt names",
}


def main(out_dir: Path) -> dict[str, Any]:
    from evidencelock.bundle import verify_bundle

    shutil.rmtree(out_dir, ignore_errors=True)
    world = build_chain(out_dir)
    result: dict[str, Any] = {
        "description": "docs/bundle-format.md §4.9, §5 step 16: the checks that fail for each attack on bundle C of a "
                       "real A → B → C chain (tests/vectors/make_chain_vectors.py builds the chain and applies the "
                       "mutations; tests/test_upstream_chain.py asserts exactly these failing checks). Check names of "
                       "an upstream part are prefixed 'upstream:' once per level.",
        "chain": world["names"], "genuine_failing_checks": failing_checks(verify_bundle(world["bundles"]["C"])),
        "mutations": {}}
    for name, fn in mutations(world).items():
        bag = out_dir / f"mut-{name}"
        shutil.copytree(world["bundles"]["C"], bag)
        fn(bag)
        result["mutations"][name] = {"attack": ATTACKS[name], "failing_checks": failing_checks(verify_bundle(bag))}
    return result


if __name__ == "__main__":
    OUT.write_text(json.dumps(main(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
