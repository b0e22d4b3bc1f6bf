"""The custody chain across organisations (docs/bundle-format.md §4.9, §5 step 16): three real
vaults A → B → C; C's bundle verifies ALONE, end to end, and shows the path A → B → C; every
attack of docs/vectors/chain.json is refused with exactly the checks listed there."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from evidencelock.bundle import export_bundle, verify_bundle

sys.path.insert(0, str(Path(__file__).parent / "vectors"))
from make_chain_vectors import build_chain, failing_checks, mutations, part, regen_all  # noqa: E402

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "docs" / "vectors" / "chain.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return build_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture
def bag(chain, tmp_path) -> Path:
    dst = tmp_path / "bagC"
    shutil.copytree(chain["bundles"]["C"], dst)
    return dst


def test_chain_bundle_verifies_alone_and_shows_the_path_a_b_c(chain):
    r = run_cli("verify-bundle", "--verbose", chain["bundles"]["C"])
    assert r.code == 0, r.stdout + r.stderr
    assert "VERIFIED" in r.stdout and "Earlier custodians" in r.stdout
    path = "A custodian (a.example/log) → B custodian (b.example/log) → C custodian (c.example/log)"
    assert r.stdout.count(path) == 2, r.stdout  # both items
    assert "released by A custodian" in r.stdout and "received by B custodian (b.example/log)" in r.stdout
    assert "identity not established" in r.stdout  # no pins: the upstream signers are not established
    out = run_cli("verify-bundle", chain["bundles"]["C"], "--json").json()
    assert out["ok"]
    assert [p["origins"] for p in out["custody_paths"]] == [["a.example/log", "b.example/log", "c.example/log"]] * 2
    for p in out["custody_paths"]:
        a_to_b, b_to_c = p["hops"]
        assert a_to_b["released_by"] == chain["orgs"]["A"][1].key_id and a_to_b["received_by"] == chain["orgs"]["B"][1].key_id
        assert b_to_c["released_by"] == chain["orgs"]["B"][1].key_id and b_to_c["received_by"] == chain["orgs"]["C"][1].key_id
        assert a_to_b["release_seq"] is not None and b_to_c["release_seq"] is not None
    (b_part,) = out["upstream"]
    assert b_part["bundle"] == chain["u"]["B"] and b_part["origin"] == "b.example/log" and b_part["ok"]
    (a_part,) = b_part["upstream"]
    assert a_part["bundle"] == chain["u"]["A"] and a_part["origin"] == "a.example/log" and a_part["ok"]
    names = {c["name"] for c in out["checks"] if c["ok"]}
    assert {"evidence-upstream", "upstream:evidence-signature", "upstream:evidence-record",
            "upstream:upstream:evidence-inclusion", "upstream:evidence-certification"} <= names


def test_import_of_the_chained_bundle_verified_every_upstream_part(chain):
    """C's import of B's bundle ran the same upstream checks (A's part inside B's bundle)."""
    res = chain["imports"]["C"]
    assert res.ok and res.report is not None
    assert any(c.name == "evidence-upstream" and c.ok for c in res.report.checks)
    assert any(c.name == "upstream:evidence-signature" and c.ok for c in res.report.checks)
    assert [p["origins"] for p in res.report.custody_paths] == [["a.example/log", "b.example/log"]] * 2


@pytest.mark.parametrize("name", sorted(VECTORS["mutations"]))
def test_chain_attack_is_refused_with_the_checks_the_vectors_name(chain, bag, name):
    mutations(chain)[name](bag)
    r = run_cli("verify-bundle", bag, "--json")
    assert r.code == 1 and "Traceback" not in r.stderr, r.stderr
    out = r.json()
    assert not out["ok"]
    assert sorted({c["name"] for c in out["checks"] if not c["ok"]}) == VECTORS["mutations"][name]["failing_checks"]
    human = run_cli("verify-bundle", bag)
    assert human.code == 1 and "VERIFIED" not in human.stdout and "Earlier custodians" not in human.stdout
    assert any(ln.startswith("FAIL") and ("upstream" in ln or "evidence-record" in ln) for ln in human.stdout.splitlines())


def test_genuine_chain_matches_the_vectors(chain):
    assert failing_checks(verify_bundle(chain["bundles"]["C"])) == VECTORS["genuine_failing_checks"] == []


def test_receipt_re_signed_with_a_wrong_release_names_the_mismatch(chain, bag):
    mutations(chain)["resign-b-receipt-transfer"](bag)
    rep = verify_bundle(bag)
    mismatch = [c for c in rep.failures if c.name == "upstream:evidence-upstream" and "received.transfer" in c.detail]
    assert mismatch, [c for c in rep.failures]


def test_swapped_upstream_folder_is_not_the_bundle_the_receipts_name(chain, bag):
    mutations(chain)["swap-upstream"](bag)
    rep = verify_bundle(bag)
    assert any(c.name == "evidence-upstream" and "tagmanifest-sha256.txt" in c.detail and chain["u"]["B"] in c.detail
               for c in rep.failures)


def test_removed_upstream_folder_is_named_missing(chain, bag):
    mutations(chain)["remove-upstream"](bag)
    rep = verify_bundle(bag)
    assert any(c.name == "evidence-upstream" and "does not carry its tag files" in c.detail for c in rep.failures)


def test_upstream_folder_not_named_by_any_receipt_is_unexpected(chain, tmp_path):
    """Also in a bundle without any receipt (A's own bundle)."""
    bag = tmp_path / "bagA"
    shutil.copytree(chain["bundles"]["A"], bag)
    assert verify_bundle(bag).ok
    mutations(chain)["unnamed-upstream"](bag)
    rep = verify_bundle(bag)
    assert [c.subject for c in rep.failures if c.name == "evidence-unexpected-file"] == [f"evidence/upstream/{'ab' * 32}/bagit.txt"]


def test_payload_inside_an_upstream_folder_is_refused(chain, bag):
    p = part(bag, chain["u"]["B"]) / "data"
    p.mkdir()
    (p / "x.txt").write_bytes(b"hidden payload\n")
    regen_all(bag, bag)
    rep = verify_bundle(bag)
    assert any(c.name == "evidence-upstream" and "payload file inside an upstream folder" in c.detail for c in rep.failures)


def test_upstream_payload_not_carried_is_reported_never_counted(chain, tmp_path):
    """B exports only one of the two items it received: A's part lists both; the other is 'not carried'."""
    vb, kb = chain["orgs"]["B"]
    from evidencelock.custody import case_items

    one = case_items(vb, "Case B")[0]
    out = tmp_path / "bundleB-one"
    export_bundle(vb, case="Case B", out=out, key=kb, now=chain["clock"], items=[one])
    rep = verify_bundle(out)
    assert rep.ok, [c for c in rep.failures]
    (a_part,) = rep.upstream
    assert len(a_part["not_carried"]) == 1
    assert any("is not carried in this bundle" in s and "NOT checked" in s for s in rep.not_established)
    # the item carried is checked inside A's part; the other one is not counted as checked
    fix = [c for c in rep.checks if c.name == "upstream:bagit-payload-fixity" and c.ok]
    assert fix and "1 payload files" in fix[0].detail


def test_pinned_upstream_signer_is_reported_pinned(chain):
    ka, kc = chain["orgs"]["A"][1], chain["orgs"]["C"][1]
    out = run_cli("verify-bundle", chain["bundles"]["C"], "--trusted-key", kc.key_id, "--trusted-key", ka.key_id,
                  "--json").json()
    assert out["ok"], [c for c in out["checks"] if not c["ok"]]
    (b_part,) = out["upstream"]
    (a_part,) = b_part["upstream"]
    assert a_part["checkpoint"]["pinned"] and not b_part["checkpoint"]["pinned"]
    # pins apply to the outer bundle: A's key alone does not make C's bundle pinned
    r = run_cli("verify-bundle", chain["bundles"]["C"], "--trusted-key", ka.key_id)
    assert r.code == 1 and any(ln.startswith("FAIL") and "evidence-trusted-key" in ln for ln in r.stdout.splitlines())


def test_import_of_a_bundle_with_a_tampered_upstream_part_is_refused(chain, tmp_path):
    """C's import refuses B's bundle when A's part inside it was altered: nothing written."""
    from evidencelock.importer import import_bundle
    from evidencelock.vault import Vault
    from make_chain_vectors import _Clock, make_org

    bag = tmp_path / "bagB"
    shutil.copytree(chain["bundles"]["B"], bag)
    f = part(bag, chain["u"]["A"]) / "certification.md"
    f.write_bytes(f.read_bytes() + b"\nadded later\n")
    regen_all(bag, part(bag, chain["u"]["A"]))
    v, k = make_org(tmp_path, "D", _Clock())
    res = import_bundle(v, bag, key=k, now=_Clock(), extract_media=False)
    assert not res.ok and any(c.name == "evidence-upstream" for c in res.report.failures)
    assert not (tmp_path / "D" / "imports").exists()
    v.close()
    with Vault.open(tmp_path / "D") as v2:
        assert len(list(v2.ledger.rows(start=None))) == 1  # the genesis key-enroll only


def test_nesting_deeper_than_the_limit_is_refused(tmp_path):
    """Ten organisations in a row: J's bundle nests 9 parts; the limit is 8 (I's bundle, 8 parts, verifies)."""
    from evidencelock.bundle.upstream import MAX_DEPTH

    assert MAX_DEPTH == 8
    world = build_chain(tmp_path / "deep", n=10)
    ok = verify_bundle(world["bundles"]["I"])
    assert ok.ok, [c for c in ok.failures]
    rep = verify_bundle(world["bundles"]["J"])
    assert not rep.ok
    deep = [c for c in rep.failures if c.name.endswith("evidence-upstream") and "deeper than 8" in c.detail]
    assert deep and deep[0].name == "upstream:" * 8 + "evidence-upstream"


def test_certification_and_report_name_the_earlier_custodians(chain):
    cert = (chain["bundles"]["C"] / "certification.md").read_text("utf-8")
    html = (chain["bundles"]["C"] / "report.html").read_text("utf-8")
    path = "A custodian (a.example/log) → B custodian (b.example/log) → C custodian (c.example/log)"
    assert "**Earlier custodians**" in cert and cert.count(path) == 2
    assert "<h2>Earlier custodians</h2>" in html and html.count(path) == 2
    # A's own bundle received nothing: no such section
    assert "Earlier custodians" not in (chain["bundles"]["A"] / "certification.md").read_text("utf-8")


def test_exporter_rewriting_the_earlier_custodians_with_its_real_key_is_refused(chain, bag):
    """C's real key re-signs bundle.json over a certification that names another first custodian."""
    import hashlib

    from make_chain_vectors import regen_tag_manifests

    kc = chain["orgs"]["C"][1]
    f = bag / "certification.md"
    f.write_bytes(f.read_bytes().replace(b"A custodian (a.example/log) \xe2\x86\x92", b"Z custodian (z.example/log) \xe2\x86\x92", 1))
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    meta["files"]["certification.md"] = hashlib.sha256(f.read_bytes()).hexdigest()
    data = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False).encode()
    (bag / "evidence/bundle.json").write_bytes(data)
    (bag / "evidence/bundle.json.sig").write_bytes(kc.sign(data))
    regen_tag_manifests(bag)
    rep = verify_bundle(bag)
    assert [c.name for c in rep.failures] == ["evidence-certification"], rep.failures
    assert "Z custodian" in rep.failures[0].detail


def test_zipped_chain_bundle_verifies_with_its_path(chain, tmp_path):
    vc, kc = chain["orgs"]["C"]
    out = tmp_path / "bundleC.zip"
    export_bundle(vc, case="Case C", out=out, key=kc, now=chain["clock"])
    rep = verify_bundle(out)
    assert rep.ok, [c for c in rep.failures]
    assert [p["origins"] for p in rep.custody_paths] == [["a.example/log", "b.example/log", "c.example/log"]] * 2


def test_receipt_with_a_malformed_bundle_name_is_refused(chain, tmp_path):
    """C's real key signs a receipt whose received.bundle is not a digest: named, not ignored."""
    from make_chain_vectors import entries_of, regen_tag_manifests, rewrite_entry

    bag = tmp_path / "bagC"
    shutil.copytree(chain["bundles"]["C"], bag)
    seq = min(s for s, e in entries_of(bag).items() if e["type"] == "ingest")

    def change(e):
        e["body"]["received"]["bundle"] = "../" + chain["u"]["B"][:10]
    rewrite_entry(bag, seq, change, chain["orgs"]["C"][1].sign)
    regen_tag_manifests(bag)
    rep = verify_bundle(bag)
    assert any(c.name == "evidence-upstream" and c.subject == f"entry {seq}" and "malformed receipt" in c.detail
               for c in rep.failures)


def test_file_added_to_an_upstream_folder_is_refused(chain, bag):
    """No key needed to add a file, but the part's own tag manifest (hashing to U) does not list it."""
    from make_chain_vectors import regen_tag_manifests

    (part(bag, chain["u"]["B"]) / "evidence" / "notes.txt").write_bytes(b"added later\n")
    regen_tag_manifests(bag)
    rep = verify_bundle(bag)
    names = {c.name for c in rep.failures}
    assert {"evidence-upstream", "upstream:bagit-completeness", "upstream:evidence-unexpected-file"} <= names, names
    assert any(c.subject == f"upstream {chain['u']['B'][:12]}: evidence/notes.txt" for c in rep.failures)


@pytest.mark.parametrize("member", ["origin", "case", "exporter", "checkpoint", "ingests"])
def test_receipt_member_re_signed_by_the_receiver_not_matching_the_part_is_refused(chain, bag, member):
    """C's real key re-signs its receipt with one `received` member changed: named, expected and found."""
    from make_chain_vectors import entries_of, regen_tag_manifests, rewrite_entry

    seq = min(s for s, e in entries_of(bag).items() if e["type"] == "ingest")
    fake = {"origin": "z.example/log", "case": "Case Z", "exporter": "ab" * 32,
            "checkpoint": {"size": 1, "root": "00" * 32}, "ingests": [999]}[member]

    def change(e):
        e["body"]["received"][member] = fake
    rewrite_entry(bag, seq, change, chain["orgs"]["C"][1].sign)
    regen_tag_manifests(bag)
    rep = verify_bundle(bag)
    named = [c for c in rep.failures if c.name == "evidence-upstream" and c.subject == f"entry {seq}"]
    signed = json.loads(json.dumps(fake, sort_keys=True))  # as the canonical (RFC 8785) entry holds it
    assert named and f"received.{member}" in named[0].detail and f"found={signed!r}" in named[0].detail, rep.failures
