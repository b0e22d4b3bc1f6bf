"""Custodian keys over their life: revocation, rotation, the last usable key, export, external keys
(real vaults, the real CLI; signatures forged with real keys where an attacker could)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

from evidencelock.keys import CustodianKey, public_key_from_pem
from evidencelock.show import find_item
from evidencelock.vault import Vault

from conftest import PASSPHRASE, run_cli

B_PASS = "lawyer b passphrase"


def _vault(tmp_path: Path, custodian: str = "Team A") -> Path:
    vault = tmp_path / "vault"
    card = tmp_path / "card"
    card.mkdir(parents=True)
    (card / "a.jpg").write_bytes(b"\xff\xd8 photo of the checkpoint")
    assert run_cli("init", "--custodian", custodian, vault=vault).code == 0
    assert run_cli("ingest", card, "--case", "C1", "--no-media", vault=vault).code == 0
    return vault


def _add(vault: Path, name: str, passphrase: str) -> str:
    r = run_cli("keys", "add", name, "--json", vault=vault, env={"EVIDENCELOCK_NEW_PASSPHRASE": passphrase})
    assert r.code == 0, r.stderr
    return r.json()["key_id"]


def _forge(vault: Path, who: str, passphrase: str, type: str, body: dict) -> int:
    """Write an entry signed by ``who``'s real key past every writer check (as an insider with
    the key file and a copy of the software could)."""
    v = Vault.open(vault, writable=True)
    try:
        key = CustodianKey.load(v.key_path(v.resolve_custodian(who)), passphrase, who)
        if "item" in body:
            body = {**body, "item": find_item(v, body["item"])}
        s = v.append(key, now=datetime.now(timezone.utc), type=type, case="C1", body=body)
        assert s is not None
        return s.entry.seq
    finally:
        v.close()


def _findings(r) -> list[dict]:
    return json.loads(r.stdout)["findings"]


def test_revoked_keys_later_entries_fail_and_earlier_ones_pass_in_vault_and_bundle(tmp_path):
    vault = _vault(tmp_path)
    _add(vault, "Lawyer B", B_PASS)
    r = run_cli("annotate", "a.jpg", "seen before the seizure", "--custodian", "Lawyer B", "--json", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": B_PASS})
    assert r.code == 0, r.stderr
    before = r.json()["seq"]
    assert run_cli("keys", "revoke", "Lawyer B", "--reason", "laptop seized", vault=vault).code == 0
    # The writer refuses the revoked key ...
    r = run_cli("annotate", "a.jpg", "x", "--custodian", "Lawyer B", vault=vault, env={"EVIDENCELOCK_PASSPHRASE": B_PASS})
    assert r.code == 2 and "revoked" in r.stderr
    assert run_cli("verify", vault=vault).code == 0
    # ... so the seized laptop's holder writes one by hand.
    after = _forge(vault, "Lawyer B", B_PASS, "annotate", {"item": "a.jpg", "text": "written after the seizure"})
    r = run_cli("verify", "--json", vault=vault)
    assert r.code == 1
    bad = [f for f in _findings(r) if f["severity"] == "error"]
    assert [f["subject"] for f in bad] == [f"entry {after}"] and "revoked at entry" in bad[0]["message"]
    h = run_cli("history", "a.jpg", "--json", vault=vault)
    assert h.code == 1
    assert [p["seq"] for p in h.json()["signatures"]["problems"]] == [after]
    # The same in an exported bundle: the later entry fails, the earlier one is not named.
    assert run_cli("export", "--case", "C1", "-o", tmp_path / "bundle", "--no-report", vault=vault).code == 0
    r = run_cli("verify-bundle", tmp_path / "bundle", "--json")
    assert r.code == 1
    text = r.stdout
    assert f"entry {after}" in text and f"entry {before}:" not in text and f"entry {before} " not in text


def test_rotation_old_key_signs_new_enrolment_then_is_refused(tmp_path):
    vault = _vault(tmp_path)
    old_id = _add(vault, "Lawyer B", B_PASS)
    r = run_cli("keys", "rotate", "Lawyer B", "--json", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": B_PASS, "EVIDENCELOCK_NEW_PASSPHRASE": "lawyer b new passphrase"})
    assert r.code == 0, r.stderr
    d = r.json()
    assert d["old_key_id"] == old_id and d["key_id"] != old_id
    enrol, revoke = [e for e in run_cli("log", "--json", vault=vault).json() if e["seq"] in d["entries"]]
    assert (enrol["type"], enrol["actor"], enrol["body"]["successor_of"], enrol["body"]["key_id"]) == (
        "key-enroll", old_id, old_id, d["key_id"])
    assert (revoke["type"], revoke["actor"], revoke["body"]["key_id"], revoke["body"]["successor"]) == (
        "key-revoke", old_id, old_id, d["key_id"])
    assert revoke["seq"] == enrol["seq"] + 1
    assert run_cli("verify", vault=vault).code == 0
    # The name now means the new key; the old passphrase no longer opens anything usable.
    new_env = {"EVIDENCELOCK_PASSPHRASE": "lawyer b new passphrase"}
    r = run_cli("annotate", "a.jpg", "signed with the new key", "--custodian", "Lawyer B", "--json", vault=vault, env=new_env)
    assert r.code == 0, r.stderr
    assert [e for e in run_cli("log", "--json", vault=vault).json() if e["seq"] == r.json()["seq"]][0]["actor"] == d["key_id"]
    r = run_cli("annotate", "a.jpg", "old key", "--custodian", old_id[:16], vault=vault, env={"EVIDENCELOCK_PASSPHRASE": B_PASS})
    assert r.code == 2 and "revoked" in r.stderr
    # An entry forged with the old key after the rotation fails verification, by seq.
    forged = _forge(vault, old_id, B_PASS, "annotate", {"item": "a.jpg", "text": "old key after rotation"})
    r = run_cli("verify", "--json", vault=vault)
    assert r.code == 1 and [f["subject"] for f in _findings(r) if f["severity"] == "error"] == [f"entry {forged}"]
    # history shows the rotation in plain words.
    log = run_cli("log", vault=vault, env={"COLUMNS": "300"}).stdout
    assert "replaces the key" in log and "rotation, signed by the old key" in log


def test_rotating_the_vaults_only_key_keeps_the_vault_usable(tmp_path):
    vault = _vault(tmp_path)
    r = run_cli("keys", "rotate", "Team A", "--json", vault=vault,
                env={"EVIDENCELOCK_NEW_PASSPHRASE": "team a new passphrase"})
    assert r.code == 0, r.stderr
    # The default custodian moved to the new key: commands without --custodian keep working.
    r = run_cli("annotate", "a.jpg", "after rotation", "--json", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": "team a new passphrase"})
    assert r.code == 0, r.stderr
    assert run_cli("verify", vault=vault).code == 0


def test_revoking_the_last_usable_key_is_refused_unless_a_successor_is_enrolled(tmp_path):
    # The README's example: the field team's laptop is seized; its key is the vault's only key.
    vault = _vault(tmp_path, custodian="Aleppo Media Centre, team 2")
    n = len(run_cli("log", "--json", vault=vault).json())
    r = run_cli("keys", "revoke", "Aleppo Media Centre, team 2", "--reason", "laptop seized 2014-05-02", vault=vault)
    assert r.code == 2
    assert "last usable key" in r.stderr and "--successor" in r.stderr and "nothing was recorded" in r.stderr
    assert len(run_cli("log", "--json", vault=vault).json()) == n
    # An external (public-only) key does not count as usable here.
    other = CustodianKey.generate("Lawyer B")
    (tmp_path / "b.pem").write_bytes(other.public.to_pem())
    assert run_cli("keys", "add", "Lawyer B", "--public-key", tmp_path / "b.pem", vault=vault).code == 0
    r = run_cli("keys", "revoke", "Aleppo Media Centre, team 2", "--reason", "laptop seized 2014-05-02", vault=vault)
    assert r.code == 2 and "last usable key" in r.stderr
    # With a successor, in one step: enrolment (signed by the old key) then revocation.
    r = run_cli("keys", "revoke", "Aleppo Media Centre, team 2", "--reason", "laptop seized 2014-05-02",
                "--successor", "Aleppo Media Centre, team 2 (new laptop)", "--json", vault=vault,
                env={"EVIDENCELOCK_NEW_PASSPHRASE": "new laptop passphrase"})
    assert r.code == 0, r.stderr
    succ = r.json()["successor"]
    log = run_cli("log", "--json", vault=vault).json()
    assert [e["type"] for e in log[-2:]] == ["key-enroll", "key-revoke"]
    assert log[-2]["body"]["key_id"] == succ and log[-1]["body"]["successor"] == succ
    keys = {k["name"]: k for k in run_cli("keys", "--json", vault=vault).json()}
    assert keys["Aleppo Media Centre, team 2"]["revoked_seq"] == log[-1]["seq"]
    # The vault still works, with the successor's key (now the default).
    r = run_cli("annotate", "a.jpg", "after the seizure", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": "new laptop passphrase"})
    assert r.code == 0, r.stderr
    assert run_cli("verify", vault=vault).code == 0


def test_revoking_a_key_while_another_usable_key_remains_needs_no_successor(tmp_path):
    vault = _vault(tmp_path)
    _add(vault, "Team 2", B_PASS)
    r = run_cli("keys", "revoke", "Team 2", "--reason", "laptop seized 2014-05-02", vault=vault)
    assert r.code == 0, r.stderr
    # Revoking the default key with another usable key: the signer becomes the default.
    _add(vault, "Team 3", "team three passphrase")
    r = run_cli("keys", "revoke", "Team A", "--reason", "handed over", "--custodian", "Team 3", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": "team three passphrase"})
    assert r.code == 0, r.stderr
    r = run_cli("annotate", "a.jpg", "by the new default", vault=vault, env={"EVIDENCELOCK_PASSPHRASE": "team three passphrase"})
    assert r.code == 0, r.stderr


def test_keys_export_pem_equals_enrolled_key_and_pins_a_bundle(tmp_path):
    vault = _vault(tmp_path)
    b_id = _add(vault, "Lawyer B", B_PASS)
    r = run_cli("keys", "export", "Team A", "-o", tmp_path / "team-a.pem", "--json", vault=vault)
    assert r.code == 0, r.stderr
    a_id = r.json()["key_id"]
    pem = (tmp_path / "team-a.pem").read_bytes()
    enrol = run_cli("log", "--type", "key-enroll", "--json", vault=vault).json()[0]
    assert public_key_from_pem(pem).hex() == enrol["body"]["public_key"] and enrol["body"]["key_id"] == a_id
    # Standard output gives the same PEM; a second -o to the same file is refused.
    assert run_cli("keys", "export", a_id[:12], vault=vault).stdout.encode() == pem
    assert run_cli("keys", "export", "Team A", "-o", tmp_path / "team-a.pem", vault=vault).code == 2
    b_pem = run_cli("keys", "export", "Lawyer B", vault=vault).stdout.encode()
    assert public_key_from_pem(b_pem) != public_key_from_pem(pem)
    (tmp_path / "b.pem").write_bytes(b_pem)
    assert run_cli("export", "--case", "C1", "-o", tmp_path / "bundle", "--no-report", vault=vault).code == 0
    assert run_cli("verify-bundle", tmp_path / "bundle", "--trusted-key", tmp_path / "team-a.pem").code == 0
    # Pinning the wrong custodian's exported key: the bundle's signer is not the pinned one.
    r = run_cli("verify-bundle", tmp_path / "bundle", "--trusted-key", tmp_path / "b.pem")
    assert r.code == 1, r.stdout
    assert b_id


def test_keys_export_reads_the_signed_enrolment_not_the_public_key_file(tmp_path):
    vault = _vault(tmp_path)
    r = run_cli("keys", "export", "Team A", "--json", vault=vault)
    kid, pem = r.json()["key_id"], r.json()["pem"]
    swapped = CustodianKey.generate("Mallory").public.to_pem()
    (vault / "keys" / f"{kid}.pub.pem").write_bytes(swapped)  # a swapped file beside the key
    assert run_cli("keys", "export", "Team A", "--json", vault=vault).json()["pem"] == pem


def test_external_key_enrolled_from_pem_is_marked_and_cannot_sign_here(tmp_path):
    vault_a = _vault(tmp_path / "a")
    vault_b = tmp_path / "b" / "vault"
    vault_b.parent.mkdir()
    assert run_cli("init", "--custodian", "Lawyer B", vault=vault_b).code == 0
    assert run_cli("keys", "export", "Lawyer B", "-o", tmp_path / "b.pem", vault=vault_b).code == 0
    r = run_cli("keys", "add", "Lawyer B", "--public-key", tmp_path / "b.pem", "--json", vault=vault_a)
    assert r.code == 0, r.stderr
    assert r.json()["external"] is True
    enrol = run_cli("log", "--type", "key-enroll", "--json", vault=vault_a).json()[-1]
    assert enrol["body"]["external"] is True and enrol["body"]["key_id"] == r.json()["key_id"]
    assert not (vault_a / "keys" / f"{r.json()['key_id']}.key.pem").exists()
    # Enrolled once only; garbage is refused clearly.
    assert run_cli("keys", "add", "Lawyer B again", "--public-key", tmp_path / "b.pem", vault=vault_a).code == 2
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    r = run_cli("keys", "add", "Junk", "--public-key", tmp_path / "junk.pem", vault=vault_a)
    assert r.code == 2 and "Traceback" not in r.stderr
    # A release to the external custodian stays in transit in A's vault (B accepts on import).
    assert run_cli("transfer", "a.jpg", "--case", "C1", "--to", "Lawyer B", vault=vault_a).code == 0
    [case] = run_cli("history", "a.jpg", "--json", vault=vault_a).json()["cases"]
    assert case["holder"] is None and case["in_transit_name"] == "Lawyer B"
    r = run_cli("accept", "--case", "C1", "--custodian", "Lawyer B", vault=vault_a)
    assert r.code == 2 and "Traceback" not in r.stderr
    log = run_cli("log", vault=vault_a, env={"COLUMNS": "300"}).stdout
    assert "public key only: the private key is held elsewhere" in log
    assert run_cli("verify", vault=vault_a).code == 0


def test_passphrase_prompt_names_the_custodian(tmp_path):
    vault = _vault(tmp_path)
    _add(vault, "Lawyer B", B_PASS)
    r = run_cli("annotate", "a.jpg", "x", "--custodian", "Lawyer B", vault=vault, env={"EVIDENCELOCK_PASSPHRASE": ""})
    assert r.code == 2 and "Lawyer B's key" in r.stderr
    r = run_cli("transfer", "a.jpg", "--case", "C1", "--to", "Lawyer B", vault=vault, env={"EVIDENCELOCK_PASSPHRASE": ""})
    assert r.code == 2 and "Team A's key" in r.stderr


def test_key_entries_in_the_bundle_name_rotation(tmp_path):
    vault = _vault(tmp_path)
    _add(vault, "Lawyer B", B_PASS)
    assert run_cli("keys", "rotate", "Lawyer B", vault=vault,
                   env={"EVIDENCELOCK_PASSPHRASE": B_PASS, "EVIDENCELOCK_NEW_PASSPHRASE": "lawyer b new passphrase"}).code == 0
    assert run_cli("export", "--case", "C1", "-o", tmp_path / "bundle", "--no-report", vault=vault).code == 0
    assert run_cli("verify-bundle", tmp_path / "bundle").code == 0
    lines = (tmp_path / "bundle" / "evidence" / "entries.jsonl").read_text().splitlines()
    bodies = [json.loads(base64.b64decode(json.loads(x)["canonical"]))["body"] for x in lines]
    assert any("successor_of" in b for b in bodies) and any("successor" in b for b in bodies)
    assert PASSPHRASE


def test_keys_list_says_which_keys_can_sign_here(tmp_path):
    vault = _vault(tmp_path)
    _add(vault, "Lawyer B", B_PASS)
    other = CustodianKey.generate("Court registry")
    (tmp_path / "c.pem").write_bytes(other.public.to_pem())
    assert run_cli("keys", "add", "Court registry", "--public-key", tmp_path / "c.pem", vault=vault).code == 0
    assert run_cli("keys", "revoke", "Lawyer B", "--reason", "left the team", vault=vault).code == 0
    rows = {k["name"]: (k["private_key_here"], k["usable_here"]) for k in run_cli("keys", "--json", vault=vault).json()}
    assert rows == {"Team A": (True, True), "Lawyer B": (True, False), "Court registry": (False, False)}
    human = run_cli("keys", vault=vault, env={"COLUMNS": "250"}).stdout
    assert "no (revoked)" in human and "no (private key held elsewhere)" in human
