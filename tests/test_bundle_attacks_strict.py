"""Issue 9, round 2 (I1): no claim without its check, strict JSON, no crash on malformed types,
checkpoint signature lines judged independently of their order.

Real vault and real bundles from tests/test_bundle_attacks_structure.py (``world``); each test
tampers with real bytes as an attacker would (tag manifests regenerated; bundle.json re-signed
with the genuine exporter key where the attack says so), runs the real CLI and asserts exit 1,
the check named and no traceback.  The untampered bundle verifies (first test).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from evidencelock import checkpoint as cp_mod
from evidencelock.entry import Entry, SignedEntry

from conftest import run_cli
from test_bundle_attacks_structure import (  # noqa: F401 - fixtures
    assert_refused, bag, entries_of, resign_bundle_json, verify_cli, world)
from test_bundle_support import regen_tag_manifests


def _proofs(bag: Path) -> dict:
    return json.loads((bag / "evidence/proofs.json").read_text())


def _write_proofs(bag: Path, value) -> None:
    (bag / "evidence/proofs.json").write_text(json.dumps(value))
    regen_tag_manifests(bag)


def _resign_raw(world, bag: Path, text: str) -> None:
    """Write bundle.json as exactly ``text`` and sign it with the genuine exporter key."""
    data = text.encode()
    (bag / "evidence/bundle.json").write_bytes(data)
    (bag / "evidence/bundle.json.sig").write_bytes(world["key"].sign(data))
    regen_tag_manifests(bag)


def _no_crash(r) -> None:
    assert r.code == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "VERIFIED" not in r.stdout, r.stdout + r.stderr


def test_genuine_bundle_states_inclusion_from_the_passed_check(world, bag):
    r = verify_cli(world, bag, verbose=True)
    assert r.code == 0, r.stdout + r.stderr
    assert any(ln.startswith("ok") and "evidence-inclusion" in ln for ln in r.stdout.splitlines()), r.stdout


# -- 1. proofs.json: no inclusion claim without the proofs -------------------------------------
@pytest.mark.parametrize("value", [None, [], "x", {}], ids=["null", "list", "string", "empty-object"])
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_proofs_json_replaced_is_refused(world, bag, value, pinned):
    _write_proofs(bag, value)
    assert_refused(verify_cli(world, bag, pinned=pinned), "evidence-inclusion", "evidence/proofs.json")


def test_inclusion_proof_for_an_entry_not_included_is_refused(world, bag):
    proofs = _proofs(bag)
    proofs["inclusion"]["99"] = []
    _write_proofs(bag, proofs)
    assert_refused(verify_cli(world, bag), "evidence-inclusion", "inclusion['99']")


def test_inclusion_proof_missing_for_one_entry_is_refused(world, bag):
    proofs = _proofs(bag)
    seq = max(int(k) for k in proofs["inclusion"])
    del proofs["inclusion"][str(seq)]
    _write_proofs(bag, proofs)
    assert_refused(verify_cli(world, bag), "evidence-inclusion", f"entry {seq}")


def test_entry_beyond_the_tree_size_injected_by_the_pinned_exporter_is_refused(world, bag):
    """The exporter key (pinned) signs a new entry that the log never contained (seq = tree size),
    lists it in the re-signed record, and replaces proofs.json by null."""
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    size = meta["checkpoint"]["size"]
    last = entries_of(bag)[max(entries_of(bag))]
    prev = SignedEntry.from_bytes(base64.b64decode(json.loads(
        (bag / "evidence/entries.jsonl").read_text().splitlines()[-1])["canonical"]), b"\0" * 64)
    e = Entry(seq=size, prev=prev.entry_hash, time=last["time"], type="transfer", case=meta["case"],
              actor=world["key"].key_id, body={"item": None, "note": "injected", "to": world["team_b"].key_id})
    s = SignedEntry.create(e, world["key"].sign)
    with (bag / "evidence/entries.jsonl").open("a") as f:
        f.write(json.dumps({"seq": size, "canonical": base64.b64encode(s.canonical).decode(),
                            "signature": base64.b64encode(s.signature).decode()}) + "\n")
    (bag / f"evidence/entries/{size}.json").write_bytes(s.canonical)
    (bag / f"evidence/entries/{size}.sig").write_bytes(s.signature)
    (bag / "evidence/proofs.json").write_text("null")
    resign_bundle_json(world, bag, lambda m: m["record"].append(
        {"seq": size, "leaf": s.leaf_hash.hex(), "type": "transfer", "case": m["case"], "item": None}))
    r = verify_cli(world, bag)
    assert_refused(r, "evidence-inclusion", f"entry {size}")
    assert "part of log" not in r.stdout


def test_consistency_proof_null_with_checkpoint_is_refused_without_crash(world, bag):
    proofs = _proofs(bag)
    assert proofs["consistency"]
    for c in proofs["consistency"]:
        c["proof"] = None
    _write_proofs(bag, proofs)
    r = verify_cli(world, bag)
    _no_crash(r)
    assert_refused(r, "evidence-external-checkpoint")
    assert_refused(r, "evidence-consistency", "consistency[0]")


# -- 2. strict JSON and the shape of bundle.json ------------------------------------------------
def test_duplicate_member_in_resigned_bundle_json_is_refused(world, bag):
    text = (bag / "evidence/bundle.json").read_text()
    meta = json.loads(text)
    _resign_raw(world, bag, text.replace('"case": ', f'"case": "Other case",\n "case": ', 1))
    assert json.loads((bag / "evidence/bundle.json").read_text())["case"] == meta["case"]  # last wins in Python
    assert_refused(verify_cli(world, bag), "evidence-format", "duplicate member 'case'")


def test_duplicate_canonical_member_in_entries_line_is_refused(world, bag):
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    obj = json.loads(lines[0])
    lines[0] = lines[0][:-1] + f', "canonical": "{obj["canonical"]}"}}'
    (bag / "evidence/entries.jsonl").write_text("\n".join(lines) + "\n")
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-entries", "duplicate member 'canonical'")


@pytest.mark.parametrize("seq", ["true", "0.0"])
def test_entries_line_seq_not_an_integer_is_refused(world, bag, seq):
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    obj = json.loads(lines[0])
    assert obj["seq"] == 0
    lines[0] = json.dumps({**obj, "seq": "@"}).replace('"@"', seq)
    (bag / "evidence/entries.jsonl").write_text("\n".join(lines) + "\n")
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "evidence-entries", "seq must be an integer")


def _set_item0(field, value):
    def change(m):
        m["items"][0][field] = value
    return change


@pytest.mark.parametrize("change,named", [
    (lambda m: m.__setitem__("items", None), "items must be a list"),
    (lambda m: m.__setitem__("items", 5), "items must be a list"),
    (_set_item0("path", ["data", "x"]), "items[0]"),
    (_set_item0("size", "x"), "items[0]"),
    (_set_item0("entries", None), "items[0]"),
    (lambda m: m.__setitem__("version", True), "version"),
    (lambda m: m["checkpoint"].__setitem__("size", float(m["checkpoint"]["size"])), "checkpoint"),
    (lambda m: m.__setitem__("created", "2026-12-04 garbage"), "created"),
    (lambda m: m["files"].__setitem__("bag-info.txt", "0" * 64), "bag-info.txt"),
    (lambda m: m["files"].__setitem__("VERIFY.md", [1]), "VERIFY.md"),
    (lambda m: m["record"][0].__setitem__("item", ["x"]), "record[0]"),
    (lambda m: m.__setitem__("extra", 1), "members"),
], ids=["items-null", "items-5", "path-list", "size-str", "entries-null", "version-true", "size-float",
        "created-garbage", "files-bag-info", "files-list", "record-item-list", "extra-member"])
def test_malformed_resigned_bundle_json_is_refused_without_crash(world, bag, change, named):
    resign_bundle_json(world, bag, change)
    assert_refused(verify_cli(world, bag), "evidence-format", named)


@pytest.mark.parametrize("change", [lambda m: m.__setitem__("items", None), _set_item0("path", ["x"])],
                         ids=["items-null", "path-list"])
def test_malformed_unsigned_bundle_json_is_refused_without_crash(world, bag, change):
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    change(meta)
    (bag / "evidence/bundle.json").write_text(json.dumps(meta))
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag, pinned=False), "evidence-format")


def test_appended_unsigned_entry_with_list_item_is_refused_without_crash(world, bag):
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    last = json.loads(base64.b64decode(json.loads(lines[-1])["canonical"]))
    from evidencelock.entry import canonicalize
    forged = {**last, "seq": last["seq"] + 1, "type": "transfer", "body": {"item": ["x"], "to": last["actor"]}}
    lines.append(json.dumps({"seq": forged["seq"], "canonical": base64.b64encode(canonicalize(forged)).decode(),
                             "signature": base64.b64encode(b"\0" * 64).decode()}))
    (bag / "evidence/entries.jsonl").write_text("\n".join(lines) + "\n")
    regen_tag_manifests(bag)
    r = verify_cli(world, bag, pinned=False)
    _no_crash(r)
    assert f"entry {forged['seq']}" in r.stdout


# -- 3. checkpoint signature lines: order does not matter --------------------------------------
def _line(key, note) -> str:
    name = note.unverified_checkpoint.origin
    sig = cp_mod.NoteSignature(name, cp_mod.note_key_id(name, key.public.raw), key.sign(note.unverified_body))
    return sig.line()


def _with_lines(bag: Path, extra: list[str], *, before: bool) -> None:
    text = (bag / "evidence/checkpoint.txt").read_text()
    body, _, sigs = text.rpartition("\n\n")
    lines = "".join(extra)
    (bag / "evidence/checkpoint.txt").write_text(body + "\n\n" + (lines + sigs if before else sigs + lines))
    regen_tag_manifests(bag)


def _note(bag: Path):
    return cp_mod.parse_note((bag / "evidence/checkpoint.txt").read_bytes())


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
def test_valid_line_by_a_revoked_key_is_ignored_in_either_order(world, bag, before):
    _with_lines(bag, [_line(world["laptop"], _note(bag))], before=before)
    r = verify_cli(world, bag, verbose=True)
    assert r.code == 0, r.stdout + r.stderr
    assert "was ignored" in r.stdout


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
def test_bad_line_by_an_enrolled_key_is_refused_in_either_order(world, bag, before):
    note = _note(bag)
    name = note.unverified_checkpoint.origin
    bad = cp_mod.NoteSignature(name, cp_mod.note_key_id(name, world["team_b"].public.raw), b"\1" * 64).line()
    _with_lines(bag, [bad], before=before)
    assert_refused(verify_cli(world, bag), "evidence-checkpoint-signature", "does not verify")


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
def test_pinned_signer_is_found_whatever_the_order_of_lines(world, bag, before):
    """A valid line by enrolled Team B before or after the custodian's: with the custodian pinned,
    the result is the same and the reported signer is the pinned key."""
    _with_lines(bag, [_line(world["team_b"], _note(bag))], before=before)
    r = verify_cli(world, bag, verbose=True)
    assert r.code == 0, r.stdout + r.stderr
    ok = [ln for ln in r.stdout.splitlines() if ln.startswith("ok") and "evidence-trusted-key" in ln
          and "checkpoint signed by pinned" in ln]
    assert ok, r.stdout


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
def test_other_pinned_key_signing_checkpoint_and_bundle_json_verifies_in_either_order(world, bag, before):
    """H-report 1: Team B (enrolled, unrevoked) adds its line to the checkpoint; with both the
    custodian (exporter) and B pinned the result is the same whether B's line comes before or after
    the custodian's.  (bundle.json stays the custodian's: its certification names that exporter.)"""
    b = world["team_b"]
    _with_lines(bag, [_line(b, _note(bag))], before=before)
    regen_tag_manifests(bag)
    pem_b = bag.parent / "teamb.pem"
    pem_b.write_bytes(b.public.to_pem())
    pem_a = bag.parent / "teama.pem"
    pem_a.write_bytes(world["key"].public.to_pem())
    r = run_cli("verify-bundle", "--verbose", bag, "--trusted-key", pem_a, "--trusted-key", pem_b)
    assert r.code == 0, r.stdout + r.stderr
    assert any(ln.startswith("ok") and "evidence-trusted-key" in ln and "checkpoint signed by pinned" in ln
               for ln in r.stdout.splitlines()), r.stdout
    # Which key is reported never depends on key ids (random per run): the re-rendered human
    # files name the key whose line checkpoint.sig holds, whatever the order of pins, and with none.
    for pins in (["--trusted-key", pem_b, "--trusted-key", pem_a], []):
        r = run_cli("verify-bundle", bag, *pins)
        assert r.code == 0, r.stdout + r.stderr


def test_checkpoint_without_a_line_by_the_pinned_key_is_refused(world, bag):
    pem = bag.parent / "teamb.pem"
    pem.write_bytes(world["team_b"].public.to_pem())
    r = run_cli("verify-bundle", bag, "--trusted-key", pem)
    assert_refused(r, "evidence-trusted-key", "evidence/checkpoint.txt")


def test_a_core_check_that_did_not_run_fails_and_states_nothing():
    """The rule lives in _conclude, not in each check: a report in which the inclusion check (and
    the other core checks) never ran is not VERIFIED, names each one, and states nothing."""
    from evidencelock.bundle import verify as v

    rep = v.BundleReport("x", kind="evidence-bundle")
    rep.add("bagit-payload-fixity", True, "recomputed")
    v._conclude(rep, [], None, None, {}, {}, None)
    assert not rep.ok and not rep.established
    assert any(c.name == "evidence-inclusion" and "did not run" in c.detail for c in rep.failures)


def test_a_claim_whose_check_did_not_pass_is_not_stated():
    from evidencelock.bundle import verify as v

    rep = v.BundleReport("x", kind="evidence-bundle")
    v._Claims(rep, {"evidence-checkpoint-signature"}).add(("evidence-inclusion", "evidence-checkpoint-signature"),
                                                          "All entries are part of log")
    assert rep.established == [] and "evidence-inclusion" in rep.not_established[0]
