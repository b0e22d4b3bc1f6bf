"""Issue 11: a lawyer checks a bundle against the custodian's LATEST published checkpoint.

The checkpoint is published after the bundle was made, so it is newer than the bundle's.  The
custodian makes a consistency proof with `consistency --from-bundle B --to CP -o PROOF`; the
reader passes it to `verify-bundle B --checkpoint CP --consistency-proof PROOF`.  Real vault,
real bundle, real CLI; every attack is asserted by its named check in --json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evidencelock import checkpoint as cp_mod
from evidencelock import merkle, proofs
from evidencelock.bundle import export_bundle
from evidencelock.ingest import ingest
from evidencelock.transparency import create_checkpoint

from conftest import PASSPHRASE, run_cli
from test_bundle_support import build_vault

CASE = "Case 11"
VECTORS = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "proof-files.json"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("latest")
    vault, clock = build_vault(root)
    key = vault.unlock(PASSPHRASE)
    (root / "card").mkdir()
    (root / "card" / "a.txt").write_bytes(b"first file\n")
    ingest(vault, [root / "card"], key=key, case=CASE, now=clock, extract_media=False)
    bundle = export_bundle(vault, case=CASE, out=root / "bundle", key=key, now=clock, report=False)
    old_cp = root / "old.txt"
    shutil.copy(bundle.path / "evidence/checkpoint.txt", old_cp)
    (root / "card2").mkdir()
    (root / "card2" / "b.txt").write_bytes(b"later file\n")
    ingest(vault, [root / "card2"], key=key, case="Other", now=clock, extract_media=False)
    latest = create_checkpoint(vault, key, now=clock())
    (root / "latest.txt").write_text(latest.checkpoint.note)
    vault.close()
    (root / "custodian.pem").write_bytes(key.public.to_pem())
    return {"root": root, "vault": root / "vault", "bundle": bundle.path, "latest": root / "latest.txt",
            "old": old_cp, "key": key, "size": bundle.checkpoint_size, "latest_size": latest.checkpoint.tree_size}


def checks(r, name="evidence-external-checkpoint"):
    return [c for c in r.json()["checks"] if c["name"] == name]


def make_proof(world, tmp_path) -> Path:
    proof = tmp_path / "proof.json"
    r = run_cli("consistency", "--from-bundle", world["bundle"], "--to", world["latest"], "-o", proof, vault=world["vault"])
    assert r.code == 0, r.stderr
    assert "CONSISTENT" in r.stdout
    return proof


def test_newer_checkpoint_without_proof_is_a_warning_naming_the_command(world):
    assert world["latest_size"] > world["size"]
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"], "--json")
    assert r.code == 0, r.stdout  # the bundle's own integrity is verified
    data = r.json()
    [c] = checks(r)
    assert c["ok"] and c["warning"] is True
    command = f"evidencelock consistency --from-bundle {world['bundle']} --to {world['latest']} -o consistency-proof.json"
    assert command in c["detail"]
    assert not any("checkpoint you gave" in s for s in data["established"])
    assert any("Consistency with the checkpoint you gave" in s and command in s for s in data["not_established"])
    human = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"])
    assert human.code == 0 and "WARN evidence-external-checkpoint" in human.stdout


def test_consistency_proof_from_bundle_makes_the_newer_checkpoint_established(world, tmp_path):
    proof = make_proof(world, tmp_path)
    obj = json.loads(proof.read_text())
    assert obj["old_size"] == world["size"] and obj["new_size"] == world["latest_size"]
    assert set(obj) == {"format", "origin", "old_size", "new_size", "old_root", "new_root", "proof"}
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"], "--consistency-proof", proof,
                "--trusted-key", world["root"] / "custodian.pem", "--json")
    assert r.code == 0, r.stdout
    [c] = checks(r)
    assert c["ok"] and "warning" not in c and c["subject"] == "--consistency-proof"
    assert any("consistent with the checkpoint you gave" in s for s in r.json()["established"])


def test_consistency_proof_for_other_sizes_is_refused(world, tmp_path):
    """Attack: a proof made for another pair of checkpoints (here: the bundle's own size to itself)."""
    proof = make_proof(world, tmp_path)
    obj = json.loads(proof.read_text())
    obj["old_size"] -= 1
    proof.write_text(json.dumps(obj))
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"], "--consistency-proof", proof, "--json")
    assert r.code == 1
    [c] = checks(r)
    assert not c["ok"] and c["subject"] == "--consistency-proof" and "is for sizes" in c["detail"]


def test_consistency_proof_for_another_root_is_refused(world, tmp_path):
    """Attack: the proof names a root that is not the bundle's checkpoint root (another fork)."""
    proof = make_proof(world, tmp_path)
    obj = json.loads(proof.read_text())
    obj["old_root"] = "00" * 32
    proof.write_text(json.dumps(obj))
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"], "--consistency-proof", proof, "--json")
    assert r.code == 1
    [c] = checks(r)
    assert not c["ok"] and "old_root" in c["detail"] and "expected=" in c["detail"]


def test_flipped_consistency_proof_hash_is_refused(world, tmp_path):
    proof = make_proof(world, tmp_path)
    obj = json.loads(proof.read_text())
    h = obj["proof"][0]
    obj["proof"][0] = ("1" if h[0] != "1" else "2") + h[1:]
    proof.write_text(json.dumps(obj))
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"], "--consistency-proof", proof, "--json")
    assert r.code == 1
    [c] = checks(r)
    assert not c["ok"] and "does not verify" in c["detail"]


def test_inconsistent_newer_checkpoint_is_refused(world, tmp_path):
    """Attack: a 'latest' checkpoint of a forked log (same key, other history) with a proof made for it."""
    key = world["key"]
    note = cp_mod.parse_note(world["latest"].read_text())
    old = cp_mod.parse_note(world["old"].read_text()).unverified_checkpoint
    leaves = [merkle.leaf_hash(f"forged {i}".encode()) for i in range(note.unverified_checkpoint.tree_size)]
    forged_head = cp_mod.Checkpoint(old.origin, len(leaves), merkle.root_hash(leaves))
    forged = tmp_path / "forged.txt"
    forged.write_text(cp_mod.sign_note(forged_head, old.origin, key.sign, key.public.raw))
    proof = tmp_path / "proof.json"
    pf = proofs.ConsistencyProofFile(old.origin, old.tree_size, len(leaves),
                                     tuple(merkle.consistency_proof(leaves, old.tree_size)), old.root_hash, forged_head.root_hash)
    proof.write_text(pf.render())
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", forged, "--consistency-proof", proof, "--json")
    assert r.code == 1
    [c] = checks(r)
    assert not c["ok"] and "does not verify" in c["detail"]
    assert not any("checkpoint you gave" in s for s in r.json()["established"])
    # and the custodian's vault refuses to make a proof to it
    r = run_cli("consistency", "--from-bundle", world["bundle"], "--to", forged, "-o", tmp_path / "p2.json",
                vault=world["vault"])
    assert r.code == 1 and "disagrees with the ledger" in r.stderr
    assert not (tmp_path / "p2.json").exists()


def test_older_checkpoint_still_works_and_is_established(world):
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["old"], "--json")
    assert r.code == 0
    [c] = checks(r)
    assert c["ok"] and "warning" not in c
    assert any("consistent with the checkpoint you gave" in s for s in r.json()["established"])


def test_bad_proof_file_is_bad_input(world, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "evidencelock-consistency-proof/v1", "origin": "x"')
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"], "--consistency-proof", bad)
    assert r.code == 2 and str(bad) in r.stderr and "JSON" in r.stderr
    r = run_cli("verify-bundle", world["bundle"], "--consistency-proof", bad)
    assert r.code == 2 and "--checkpoint" in r.stderr


@pytest.mark.parametrize("edit", ["duplicate-old-size", "null-root", "duplicate-same-value"])
def test_ambiguous_proof_file_is_refused_not_guessed(world, tmp_path, edit):
    """Two readers of docs/transparency.md §7.1 must reach the same verdict on the same bytes: a
    member given twice (JSON parsers disagree on which wins) and a null root are malformed."""
    good = make_proof(world, tmp_path).read_text()
    obj = json.loads(good)
    if edit == "null-root":
        text = json.dumps({**obj, "old_root": None})
    else:
        wrong = obj["old_size"] + (1 if edit == "duplicate-old-size" else 0)
        text = good.replace('"old_size": ', f'"old_size": {wrong},\n  "old_size": ', 1)
    bad = tmp_path / "ambiguous.json"
    bad.write_text(text)
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", world["latest"], "--consistency-proof", bad)
    assert r.code == 2, r.stdout + r.stderr
    assert str(bad) in r.stderr and ("duplicate member" in r.stderr or "old_root" in r.stderr), r.stderr


def test_consistency_from_bundle_usage(world, tmp_path):
    r = run_cli("consistency", vault=world["vault"])
    assert r.code == 2 and "--from-bundle" in r.stderr
    r = run_cli("consistency", "--from-bundle", tmp_path / "nope", vault=world["vault"])
    assert r.code == 2 and "nope" in r.stderr


def test_proof_file_vector(world):
    """docs/vectors/proof-files.json: the consistency proof file between two signed checkpoints."""
    vec = json.loads(VECTORS.read_text("utf-8"))
    log = vec["log"]
    pub = bytes.fromhex(log["public_key_hex"])
    c = vec["consistency"]
    old = cp_mod.parse_note(c["old_note"]).verify(log["name"], pub)
    new = cp_mod.parse_note(c["new_note"]).verify(log["name"], pub)
    pf = proofs.parse_consistency_proof_file(c["proof_file"])
    proofs.verify_consistency_between(pf, old, new)
    assert pf.render() == c["proof_file"]
    tampered = json.loads(c["proof_file"])
    tampered["new_root"] = old.root_hash.hex()
    with pytest.raises(Exception, match="new_root"):
        proofs.verify_consistency_between(proofs.parse_consistency_proof_file(json.dumps(tampered)), old, new)


def test_newer_checkpoint_after_a_key_rotation_needs_both_keys_pinned(world, tmp_path):
    """The custodian rotated keys after the export: the newer checkpoint is signed by a key the
    bundle does not carry. Refused unless the reader pins the new key AND the bundle's signer
    (docs/transparency.md §7.1), and the refusal says so."""
    vault = tmp_path / "vault"
    shutil.copytree(world["vault"], vault)
    old_pem = tmp_path / "old.pem"
    old_pem.write_bytes(world["key"].public.to_pem())
    name = "Field Team A"  # build_vault's custodian
    r = run_cli("keys", "rotate", name, vault=vault, env={"EVIDENCELOCK_NEW_PASSPHRASE": PASSPHRASE})
    assert r.code == 0, r.stderr
    cp = tmp_path / "rotated.txt"
    assert run_cli("checkpoint", "-o", cp, vault=vault).code == 0
    new_pem = tmp_path / "new.pem"
    r = run_cli("keys", "export", name, vault=vault)
    assert r.code == 0, r.stderr
    new_pem.write_text(r.stdout)
    assert new_pem.read_bytes() != old_pem.read_bytes()
    proof = tmp_path / "proof.json"
    assert run_cli("consistency", "--from-bundle", world["bundle"], "--to", cp, "-o", proof, vault=vault).code == 0

    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", cp, "--consistency-proof", proof, "--json")
    assert r.code == 1
    [bad] = [c for c in checks(r) if not c["ok"]]
    assert "rotated keys" in bad["detail"] and "--trusted-key" in bad["detail"]
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", cp, "--consistency-proof", proof, "--json",
                "--trusted-key", new_pem)
    assert r.code == 1 and any(c["name"] == "evidence-trusted-key" and not c["ok"] for c in r.json()["checks"])
    r = run_cli("verify-bundle", world["bundle"], "--checkpoint", cp, "--consistency-proof", proof, "--json",
                "--trusted-key", new_pem, "--trusted-key", old_pem)
    assert r.code == 0, r.stdout
    assert [c["ok"] for c in checks(r)] == [True] and "extends" in checks(r)[0]["detail"]
