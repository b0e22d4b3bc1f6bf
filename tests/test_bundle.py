"""Export and verify-bundle on real vaults, real files, a local TSA."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import unicodedata
import zipfile

import bagit
import pytest
from sqlalchemy import select

from evidencelock import schema
from evidencelock.bundle import export_bundle, verify_bundle
from evidencelock.bundle._paths import NameAllocator, fold_key
from evidencelock.checkpoint import parse_note
from evidencelock.errors import InputError
from evidencelock.vault import Vault
from test_bundle_support import PASSPHRASE, bag, exported, failed  # noqa: F401

ENV = {"EVIDENCELOCK_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"}


def cli(*args, cwd=None):
    import os

    return subprocess.run([sys.executable, "-m", "evidencelock", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **ENV}, cwd=cwd, timeout=300)


def test_good_bundle_verifies_with_every_check(exported):
    r = verify_bundle(exported["A"])
    assert r.ok, [c for c in r.checks if not c.ok]
    names = {c.name for c in r.checks}
    for n in ("bagit-declaration", "bagit-payload-fixity", "bagit-tag-fixity", "bagit-payload-oxum", "bagit-completeness",
              "evidence-signature", "evidence-inclusion", "evidence-checkpoint-signature", "evidence-timestamp",
              "evidence-payload-covered", "evidence-bundle-signature"):
        assert n in names
    assert r.timestamp and "Test TSA" in r.timestamp["tsa"]
    assert any("not pinned" in s for s in r.not_established)
    assert any("Who filmed" in s for s in r.not_established)


def test_bag_is_valid_for_the_reference_bagit_validator(exported):
    b = bagit.Bag(str(exported["A"]))
    b.validate()  # raises on any problem
    assert set(b.algorithms) == {"sha256", "sha512"}


def test_payload_is_the_original_bytes_with_safe_unique_names(exported):
    a = exported["A"]
    meta = json.loads((a / "evidence/bundle.json").read_text())
    paths = [i["path"] for i in meta["items"]]
    assert len({fold_key(p) for p in paths}) == len(paths)
    for i in meta["items"]:
        data = (a / i["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == i["sha256"]
        assert all(ch not in i["path"] for ch in ':?%\\')
    # Two different files named data.bin: both kept, one renamed with its digest.
    assert sum(1 for p in paths if p.lower().endswith(".bin")) == 2
    assert any("~" in p for p in paths)
    assert any(unicodedata.is_normalized("NFC", p) and "R\u00e9sum\u00e9" in p for p in paths)


def test_name_allocator_never_loses_a_file():
    alloc = NameAllocator()
    names = [alloc.allocate(n, f"{i:064x}") for i, n in enumerate(
        ["x.jpg", "X.JPG", "x.jpg", "../../etc/passwd", "CON", "a/b", "a", "e\u0301.txt", "\u00e9.txt", "", "a" * 400 + ".mp4"])]
    assert len({fold_key(n) for n in names}) == len(names)
    assert all(n.startswith("data/") and ".." not in n.split("/") for n in names)
    assert "data/_CON" in names


def test_export_is_recorded_as_a_signed_entry(exported):
    v = Vault.open(exported["vault"])
    try:
        with v.ledger.reader() as conn:
            rows = conn.execute(select(schema.entries).where(schema.entries.c.type == "export")).all()
    finally:
        v.close()
    assert len(rows) == 2
    body = json.loads(rows[0].canonical)["body"]
    assert body["bundle"]["tagmanifest_sha256"] == hashlib.sha256((exported["A"] / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    assert len(body["items"]) == exported["resA"].items


def test_by_hand_files_match_the_entries(exported):
    a = exported["A"]
    for line in (a / "evidence/entries.jsonl").read_text().splitlines():
        import base64

        obj = json.loads(line)
        assert (a / f"evidence/entries/{obj['seq']}.json").read_bytes() == base64.b64decode(obj["canonical"])
        assert (a / f"evidence/entries/{obj['seq']}.sig").read_bytes() == base64.b64decode(obj["signature"])


def test_zip_bundle_round_trip_and_item_selection(exported, tmp_path):
    v = Vault.open(exported["vault"], writable=True)
    try:
        key = v.unlock(PASSPHRASE)
        meta = json.loads((exported["A"] / "evidence/bundle.json").read_text())
        one = meta["items"][0]["sha256"]
        from test_bundle_support import Clock

        res = export_bundle(v, case="Case 7", out=tmp_path / "one.zip", key=key, now=Clock(), items=[one[:10]],
                            report=False)
    finally:
        v.close()
    assert res.items == 1 and zipfile.is_zipfile(tmp_path / "one.zip")
    r = verify_bundle(tmp_path / "one.zip")
    assert r.ok, r.failures
    assert [i["digests"]["sha256"] for i in r.items] == [one]
    assert not list(tmp_path.glob(".one.zip.partial-*"))


def test_export_refuses_existing_target_and_unknown_case(exported, tmp_path):
    v = Vault.open(exported["vault"], writable=True)
    try:
        key = v.unlock(PASSPHRASE)
        from test_bundle_support import Clock

        (tmp_path / "exists").mkdir()
        with pytest.raises(InputError):
            export_bundle(v, case="Case 7", out=tmp_path / "exists", key=key, now=Clock())
        with pytest.raises(InputError):
            export_bundle(v, case="no such case", out=tmp_path / "x", key=key, now=Clock())
    finally:
        v.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]


def test_trusted_key_pins_and_a_wrong_key_fails(exported):
    a = exported["A"]
    kid = next(p.stem for p in (a / "evidence/keys").glob("*.pem"))
    r = verify_bundle(a, trusted_keys=[kid])
    assert r.ok and any(c.name == "evidence-trusted-key" and c.ok for c in r.checks)
    assert not any("not pinned" in s for s in r.not_established)
    r = verify_bundle(a, trusted_keys=["ab" * 32])
    assert not r.ok and failed(r, "evidence-trusted-key")


def test_external_checkpoint_consistency(exported):
    # Bundle B (later) proves consistency with A's (earlier) checkpoint; A cannot vouch for B's newer one.
    older = (exported["A"] / "evidence/checkpoint.txt").read_bytes()
    newer = (exported["B"] / "evidence/checkpoint.txt").read_bytes()
    r = verify_bundle(exported["B"], checkpoint=older)
    assert r.ok, r.failures
    assert any(c.name == "evidence-external-checkpoint" and c.ok for c in r.checks)
    # issue 11: a newer checkpoint without a consistency proof is a warning, not a failure, and is
    # not established (tests/test_latest_checkpoint.py covers the proof file and its attacks)
    r = verify_bundle(exported["A"], checkpoint=newer)
    assert r.ok and [c.warning for c in r.checks if c.name == "evidence-external-checkpoint"] == [True]
    assert not any("checkpoint you gave" in s for s in r.established)


def test_checkpoint_is_a_c2sp_signed_note(exported):
    raw = (exported["A"] / "evidence/checkpoint.txt").read_bytes()
    note = parse_note(raw)  # the one C2SP signed-note parser (evidencelock.checkpoint)
    assert note.unverified_checkpoint.tree_size == exported["resA"].checkpoint_size
    assert note.text().encode() == raw
    assert note.unverified_body == (exported["A"] / "evidence/checkpoint-body.txt").read_bytes()
    assert note.signatures[0].line().startswith("\u2014 ")


def test_cli_export_and_verify_json(exported, tmp_path):
    out = tmp_path / "cli-bundle"
    p = cli("--vault", exported["vault"], "export", "--case", "Case 7", "-o", out, "--no-report", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ok"] is True
    p = cli("verify-bundle", out, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(p.stdout)
    assert data["ok"] is True and all({"name", "ok", "detail"} <= set(c) for c in data["checks"])
    assert any(c["name"].startswith("bagit") for c in data["checks"])
    (out / "data" / "extra.txt").write_bytes(b"planted\n")
    p = cli("verify-bundle", out)
    assert p.returncode == 1 and "FAIL" in p.stdout and "extra.txt" in p.stdout
    p = cli("verify-bundle", tmp_path / "nothing-here")
    assert p.returncode == 2


def test_report_and_certification_are_generated_and_pinned(exported):
    a = exported["A"]
    html = (a / "report.html").read_text()
    assert "What this proves" in html and "does not" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert "data:image/jpeg;base64," in html  # a thumbnail made from the bundle's own bytes
    assert (a / "report.pdf").read_bytes().startswith(b"%PDF")
    cert = (a / "certification.md").read_text()
    assert "902(13)" in cert and "SHA-256" in cert and "DRAFT" in cert
    files = json.loads((a / "evidence/bundle.json").read_text())["files"]
    assert {"report.html", "report.pdf", "certification.md", "VERIFY.md", "evidence/metadata.json"} <= set(files)


# -- timestamps: one format with transparency (docs/transparency.md §5, docs/bundle-format.md §4.6) ---------
def test_export_tsa_checkpoint_is_recorded_and_stamps_the_note_body(exported):
    """export --tsa goes through transparency.create_checkpoint: a checkpoints row + a signed entry."""
    from evidencelock import timestamp, transparency

    a = exported["A"]
    note_text = (a / "evidence/checkpoint.txt").read_bytes()
    body = (a / "evidence/checkpoint-body.txt").read_bytes()
    v = Vault.open(exported["vault"])
    try:
        stored = [c for c in transparency.list_checkpoints(v) if c.note.encode() == note_text]
        with v.ledger.reader() as conn:
            recorded = [json.loads(r.canonical)["body"] for r in conn.execute(
                select(schema.entries).where(schema.entries.c.type == "checkpoint")).all()]
    finally:
        v.close()
    assert len(stored) == 1 and stored[0].tokens, "the bundle's checkpoint is stored with its token"
    assert any(b.get("note_sha256") == hashlib.sha256(note_text).hexdigest() for b in recorded)
    token = (a / "evidence/timestamp.tst").read_bytes()
    assert token == __import__("base64").b64decode(stored[0].tokens[0]["token"])  # transparency's stored token
    timestamp.check_token_imprint(token, body)  # over the body (§5), not the whole note
    with pytest.raises(Exception, match="imprint mismatch"):
        timestamp.check_token_imprint(token, note_text)


def test_token_over_the_whole_note_is_rejected(bag, exported):
    # The old bundle convention (stamp the signed note, not its body) must not verify.
    from test_bundle_support import regen_tag_manifests

    (bag / "evidence/timestamp.tst").write_bytes(exported["tsa"].token((bag / "evidence/checkpoint.txt").read_bytes()))
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert any("imprint mismatch" in c.detail for c in failed(r, "evidence-timestamp"))


def test_cli_export_with_tsa_then_verify(exported, tmp_path):
    from tsa import serve

    chain = tmp_path / "chain.pem"
    chain.write_bytes(exported["tsa"].chain)
    with serve(exported["tsa"].pki) as server:
        out = tmp_path / "stamped.zip"
        p = cli("--vault", exported["vault"], "export", "--case", "Case 7", "-o", out, "--no-report",
                "--tsa", server.url, "--tsa-cert", chain, "--json")
        assert p.returncode == 0, p.stdout + p.stderr
        assert json.loads(p.stdout)["timestamped"] is True and len(server.requests) == 1
        # Without --tsa-cert the token is still included; verify-bundle checks its imprint only and says so.
        bare = tmp_path / "bare"
        p = cli("--vault", exported["vault"], "export", "--case", "Case 7", "-o", bare, "--no-report",
                "--tsa", server.url, "--json")
        assert p.returncode == 0, p.stdout + p.stderr
    p = cli("verify-bundle", out, "--json")
    data = json.loads(p.stdout)
    assert p.returncode == 0 and data["ok"], data
    assert any(c["name"] == "evidence-timestamp" and c["ok"] for c in data["checks"])
    assert "Test TSA" in data["timestamp"]["tsa"]
    r = verify_bundle(bare)
    assert r.ok and r.timestamp is None and not (bare / "evidence/tsa-chain.pem").exists()
    assert any("NOT verified" in c.detail for c in r.checks if c.name == "evidence-timestamp")
    assert any("could not be verified" in s for s in r.not_established)


def test_cli_export_with_a_tsa_that_is_down_exports_nothing(exported, tmp_path):
    from tsa import serve

    with serve(exported["tsa"].pki) as server:
        server.mode = "error"
        p = cli("--vault", exported["vault"], "export", "--case", "Case 7", "-o", tmp_path / "x", "--tsa", server.url)
    assert p.returncode == 2 and "no timestamp authority answered" in p.stderr
    assert list(tmp_path.iterdir()) == []
