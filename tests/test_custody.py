"""Custody acts: enrolling a second custodian, transfers, revocation (real vault, real CLI)."""

from __future__ import annotations

from tests.conftest import PASSPHRASE, run_cli


def _setup(tmp_path):
    vault = tmp_path / "vault"
    src = tmp_path / "card"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg, still evidence")
    (src / "b.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    assert run_cli("init", "--custodian", "Team A", vault=vault).code == 0
    assert run_cli("ingest", src, "--case", "C1", "--no-media", vault=vault).code == 0
    return vault


def test_enrol_transfer_revoke_and_verify(tmp_path):
    vault = _setup(tmp_path)
    env_b = {"EVIDENCELOCK_NEW_PASSPHRASE": "lawyer passphrase"}
    r = run_cli("keys", "add", "Lawyer B", "--json", vault=vault, env=env_b)
    assert r.code == 0, r.stderr
    key_b = r.json()["key_id"]
    r = run_cli("transfer", "--case", "C1", "--to", "Lawyer B", "--note", "USB stick, sealed bag 17", "--json", vault=vault)
    assert r.code == 0, r.stderr
    assert len(r.json()["entries"]) == 2
    # Lawyer B acts with their own key and passphrase: accepts custody (issue 10), then hands back.
    r = run_cli("accept", "--case", "C1", "--custodian", "Lawyer B", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": "lawyer passphrase"})
    assert r.code == 0, r.stderr
    r = run_cli("transfer", "--case", "C1", "--to", "Team A", "--custodian", "Lawyer B", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": "lawyer passphrase"})
    assert r.code == 0, r.stderr
    log = run_cli("log", "--type", "transfer", "--json", vault=vault).json()
    key_a = log[0]["actor"]
    assert key_a != key_b
    assert [(e["actor"], e["body"]["to"]) for e in log] == [(key_a, key_b)] * 2 + [(key_b, key_a)] * 2
    assert len(run_cli("log", "--type", "transfer-accept", "--json", vault=vault).json()) == 2
    assert log[0]["body"]["note"] == "USB stick, sealed bag 17"
    assert run_cli("verify", vault=vault).code == 0

    r = run_cli("keys", "revoke", "Lawyer B", "--reason", "laptop seized", vault=vault)
    assert r.code == 0, r.stderr
    # A revoked key may not sign: refused with exit 2 and nothing recorded.
    before = len(run_cli("log", "--json", vault=vault).json())
    r = run_cli("transfer", "--case", "C1", "--to", "Team A", "--custodian", "Lawyer B", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": "lawyer passphrase"})
    assert r.code == 2
    assert "revoked" in r.stderr
    assert len(run_cli("log", "--json", vault=vault).json()) == before
    keys = run_cli("keys", "--json", vault=vault).json()
    assert [k["revoked_seq"] is not None for k in keys] == [False, True]
    assert run_cli("verify", vault=vault).code == 0


def test_transfer_to_unknown_custodian_is_bad_input(tmp_path):
    vault = _setup(tmp_path)
    r = run_cli("transfer", "--case", "C1", "--to", "Nobody", vault=vault)
    assert r.code == 2
    assert "Nobody" in r.stderr


def test_wrong_passphrase_for_new_custodian_enrolment_writes_nothing(tmp_path):
    vault = _setup(tmp_path)
    before = len(run_cli("log", "--json", vault=vault).json())
    r = run_cli("keys", "add", "Lawyer B", vault=vault,
                env={"EVIDENCELOCK_PASSPHRASE": "wrong " + PASSPHRASE, "EVIDENCELOCK_NEW_PASSPHRASE": "x"})
    assert r.code == 2
    assert "passphrase" in r.stderr
    assert len(run_cli("log", "--json", vault=vault).json()) == before
