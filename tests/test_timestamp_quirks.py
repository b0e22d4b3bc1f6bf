"""Timestamps from the TSAs people use (issue 11): real ``openssl ts -reply`` TSAs with their quirks.

- a TSA that embeds its chain (``certs = …``, ``ess_cert_id_chain = yes``): signer first, so the
  SignedData certificates SET is not DER-sorted (rfc3161-client alone refuses it: InvalidSetOrdering);
- the leaf NOT first in that SET;
- no embedded certificate at all (certReq ignored);
- a TSA certificate that has expired since, but was valid at genTime (accepted), and one that had
  already expired at genTime (refused).

The token is kept exactly as received: stored, exported and verified bytes are the TSA's bytes
(docs/transparency.md §5.1).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import rfc3161_client

import tsa as tsa_mod  # tests/tsa.py: the local TSA fixture module
from conftest import Clock, run_cli
from evidencelock import timestamp
from evidencelock import transparency as tr
from evidencelock.errors import FormatError, ProofError
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey
from evidencelock.vault import Vault

DATA = b"evidencelock.example/vault-7f3a\n7\nmMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=\n"
VECTOR_DIR = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "tsa-unsorted-certs"


@pytest.fixture(scope="module")
def cpki(tmp_path_factory: pytest.TempPathFactory) -> tsa_mod.Pki:
    """Root CA -> Intermediate CA -> "Chain TSA", embedding its chain like OpenSSL-based TSAs."""
    return tsa_mod.make_chain_pki(tmp_path_factory.mktemp("chainpki"))


@pytest.fixture(scope="module")
def chain_file(cpki: tsa_mod.Pki) -> Path:
    """What a user passes to --tsa-cert: the TSA certificate, then its CA chain."""
    assert cpki.intermediate_cert is not None
    path = cpki.dir / "tsa-chain.pem"
    path.write_bytes(cpki.tsa_cert.read_bytes() + cpki.intermediate_cert.read_bytes() + cpki.ca_cert.read_bytes())
    return path


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _verify(token: bytes, pki: tsa_mod.Pki, data: bytes = DATA, **kw) -> timestamp.TimestampInfo:
    kw.setdefault("now", _now())
    inter = [pki.intermediate_cert.read_bytes()] if pki.intermediate_cert else []
    return timestamp.verify_token(token, data, tsa_certificate_pem=pki.tsa_cert.read_bytes(),
                                  root_certificates_pem=[pki.ca_cert.read_bytes()],
                                  intermediate_certificates_pem=inter, **kw)


def _openssl_verify(token: bytes, pki: tsa_mod.Pki, tmp_path: Path, data: bytes = DATA) -> subprocess.CompletedProcess:
    (tmp_path / "body.txt").write_bytes(data)
    (tmp_path / "token.der").write_bytes(token)
    untrusted = tmp_path / "untrusted.pem"
    untrusted.write_bytes(pki.tsa_cert.read_bytes() + (pki.intermediate_cert.read_bytes() if pki.intermediate_cert else b""))
    return subprocess.run(["openssl", "ts", "-verify", "-data", "body.txt", "-in", "token.der", "-token_in",
                           "-CAfile", str(pki.ca_cert), "-untrusted", str(untrusted)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=30)


def _stamp(pki: tsa_mod.Pki, data: bytes = DATA) -> tuple[bytes, bytes, bytes]:
    """(query, response, token as received) from a real `openssl ts -reply`."""
    query = timestamp.make_request(data)
    tsr = tsa_mod.openssl_reply(pki, query)
    return query, tsr, timestamp.token_from_response(tsr, request_der=query)


# -- the library: parse leniently only what is not signed; keep the bytes ------------------------------
def test_openssl_tsa_embedding_its_chain_is_accepted_and_kept_byte_exact(cpki: tsa_mod.Pki, tmp_path: Path) -> None:
    query, tsr, token = _stamp(cpki)
    # The quirk is real: signer first, then the chain; strict DER parsing alone refuses it.
    _, _, elements = tsa_mod.certificate_elements(token)
    assert len(elements) == 3 and elements != sorted(elements)
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        rfc3161_client.decode_timestamp_response(tsr)
    # Kept exactly as received: the token is the TSA's own bytes, not our sorted parsing copy.
    assert tsr.endswith(token) and tsr.index(token) + len(token) == len(tsr)
    assert timestamp.der_sorted_certificates(token) != token
    info = _verify(token, cpki)
    assert "CN=Chain TSA" in info.tsa_name and info.hash_algorithm == "sha256"
    timestamp.check_chain_to_trusted_roots(cpki.tsa_cert.read_bytes(), [cpki.intermediate_cert.read_bytes()],
                                           [cpki.ca_cert.read_bytes()], at=info.time)
    # ... and it is the same token a court expert checks with openssl alone (VERIFY.md §6).
    result = _openssl_verify(token, cpki, tmp_path)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr


def test_leaf_not_first_in_the_certificate_set(cpki: tsa_mod.Pki, tmp_path: Path) -> None:
    _, _, token = _stamp(cpki)
    start, end, elements = tsa_mod.certificate_elements(token)
    leaf = elements[0]
    order = next(p for p in itertools.permutations(elements) if p[0] != leaf and list(p) != sorted(elements))
    shuffled = token[:start] + b"".join(order) + token[end:]  # the SET is unsigned: anyone may reorder it
    assert shuffled != token and len(shuffled) == len(token)
    assert "CN=Chain TSA" in _verify(shuffled, cpki).tsa_name
    assert _openssl_verify(shuffled, cpki, tmp_path).returncode == 0


def test_only_the_unsigned_certificate_set_is_tolerated(cpki: tsa_mod.Pki) -> None:
    """What an attacker may try with the leniency: every signed byte is still checked as received."""
    _, _, token = _stamp(cpki)
    start, end, elements = tsa_mod.certificate_elements(token)
    # A byte of TSTInfo changed (the serial number's last byte, right before genTime): signature fails.
    gen = token.index(b"\x18\x0f")  # GeneralizedTime YYYYMMDDHHMMSSZ, inside the signed eContent
    forged = bytearray(token)
    forged[gen - 1] ^= 0x01
    with pytest.raises(ProofError, match="signature or certificate"):
        _verify(bytes(forged), cpki)
    # A swapped embedded signer certificate (a byte of its signature changed): not the TSA we were given.
    leaf = bytearray(elements[0])
    leaf[-1] ^= 0x01
    swapped = token[:start] + bytes(leaf) + b"".join(elements[1:]) + token[end:]
    with pytest.raises(ProofError):
        _verify(swapped, cpki)
    # BER instead of DER (indefinite length) on the path to the SET: refused before any parsing.
    assert token[:2] == b"\x30\x82"
    ber = b"\x30\x80" + token[4:] + b"\x00\x00"
    with pytest.raises(FormatError, match="DER is required"):
        _verify(ber, cpki)
    # Trailing bytes after the token.
    with pytest.raises(FormatError, match="trailing"):
        _verify(token + b"\x00", cpki)


def test_token_without_embedded_certificate(cpki: tsa_mod.Pki, tmp_path: Path) -> None:
    query = timestamp.make_request(DATA)
    tsr = tsa_mod.openssl_reply(cpki, tsa_mod.strip_cert_req(query))  # a TSA that sends no certificate
    token = timestamp.token_from_response(tsr, request_der=query)
    with pytest.raises(StopIteration):
        tsa_mod.certificate_elements(token)  # no certificates [0] in SignedData at all
    assert "CN=Chain TSA" in _verify(token, cpki).tsa_name  # the chain comes from --tsa-cert / tsa-chain.pem
    other = tsa_mod.make_pki(tmp_path / "other")
    with pytest.raises(ProofError, match="signature or certificate"):
        timestamp.verify_token(token, DATA, tsa_certificate_pem=other.tsa_cert.read_bytes(),
                               root_certificates_pem=[other.ca_cert.read_bytes()], now=_now())


def test_expired_tsa_certificate_is_judged_at_gen_time(cpki: tsa_mod.Pki, tmp_path: Path) -> None:
    """docs/transparency.md §5.1: certificates must be valid at the token's genTime, not today."""
    now = _now()
    _, _, token = _stamp(cpki)
    # Ten years on the TSA certificate (3650 days) has expired; the token still proves its time.
    later = now + timedelta(days=20 * 365)
    info = _verify(token, cpki, now=later)
    timestamp.check_chain_to_trusted_roots(cpki.tsa_cert.read_bytes(), [cpki.intermediate_cert.read_bytes()],
                                           [cpki.ca_cert.read_bytes()], at=info.time)
    # A certificate that had ALREADY expired when the token was made: refused (OpenSSL signs anyway).
    dead = tsa_mod.make_tsa_cert_valid(tmp_path, "Expired TSA", tsa_mod.make_pki(tmp_path / "p"),
                                       not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    _, _, stale = _stamp(dead)
    with pytest.raises(ProofError, match="expired"):
        _verify(stale, dead)
    with pytest.raises(ProofError, match="not valid at the token's time"):
        timestamp.check_chain_to_trusted_roots(dead.tsa_cert.read_bytes(), [], [dead.ca_cert.read_bytes()],
                                               at=_now())


def test_docs_vector_unsorted_certificate_set() -> None:
    """docs/vectors/tsa-unsorted-certs/: a real OpenSSL token whose certificates SET is unsorted."""
    meta = json.loads((VECTOR_DIR / "vector.json").read_text())
    token = (VECTOR_DIR / "token.der").read_bytes()
    body = (VECTOR_DIR / "body.txt").read_bytes()
    assert hashlib.sha256(token).hexdigest() == meta["token_sha256"]
    assert timestamp.der_sorted_certificates(token).hex() == (VECTOR_DIR / "token-sorted.der").read_bytes().hex()
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        rfc3161_client.decode_timestamp_response(timestamp._wrap_token(token))  # noqa: SLF001
    chain = timestamp.load_tsa_certificates((VECTOR_DIR / "tsa-chain.pem").read_bytes())
    info = timestamp.verify_token(token, body, tsa_certificate_pem=chain.tsa_pem, root_certificates_pem=chain.roots_pem,
                                  intermediate_certificates_pem=chain.intermediates_pem,
                                  now=datetime.fromisoformat(meta["verify_at"]))
    assert info.time.isoformat() == meta["gen_time"]
    assert info.serial == meta["serial"] and info.policy == meta["policy"]
    root = timestamp.check_chain_to_trusted_roots(chain.tsa_pem, chain.intermediates_pem,
                                                  [(VECTOR_DIR / "root.pem").read_bytes()], at=info.time)
    assert root.subject.rfc4514_string() == meta["root_subject"]


# -- the commands: checkpoint --tsa, timestamp-attach, verify, export, verify-bundle --------------------
def _vault_with_item(vault: Vault, key: CustodianKey, clock: Clock, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "photo.txt").write_bytes(b"what happened at the checkpoint\n")
    ingest(vault, [src], key=key, case="C-1", now=clock, extract_media=False)
    root = vault.root
    vault.close()
    return root


def _exported_token(vp: Path, tmp_path: Path, root: Path) -> tuple[bytes, dict]:
    out = tmp_path / "bundle"
    res = run_cli("export", "--case", "C-1", "-o", out, "--no-report", vault=vp)
    assert res.code == 0, res.stderr
    check = run_cli("verify-bundle", out, "--tsa-root", root, "--json")
    assert check.code == 0, check.stdout + check.stderr
    return (out / "evidence/timestamp.tst").read_bytes(), check.json()


def _checks(report: dict) -> dict[str, bool]:
    return {c["name"]: c["ok"] for c in report["checks"] if c["name"].startswith("evidence-timestamp")}


def test_checkpoint_online_with_a_tsa_embedding_its_chain(vault, key, clock, tmp_path, cpki, chain_file):
    vp = _vault_with_item(vault, key, clock, tmp_path)
    with tsa_mod.serve(cpki) as server:
        res = run_cli("checkpoint", "--tsa", server.url, "--tsa-cert", chain_file, "--json", vault=vp)
    assert res.code == 0, res.stdout + res.stderr
    data = res.json()
    assert data["timestamped"] is True and "CN=Chain TSA" in data["tsa"][0]["tsa"]
    with Vault.open(vp) as v:
        stored = base64.b64decode(tr.get_checkpoint(v, data["id"]).tokens[0]["token"])
    assert tsa_mod.certificate_elements(stored)[2] != sorted(tsa_mod.certificate_elements(stored)[2])  # as received
    assert run_cli("verify", "--json", vault=vp).code == 0
    exported, report = _exported_token(vp, tmp_path, cpki.ca_cert)
    assert exported == stored  # exported unchanged
    assert _checks(report) == {"evidence-timestamp": True, "evidence-timestamp-request": True,
                               "evidence-timestamp-trust": True}


def test_offline_tsr_with_leaf_not_first_and_a_tsa_certificate_expired_since(vault, key, clock, tmp_path, cpki):
    """timestamp-attach of a .tsr whose TSA certificate expired between signing and attaching; then
    verify, export and verify-bundle: all judge the certificate at genTime."""
    vp = _vault_with_item(vault, key, clock, tmp_path)
    now = _now()
    short = tsa_mod.make_tsa_cert_valid(tmp_path, "Short TSA", cpki, not_before=now - timedelta(days=1),
                                        not_after=now + timedelta(seconds=4))
    res = run_cli("checkpoint", "--tsq-out", tmp_path / "cp.tsq", "--json", vault=vp)
    assert res.code == 0, res.stderr
    tsr = tsa_mod.openssl_reply(short, (tmp_path / "cp.tsq").read_bytes())  # signed while valid
    token = tsr[-len(timestamp.token_from_response(tsr)):]
    start, end, elements = tsa_mod.certificate_elements(token)
    assert len(elements) == 3
    order = next(p for p in itertools.permutations(elements) if p[0] != elements[0] and list(p) != sorted(elements))
    token = token[:start] + b"".join(order) + token[end:]
    (tmp_path / "cp.tsr").write_bytes(tsr[:-len(token)] + token)
    chain = tmp_path / "short-chain.pem"
    chain.write_bytes(short.tsa_cert.read_bytes() + cpki.intermediate_cert.read_bytes() + cpki.ca_cert.read_bytes())
    while _now() <= now + timedelta(seconds=5):  # the TSA certificate expires
        time.sleep(0.5)
    good = run_cli("timestamp-attach", str(res.json()["id"]), tmp_path / "cp.tsr", "--tsa-cert", chain, "--json",
                   vault=vp)
    assert good.code == 0, good.stdout + good.stderr
    assert "CN=Short TSA" in good.json()["attached"]["tsa"]
    assert run_cli("verify", "--json", vault=vp).code == 0
    exported, report = _exported_token(vp, tmp_path, cpki.ca_cert)
    assert exported == token  # the leaf-not-first order as received, not our sorted copy
    assert _checks(report)["evidence-timestamp-trust"] is True


def test_checkpoint_without_embedded_certificate_and_without_chain_says_what_is_missing(vault, key, clock, tmp_path,
                                                                                        cpki, chain_file):
    vp = _vault_with_item(vault, key, clock, tmp_path)
    with tsa_mod.serve(cpki) as server:
        server.mode = "nocert"
        with_chain = run_cli("checkpoint", "--tsa", server.url, "--tsa-cert", chain_file, "--json", vault=vp)
        assert with_chain.code == 0 and with_chain.json()["tsa"][0]["ok"], with_chain.stdout
        bare = run_cli("checkpoint", "--tsa", server.url, vault=vp)
    assert bare.code == 0, bare.stderr
    assert "not verified" in bare.stderr and "--tsa-cert" in bare.stderr
    out = tmp_path / "bundle"
    assert run_cli("export", "--case", "C-1", "-o", out, "--no-report", vault=vp).code == 0
    report = run_cli("verify-bundle", out, "--json").json()
    check = next(c for c in report["checks"] if c["name"] == "evidence-timestamp")
    assert check["ok"] and "NOT verified" in check["detail"] and "no TSA certificate chain" in check["detail"]


def test_checkpoint_without_tsa_says_not_timestamped(vault, key, clock, tmp_path):
    vp = _vault_with_item(vault, key, clock, tmp_path)
    human = run_cli("checkpoint", vault=vp)
    assert human.code == 0 and "not timestamped" in human.stderr
    data = run_cli("checkpoint", "--json", vault=vp).json()
    assert data["timestamped"] is False and data["tsa"] == []
    listing = run_cli("checkpoints", vault=vp)
    assert listing.code == 0 and listing.stdout.count("not timestamped") == 2
    rows = run_cli("checkpoints", "--json", vault=vp).json()
    assert [r["timestamped"] for r in rows] == [False, False]
