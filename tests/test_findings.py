"""Structured findings (docs/findings.md) and the output a person reads (issue 11, "output").

Real vaults and bundles, tampered on disk as an attacker would; the real CLI in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from evidencelock.findings import FIELDS, PROBLEMS, SCHEMA, problem_of

DOC = ROOT / "docs" / "findings.md"
N_ITEMS = 30


def _documented_codes() -> set[str]:
    """Every `code` named in the first column of the tables of docs/findings.md §3 and §4."""
    codes: set[str] = set()
    codes_part = DOC.read_text().split("\n## 3.", 1)[1].split("\n## 5.", 1)[0]
    for line in codes_part.splitlines():
        if line.startswith("| `"):
            codes |= set(re.findall(r"`([a-z0-9*-]+)`", line.split("|")[1]))
    return codes


def _is_documented(code: str, documented: set[str]) -> bool:
    return code in documented or any(d.endswith("*") and code.startswith(d[:-1]) for d in documented)


def _check_shape(data: dict) -> None:
    assert data["schema"] == SCHEMA
    documented = _documented_codes()
    for f in data["findings"]:
        assert tuple(sorted(f)) == tuple(sorted(FIELDS)), f
        assert f["severity"] in ("error", "notice")
        assert f["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", f["sha256"])
        assert f["seq"] is None or isinstance(f["seq"], int)
        assert _is_documented(f["code"], documented), f"code {f['code']!r} is not in docs/findings.md"
        assert f["problem"] in PROBLEMS and f["problem"] != "other", f


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A vault with 30 items (text files: fast), and a bundle of them exported by the real CLI."""
    tmp = tmp_path_factory.mktemp("findings")
    src = tmp / "card"
    src.mkdir()
    for i in range(N_ITEMS):
        (src / f"statement-{i:02d}.txt").write_text(f"witness statement {i}\n")
    vault = tmp / "vault"
    assert run_cli("init", "--custodian", "Field Team A", vault=vault).code == 0
    r = run_cli("ingest", src, "--case", "Case 11", "--no-media", vault=vault)
    assert r.code == 0, r.stderr
    bundle = tmp / "bundle"
    r = run_cli("export", "--case", "Case 11", "-o", bundle, vault=vault)
    assert r.code == 0, r.stderr
    pem = tmp / "field-team-a.pem"
    r = run_cli("keys", "export", "Field Team A", vault=vault)
    assert r.code == 0, r.stderr
    pem.write_text(r.stdout)
    return {"tmp": tmp, "vault": vault, "bundle": bundle, "pem": pem}


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    for root, dirs, files in os.walk(dst):
        for n in dirs + files:
            p = Path(root, n)
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return dst


def _ingest_seqs(vault: Path) -> dict[str, int]:
    with sqlite3.connect(vault / "ledger.sqlite") as con:
        rows = con.execute("SELECT seq, canonical FROM entries ORDER BY seq").fetchall()
    out = {}
    for seq, canonical in rows:
        e = json.loads(canonical)
        if e["type"] == "ingest":
            out.setdefault(e["body"]["item"], seq)
    return out


# -- verify --json: structured findings ------------------------------------------------------------
def test_tampered_object_is_a_finding_with_path_sha256_seq_expected_found(world, tmp_path):
    vault = _copy(world["vault"], tmp_path / "vault")
    seqs = _ingest_seqs(vault)
    sha = sorted(seqs)[3]
    rel = f"objects/sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    obj = vault / rel
    data = bytearray(obj.read_bytes())
    data[0] ^= 0x01  # one flipped bit
    obj.write_bytes(bytes(data))
    for cmd in (("verify", "--json"), ("audit", "--json")):
        r = run_cli(*cmd, vault=vault)
        assert r.code == 1, r.stdout + r.stderr
        out = r.json()
        _check_shape(out)
        hit = [f for f in out["findings"] if f["code"] == "object-digest-mismatch"]
        assert len(hit) == 1, out["findings"]
        f = hit[0]
        assert f["severity"] == "error" and f["path"] == rel and f["sha256"] == sha and f["seq"] == seqs[sha]
        assert f["expected"] == sha and f["found"] == hashlib.sha256(bytes(data)).hexdigest()
        assert rel in f["message"]


def test_edited_ledger_rows_are_findings_naming_the_entry(world, tmp_path):
    vault = _copy(world["vault"], tmp_path / "vault")
    db = vault / "ledger.sqlite"
    with sqlite3.connect(db) as con:
        canonical, stored = con.execute("SELECT canonical, entry_hash FROM entries WHERE seq=5").fetchone()
        # The hash column of entry 5 no longer matches its bytes; entry 7's body is rewritten.
        con.execute("UPDATE entries SET entry_hash=? WHERE seq=5", ("ab" * 32,))
        c7 = con.execute("SELECT canonical FROM entries WHERE seq=7").fetchone()[0]
        con.execute("UPDATE entries SET canonical=? WHERE seq=7", (bytes(c7).replace(b"statement-", b"statemenT-", 1),))
    r = run_cli("verify", "--json", vault=vault)
    assert r.code == 1
    out = r.json()
    _check_shape(out)
    col = [f for f in out["findings"] if f["code"] == "entry-hash-column"]
    assert col and col[0]["seq"] == 5
    assert col[0]["expected"] == hashlib.sha256(bytes(canonical)).hexdigest() == stored and col[0]["found"] == "ab" * 32
    sig = [f for f in out["findings"] if f["code"] == "signature-invalid"]
    assert sig and {f["seq"] for f in sig} == {7}, out["findings"]


def test_shard_is_named_with_its_object_counts(world):
    shas = sorted(_ingest_seqs(world["vault"]))
    k, n = 1, 3
    mine = sum(1 for s in shas if int(s[:8], 16) % n == k)
    r = run_cli("verify", "--shard", f"{k}/{n}", "--json", vault=world["vault"])
    assert r.code == 0, r.stdout + r.stderr
    out = r.json()
    assert out["shard"] == {"index": k, "count": n, "objects": mine, "objects_total": N_ITEMS}
    assert out["objects_checked"] == mine
    human = run_cli("verify", "--shard", f"{k}/{n}", vault=world["vault"])
    assert human.code == 0
    assert f"OK for shard {k}/{n} only" in human.stdout
    assert f"Shard {k}/{n} (shards numbered 0 to {n - 1}): {mine} of the {N_ITEMS} recorded objects" in human.stdout
    assert run_cli("verify", "--json", vault=world["vault"]).json()["shard"] is None


# -- verify-bundle: one screen, failures named ------------------------------------------------------
def test_good_bundle_summary_fits_one_screen_and_names_the_signer(world):
    r = run_cli("verify-bundle", world["bundle"], "--trusted-key", world["pem"])
    assert r.code == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) <= 25, r.stdout
    assert lines[-1].startswith(f"VERIFIED: {N_ITEMS} files")
    assert f"Checked   {N_ITEMS} files" in r.stdout
    signed = [ln for ln in lines if ln.startswith(("Signed    checkpoint:", "          bundle.json (the exporter)"))]
    assert len(signed) == 2 and all("Field Team A" in ln and "pinned by --trusted-key" in ln for ln in signed), signed
    assert "()" not in r.stdout  # the PEM carries no name: the enrolled custodian's is shown
    assert "data/statement-" not in r.stdout  # no per-file lines by default
    assert "\nEstablished\n" in r.stdout and "\nNot established\n" in r.stdout
    assert f"The {N_ITEMS} payload files are byte-identical" in r.stdout
    assert not any(ln.startswith(("ok ", "FAIL")) for ln in lines)


def test_verbose_lists_every_file_and_check(world):
    r = run_cli("verify-bundle", "--verbose", world["bundle"], "--trusted-key", world["pem"])
    assert r.code == 0
    for i in range(N_ITEMS):
        assert f"data/statement-{i:02d}.txt" in r.stdout
    js = run_cli("verify-bundle", world["bundle"], "--json").json()
    for name in {c["name"] for c in js["checks"]}:
        assert any(ln.startswith("ok ") and f" {name}" in ln for ln in r.stdout.splitlines()), name


def test_tampered_bundle_names_every_failing_file_without_verbose(world, tmp_path):
    bag = _copy(world["bundle"], tmp_path / "bag")
    listed = dict(reversed(ln.split("  ", 1)) for ln in (bag / "manifest-sha256.txt").read_text().splitlines())
    victims = ["data/statement-04.txt", "data/statement-17.txt"]
    for v in victims:
        (bag / v).write_bytes((bag / v).read_bytes().replace(b"witness", b"w1tness"))
    r = run_cli("verify-bundle", bag)
    assert r.code == 1 and "VERIFIED" not in r.stdout
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
    for v in victims:
        assert any(ln.startswith(f"FAIL bagit-payload-fixity {v}: sha256 mismatch") for ln in fails), fails
        assert any(ln.startswith(f"FAIL evidence-payload-covered {v}:") for ln in fails), fails
    assert "Files that failed (2): data/statement-04.txt, data/statement-17.txt" in r.stdout
    assert "data/statement-05.txt" not in r.stdout  # the good files are not listed
    out = run_cli("verify-bundle", bag, "--json").json()
    assert not out["ok"]
    _check_shape(out)
    assert len(out["findings"]) == sum(1 for c in out["checks"] if not c["ok"])
    for v in victims:
        f = next(f for f in out["findings"] if f["code"] == "bagit-payload-fixity" and f["path"] == v
                 and f["message"].startswith("sha256"))
        assert f["sha256"] == listed[v] == f["expected"]
        assert f["found"] == hashlib.sha256((bag / v).read_bytes()).hexdigest()


def test_bundle_finding_of_an_entry_carries_its_seq(world, tmp_path):
    bag = _copy(world["bundle"], tmp_path / "bag")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from test_bundle_support import rewrite_entry

    def change(e):
        e["body"]["note"] = "edited after signing"

    rewrite_entry(bag, 3, change, Ed25519PrivateKey.generate().sign)  # re-signed by a key nobody enrolled
    out = run_cli("verify-bundle", bag, "--json").json()
    assert not out["ok"]
    _check_shape(out)
    assert any(f["seq"] == 3 and f["code"] in ("evidence-signature", "evidence-inclusion") for f in out["findings"]), \
        out["findings"]


# -- one vocabulary for the vault and the bundle (docs/findings.md §2.1) ---------------------------
def test_same_tampering_gives_the_same_problem_in_the_vault_and_in_its_bundle(world, tmp_path):
    """One evidence file altered in the vault, and the same file altered in a bundle exported from
    it: the two tools name different checks, but the same problem, file digest and entry."""
    vault = _copy(world["vault"], tmp_path / "vault")
    bag = _copy(world["bundle"], tmp_path / "bag")
    seqs = _ingest_seqs(vault)
    name = "statement-09.txt"
    sha = hashlib.sha256(b"witness statement 9\n").hexdigest()
    obj = vault / f"objects/sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    obj.write_bytes(b"witness statement 9 (altered)\n")
    (bag / "data" / name).write_bytes(b"witness statement 9 (altered)\n")
    (bag / "data" / "statement-12.txt").unlink()  # and one file removed from the bundle
    gone = hashlib.sha256(b"witness statement 12\n").hexdigest()
    (vault / f"objects/sha256/{gone[:2]}/{gone[2:4]}/{gone}").unlink()  # and from the vault

    in_vault = run_cli("verify", "--json", vault=vault).json()
    in_bundle = run_cli("verify-bundle", bag, "--json").json()
    _check_shape(in_vault)
    _check_shape(in_bundle)

    def problems(out, digest):
        return {f["problem"] for f in out["findings"] if f["sha256"] == digest and f["severity"] == "error"}

    assert problems(in_vault, sha) == {"content-altered"}, in_vault["findings"]
    assert "content-altered" in problems(in_bundle, sha), in_bundle["findings"]
    assert problems(in_vault, gone) == {"content-missing"}, in_vault["findings"]
    assert "content-missing" in problems(in_bundle, gone), in_bundle["findings"]
    # the vault names the ingest entry; the bundle names the same file by its SHA-256
    assert {f["seq"] for f in in_vault["findings"] if f["sha256"] == sha} == {seqs[sha]}


def test_every_documented_code_has_a_shared_problem():
    documented = {c.rstrip("*") for c in _documented_codes()}
    unmapped = sorted(c for c in documented if problem_of(c + ("x" if c.endswith("-") else "")) == "other")
    assert not unmapped, f"codes without a shared problem in evidencelock/findings.py: {unmapped}"
    table = DOC.read_text().split("### 2.1", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([a-z-]+)` \|", table, re.M)) == set(PROBLEMS)


# -- the specification ----------------------------------------------------------------------------
def test_docs_example_has_the_documented_shape():
    text = DOC.read_text()
    example = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    _check_shape(example)
    assert SCHEMA in text
    f = example["findings"][0]
    assert f["expected"] == f["sha256"] and f"expected={f['expected']} found={f['found']}" in f["message"]
