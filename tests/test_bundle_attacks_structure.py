"""Issue 9, items 1, 4, 6, 18 (and parts of 9): attacks on the structure of a genuine bundle.

Every test builds a real vault with the real code, exports real bundles, tampers with real bytes
as an attacker would (fixing the BagIt manifests; re-signing bundle.json with the genuine exporter
key where the attack needs it), runs the real CLI and asserts the refusal (exit 1) and that the
output names the problem.  The untampered bundle is verified the same way, so each test can fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from evidencelock.bundle import export_bundle, verify_bundle
from evidencelock.custody import enroll_custodian, revoke_custodian, transfer_items
from evidencelock.entry import SignedEntry
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey, PublicKey
from evidencelock.vault import Vault

from conftest import PASSPHRASE, run_cli
from test_bundle_support import build_vault, regen_manifests, regen_tag_manifests, rewrite_entry

CASE = "Case 9"
VECTORS = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "bundle.json"


# -- a real vault: two ingests of one file, a transfer, an enrolment and a revocation, two exports --
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("structure")
    vault, clock = build_vault(root)
    key = vault.unlock(PASSPHRASE)
    card = root / "card"
    (card / "DCIM" / "x").mkdir(parents=True)
    (card / "DCIM" / "hello.txt").write_bytes(b"hello, court\n")
    # Item 18: a file X and a folder x/ in one case; X sorts (and is ingested) first.
    (card / "DCIM" / "X").write_bytes(b"a file called X\n")
    (card / "DCIM" / "x" / "y.txt").write_bytes(b"a file in the folder x\n")
    (card / "DCIM" / "back\\slash.txt").write_bytes(b"a POSIX name with a backslash\n")
    ingest(vault, [card], key=key, case=CASE, now=clock, extract_media=False)
    team_b = enroll_custodian(vault, key, name="Team B", passphrase=PASSPHRASE, now=clock())
    laptop = enroll_custodian(vault, key, name="Old Laptop", passphrase=PASSPHRASE, now=clock())
    revoke_custodian(vault, key, key_id=laptop.key_id, reason="laptop seized", now=clock())
    # The same bytes ingested again later by Team B from another copy: the item has two ingests.
    (root / "copy").mkdir()
    (root / "copy" / "hello-copy.txt").write_bytes(b"hello, court\n")
    ingest(vault, [root / "copy"], key=team_b, case=CASE, now=clock, extract_media=False)
    transfer_items(vault, key, items=[], case=CASE, to=team_b.key_id, note="handed to Team B", now=clock)
    first = export_bundle(vault, case=CASE, out=root / "first", key=key, now=clock, report=False)
    second = export_bundle(vault, case=CASE, out=root / "second", key=key, now=clock, report=False)
    vault.close()
    pins = root / "pins"
    pins.mkdir()
    # What a court obtained independently BEFORE any tampering: the custodian's key and the
    # checkpoint published with the first export.
    (pins / "custodian.pem").write_bytes(key.public.to_pem())
    shutil.copy(first.path / "evidence/checkpoint.txt", pins / "published-checkpoint.txt")
    return {"root": root, "vault": root / "vault", "first": first, "second": second, "key": key,
            "team_b": team_b, "laptop": laptop, "pins": pins}


@pytest.fixture
def bag(world, tmp_path) -> Path:
    dst = tmp_path / "bag"
    shutil.copytree(world["second"].path, dst)
    return dst


def verify_cli(world, bag: Path, *, pinned: bool = True, verbose: bool = False):
    """verify-bundle with the court's pins; ``verbose``: also the checks that passed (ok lines)."""
    args = ["verify-bundle", bag] + (["--verbose"] if verbose else [])
    if pinned:
        args += ["--trusted-key", world["pins"] / "custodian.pem",
                 "--checkpoint", world["pins"] / "published-checkpoint.txt"]
    return run_cli(*args)


def entries_of(bag: Path) -> dict[int, dict]:
    out = {}
    for line in (bag / "evidence/entries.jsonl").read_text().splitlines():
        obj = json.loads(line)
        out[obj["seq"]] = json.loads(base64.b64decode(obj["canonical"]))
    return out


def seq_of(bag: Path, type_: str, pred=lambda e: True) -> int:
    return next(s for s, e in sorted(entries_of(bag).items()) if e["type"] == type_ and pred(e))


def drop_entry(bag: Path, seq: int) -> None:
    """Remove entry ``seq`` everywhere a tidy attacker would: entries.jsonl, by-hand copies, its
    inclusion proof; then regenerate the tag manifests.  No key is needed."""
    lines = [ln for ln in (bag / "evidence/entries.jsonl").read_text().splitlines() if json.loads(ln)["seq"] != seq]
    (bag / "evidence/entries.jsonl").write_text("\n".join(lines) + "\n")
    (bag / f"evidence/entries/{seq}.json").unlink()
    (bag / f"evidence/entries/{seq}.sig").unlink()
    proofs = json.loads((bag / "evidence/proofs.json").read_text())
    del proofs["inclusion"][str(seq)]
    (bag / "evidence/proofs.json").write_text(json.dumps(proofs))
    regen_tag_manifests(bag)


def resign_bundle_json(world, bag: Path, change) -> None:
    """Edit bundle.json and re-sign it with the GENUINE exporter key (isolates the check under test)."""
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    change(meta)
    data = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False).encode()
    (bag / "evidence/bundle.json").write_bytes(data)
    (bag / "evidence/bundle.json.sig").write_bytes(world["key"].sign(data))
    regen_tag_manifests(bag)


def assert_refused(r, check: str, *named: str) -> None:
    assert r.code == 1, r.stdout + r.stderr
    assert "VERIFIED" not in r.stdout and "Traceback" not in r.stderr
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL") and check in ln]
    assert fails, r.stdout
    for n in named:
        assert any(n in ln for ln in fails), (n, fails)


# -- the genuine bundle passes, with the pins a court would use ---------------------------------
def test_genuine_bundle_verifies_with_pinned_key_and_published_checkpoint(world, bag):
    r = verify_cli(world, bag, verbose=True)
    assert r.code == 0, r.stdout + r.stderr
    assert "VERIFIED" in r.stdout
    for check in ("evidence-record", "evidence-chain", "evidence-consistency", "evidence-payload-name",
                  "evidence-bag-info", "evidence-unexpected-file"):
        assert any(ln.startswith("ok") and check in ln for ln in r.stdout.splitlines()), (check, r.stdout)


# -- item 1: completeness of the custody record --------------------------------------------------
def test_deleted_transfer_is_refused(world, bag):
    seq = seq_of(bag, "transfer")
    drop_entry(bag, seq)
    assert_refused(verify_cli(world, bag), "evidence-record", f"entry {seq}", "transfer")


def test_deleted_first_ingest_is_refused(world, bag):
    """hello.txt has two ingests; without the first, the report would name Team B as its first custodian."""
    seq = seq_of(bag, "ingest", lambda e: e["body"]["source"]["path"].endswith("hello.txt"))
    drop_entry(bag, seq)
    assert_refused(verify_cli(world, bag), "evidence-record", f"entry {seq}", "ingest")


def test_deleted_key_revocation_is_refused(world, bag):
    seq = seq_of(bag, "key-revoke")
    drop_entry(bag, seq)
    assert_refused(verify_cli(world, bag), "evidence-record", f"entry {seq}", "key-revoke")


def test_deleted_previous_export_is_refused(world, bag):
    seq = seq_of(bag, "export")
    drop_entry(bag, seq)
    assert_refused(verify_cli(world, bag), "evidence-record", f"entry {seq}")


def test_entry_added_that_the_signed_record_does_not_list_is_refused(world, bag, tmp_path):
    """Entries of the first bundle that the second's exporter did not list cannot be slipped in."""
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    listed = {r["seq"] for r in meta["record"]}
    seq = max(listed)

    def drop_from_record(m):
        m["record"] = [r for r in m["record"] if r["seq"] != seq]

    # Without the key an attacker cannot change the record; with the exporter's key the entry
    # present but unlisted is still named.
    resign_bundle_json(world, bag, drop_from_record)
    assert_refused(verify_cli(world, bag), "evidence-record", f"entry {seq}", "not in the exporter's signed record")


def test_bundle_without_a_signed_record_is_refused(world, bag):
    resign_bundle_json(world, bag, lambda m: m.pop("record"))
    assert_refused(verify_cli(world, bag), "evidence-record", "evidence/bundle.json")


def test_broken_prev_link_is_refused(world, bag):
    """An entry re-signed by a genuine enrolled key with another prev: the chain check names it."""
    seq = seq_of(bag, "transfer")
    assert seq - 1 in entries_of(bag)
    rewrite_entry(bag, seq, lambda e: e.update(prev="ab" * 32), world["key"].sign)
    r = verify_cli(world, bag)
    assert_refused(r, "evidence-chain", f"entry {seq}", "hash chain broken")


# -- item 6: other tampering ---------------------------------------------------------------------
def test_entries_out_of_order_are_refused(world, bag):
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    (bag / "evidence/entries.jsonl").write_text("\n".join(lines) + "\n")
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-entries", "out of order")


def test_corrupted_consistency_proof_is_refused_without_checkpoint(world, bag):
    proofs = json.loads((bag / "evidence/proofs.json").read_text())
    assert proofs["consistency"], "the second bundle carries a proof from the first export's checkpoint"
    h = proofs["consistency"][0]["proof"][0]
    proofs["consistency"][0]["proof"][0] = ("0" if h[0] != "0" else "1") + h[1:]
    (bag / "evidence/proofs.json").write_text(json.dumps(proofs))
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag, pinned=False), "evidence-consistency", "consistency[0]")


def test_case_edited_in_bag_info_is_refused(world, bag):
    info = (bag / "bag-info.txt").read_text().replace(f"External-Identifier: {CASE}", "External-Identifier: Case 10")
    (bag / "bag-info.txt").write_text(info)
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-bag-info", "External-Identifier", "Case 10")


def test_field_added_to_bag_info_is_refused(world, bag):
    with open(bag / "bag-info.txt", "a", encoding="utf-8") as f:
        f.write("Contact-Name: Somebody Else\n")
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-bag-info", "Contact-Name")


def test_bagging_date_edited_in_bag_info_is_refused(world, bag):
    lines = [("Bagging-Date: 1999-01-01" if ln.startswith("Bagging-Date") else ln)
             for ln in (bag / "bag-info.txt").read_text().splitlines()]
    (bag / "bag-info.txt").write_text("\n".join(lines) + "\n")
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-bag-info", "Bagging-Date")


def test_extra_md5_manifest_is_refused(world, bag):
    files = sorted(p for p in (bag / "data").rglob("*") if p.is_file())
    (bag / "manifest-md5.txt").write_text("".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(bag)}\n"
                                                  for p in files))
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-unexpected-file", "manifest-md5.txt")


def test_extra_tag_file_is_refused(world, bag):
    (bag / "evidence" / "notes.txt").write_text("the custodian admitted everything\n")
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-unexpected-file", "evidence/notes.txt")


# -- item 4: names -------------------------------------------------------------------------------
def test_renamed_payload_in_resigned_bundle_json_is_refused(world, bag):
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    old = next(i["path"] for i in meta["items"] if i["path"].endswith("hello.txt"))
    new = old.rsplit("/", 1)[0] + "/confession.mp4"
    (bag / old).rename(bag / new)
    regen_manifests(bag)

    def rename(m):
        for i in m["items"]:
            if i["path"] == old:
                i["path"] = new

    resign_bundle_json(world, bag, rename)
    r = verify_cli(world, bag)
    assert_refused(r, "evidence-payload-name", "confession.mp4", "hello.txt")


def test_original_names_rewritten_in_resigned_bundle_json_are_refused(world, bag):
    def rewrite(m):
        for i in m["items"]:
            if i["path"].endswith("hello.txt"):
                i["original_names"] = ["confession.mp4"]

    resign_bundle_json(world, bag, rewrite)
    assert_refused(verify_cli(world, bag), "evidence-payload-name", "original_names", "confession.mp4")


def test_report_names_the_signed_source_name(world):
    r = verify_bundle(world["second"].path)
    assert r.ok, r.failures
    hello = next(i for i in r.items if i["path"].endswith("hello.txt"))
    assert any(n.endswith("hello.txt") for n in hello["signed_names"])
    assert any(n.endswith("hello-copy.txt") for n in hello["signed_names"])
    assert any("signed source name" in s and "hello.txt" in s for s in r.established)


# -- item 18: a file x and a folder X/ in one case ----------------------------------------------
def test_file_and_folder_differing_in_case_export_without_crash(world):
    for res in (world["first"], world["second"]):
        meta = json.loads((res.path / "evidence/bundle.json").read_text())
        paths = [i["path"] for i in meta["items"]]
        folded = {p.casefold() for p in paths}
        assert len(folded) == len(paths)
        x = next(p for p in paths if p.rsplit("/", 1)[-1].casefold().startswith("x") and "y.txt" not in p)
        y = next(p for p in paths if p.endswith("y.txt"))
        # Neither the file x nor any folder on y's path may be a prefix of the other under casefold.
        assert not y.casefold().startswith(x.casefold() + "/")
        assert verify_bundle(res.path).ok


def test_cli_export_of_file_and_folder_collision_signs_once_and_verifies(world, tmp_path):
    v = Vault.open(world["vault"])
    with v.ledger.reader() as conn:
        from evidencelock import treestore
        before = treestore.tree_size(conn)
    v.close()
    out = tmp_path / "cli.zip"
    p = run_cli("export", "--case", CASE, "-o", out, "--no-report", vault=world["vault"])
    assert p.code == 0 and "Traceback" not in p.stderr, p.stdout + p.stderr
    assert run_cli("verify-bundle", out).code == 0
    v = Vault.open(world["vault"])
    with v.ledger.reader() as conn:
        after = treestore.tree_size(conn)
    v.close()
    # At most one checkpoint entry and the export entry, plus one access entry per exported item (issue 10).
    assert after - before <= 2 + world["first"].items


def test_failed_export_signs_nothing_and_leaves_no_partial_bag(world, tmp_path):
    """A case whose item has no ingest entry in it (here: an unknown --item) fails before any signature."""
    v = Vault.open(world["vault"])
    with v.ledger.reader() as conn:
        from evidencelock import treestore
        before = treestore.tree_size(conn)
    v.close()
    p = run_cli("export", "--case", CASE, "--item", "ffffffffff", "-o", tmp_path / "never", vault=world["vault"])
    assert p.code == 2 and "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == []
    v = Vault.open(world["vault"])
    with v.ledger.reader() as conn:
        assert treestore.tree_size(conn) == before
    v.close()


# -- item 9 parts --------------------------------------------------------------------------------
def test_backslash_in_a_name_becomes_underscore_not_a_folder(world):
    meta = json.loads((world["second"].path / "evidence/bundle.json").read_text())
    p = next(i["path"] for i in meta["items"] if "slash" in i["path"])
    assert p.endswith("/back_slash.txt"), p


def test_later_bundle_shows_the_previous_export(world):
    ents = entries_of(world["second"].path)
    exports = [e for e in ents.values() if e["type"] == "export"]
    assert [e["body"]["bundle"]["name"] for e in exports] == ["first"]
    assert exports[0]["body"]["bundle"]["tagmanifest_sha256"] == world["first"].tagmanifest_sha256
    assert "export" not in {e["type"] for e in entries_of(world["first"].path).values()}


def test_bundle_without_report_files_verifies(world):
    assert not (world["second"].path / "report.html").exists()
    assert verify_bundle(world["second"].path).ok


def test_bundle_json_vectors_in_docs():
    """docs/vectors/bundle.json: the exact bytes, signature and key; the expected check results."""
    import sys

    from evidencelock.bundle import verify as bv
    from evidencelock.bundle._paths import derivable_from

    sys.path.insert(0, str(Path(__file__).resolve().parent / "vectors"))
    import make_bundle_vectors

    v = json.loads(VECTORS.read_text())
    assert make_bundle_vectors.build() == v, "docs/vectors/bundle.json drifted from the code: regenerate it"
    key = PublicKey(bytes.fromhex(v["public_key"]))
    data = base64.b64decode(v["bundle_json_b64"])
    assert hashlib.sha256(data).hexdigest() == v["bundle_json_sha256"]
    assert key.key_id == v["key_id"] == json.loads(data)["exporter"]
    key.verify(data, bytes.fromhex(v["signature"]), subject="vector")
    for case in v["cases"]:
        assert derivable_from(case["path"], case["source_path"], case["sha256"]) is case["derivable"], case
    meta = json.loads(data)
    entries = {e["seq"]: SignedEntry.from_bytes(base64.b64decode(e["canonical_b64"]), bytes.fromhex(e["signature"]))
               for e in v["entries"]}
    for s in entries.values():
        s.verify_signature(key)

    def run(meta_, entries_):
        r = bv.BundleReport("vector")
        bv._check_record(r, meta_, entries_)
        bv._check_chain(r, entries_)
        bv._check_names(r, meta_, entries_)
        return r

    def without(d, seq):
        return {k: x for k, x in d.items() if k != seq}

    mutated = {
        "none": (meta, entries),
        "entry 2 removed from the bundle": (meta, without(entries, 2)),
        "record[2] removed from bundle.json (re-signed)": ({**meta, "record": meta["record"][:2]}, entries),
        "record[1].leaf changed": ({**meta, "record": [meta["record"][0], {**meta["record"][1], "leaf": "00" * 32},
                                                         meta["record"][2]]}, entries),
        "entry 1 removed from the bundle and from the record (re-signed)": (
            {**meta, "record": [r for r in meta["record"] if r["seq"] != 1]}, without(entries, 1)),
        "items[0].path = data/DCIM/confession.mp4 (re-signed)": (
            {**meta, "items": [{**meta["items"][0], "path": "data/DCIM/confession.mp4"}]}, entries),
    }
    for exp in v["expected"]:
        r = run(*mutated[exp["mutation"]])
        if "fails" not in exp:
            assert not r.failures, r.failures
        else:
            assert any(c.name == exp["fails"] and c.subject == exp["subject"] for c in r.failures), (exp, r.failures)


# -- item 1 (with item 10's database edits): the exporter decides from the signed bytes -------------
@pytest.fixture
def small_vault(tmp_path):
    vault, clock = build_vault(tmp_path)
    key = vault.unlock(PASSPHRASE)
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "a.txt").write_bytes(b"first file\n")
    (tmp_path / "card" / "b.txt").write_bytes(b"second file\n")
    ingest(vault, [tmp_path / "card"], key=key, case=CASE, now=clock, extract_media=False)
    team_b = enroll_custodian(vault, key, name="Team B", passphrase=PASSPHRASE, now=clock())
    transfer_items(vault, key, items=[], case=CASE, to=team_b.key_id, note="to B", now=clock)
    vault.close()
    return tmp_path / "vault"


def _sql(vault_path: Path, statement: str) -> None:
    import sqlite3

    con = sqlite3.connect(vault_path / "ledger.sqlite")
    with con:
        assert con.execute(statement).rowcount >= 1
    con.close()


def test_export_is_not_fooled_by_an_edited_case_column(small_vault, tmp_path):
    """A transfer moved to another case in the database only: the signed bytes still say Case 9."""
    p = run_cli("export", "--case", CASE, "-o", tmp_path / "genuine", "--no-report", vault=small_vault)
    assert p.code == 0, p.stdout + p.stderr
    _sql(small_vault, "UPDATE entries SET case_id = 'Other case' WHERE type = 'transfer'")
    p = run_cli("export", "--case", CASE, "-o", tmp_path / "edited", "--no-report", vault=small_vault)
    assert p.code == 1 and "Traceback" not in p.stderr, p.stdout + p.stderr
    assert "index-entry-column" in p.stderr and "case_id" in p.stderr, p.stderr
    assert not (tmp_path / "edited").exists()


def test_export_is_not_fooled_by_a_deleted_sources_row(small_vault, tmp_path):
    _sql(small_vault, "DELETE FROM sources WHERE id = (SELECT MIN(id) FROM sources)")
    p = run_cli("export", "--case", CASE, "-o", tmp_path / "edited", "--no-report", vault=small_vault)
    assert p.code == 1 and "Traceback" not in p.stderr, p.stdout + p.stderr
    assert "index-source-missing" in p.stderr and "sources" in p.stderr, p.stderr
    assert not (tmp_path / "edited").exists()


def test_deleted_transfer_in_a_zip_bundle_is_refused(world, bag, tmp_path):
    seq = seq_of(bag, "transfer")
    genuine = tmp_path / "genuine.zip"
    shutil.make_archive(str(genuine.with_suffix("")), "zip", bag.parent, bag.name)
    assert verify_cli(world, genuine).code == 0
    drop_entry(bag, seq)
    tampered = tmp_path / "tampered.zip"
    shutil.make_archive(str(tampered.with_suffix("")), "zip", bag.parent, bag.name)
    assert_refused(verify_cli(world, tampered), "evidence-record", f"entry {seq}")


def test_deleted_item_with_its_entries_is_refused(world, bag):
    """Remove a whole item: payload, manifest lines, its ingest and transfer entries (no key)."""
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    item = next(i for i in meta["items"] if i["path"].endswith("y.txt"))
    (bag / item["path"]).unlink()
    for seq, e in sorted(entries_of(bag).items()):
        if e["body"].get("item") == item["sha256"]:
            drop_entry(bag, seq)
    regen_manifests(bag)
    r = verify_cli(world, bag)
    assert_refused(r, "evidence-record")
    assert item["path"] in r.stdout


def test_item_entries_list_edited_in_resigned_bundle_json_is_refused(world, bag):
    def edit(m):
        for i in m["items"]:
            if i["path"].endswith("hello.txt"):
                i["entries"] = i["entries"][1:]  # hide the first ingest from the item's list

    resign_bundle_json(world, bag, edit)
    assert_refused(verify_cli(world, bag), "evidence-record", "items[].entries", "hello.txt")


def test_checkpoint_named_in_bundle_json_must_be_the_carried_one(world, bag):
    def edit(m):
        m["checkpoint"]["size"] += 1

    resign_bundle_json(world, bag, edit)
    assert_refused(verify_cli(world, bag), "evidence-bundle-checkpoint", "evidence/bundle.json")


def test_field_added_to_bagit_txt_is_refused(world, bag):
    with open(bag / "bagit.txt", "a", encoding="utf-8") as f:
        f.write("Contact-Name: Somebody Else\n")
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-bagit-declaration", "bagit.txt")


def test_export_of_a_damaged_object_signs_nothing_and_leaves_no_partial_bag(small_vault, tmp_path):
    """Item 18: the payload is copied and checked before a checkpoint may be signed for the bundle."""
    import os
    import sqlite3

    obj = next(p for p in (small_vault / "objects").rglob("*") if p.is_file() and len(p.name) == 64)
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[0] ^= 1
    obj.write_bytes(bytes(data))
    con = sqlite3.connect(small_vault / "ledger.sqlite")
    before = con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    con.close()
    out = tmp_path / "outdir"
    out.mkdir()
    p = run_cli("export", "--case", CASE, "-o", out / "bundle", "--no-report", vault=small_vault)
    assert p.code == 1 and "Traceback" not in p.stderr, p.stdout + p.stderr
    assert obj.name in p.stdout + p.stderr or "sha256" in p.stdout + p.stderr
    assert list(out.iterdir()) == []  # no bag, no .partial- folder
    con = sqlite3.connect(small_vault / "ledger.sqlite")
    assert con.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == before  # no checkpoint, no export entry
    con.close()


def test_record_edited_without_the_key_is_refused(world, bag):
    """Without a key the attacker must leave bundle.json's signature broken to hide the deletion."""
    seq = seq_of(bag, "transfer")
    drop_entry(bag, seq)
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    meta["record"] = [r for r in meta["record"] if r["seq"] != seq]
    (bag / "evidence/bundle.json").write_text(json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False))
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-bundle-signature")
