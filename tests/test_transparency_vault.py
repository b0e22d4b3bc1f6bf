"""Checkpoints, proofs and witnesses on real SQLite vaults: round trips, rewritten history, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, update

from conftest import Clock, run_cli
from evidencelock import checkpoint as cp_mod
from evidencelock import ingest as ingest_mod
from evidencelock import merkle, schema, treestore
from evidencelock import transparency as tr
from evidencelock.audit import verify_vault
from evidencelock.entry import Entry, SignedEntry
from evidencelock.errors import FormatError, ProofError, SignatureError
from evidencelock.keys import CustodianKey
from evidencelock.vault import Vault


def _annotate(vault: Vault, key: CustodianKey, clock: Clock, n: int, tag: str = "note") -> None:
    for i in range(n):
        vault.append(key, now=clock(), type="annotate", case="C-1", body={"text": f"{tag} {i}"})


def _ingest(vault: Vault, key: CustodianKey, clock: Clock, folder: Path, name: str, data: bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    ingest_mod.ingest(vault, [folder / name], key=key, case="C-1", now=clock, extract_media=False, jobs=1)
    import hashlib

    return hashlib.sha256(data).hexdigest()


def rewrite_history(vault: Vault, key: CustodianKey, seq: int, body: dict) -> None:
    """The attack: change entry ``seq``, re-sign it and everything after it with the vault key,
    fix every prev/hash column and rebuild the Merkle tree with the library, so that the chain,
    the signatures and the tree all verify again."""
    t = schema.entries
    rows = list(vault.ledger.rows())
    leaves: list[bytes] = []
    prev = None
    with vault.ledger.engine.begin() as conn:
        for r in rows:
            s = SignedEntry.from_bytes(r.canonical, r.signature)
            e = s.entry
            if r.seq < seq:
                leaves.append(s.leaf_hash)
                prev = s.entry_hash
                continue
            new = Entry(seq=e.seq, prev=prev, time=e.time, type=e.type, case=e.case, actor=e.actor,
                        body=body if r.seq == seq else dict(e.body))
            ns = SignedEntry.create(new, key.sign)
            conn.execute(update(t).where(t.c.seq == r.seq).values(
                canonical=ns.canonical, signature=ns.signature, entry_hash=ns.entry_hash, leaf_hash=ns.leaf_hash.hex()))
            leaves.append(ns.leaf_hash)
            prev = ns.entry_hash
        treestore.rebuild(conn, leaves)


def _codes(report) -> set[str]:
    return {f.code for f in report.errors}


# -- round trip via the CLI -------------------------------------------------------------


def test_checkpoint_prove_consistency_round_trip_cli(vault: Vault, key: CustodianKey, clock: Clock, tmp_path: Path):
    sha = _ingest(vault, key, clock, tmp_path / "in", "photo.jpg", b"\xff\xd8 not really a jpeg")
    _annotate(vault, key, clock, 4)
    vp = vault.root
    vault.close()
    first = run_cli("checkpoint", "--json", "-o", tmp_path / "cp1.txt", vault=vp)
    assert first.code == 0, first.stderr
    cp1 = first.json()
    assert cp1["tree_size"] == 6 and cp1["entry_seq"] == 6  # the checkpoint entry lands after the size it covers
    proved = run_cli("prove", sha[:10], "--json", vault=vp)
    assert proved.code == 0, proved.stderr
    data = proved.json()
    assert data["item"] == sha and [p["seq"] for p in data["proofs"]] == [1]
    # Re-verify the printed proof independently: leaf = SHA-256(0x00 || entry bytes).
    p = data["proofs"][0]
    merkle.verify_inclusion(merkle.leaf_hash(p["entry"].encode()), p["seq"], 6, [bytes.fromhex(h) for h in p["proof"]],
                            bytes.fromhex(data["checkpoint"]["root_hash"]))
    # The log grows; the outside observer's saved checkpoint is still consistent with it.
    with Vault.open(vp, writable=True) as v:
        _annotate(v, v.unlock("correct horse battery staple"), clock, 5)
    assert run_cli("checkpoint", vault=vp).code == 0
    cons = run_cli("consistency", tmp_path / "cp1.txt", "--json", "--proof-out", tmp_path / "proof.json",
                   "--note-out", tmp_path / "cp2.txt", vault=vp)
    assert cons.code == 0, cons.stderr
    assert cons.json()["old"]["tree_size"] == 6 and cons.json()["new"]["tree_size"] == 12
    listed = run_cli("checkpoints", "--json", vault=vp).json()
    assert [c["tree_size"] for c in listed] == [6, 12]
    verified = run_cli("verify", "--json", vault=vp)
    assert verified.code == 0 and verified.json()["checkpoints_checked"] == 2


def test_prove_before_any_checkpoint_is_a_usage_error(vault: Vault, key: CustodianKey, clock: Clock, tmp_path: Path):
    sha = _ingest(vault, key, clock, tmp_path / "in", "a.bin", b"abc")
    vault.close()
    res = run_cli("prove", sha[:12], vault=vault.root)
    assert res.code == 2 and "no checkpoint" in res.stderr


# -- the attack: rewritten history ----------------------------------------------------------


def test_rewritten_history_is_exposed_by_a_saved_checkpoint(vault: Vault, key: CustodianKey, clock: Clock, tmp_path: Path):
    _annotate(vault, key, clock, 8)
    first = tr.create_checkpoint(vault, key, now=clock())
    (tmp_path / "published.txt").write_text(first.checkpoint.note)
    _annotate(vault, key, clock, 3, tag="later")
    assert verify_vault(vault).ok
    # Change entry 3 ("note 2") and make the chain, signatures and tree verify again.
    rewrite_history(vault, key, 3, {"text": "a different note"})
    report = verify_vault(vault)
    assert _codes(report) == {"checkpoint-inconsistent"}, report.findings
    msg = next(f.message for f in report.errors)
    assert f"checkpoint #{first.checkpoint.id} (size 9, created" in msg and "disagrees with the ledger" in msg
    assert f"expected root {first.checkpoint.root_hash.hex()}" in msg
    vp = vault.root
    vault.close()
    cons = run_cli("consistency", tmp_path / "published.txt", vault=vp)
    assert cons.code == 1, cons.stdout + cons.stderr
    assert "disagrees with the ledger" in cons.stderr or "does not extend" in cons.stderr
    for cmd in ("verify", "audit"):
        res = run_cli(cmd, vault=vp)
        assert res.code == 1, res.stdout
        assert "checkpoint #1 (size 9" in res.stdout and "checkpoint-inconsistent" in res.stdout


def test_rewrite_that_also_erases_stored_checkpoints_is_still_caught_by_the_published_copy(
        vault: Vault, key: CustodianKey, clock: Clock, tmp_path: Path):
    _annotate(vault, key, clock, 5)
    published = tr.create_checkpoint(vault, key, now=clock()).checkpoint.note
    rewrite_history(vault, key, 2, {"text": "rewritten"})
    with vault.ledger.engine.begin() as conn:
        conn.execute(delete(schema.checkpoints))
    assert verify_vault(vault).ok  # the vault alone no longer shows it...
    with pytest.raises(ProofError, match="does not extend the earlier checkpoint"):
        tr.consistency_proof(vault, published)  # ...but the published checkpoint does


def test_truncated_log_and_forked_checkpoints_are_named(vault: Vault, key: CustodianKey, clock: Clock):
    _annotate(vault, key, clock, 6)
    cp = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    # A second, different checkpoint of the same size, properly signed: a fork.
    forged = cp_mod.Checkpoint(vault.config.origin, cp.tree_size, b"\x07" * 32)
    note = cp_mod.sign_note(forged, vault.config.origin, key.sign, key.public.raw)
    with vault.ledger.engine.begin() as conn:
        conn.execute(schema.checkpoints.insert().values(tree_size=cp.tree_size, root_hash=forged.root_hash.hex(), note=note,
                                                        created="2014-04-30T10:00:00.000000Z", timestamps_json="[]",
                                                        cosignatures_json="[]"))
    codes = _codes(verify_vault(vault))
    assert {"checkpoint-fork", "checkpoint-inconsistent"} <= codes
    # Truncate: drop the last entries (and their tree nodes) below the checkpoint's size.
    rows = list(vault.ledger.rows())
    with vault.ledger.engine.begin() as conn:
        conn.execute(delete(schema.entries).where(schema.entries.c.seq >= 4))
        treestore.rebuild(conn, [bytes.fromhex(r.leaf_hash) for r in rows[:4]])
    report = verify_vault(vault)
    assert "checkpoint-beyond-log" in _codes(report)
    with pytest.raises(ProofError, match="truncated"):
        tr.consistency_proof(vault, cp.note)


def test_tampered_checkpoint_row_signature_and_columns(vault: Vault, key: CustodianKey, clock: Clock):
    _annotate(vault, key, clock, 3)
    cp = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    lines = cp.note.split("\n")
    lines[1] = str(cp.tree_size - 1)  # change the size in the signed body
    with vault.ledger.engine.begin() as conn:
        conn.execute(update(schema.checkpoints).where(schema.checkpoints.c.id == cp.id).values(note="\n".join(lines)))
    assert "checkpoint-signature-invalid" in _codes(verify_vault(vault))
    with vault.ledger.engine.begin() as conn:
        conn.execute(update(schema.checkpoints).where(schema.checkpoints.c.id == cp.id).values(note="garbage\n"))
    assert "checkpoint-malformed" in _codes(verify_vault(vault))


# -- bad input -----------------------------------------------------------------------------


def test_malformed_and_wrongly_signed_checkpoints_cli(vault: Vault, key: CustodianKey, clock: Clock, tmp_path: Path):
    _annotate(vault, key, clock, 3)
    cp = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    vp, origin = vault.root, vault.config.origin
    vault.close()
    (tmp_path / "malformed.txt").write_text(cp.note.replace("\n\n", "\n"))  # no blank line before signatures
    res = run_cli("consistency", tmp_path / "malformed.txt", vault=vp)
    assert res.code == 2 and "blank line" in res.stderr
    other = CustodianKey.generate("mallory")
    head = cp_mod.parse_note(cp.note).unverified_checkpoint
    (tmp_path / "forged.txt").write_text(cp_mod.sign_note(head, origin, other.sign, other.public.raw))
    res = run_cli("consistency", tmp_path / "forged.txt", vault=vp)
    assert res.code == 1 and "not signed by any key enrolled" in res.stderr
    # An observer pinning the wrong log key gets a signature failure, not a pass.
    (tmp_path / "other.pem").write_bytes(other.public.to_pem())
    (tmp_path / "cp.txt").write_text(cp.note)
    res = run_cli("consistency", tmp_path / "cp.txt", "--vault-key", tmp_path / "other.pem", vault=vp)
    assert res.code == 1 and "no signature from key" in res.stderr
    res = run_cli("prove", "zz", vault=vp)
    assert res.code == 2


def test_truncated_proofs_are_rejected(vault: Vault, key: CustodianKey, clock: Clock):
    _annotate(vault, key, clock, 20)
    old = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    _annotate(vault, key, clock, 13)
    result = tr.consistency_proof(vault, old.note, to_note_text=tr.create_checkpoint(vault, key, now=clock()).checkpoint.note)
    proof = list(result.proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old.tree_size, result.new.tree_size, proof[:-1], old.root_hash, result.new.root_hash)
    pf = result.proof_file()
    text = json.dumps(pf)
    with pytest.raises(FormatError):
        tr.parse_proof_file(text[: len(text) // 2])  # a file cut short
    pf["proof"][0] = pf["proof"][0][:40]
    with pytest.raises(FormatError, match="64-hex-digit"):
        tr.parse_proof_file(json.dumps(pf))


# -- witnesses -----------------------------------------------------------------------------


def _witness(name: str) -> tuple[CustodianKey, str]:
    return CustodianKey(Ed25519PrivateKey.generate(), name), name


def test_witness_cosigns_consistent_extensions_and_refuses_rewrites(vault: Vault, key: CustodianKey, clock: Clock,
                                                                     tmp_path: Path):
    state = tmp_path / "witness-state"
    wkey, wname = _witness("witness.example.org/w1")
    _annotate(vault, key, clock, 5)
    cp1 = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    first = tr.witness_cosign(state, cp1.note, (0, cp1.tree_size, []), key.public.raw, now=clock(),
                              witness_key=wkey, witness_name=wname)
    assert first.previous_size is None  # trust on first use
    _annotate(vault, key, clock, 7)
    cp2 = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    res = tr.consistency_proof(vault, cp1.note, to_note_text=cp2.note)
    second = tr.witness_cosign(state, cp2.note, json.dumps(res.proof_file()), key.public.raw, now=clock(),
                               witness_key=wkey, witness_name=wname)
    assert second.previous_size == cp1.tree_size
    cosigned = cp_mod.parse_note(cp2.note + second.line)
    cp_mod.verify_cosignature(cosigned, wname, wkey.public.raw)
    # Attach it to the stored checkpoint; verify still passes.
    stored = tr.attach_cosignature(vault, key, cp2.id, second.line, witness_public_key=wkey.public.raw, now=clock())
    assert stored.cosignatures == (second.line,)
    assert verify_vault(vault).ok
    # The operator rewrites history and presents a new checkpoint: the witness refuses.
    saved = (state / next(p.name for p in state.iterdir() if p.suffix == ".json")).read_text()
    rewrite_history(vault, key, 2, {"text": "rewritten"})
    _annotate(vault, key, clock, 2)
    cp3 = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    with vault.ledger.reader() as conn:
        forged_proof = treestore.consistency_proof_at(conn, cp2.tree_size, cp3.tree_size)
    with pytest.raises(ProofError, match="refusing to cosign"):
        tr.witness_cosign(state, cp3.note, (cp2.tree_size, cp3.tree_size, forged_proof), key.public.raw, now=clock(),
                          witness_key=wkey, witness_name=wname)
    assert (state / next(p.name for p in state.iterdir() if p.suffix == ".json")).read_text() == saved
    # A smaller checkpoint than the last seen: refused as a shrink.
    with pytest.raises(ProofError, match="shrank"):
        tr.witness_cosign(state, cp1.note, (cp1.tree_size, cp1.tree_size, []), key.public.raw, now=clock(),
                          witness_key=wkey, witness_name=wname)
    # A checkpoint not signed by the log key: refused before anything else.
    with pytest.raises(SignatureError):
        tr.witness_cosign(state, cp2.note, (cp2.tree_size, cp2.tree_size, []), wkey.public.raw, now=clock(),
                          witness_key=wkey, witness_name=wname)


def test_witness_cli_and_k_of_n_policy(vault: Vault, key: CustodianKey, clock: Clock, tmp_path: Path):
    _annotate(vault, key, clock, 4)
    cp = tr.create_checkpoint(vault, key, now=clock()).checkpoint
    (tmp_path / "note.txt").write_text(cp.note)
    (tmp_path / "log.pem").write_bytes(key.public.to_pem())
    (tmp_path / "proof.json").write_text(json.dumps({"format": tr.PROOF_FORMAT, "old_size": 0,
                                                     "new_size": cp.tree_size, "proof": []}))
    witnesses = []
    for i in (1, 2, 3):
        private = Ed25519PrivateKey.generate()
        (tmp_path / f"w{i}.key").write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                   serialization.NoEncryption()))
        (tmp_path / f"w{i}.pem").write_bytes(private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        witnesses.append(f"w{i}.example")
    lines = ""
    for i in (1, 2):  # witness 3 never cosigns
        res = run_cli("witness", "--state", tmp_path / f"state{i}", "--vault-key", tmp_path / "log.pem",
                      "--key", tmp_path / f"w{i}.key", "--name", f"w{i}.example", tmp_path / "note.txt", tmp_path / "proof.json")
        assert res.code == 0, res.stderr
        assert res.stdout.startswith(f"\u2014 w{i}.example ")
        lines += res.stdout
    (tmp_path / "cosigned.txt").write_text(cp.note + lines)
    policy = [a for i in (1, 2, 3) for a in ("--witness", f"w{i}.example={tmp_path / f'w{i}.pem'}")]
    ok = run_cli("verify-checkpoint", tmp_path / "cosigned.txt", "--vault-key", tmp_path / "log.pem", *policy, "--threshold", "2")
    assert ok.code == 0, ok.stderr
    short = run_cli("verify-checkpoint", tmp_path / "cosigned.txt", "--vault-key", tmp_path / "log.pem", *policy)
    assert short.code == 1 and "need 3 of 3" in short.stderr and "w3.example" in short.stderr
    # Truncated proof file given to the witness: bad input, exit 2, no cosignature.
    (tmp_path / "cut.json").write_text((tmp_path / "proof.json").read_text()[:20])
    cut = run_cli("witness", "--state", tmp_path / "state1", "--vault-key", tmp_path / "log.pem",
                  "--key", tmp_path / "w1.key", tmp_path / "note.txt", tmp_path / "cut.json")
    assert cut.code == 2 and "not JSON" in cut.stderr and not cut.stdout
