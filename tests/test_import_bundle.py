"""import-bundle (issue 10, design10 "Cross-organisation hand-over"): verify first, through the very
copies that are preserved; preserve the bytes, keep the tag files under imports/<U>/, record one
receipt per item; refuse anything that does not verify with NOTHING written; rerun records nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from evidencelock.bundle import export_bundle
from evidencelock.entry import SignedEntry
from evidencelock.vault import Vault

sys.path.insert(0, str(Path(__file__).parent / "vectors"))
from make_chain_vectors import (_Clock, enrol_external, make_org, regen_tag_manifests,  # noqa: E402
                                rewrite_entry)
from evidencelock.custody import case_items, transfer_items  # noqa: E402
from evidencelock.ingest import ingest  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A releases two files to B's public key and exports; B's vault is a template copied per test."""
    root = tmp_path_factory.mktemp("import")
    clock = _Clock()
    va, ka = make_org(root, "A", clock)
    vb, kb = make_org(root, "B", clock)
    files = root / "files"
    (files / "sub").mkdir(parents=True)
    (files / "statement.txt").write_bytes(b"witness statement, signed\n")
    (files / "sub" / "clip.bin").write_bytes(os.urandom(300_000))
    ingest(va, [files], key=ka, case="Case A", now=clock, extract_media=False)
    enrol_external(va, ka, kb.public, "B custodian", clock)
    transfer_items(va, ka, items=case_items(va, "Case A"), case="Case A", to=kb.key_id, note="sealed bag 17", now=clock)
    export_bundle(va, case="Case A", out=root / "bundleA", key=ka, now=clock)
    export_bundle(va, case="Case A", out=root / "bundleA.zip", key=ka, now=clock)
    va.close()
    vb.close()
    return {"root": root, "files": files, "A": root / "A", "B": root / "B", "bundle": root / "bundleA",
            "zip": root / "bundleA.zip", "ka": ka, "kb": kb}


@pytest.fixture
def vb(world, tmp_path) -> Path:
    """A private copy of B's vault."""
    dst = tmp_path / "B"
    shutil.copytree(world["B"], dst)
    return dst


@pytest.fixture
def bag(world, tmp_path) -> Path:
    dst = tmp_path / "bag"
    shutil.copytree(world["bundle"], dst)
    return dst


def listing(vault: Path) -> dict[str, int]:
    """Every file of the vault with its size (the ledger by its entry count, below)."""
    out = {}
    for p in sorted(vault.rglob("*")):
        rel = str(p.relative_to(vault))
        if p.is_file() and not rel.startswith("ledger.sqlite"):
            out[rel] = p.stat().st_size
        elif p.is_dir():
            out[rel + "/"] = 0
    return out


def entries(vault: Path) -> list[SignedEntry]:
    with Vault.open(vault) as v:
        return [SignedEntry.from_bytes(r.canonical, r.signature) for r in v.ledger.rows(start=None)]


def state(vault: Path) -> tuple[dict[str, int], int]:
    return listing(vault), len(entries(vault))


def receipts(vault: Path) -> list[SignedEntry]:
    return [s for s in entries(vault) if s.entry.type == "ingest" and "received" in s.entry.body]


def assert_refused_nothing_written(r, vb: Path, before, *named: str) -> None:
    assert r.code == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "REFUSED" in r.stdout, r.stdout + r.stderr
    for n in named:
        assert any(ln.startswith("FAIL") and n in ln for ln in r.stdout.splitlines()), (n, r.stdout)
    assert state(vb) == before
    assert not (vb / "imports").exists() or not any((vb / "imports").iterdir())
    assert not list((vb / "objects").rglob("*.*")) and not [p for p in (vb / "objects").rglob("*") if p.is_file()]


# -- the genuine bundle -----------------------------------------------------------------------------
def test_import_of_a_good_bundle_preserves_bytes_records_receipts_and_stores_tag_files(world, vb):
    r = run_cli("import-bundle", world["bundle"], "--case", "Case B", "--no-media", vault=vb)
    assert r.code == 0, r.stdout + r.stderr
    assert "Verified and imported" in r.stdout and "accepts their release" in r.stdout
    u = hashlib.sha256((world["bundle"] / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    # The bytes preserved equal the originals, under their SHA-256.
    for f in (world["files"] / "statement.txt", world["files"] / "sub" / "clip.bin"):
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        assert (vb / "objects" / "sha256" / sha[:2] / sha[2:4] / sha).read_bytes() == f.read_bytes()
    # The tag files verbatim under imports/<U>/.
    stored = vb / "imports" / u
    for p in world["bundle"].rglob("*"):
        rel = p.relative_to(world["bundle"])
        if p.is_file() and not str(rel).startswith("data/"):
            assert (stored / rel).read_bytes() == p.read_bytes(), rel
    assert not (stored / "data").exists()
    # One receipt per item, naming the bundle, A's part, and accepting A's release to B.
    meta = json.loads((world["bundle"] / "evidence/bundle.json").read_bytes())
    a_entries = {json.loads(ln)["seq"]: json.loads(base64.b64decode(json.loads(ln)["canonical"]))
                 for ln in (world["bundle"] / "evidence/entries.jsonl").read_text().splitlines()}
    recs = receipts(vb)
    assert len(recs) == 2
    for s in recs:
        e, rec = s.entry, s.entry.body["received"]
        item = next(i for i in meta["items"] if i["sha256"] == e.body["item"])
        assert e.case == "Case B" and e.actor == world["kb"].key_id
        assert e.body["source"]["root"] == "bundleA" and "data/" + e.body["source"]["path"] == item["path"]
        assert rec["bundle"] == u and rec["origin"] == meta["origin"] == "a.example/log" and rec["case"] == "Case A"
        assert rec["exporter"] == world["ka"].key_id and rec["checkpoint"] == {k: meta["checkpoint"][k] for k in ("size", "root")}
        assert rec["ingests"] == item["entries"]
        release = a_entries[rec["transfer"]["seq"]]
        assert release["type"] == "transfer" and release["body"]["item"] == e.body["item"]
        assert release["body"]["to"] == world["kb"].key_id
    r = run_cli("verify", vault=vb)
    assert r.code == 0, r.stdout + r.stderr


def test_import_of_a_zipped_bundle_records_the_same_receipts(world, vb):
    r = run_cli("import-bundle", world["zip"], "--no-media", "--json", vault=vb)
    assert r.code == 0, r.stdout + r.stderr
    out = r.json()
    assert out["ok"] and out["case"] == "Case A" and {i["status"] for i in out["items"]} == {"imported"}
    assert (vb / out["stored"] / "tagmanifest-sha256.txt").is_file()
    assert run_cli("verify", vault=vb).code == 0


def test_import_rerun_records_nothing_twice(world, vb):
    assert run_cli("import-bundle", world["bundle"], "--case", "Case B", "--no-media", vault=vb).code == 0
    before = state(vb)
    r = run_cli("import-bundle", world["bundle"], "--case", "Case B", "--no-media", "--json", vault=vb)
    assert r.code == 0, r.stdout + r.stderr
    assert {i["status"] for i in r.json()["items"]} == {"already-recorded"} and not r.json()["stored_now"]
    assert state(vb) == before


def test_import_reads_each_payload_byte_once(world, tmp_path, monkeypatch):
    """Lead's addendum: each payload file is read ONCE; the bytes verified are the bytes staged."""
    from evidencelock.bundle import source as source_mod
    from evidencelock.importer import import_bundle

    vb = tmp_path / "B"
    shutil.copytree(world["B"], vb)
    opened: list[str] = []
    real_open = source_mod.DirSource.open

    def counting_open(self, path):
        opened.append(path)
        return real_open(self, path)

    monkeypatch.setattr(source_mod.DirSource, "open", counting_open)
    from conftest import PASSPHRASE

    with Vault.open(vb, writable=True) as v:
        res = import_bundle(v, world["bundle"], key=v.unlock(PASSPHRASE), now=_Clock(), extract_media=False)
    assert res.ok, res.report.failures if res.report else res
    payload = [p for p in opened if p.startswith("data/")]
    assert sorted(payload) == sorted(set(payload)) and len(payload) == 2, opened
    # every tag file too, exactly once (copied, then verified from the copy)
    tags = [p for p in opened if not p.startswith("data/")]
    assert len(tags) == len(set(tags))


# -- refused, nothing written -----------------------------------------------------------------------
def test_import_of_a_bundle_with_a_flipped_payload_byte_is_refused_and_writes_nothing(world, vb, bag):
    f = bag / "data" / "sub" / "clip.bin"
    data = bytearray(f.read_bytes())
    data[1000] ^= 0x01
    f.write_bytes(bytes(data))
    before = state(vb)
    r = run_cli("import-bundle", bag, "--case", "Case B", "--no-media", vault=vb)
    assert_refused_nothing_written(r, vb, before, "bagit-payload-fixity", "data/sub/clip.bin")


def test_import_of_a_bundle_with_a_rewritten_entry_is_refused_and_writes_nothing(world, vb, bag):
    """An attacker without A's key re-signs A's transfer with B's key (manifests regenerated)."""
    seq = min(json.loads(ln)["seq"] for ln in (bag / "evidence/entries.jsonl").read_text().splitlines()
              if json.loads(base64.b64decode(json.loads(ln)["canonical"]))["type"] == "transfer")

    def change(e):
        e["body"]["note"] = "never sealed"
    rewrite_entry(bag, seq, change, world["kb"].sign)
    regen_tag_manifests(bag)
    before = state(vb)
    r = run_cli("import-bundle", bag, "--case", "Case B", "--no-media", vault=vb)
    assert_refused_nothing_written(r, vb, before, "evidence-signature", f"entry {seq}")


def test_import_with_pins_not_matching_is_refused_and_writes_nothing(world, vb):
    before = state(vb)
    r = run_cli("import-bundle", world["bundle"], "--trusted-key", world["kb"].key_id, "--no-media", vault=vb)
    assert_refused_nothing_written(r, vb, before, "evidence-trusted-key")
    r = run_cli("import-bundle", world["bundle"], "--trusted-key", world["ka"].key_id, "--no-media", vault=vb)
    assert r.code == 0, r.stdout + r.stderr


def test_import_of_a_bundle_with_an_added_file_is_refused_and_writes_nothing(world, vb, bag):
    (bag / "data" / "planted.txt").write_bytes(b"not in the custody record\n")
    before = state(vb)
    r = run_cli("import-bundle", bag, "--no-media", vault=vb)
    assert_refused_nothing_written(r, vb, before, "bagit-completeness", "data/planted.txt")


def test_import_of_something_that_is_not_a_bag_is_bad_input(world, vb, tmp_path):
    (tmp_path / "nobag").mkdir()
    (tmp_path / "nobag" / "x.txt").write_bytes(b"x")
    before = state(vb)
    r = run_cli("import-bundle", tmp_path / "nobag", "--case", "X", vault=vb)
    assert r.code == 2 and "Traceback" not in r.stderr and "bagit.txt" in (r.stdout + r.stderr)
    assert state(vb) == before


def test_plain_bagit_bag_is_handed_to_the_plain_bag_importer(world, vb, tmp_path):
    """A bag without evidence layer (made by bagit-python) goes to bagimport.import_plain_bag:
    preserved with received.bagit, no imports/ folder (there is no signed record to keep)."""
    bagit = pytest.importorskip("bagit")
    plain = tmp_path / "plain"
    (plain / "photos").mkdir(parents=True)
    (plain / "photos" / "a.txt").write_bytes(b"a plain file\n")
    bagit.make_bag(str(plain), {"Source-Organization": "Elsewhere"}, checksums=["sha256", "sha512"])
    r = run_cli("import-bundle", plain, "--no-media", vault=vb)
    assert r.code == 2 and "--case" in (r.stdout + r.stderr) and "Traceback" not in r.stderr
    r = run_cli("import-bundle", plain, "--case", "Case P", "--no-media", vault=vb)
    assert r.code == 0, r.stdout + r.stderr
    (rec,) = receipts(vb)
    assert rec.entry.case == "Case P" and "bagit" in rec.entry.body["received"]
    assert not (vb / "imports").exists()
    (plain / "data" / "photos" / "a.txt").write_bytes(b"changed\n")
    before = state(vb)
    r = run_cli("import-bundle", plain, "--case", "Case Q", "--no-media", vault=vb)
    assert r.code == 1 and "Traceback" not in r.stderr and state(vb) == before


# -- the stored import is checked by verify / audit, and guards export ---------------------------
def test_stored_import_tampered_in_the_vault_fails_verify_naming_the_folder(world, vb):
    assert run_cli("import-bundle", world["bundle"], "--no-media", vault=vb).code == 0
    (stored,) = [p for p in (vb / "imports").iterdir()]
    f = stored / "evidence" / "bundle.json"
    os.chmod(f, 0o644)
    f.write_bytes(f.read_bytes().replace(b"Case A", b"Case Z"))
    r = run_cli("verify", vault=vb)
    assert r.code == 1 and "Traceback" not in r.stderr
    assert "import-folder" in r.stdout and stored.name in r.stdout and "evidence/bundle.json" in r.stdout
    # and an export of the received items refuses to carry it
    r = run_cli("export", "--case", "Case A", "-o", vb.parent / "out", vault=vb)
    assert r.code == 1 and not (vb.parent / "out").exists() and "imports/" in (r.stdout + r.stderr)


def test_stored_import_folder_removed_fails_verify_naming_the_receipts(world, vb):
    assert run_cli("import-bundle", world["bundle"], "--no-media", vault=vb).code == 0
    (stored,) = [p for p in (vb / "imports").iterdir()]
    for p in stored.rglob("*"):
        if p.is_dir():
            os.chmod(p, 0o755)
    shutil.rmtree(stored)
    r = run_cli("verify", vault=vb)
    assert r.code == 1 and "import-receipt" in r.stdout and stored.name in r.stdout


def test_untampered_vault_with_an_import_passes_verify_and_audit(world, vb):
    assert run_cli("import-bundle", world["bundle"], "--no-media", vault=vb).code == 0
    assert run_cli("verify", vault=vb).code == 0
    r = run_cli("audit", vault=vb)
    assert r.code == 0, r.stdout + r.stderr


@pytest.mark.parametrize("point", ["receive-mid-stage", "after-stage", "after-ledger-commit"])
def test_import_killed_at_any_point_leaves_a_vault_that_verifies_and_a_rerun_completes(world, vb, point):
    r = run_cli("import-bundle", world["bundle"], "--no-media", vault=vb, env={"EVIDENCELOCK_TEST_KILL_AT": point})
    assert r.code != 0  # SIGKILL
    assert bool(list((vb / "staging").rglob("import-*"))) == (point == "receive-mid-stage")  # imports/<U> not yet stored
    assert run_cli("verify", vault=vb).code == 0
    r = run_cli("import-bundle", world["bundle"], "--no-media", "--json", vault=vb)
    assert r.code == 0, r.stdout + r.stderr
    statuses = {i["status"] for i in r.json()["items"]}
    assert statuses == ({"already-recorded"} if point == "after-ledger-commit" else {"imported"})
    assert len(receipts(vb)) == 2
    assert not list((vb / "staging").rglob("import-*"))  # the dead session's copy of the tag files was removed
    r = run_cli("verify", vault=vb)
    assert r.code == 0, r.stdout + r.stderr
