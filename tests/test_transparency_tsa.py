"""Checkpoint timestamps against real local TSAs (openssl ts -reply): several TSAs, failures, offline flow."""

from __future__ import annotations

import base64
import json
import socket
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import update

import tsa as tsa_mod  # tests/tsa.py: the local TSA fixture module
from conftest import Clock, run_cli
from evidencelock import schema, timestamp
from evidencelock import transparency as tr
from evidencelock.audit import verify_vault
from evidencelock.keys import CustodianKey
from evidencelock.vault import Vault


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tsa_mod.Pki:
    return tsa_mod.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def chain(pki: tsa_mod.Pki) -> Path:
    path = pki.dir / "tsa-chain.pem"
    path.write_bytes(pki.tsa_cert.read_bytes() + pki.ca_cert.read_bytes())
    return path


@pytest.fixture
def server(pki: tsa_mod.Pki):
    with tsa_mod.serve(pki) as running:
        yield running


def _real_now() -> datetime:
    return datetime.now(timezone.utc)


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: connection refused
    return f"http://127.0.0.1:{port}/tsr"


def _fill(vault: Vault, key: CustodianKey, clock: Clock) -> Path:
    for i in range(3):
        vault.append(key, now=clock(), type="annotate", case="C-1", body={"text": f"n{i}"})
    root = vault.root
    vault.close()
    return root


def test_two_tsas_one_down_keeps_the_token_of_the_other(vault, key, clock, server, chain, pki):
    vp = _fill(vault, key, clock)
    res = run_cli("checkpoint", "--tsa", _dead_url(), "--tsa", server.url, "--tsa-cert", chain, "--tsa-timeout", "5",
                  "--json", vault=vp)
    assert res.code == 0, res.stderr
    data = res.json()
    ok = [t for t in data["tsa"] if t["ok"]]
    failed = [t for t in data["tsa"] if not t["ok"]]
    assert len(ok) == 1 and "Test TSA" in ok[0]["tsa"]
    assert len(failed) == 1 and "cannot reach the TSA" in failed[0]["error"]
    with Vault.open(vp) as v:
        cp = tr.get_checkpoint(v, data["id"])
        assert len(cp.tokens) == 1 and cp.tokens[0]["chain"]
        report = verify_vault(v)
        assert report.ok and report.checkpoints_checked == 1, report.findings
        # The token stamps SHA-256 of the checkpoint body: check it as a court expert would.
        info = timestamp.verify_token(base64.b64decode(cp.tokens[0]["token"]), cp.body,
                                      tsa_certificate_pem=pki.tsa_cert.read_bytes(),
                                      root_certificates_pem=[pki.ca_cert.read_bytes()], now=_real_now())
        assert info.hash_algorithm == "sha256"
        entry = json.loads(list(v.ledger.rows())[-1].canonical)
        assert entry["type"] == "checkpoint" and entry["body"]["tsa_failed"] and entry["body"]["tree_size"] == 4


def test_every_tsa_failing_exits_2_but_keeps_the_signed_checkpoint(vault, key, clock, server):
    vp = _fill(vault, key, clock)
    res = run_cli("checkpoint", "--tsa", _dead_url(), "--tsa-timeout", "5", vault=vp)
    assert res.code == 2 and "every TSA failed" in res.stderr
    server.mode = "garbage"
    res = run_cli("checkpoint", "--tsa", server.url, "--json", vault=vp)
    assert res.code == 2 and "not a DER RFC 3161 TimeStampResp" in res.stdout
    server.mode = "error"
    res = run_cli("checkpoint", "--tsa", server.url, "--json", vault=vp)
    assert res.code == 2 and "HTTP 500" in res.stdout
    with Vault.open(vp) as v:
        kept = tr.list_checkpoints(v)
        assert len(kept) == 3 and not any(c.tokens for c in kept)
        assert verify_vault(v).ok


def test_tsa_stamping_another_hash_is_refused(vault, key, clock, server, monkeypatch):
    real = tsa_mod.openssl_reply
    monkeypatch.setattr(tsa_mod, "openssl_reply", lambda pki, query: real(pki, timestamp.make_request(b"other data")))
    vp = _fill(vault, key, clock)
    res = run_cli("checkpoint", "--tsa", server.url, "--json", vault=vp)
    assert res.code == 2
    assert "TSA stamped another hash" in res.stdout


def test_offline_tsq_then_attach_tsr(vault, key, clock, pki, chain, tmp_path: Path):
    vp = _fill(vault, key, clock)
    res = run_cli("checkpoint", "--tsq-out", tmp_path / "cp.tsq", "--json", vault=vp)
    assert res.code == 0, res.stderr
    cp_id = res.json()["id"]
    # A response to some other request (e.g. another checkpoint's .tsq): refused, nothing attached.
    other = tsa_mod.openssl_reply(pki, timestamp.make_request(b"another checkpoint\n"))
    (tmp_path / "other.tsr").write_bytes(other)
    bad = run_cli("timestamp-attach", str(cp_id), tmp_path / "other.tsr", vault=vp)
    assert bad.code == 1 and "does not answer this checkpoint's request" in bad.stderr
    (tmp_path / "garbage.tsr").write_bytes(b"\x30\x03garbage")
    assert run_cli("timestamp-attach", str(cp_id), tmp_path / "garbage.tsr", vault=vp).code == 2
    # Days later, with a connection: the field team's .tsq answered by the TSA.
    (tmp_path / "cp.tsr").write_bytes(tsa_mod.openssl_reply(pki, (tmp_path / "cp.tsq").read_bytes()))
    good = run_cli("timestamp-attach", str(cp_id), tmp_path / "cp.tsr", "--tsa-cert", chain, "--json", vault=vp)
    assert good.code == 0, good.stderr
    assert "Test TSA" in good.json()["attached"]["tsa"]
    with Vault.open(vp) as v:
        cp = tr.get_checkpoint(v, cp_id)
        assert len(cp.tokens) == 1 and not cp.pending_requests
        assert verify_vault(v).ok


def test_swapped_token_is_found_by_verify(vault: Vault, key: CustodianKey, clock: Clock, server, chain):
    for i in range(2):
        vault.append(key, now=clock(), type="annotate", case="C-1", body={"text": str(i)})
    # Tokens are verified at creation against the real clock: the TSA's genTime is real time.
    a = tr.create_checkpoint(vault, key, now=_real_now(), tsa_urls=[server.url], tsa_certificates=[chain.read_bytes()])
    b = tr.create_checkpoint(vault, key, now=_real_now(), tsa_urls=[server.url])
    assert not a.tsa_all_failed and not b.tsa_all_failed
    # Move checkpoint A's token onto checkpoint B: it stamps another body.
    with vault.ledger.engine.begin() as conn:
        conn.execute(update(schema.checkpoints).where(schema.checkpoints.c.id == b.checkpoint.id)
                     .values(timestamps_json=json.dumps(list(a.checkpoint.timestamps))))
    report = verify_vault(vault)
    bad = [f for f in report.errors if f.code == "checkpoint-timestamp-invalid"]
    assert len(bad) == 1 and f"checkpoint #{b.checkpoint.id}" in bad[0].subject
    assert "stamps another hash" in bad[0].message or "imprint mismatch" in bad[0].message
