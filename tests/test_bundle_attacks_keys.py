"""Issue 9 items 2, 3, 5: key pinning, revoked and unpinned signers, the second digest family.

Every test performs the attack on real files: a real vault made by the real code, a real exported
bundle, real bytes rewritten and re-signed with a real key (a revoked custodian's, an insider's,
another vault's, or the genuine one), manifests fixed up as an attacker would; then the real CLI
(or the library) must refuse and name the problem, while the untampered bundle still verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import blake3
import pytest

from evidencelock.bundle import export_bundle, verify_bundle
from evidencelock.checkpoint import Checkpoint, parse_note, sign_note
from evidencelock.custody import enroll_custodian, revoke_custodian
from evidencelock.entry import Entry, SignedEntry
from evidencelock.errors import InputError
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey
from evidencelock.vault import Vault
from conftest import run_cli
from test_bundle_support import PASSPHRASE, build_vault, exported, failed, regen_manifests, regen_tag_manifests  # noqa: F401


# -- fixtures: real vaults ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Vault 1: custodians A (default), B (insider, valid) and C (revoked after ingest); bundle by A.
    Vault 2: an unrelated vault whose key an attacker controls."""
    root = tmp_path_factory.mktemp("keys-world")
    vault, clock = build_vault(root)
    a = vault.unlock(PASSPHRASE)
    b = enroll_custodian(vault, a, name="Insider B", passphrase=PASSPHRASE, now=clock())
    c = enroll_custodian(vault, a, name="Revoked C", passphrase=PASSPHRASE, now=clock())
    src = root / "incoming"
    src.mkdir()
    (src / "hello.txt").write_bytes(b"hello, court\n")
    (src / "statement.txt").write_bytes(b"witness statement\n")
    ingest(vault, [src], key=a, case="Case 9", now=clock, extract_media=False)
    revoke = revoke_custodian(vault, a, key_id=c.key_id, reason="laptop seized", now=clock())
    res = export_bundle(vault, case="Case 9", out=root / "bundle", key=a, now=clock)
    vault.close()
    other, clock2 = build_vault(root / "v2")
    other_key = other.unlock(PASSPHRASE)
    other.close()
    return {"root": root, "bundle": res.path, "a": a, "b": b, "c": c, "revoke_seq": revoke.entry.seq,
            "other_key": other_key, "other_vault": root / "v2" / "vault", "vault": root / "vault"}


@pytest.fixture
def wbag(world, tmp_path) -> Path:
    dst = tmp_path / "bag"
    shutil.copytree(world["bundle"], dst)
    return dst


def _pem(tmp_path: Path, key: CustodianKey, name: str) -> Path:
    p = tmp_path / f"{name}.pem"
    p.write_bytes(key.public.to_pem())
    return p


def _resign_bundle_json(bag: Path, key: CustodianKey, change=None, *, exporter: str | None = None) -> None:
    """Edit bundle.json (and re-pin the tag files it lists), sign it with ``key``, fix the tag manifests."""
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    if change is not None:
        change(meta)
    meta["exporter"] = exporter or key.key_id
    meta["files"] = {p: hashlib.sha256((bag / p).read_bytes()).hexdigest() for p in meta["files"] if (bag / p).exists()}
    data = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False).encode()
    (bag / "evidence/bundle.json").write_bytes(data)
    (bag / "evidence/bundle.json.sig").write_bytes(key.sign(data))
    regen_tag_manifests(bag)


def _rewrite_certification(bag: Path) -> None:
    cert = bag / "certification.md"
    cert.write_text(cert.read_text() + "\nThe custodian of every item is Revoked C.\n")


def _out(r) -> str:
    return r.stdout + r.stderr


# -- item 2: pinning is a whole key id or a key file -------------------------------------------
def test_key_id_prefix_is_refused_as_bad_usage(world):
    bundle, kid = world["bundle"], world["a"].key_id
    good = run_cli("verify-bundle", bundle, "--trusted-key", kid)
    assert good.code == 0, _out(good)
    for prefix in (kid[:8], kid[:16], kid[:63], kid.upper(), "zz" * 32):
        r = run_cli("verify-bundle", bundle, "--trusted-key", prefix)
        assert r.code == 2, (prefix, _out(r))
        assert "64 lowercase hex" in _out(r) and "Traceback" not in _out(r)
    with pytest.raises(InputError):
        verify_bundle(bundle, trusted_keys=[kid[:8]])


def test_full_key_id_of_another_vaults_key_is_refused(world, tmp_path):
    other = world["other_key"]
    for pin in (other.key_id, str(_pem(tmp_path, other, "other"))):
        r = run_cli("verify-bundle", world["bundle"], "--trusted-key", pin)
        assert r.code == 1, _out(r)
        assert "FAIL evidence-trusted-key" in r.stdout and world["a"].key_id in r.stdout and other.key_id in r.stdout
        assert "VERIFIED" not in r.stdout


def test_trusted_key_file_that_is_not_a_public_key_is_bad_usage(world, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    r = run_cli("verify-bundle", world["bundle"], "--trusted-key", junk)
    assert r.code == 2 and "junk.pem" in _out(r) and "Traceback" not in _out(r)


def test_signer_pinned_by_pem_is_named_by_its_enrolled_custodian(world, tmp_path):
    r = run_cli("verify-bundle", "--verbose", world["bundle"], "--trusted-key", _pem(tmp_path, world["a"], "a"))
    assert r.code == 0, _out(r)
    pinned = [ln for ln in r.stdout.splitlines() if ln.startswith("ok   evidence-trusted-key")]
    assert len(pinned) == 2 and all("Field Team A" in ln for ln in pinned), pinned
    assert "()" not in r.stdout
    assert "rest only on key-enroll entries" not in r.stdout


def test_without_a_pin_the_signers_identity_is_said_to_rest_on_keys_in_the_bundle(world):
    r = run_cli("verify-bundle", world["bundle"])
    assert r.code == 0, _out(r)
    assert "rest only on key-enroll entries and keys carried inside this bundle" in r.stdout
    assert "custodian 'Field Team A'" in r.stdout


# -- item 3: revoked keys do not sign; the bundle.json signer is bound to the pins ---------------
def test_bundle_json_resigned_by_revoked_key_after_renaming_a_file_is_refused(world, wbag):
    """The reviewers' attack: a revoked custodian renames a payload file, rewrites the certification,
    report and metadata, and re-signs bundle.json as the exporter."""
    c, seq = world["c"], world["revoke_seq"]
    old = "data/hello.txt"
    new = "data/confession.mp4"
    (wbag / old).rename(wbag / new)
    _rewrite_certification(wbag)
    (wbag / "report.html").write_text((wbag / "report.html").read_text().replace("hello.txt", "confession.mp4"))
    md = json.loads((wbag / "evidence/metadata.json").read_text())
    md["note"] = "video of the confession"
    (wbag / "evidence/metadata.json").write_text(json.dumps(md))

    def rename(meta):
        for i in meta["items"]:
            if i["path"] == old:
                i["path"] = new
    regen_manifests(wbag)
    _resign_bundle_json(wbag, c, rename)
    r = run_cli("verify-bundle", wbag)
    assert r.code == 1, _out(r)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("FAIL evidence-bundle-signature"))
    assert "Revoked C" in line and f"entry {seq}" in line and "revoke" in line
    assert "VERIFIED" not in r.stdout


def test_certification_rewritten_and_resigned_by_revoked_key_is_refused(world, wbag):
    assert verify_bundle(wbag).ok
    _rewrite_certification(wbag)
    _resign_bundle_json(wbag, world["c"])
    rep = verify_bundle(wbag)
    assert not rep.ok
    f = failed(rep, "evidence-bundle-signature")
    assert len(f) == 1 and f"entry {world['revoke_seq']}" in f[0].detail and world["c"].key_id[:16] in f[0].detail
    assert f[0].subject == "evidence/bundle.json.sig"


def test_checkpoint_resigned_by_revoked_key_is_refused(world, wbag):
    c, seq = world["c"], world["revoke_seq"]
    note = parse_note((wbag / "evidence/checkpoint.txt").read_bytes())
    head = note.unverified_checkpoint
    assert seq < head.tree_size
    text = sign_note(head, head.origin, c.sign, c.public.raw)  # the same tree head, signed by the revoked key
    (wbag / "evidence/checkpoint.txt").write_text(text)
    resigned = parse_note(text)
    (wbag / "evidence/checkpoint.sig").write_bytes(resigned.signatures[0].signature)
    regen_tag_manifests(wbag)
    r = run_cli("verify-bundle", wbag, "--json")
    assert r.code == 1, _out(r)
    bad = [ch for ch in r.json()["checks"] if not ch["ok"]]
    assert [ch["name"] for ch in bad] == ["evidence-checkpoint-signature"], bad
    assert f"entry {seq} revoked" in bad[0]["detail"] and "Revoked C" in bad[0]["detail"]


def test_bundle_json_resigned_by_an_unpinned_insider_is_refused_when_keys_are_pinned(world, wbag, tmp_path):
    """Insider B holds a valid key of the same log: with A pinned, B cannot vouch for bundle.json."""
    _rewrite_certification(wbag)
    _resign_bundle_json(wbag, world["b"])
    pin = _pem(tmp_path, world["a"], "a")
    r = run_cli("verify-bundle", wbag, "--trusted-key", pin)
    assert r.code == 1, _out(r)
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
    assert len(fails) == 1 and "evidence-trusted-key" in fails[0] and "bundle.json" in fails[0] and "Insider B" in fails[0]
    # Without a pin (or with both keys pinned) the signature is by an enrolled, unrevoked custodian
    # and passes; the rewritten certification (and VERIFY.md and the report, which name another
    # exporter) do not: they differ from their rendering from the verified records (§4.7 Human
    # files), and those are the only failures.
    human = {"evidence-certification", "evidence-verify-md", "evidence-report-content"}
    for extra in ((), ("--trusted-key", pin, "--trusted-key", world["b"].key_id)):
        r = run_cli("verify-bundle", "--verbose", wbag, *extra)
        fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
        assert r.code == 1 and fails and all(ln.split()[1] in human for ln in fails), _out(r)
        assert any(ln.startswith("FAIL evidence-certification certification.md") for ln in fails), _out(r)
        assert "evidence-bundle-signature" in r.stdout and "Insider B" in r.stdout, _out(r)


def test_bundle_json_resigned_by_another_vaults_key_is_refused(world, wbag):
    k2 = world["other_key"]
    (wbag / "evidence/keys" / f"{k2.key_id}.pem").write_bytes(k2.public.to_pem())
    _rewrite_certification(wbag)
    _resign_bundle_json(wbag, k2)
    rep = verify_bundle(wbag)
    assert not rep.ok
    assert any("not enrolled" in ch.detail for ch in failed(rep, "evidence-bundle-signature"))
    assert any(ch.subject == f"evidence/keys/{k2.key_id}.pem" for ch in failed(rep, "evidence-keys"))


def test_bundle_json_resigned_by_a_key_with_a_forged_enrolment_is_refused(world, wbag):
    """Another vault's key, plus a key-enroll entry for it signed by itself, planted at a free seq."""
    k2 = world["other_key"]
    lines = [json.loads(ln) for ln in (wbag / "evidence/entries.jsonl").read_text().splitlines()]
    last = json.loads(base64.b64decode(lines[-1]["canonical"]))
    forged = SignedEntry.create(Entry(seq=last["seq"] + 1, prev="0" * 64, time=last["time"], type="key-enroll", case="",
                                      actor=k2.key_id, body={"key_id": k2.key_id, "public_key": k2.public.raw.hex(),
                                                             "name": "Field Team A", "role": "custodian"}), k2.sign)
    seq = forged.entry.seq
    lines.append({"seq": seq, "canonical": base64.b64encode(forged.canonical).decode(),
                  "signature": base64.b64encode(forged.signature).decode()})
    (wbag / "evidence/entries.jsonl").write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in lines))
    (wbag / f"evidence/entries/{seq}.json").write_bytes(forged.canonical)
    (wbag / f"evidence/entries/{seq}.sig").write_bytes(forged.signature)
    (wbag / "evidence/keys" / f"{k2.key_id}.pem").write_bytes(k2.public.to_pem())
    _rewrite_certification(wbag)
    _resign_bundle_json(wbag, k2)
    rep = verify_bundle(wbag)
    assert not rep.ok
    assert any(ch.subject == f"entry {seq}" for ch in failed(rep, "evidence-signature"))
    assert any(ch.subject == f"entry {seq}" for ch in failed(rep, "evidence-inclusion"))


# -- item 5: the second digest family is checked ------------------------------------------------
def _regen_sha256_only(bag: Path) -> None:
    files = sorted(str(p.relative_to(bag)) for p in bag.rglob("*") if p.is_file() and not str(p.relative_to(bag)).startswith("data/")
                   and not p.name.startswith("tagmanifest-"))
    (bag / "tagmanifest-sha256.txt").write_text(
        "".join(f"{hashlib.sha256((bag / f).read_bytes()).hexdigest()}  {f}\n" for f in files))


def test_bundle_without_its_sha512_manifests_is_refused(world, wbag):
    (wbag / "manifest-sha512.txt").unlink()
    (wbag / "tagmanifest-sha512.txt").unlink()
    _regen_sha256_only(wbag)
    r = run_cli("verify-bundle", wbag)
    assert r.code == 1, _out(r)
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
    assert {ln.split(":")[0] for ln in fails} == {"FAIL evidence-manifests manifest-sha512.txt",
                                                   "FAIL evidence-manifests tagmanifest-sha512.txt"}, fails


def test_bundle_json_with_a_wrong_sha512_resigned_by_the_genuine_exporter_is_refused(world, wbag):
    a = world["a"]

    def corrupt(meta):
        meta["items"][0]["sha512"] = "0" * 128
    path = json.loads((wbag / "evidence/bundle.json").read_text())["items"][0]["path"]
    _resign_bundle_json(wbag, a, corrupt)
    r = run_cli("verify-bundle", wbag, "--trusted-key", a.key_id)
    assert r.code == 1, _out(r)
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
    assert len(fails) == 1 and fails[0].startswith(f"FAIL evidence-digests {path}") and "sha512" in fails[0], fails


@pytest.fixture(scope="module")
def digest_world(tmp_path_factory):
    """A genuine custodian signs extra ingest entries recording digests of the same bytes: one with a
    wrong BLAKE3, one with a correct SHA3-256, one with a wrong SHA3-256, one with an unknown
    algorithm; each item is exported on its own, so each bundle is otherwise fully genuine."""
    root = tmp_path_factory.mktemp("digest-world")
    vault, clock = build_vault(root)
    key = vault.unlock(PASSPHRASE)
    src = root / "incoming"
    src.mkdir()
    kinds = ["good", "bad-blake3", "good-sha3", "bad-sha3", "unknown-alg"]
    for k in kinds:
        (src / f"{k}.txt").write_bytes(f"file {k}\n".encode())
    ingest(vault, [src], key=key, case="Case 5", now=clock, extract_media=False)
    seqs = {}
    for k in kinds[1:]:
        data = f"file {k}\n".encode()
        sha = hashlib.sha256(data).hexdigest()
        digests = {"sha256": sha, "blake3": blake3.blake3(data).hexdigest()}
        if k == "bad-blake3":
            digests["blake3"] = blake3.blake3(b"other bytes").hexdigest()
        elif k == "good-sha3":
            digests["sha3_256"] = hashlib.sha3_256(data).hexdigest()
        elif k == "bad-sha3":
            digests["sha3_256"] = hashlib.sha3_256(b"other bytes").hexdigest()
        else:
            digests["whirlpool9"] = "ab" * 32
        signed = vault.append(key, now=clock(), type="ingest", case="Case 5",
                              body={"item": sha, "digests": digests, "size": len(data), "note": "re-recorded",
                                    "source": {"path": f"{k}.txt", "key": hashlib.sha256(k.encode()).hexdigest()}})
        seqs[k] = (signed.entry.seq, sha)
    bundles = {}
    for k in kinds:
        sha = hashlib.sha256(f"file {k}\n".encode()).hexdigest()
        bundles[k] = export_bundle(vault, case="Case 5", out=root / k, key=key, now=clock, items=[sha], report=False).path
    vault.close()
    return {"bundles": bundles, "seqs": seqs}


def test_entry_with_a_wrong_blake3_signed_by_the_genuine_custodian_is_refused(digest_world):
    good = run_cli("verify-bundle", "--verbose", digest_world["bundles"]["good"])
    assert good.code == 0, _out(good)
    assert "blake3" in good.stdout  # the check says which digests it recomputed
    seq, _ = digest_world["seqs"]["bad-blake3"]
    r = run_cli("verify-bundle", digest_world["bundles"]["bad-blake3"])
    assert r.code == 1, _out(r)
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
    assert len(fails) == 1 and fails[0].startswith(f"FAIL evidence-digests entry {seq}:") and "blake3" in fails[0], fails


def test_entry_with_another_hashlib_digest_is_recomputed(digest_world):
    r = verify_bundle(digest_world["bundles"]["good-sha3"])
    assert r.ok, r.failures
    assert any(ch.name == "evidence-digests" and ch.ok and "sha3_256" in ch.detail for ch in r.checks)
    seq, _ = digest_world["seqs"]["bad-sha3"]
    r = verify_bundle(digest_world["bundles"]["bad-sha3"])
    assert [(ch.name, ch.subject) for ch in r.failures] == [("evidence-digests", f"entry {seq}")]
    assert "sha3_256" in r.failures[0].detail


def test_entry_with_an_unknown_digest_algorithm_is_reported_not_checked(digest_world):
    seq, _ = digest_world["seqs"]["unknown-alg"]
    r = run_cli("verify-bundle", "--verbose", digest_world["bundles"]["unknown-alg"])
    out = r.stdout
    assert "NOT checked" in out and "whirlpool9" in out and f"entry {seq}" in out
    # it is never listed as checked
    ok_line = next(ln for ln in out.splitlines() if ln.startswith("ok   evidence-digests"))
    assert "whirlpool9" not in ok_line.split("(")[1].split(")")[0]


# -- item 3, vault side: a checkpoint signed by a revoked key is refused by prove/consistency/export --
def test_vault_checkpoint_forged_with_revoked_key_is_refused(tmp_path):
    from evidencelock import treestore

    vault, clock = build_vault(tmp_path)
    a = vault.unlock(PASSPHRASE)
    c = enroll_custodian(vault, a, name="Revoked C", passphrase=PASSPHRASE, now=clock())
    src = tmp_path / "incoming"
    src.mkdir()
    (src / "hello.txt").write_bytes(b"hello, court\n")
    ingest(vault, [src], key=a, case="Case 3", now=clock, extract_media=False)
    r_seq = revoke_custodian(vault, a, key_id=c.key_id, reason="laptop seized", now=clock()).entry.seq
    with vault.ledger.reader() as conn:
        size = treestore.tree_size(conn)
        head = Checkpoint(vault.config.origin, size, treestore.root_at(conn, size))
    assert r_seq < size
    vp = vault.root
    vault.close()
    item = hashlib.sha256(b"hello, court\n").hexdigest()
    genuine = tmp_path / "genuine.txt"
    genuine.write_text(sign_note(head, head.origin, a.sign, a.public.raw))
    forged = tmp_path / "forged.txt"
    forged.write_text(sign_note(head, head.origin, c.sign, c.public.raw))
    ok = run_cli("prove", item, "--checkpoint", genuine, vault=vp)
    assert ok.code == 0, _out(ok)
    for args in (("prove", item, "--checkpoint", forged), ("consistency", forged), ("consistency", genuine, "--to", forged)):
        res = run_cli(*args, vault=vp)
        assert res.code == 1, (args, _out(res))
        assert f"entry {r_seq}" in res.stderr and "revoked" in res.stderr and c.key_id[:16] in res.stderr
    assert run_cli("consistency", genuine, vault=vp).code == 0


def test_external_checkpoint_signed_by_revoked_or_unpinned_key_is_refused(world, tmp_path):
    bundle = world["bundle"]
    head = parse_note((bundle / "evidence/checkpoint.txt").read_bytes()).unverified_checkpoint
    genuine = tmp_path / "genuine.txt"
    genuine.write_text(sign_note(head, head.origin, world["a"].sign, world["a"].public.raw))
    r = run_cli("verify-bundle", bundle, "--checkpoint", genuine, "--trusted-key", world["a"].key_id)
    assert r.code == 0, _out(r)
    by_c = tmp_path / "by-revoked.txt"
    by_c.write_text(sign_note(head, head.origin, world["c"].sign, world["c"].public.raw))
    r = run_cli("verify-bundle", bundle, "--checkpoint", by_c)
    assert r.code == 1, _out(r)
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
    assert len(fails) == 1 and fails[0].startswith("FAIL evidence-external-checkpoint --checkpoint")
    assert f"entry {world['revoke_seq']} revoked" in fails[0] and "Revoked C" in fails[0]
    by_b = tmp_path / "by-insider.txt"
    by_b.write_text(sign_note(head, head.origin, world["b"].sign, world["b"].public.raw))
    assert run_cli("verify-bundle", bundle, "--checkpoint", by_b).code == 0  # enrolled, unrevoked, nothing pinned
    r = run_cli("verify-bundle", bundle, "--checkpoint", by_b, "--trusted-key", world["a"].key_id)
    assert r.code == 1, _out(r)
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL ")]
    assert len(fails) == 1 and fails[0].startswith("FAIL evidence-trusted-key --checkpoint") and "Insider B" in fails[0]


def test_revoked_key_that_also_deletes_its_revocation_is_refused_when_keys_are_pinned(world, wbag, tmp_path):
    """A revoked custodian also removes the key-revoke entry (and its by-hand copies) before re-signing
    bundle.json: nothing in the bundle then shows the revocation, but with the organisation's key pinned
    the exporter must be a pinned key, and it is not."""
    c, seq = world["c"], world["revoke_seq"]
    lines = [ln for ln in (wbag / "evidence/entries.jsonl").read_text().splitlines() if json.loads(ln)["seq"] != seq]
    (wbag / "evidence/entries.jsonl").write_text("\n".join(lines) + "\n")
    (wbag / f"evidence/entries/{seq}.json").unlink()
    (wbag / f"evidence/entries/{seq}.sig").unlink()

    def drop(meta):
        for i in meta["items"]:
            i["entries"] = [s for s in i.get("entries", []) if s != seq]
    _rewrite_certification(wbag)
    _resign_bundle_json(wbag, c, drop)
    r = run_cli("verify-bundle", wbag, "--trusted-key", _pem(tmp_path, world["a"], "a"))
    assert r.code == 1, _out(r)
    assert any(ln.startswith("FAIL evidence-trusted-key evidence/bundle.json.sig") and "Revoked C" in ln
               for ln in r.stdout.splitlines()), r.stdout


@pytest.mark.parametrize("delete", [["manifest-sha512.txt"], ["tagmanifest-sha512.txt"], ["tagmanifest-sha256.txt"],
                                    ["manifest-sha256.txt"]])
def test_bundle_missing_any_one_required_manifest_is_refused(world, wbag, delete):
    for name in delete:
        (wbag / name).unlink()
    # The attacker regenerates what remains of the tag manifests so that the BagIt layer is self-consistent.
    remaining = [a for a in ("sha256", "sha512") if (wbag / f"tagmanifest-{a}.txt").exists()]
    files = sorted(str(p.relative_to(wbag)) for p in wbag.rglob("*") if p.is_file()
                   and not str(p.relative_to(wbag)).startswith("data/") and not p.name.startswith("tagmanifest-"))
    for alg in remaining:
        (wbag / f"tagmanifest-{alg}.txt").write_text(
            "".join(f"{hashlib.new(alg, (wbag / f).read_bytes()).hexdigest()}  {f}\n" for f in files))
    rep = verify_bundle(wbag)
    assert not rep.ok
    assert [ch.subject for ch in failed(rep, "evidence-manifests")] == delete
