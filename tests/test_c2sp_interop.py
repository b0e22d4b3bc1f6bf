"""Issue 11: C2SP verifier keys, C2SP tlog-proof files, and one option name across commands.

The verifier key and the tlog-proof are checked here by a tiny INDEPENDENT implementation written
from the C2SP texts (signed-note §Verifier keys, tlog-proof §Format, RFC 9162 §2.1.3.2), using
only hashlib, base64 and pyca Ed25519, never evidencelock's parsers; Go's sumdb/note is not
installed on the CI image (no Go toolchain), so it is not used.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
VEC = json.loads((ROOT / "docs/vectors/proof-files.json").read_text("utf-8"))


# -- an independent note verifier (signed-note, C2SP) -------------------------------------------
def vkey_verify(vkey: str, note: str) -> tuple[str, bytes]:
    """Verify ``note`` with verifier key ``vkey``; return (body, raw key).  Raises on any failure."""
    name, key_hash, b64 = vkey.split("+", 2)  # the base64 may contain "+"
    data = base64.b64decode(b64, validate=True)
    assert data[0] == 0x01 and len(data) == 33, "not an Ed25519 verifier key"
    assert hashlib.sha256(name.encode() + b"\n" + data).digest()[:4].hex() == key_hash, "key hash"
    body, _, sigs = note.rpartition("\n\n")
    body += "\n"
    good = 0
    for line in sigs.splitlines():
        assert line.startswith("\u2014 ")
        lname, blob = line[2:].split(" ")
        raw = base64.b64decode(blob)
        if lname == name and raw[:4].hex() == key_hash:
            Ed25519PublicKey.from_public_bytes(data[1:]).verify(raw[4:], body.encode())
            good += 1
    assert good, "no signature by this key"
    return body, data[1:]


def rfc9162_inclusion_root(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2, written from the RFC (not evidencelock.merkle)."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def independent_tlog_proof_check(text: str, vkey: str) -> int:
    proof_part, _, note = text.partition("\n\n")
    lines = proof_part.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    extra = base64.b64decode(lines[1].removeprefix("extra "))
    index = int(lines[2].removeprefix("index "))
    path = [base64.b64decode(x) for x in lines[3:]]
    body, _ = vkey_verify(vkey, note)
    _, size, root_b64 = body.splitlines()[:3]
    leaf = hashlib.sha256(b"\x00" + extra).digest()
    assert rfc9162_inclusion_root(leaf, index, int(size), path) == base64.b64decode(root_b64), "inclusion"
    return index


# -- vectors ----------------------------------------------------------------------------------
def test_proof_file_vectors_are_reproducible():
    spec = importlib.util.spec_from_file_location("mk", ROOT / "tests/vectors/make_proof_file_vectors.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    assert (ROOT / "docs/vectors/proof-files.json").read_text("utf-8") == mk.render()


def test_verifier_key_vector_independently():
    log = VEC["log"]
    assert log["verifier_key"] in (ROOT / "docs/transparency.md").read_text("utf-8")
    _, raw = vkey_verify(log["verifier_key"], VEC["consistency"]["new_note"])
    assert raw.hex() == log["public_key_hex"]
    with pytest.raises(InvalidSignature):
        vkey_verify(log["verifier_key"], VEC["consistency"]["new_note"].replace("\n7\n", "\n8\n"))


def test_tlog_proof_vector_independently():
    t = VEC["tlog_proof"]
    assert independent_tlog_proof_check(t["text"], VEC["log"]["verifier_key"]) == t["index"] == 2
    flipped = t["text"].replace("YcoROfaBWEHVuvLQ0tm9nf7pfImN1ve6DAqpQe5sAes=", "ZcoROfaBWEHVuvLQ0tm9nf7pfImN1ve6DAqpQe5sAes=")
    assert flipped != t["text"]
    with pytest.raises(AssertionError, match="inclusion"):
        independent_tlog_proof_check(flipped, VEC["log"]["verifier_key"])


# -- a real vault -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("c2sp")
    v = root / "vault"
    r = run_cli("init", "--custodian", "Alice", "--json", vault=v)
    assert r.code == 0, r.stderr
    init = r.json()
    (root / "card").mkdir()
    (root / "card" / "a.txt").write_bytes(b"evidence a\n")
    r = run_cli("ingest", root / "card", "--case", "C", vault=v)
    if r.code != 0 and "--new-case" in r.stderr:  # a first-use case may need confirming (issue 11, helper "field")
        r = run_cli("ingest", root / "card", "--case", "C", "--new-case", vault=v)
    assert r.code == 0, r.stderr
    r = run_cli("checkpoint", "--json", "-o", root / "cp.txt", vault=v)
    assert r.code == 0, r.stderr
    sha = hashlib.sha256(b"evidence a\n").hexdigest()
    return {"root": root, "vault": v, "init": init, "checkpoint": r.json(), "sha": sha}


def test_verifier_key_printed_by_init_checkpoint_and_keys_verifies_the_checkpoint(live):
    vkey = live["init"]["verifier_key"]
    assert live["checkpoint"]["verifier_key"] == vkey
    keys = run_cli("keys", "--json", vault=live["vault"]).json()
    assert [k["verifier_key"] for k in keys] == [vkey]
    assert vkey.startswith(live["init"]["origin"] + "+")
    body, _ = vkey_verify(vkey, (live["root"] / "cp.txt").read_text())
    assert body.splitlines()[0] == live["init"]["origin"]
    # and our own verify-checkpoint takes it in place of a PEM file
    assert run_cli("verify-checkpoint", live["root"] / "cp.txt", "--trusted-key", vkey).code == 0
    other = run_cli("verify-checkpoint", live["root"] / "cp.txt", "--trusted-key", VEC["log"]["verifier_key"])
    assert other.code == 1
    bad_hash = vkey.split("+", 2)
    bad = run_cli("verify-checkpoint", live["root"] / "cp.txt", "--trusted-key", f"{bad_hash[0]}+00000000+{bad_hash[2]}")
    assert bad.code == 2 and "hash mismatch" in bad.stderr


def test_prove_emits_tlog_proof_that_independent_code_and_verify_checkpoint_accept(live, tmp_path):
    r = run_cli("prove", live["sha"][:12], "--format", "tlog-proof", vault=live["vault"])
    assert r.code == 0, r.stderr
    assert r.stdout.startswith("c2sp.org/tlog-proof@v1\nextra ")
    seq = independent_tlog_proof_check(r.stdout, live["init"]["verifier_key"])
    p = tmp_path / "a.tlog-proof"
    p.write_text(r.stdout)
    ok = run_cli("verify-checkpoint", p, "--trusted-key", live["init"]["verifier_key"], "--json")
    assert ok.code == 0 and ok.json()["tlog_proof"]["index"] == seq
    assert live["sha"] in ok.json()["tlog_proof"]["entry"]
    # tamper: the entry bytes (extra) of another entry claimed at this index
    lines = r.stdout.split("\n")
    entry = base64.b64decode(lines[1].removeprefix("extra ")).replace(b'"ingest"', b'"access"')
    lines[1] = "extra " + base64.b64encode(entry).decode()
    p.write_text("\n".join(lines))
    bad = run_cli("verify-checkpoint", p, "--trusted-key", live["init"]["verifier_key"], "--json")
    assert bad.code == 1 and "proof" in bad.stderr.lower()
    # a malformed tlog-proof is bad input naming the file
    p.write_text("c2sp.org/tlog-proof@v1\nindex 01\n\n" + (live["root"] / "cp.txt").read_text())
    bad = run_cli("verify-checkpoint", p, "--trusted-key", live["init"]["verifier_key"])
    assert bad.code == 2 and str(p) in bad.stderr and "index" in bad.stderr


def test_prove_tlog_proof_to_a_folder(live, tmp_path):
    out = tmp_path / "proofs"
    r = run_cli("prove", live["sha"][:12], "--format", "tlog-proof", "-o", out, vault=live["vault"])
    assert r.code == 0, r.stderr
    files = sorted(out.glob("entry-*.tlog-proof"))
    assert files
    for f in files:
        independent_tlog_proof_check(f.read_text(), live["init"]["verifier_key"])


# -- item 4: option names -----------------------------------------------------------------------
def test_vault_after_the_command_name(live):
    v = str(live["vault"])
    before = run_cli("--vault", v, "keys", "--json")
    after = run_cli("keys", "--vault", v, "--json")
    assert before.code == after.code == 0 and before.stdout == after.stdout
    same = run_cli("--vault", v, "keys", "--vault", v, "--json")
    assert same.code == 0 and same.stdout == before.stdout
    clash = run_cli("--vault", v, "keys", "--vault", v + "-other", "--json")
    assert clash.code == 2 and "--vault was given twice" in clash.stderr
    sub = run_cli("keys", "export", "--help")  # subcommands of a group take it too
    assert "--vault" in sub.stdout


def test_trusted_key_everywhere_old_names_hidden(live, tmp_path):
    pem = tmp_path / "log.pem"
    r = run_cli("keys", "export", "Alice", "-o", pem, vault=live["vault"])
    assert r.code == 0, r.stderr
    cp = live["root"] / "cp.txt"
    assert run_cli("verify-checkpoint", cp, "--trusted-key", pem).code == 0
    assert run_cli("verify-checkpoint", cp, "--vault-key", pem).code == 0  # hidden alias
    assert "--vault-key" not in run_cli("verify-checkpoint", "--help").stdout
    assert run_cli("verify-checkpoint", cp).code == 2
    assert run_cli("verify-checkpoint", cp, "--trusted-key", pem, "--vault-key", tmp_path / "other.pem").code == 2
    assert "--vault-key" not in run_cli("witness", "--help").stdout
    assert "--trusted-key" in run_cli("witness", "--help").stdout
    assert "--proof-out" not in run_cli("consistency", "--help").stdout


def test_output_option_names(live, tmp_path):
    h = run_cli("checkpoint", "--help").stdout
    assert "-o, --output" in h and "--out " not in h
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    assert run_cli("checkpoint", "--output", a, vault=live["vault"]).code == 0 and a.read_text().count("\n\n") == 1
    assert run_cli("checkpoint", "--out", b, vault=live["vault"]).code == 0 and b.exists()  # hidden alias kept
    p1, p2 = tmp_path / "p1.json", tmp_path / "p2.json"
    assert run_cli("consistency", a, "--to", b, "--output", p1, vault=live["vault"]).code == 0
    assert run_cli("consistency", a, "--to", b, "--proof-out", p2, vault=live["vault"]).code == 0
    assert json.loads(p1.read_text()) == json.loads(p2.read_text())
