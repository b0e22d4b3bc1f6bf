"""RFC 3161 timestamps against a real local TSA (openssl ts -reply behind http.server)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidencelock import timestamp
from evidencelock.errors import FormatError, InputError, ProofError, StorageError
import tsa as tsa_mod  # tests/tsa.py: the local TSA fixture module

DATA = b"evidencelock.example/vault-7f3a\n7\nmMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tsa_mod.Pki:
    return tsa_mod.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(pki: tsa_mod.Pki):
    with tsa_mod.serve(pki) as running:
        yield running


@pytest.fixture
def live(server: tsa_mod.TsaServer) -> tsa_mod.TsaServer:
    server.mode = "ok"
    return server


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _verify(token: bytes, data: bytes, pki: tsa_mod.Pki, **kw) -> timestamp.TimestampInfo:
    kw.setdefault("tsa_certificate_pem", pki.tsa_cert.read_bytes())
    kw.setdefault("root_certificates_pem", [pki.ca_cert.read_bytes()])
    kw.setdefault("now", _now())
    return timestamp.verify_token(token, data, **kw)


def test_make_request_is_sha256_with_nonce_and_cert_req() -> None:
    from rfc3161_client import _rust

    a, b = timestamp.make_request(DATA), timestamp.make_request(DATA)
    req = _rust.parse_timestamp_request(a)
    assert req.message_imprint.message == hashlib.sha256(DATA).digest()
    assert req.message_imprint.hash_algorithm.dotted_string == "2.16.840.1.101.3.4.2.1"
    assert req.cert_req and req.nonce is not None
    assert req.nonce != _rust.parse_timestamp_request(b).nonce  # fresh nonce each time
    with pytest.raises(InputError):
        timestamp.make_request(b"")


def test_good_token_from_live_tsa(live: tsa_mod.TsaServer, pki: tsa_mod.Pki) -> None:
    before = _now().replace(microsecond=0) - timedelta(seconds=2)
    token = timestamp.request_token(live.url, DATA, timeout=10)
    info = _verify(token, DATA, pki)
    assert info.hash_algorithm == "sha256"
    assert "CN=Test TSA" in info.tsa_name
    assert before <= info.time <= _now() + timedelta(seconds=2)
    assert info.policy == "1.3.6.1.4.1.99999.2.1"
    assert info.serial >= 1


def test_token_verifies_with_openssl_by_hand(live: tsa_mod.TsaServer, pki: tsa_mod.Pki, tmp_path: Path) -> None:
    """docs/transparency.md §5: a court expert can check our token with openssl alone."""
    token = timestamp.request_token(live.url, DATA, timeout=10)
    (tmp_path / "body.txt").write_bytes(DATA)
    (tmp_path / "token.der").write_bytes(token)
    result = subprocess.run(
        ["openssl", "ts", "-verify", "-data", "body.txt", "-in", "token.der", "-token_in",
         "-CAfile", str(pki.ca_cert), "-untrusted", str(pki.tsa_cert)],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr


def test_token_for_another_hash_names_both_imprints(live: tsa_mod.TsaServer, pki: tsa_mod.Pki) -> None:
    token = timestamp.request_token(live.url, DATA, timeout=10)
    other = DATA.replace(b"\n7\n", b"\n8\n")
    with pytest.raises(ProofError) as info:
        _verify(token, other, pki)
    text = str(info.value)
    assert f"expected={hashlib.sha256(other).hexdigest()}" in text
    assert f"found={hashlib.sha256(DATA).hexdigest()}" in text


def test_tampered_token_fails(live: tsa_mod.TsaServer, pki: tsa_mod.Pki) -> None:
    token = bytearray(timestamp.request_token(live.url, DATA, timeout=10))
    token[-10] ^= 0x01  # inside the CMS signature value
    with pytest.raises((ProofError, FormatError)):
        _verify(bytes(token), DATA, pki)


def test_garbage_answer_is_a_format_error_naming_the_url(live: tsa_mod.TsaServer) -> None:
    live.mode = "garbage"
    with pytest.raises(FormatError) as info:
        timestamp.request_token(live.url, DATA, timeout=10)
    assert live.url in str(info.value)


def test_http_error_is_a_storage_error(live: tsa_mod.TsaServer) -> None:
    live.mode = "error"
    with pytest.raises(StorageError, match="HTTP 500") as info:
        timestamp.request_token(live.url, DATA, timeout=10)
    assert live.url in str(info.value)


def test_tsa_down_is_a_storage_error_naming_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave the block: nothing listens there
    url = f"http://127.0.0.1:{port}/tsr"
    with pytest.raises(StorageError, match="cannot reach the TSA") as info:
        timestamp.request_token(url, DATA, timeout=5)
    assert url in str(info.value)
    with pytest.raises(InputError):
        timestamp.request_token("file:///etc/passwd", DATA)


def test_wrong_tsa_certificate_is_rejected(live: tsa_mod.TsaServer, pki: tsa_mod.Pki, tmp_path: Path) -> None:
    token = timestamp.request_token(live.url, DATA, timeout=10)
    impostor_cert, _ = tsa_mod.make_tsa_cert(tmp_path, "Impostor TSA", pki.ca_cert, pki.ca_key)
    with pytest.raises(ProofError, match="certificate"):
        _verify(token, DATA, pki, tsa_certificate_pem=impostor_cert.read_bytes())
    # A different trust root: the real TSA does not chain to it.
    other = tsa_mod.make_pki(tmp_path / "other")
    with pytest.raises(ProofError):
        _verify(token, DATA, pki, root_certificates_pem=[other.ca_cert.read_bytes()])
    with pytest.raises(InputError):
        _verify(token, DATA, pki, root_certificates_pem=[])
    with pytest.raises(FormatError):
        _verify(token, DATA, pki, tsa_certificate_pem=b"not a pem")


def test_token_from_the_future_is_rejected(live: tsa_mod.TsaServer, pki: tsa_mod.Pki) -> None:
    token = timestamp.request_token(live.url, DATA, timeout=10)
    with pytest.raises(ProofError, match="after now"):
        _verify(token, DATA, pki, now=_now() - timedelta(days=1))


def test_offline_tsq_tsr_flow(pki: tsa_mod.Pki, tmp_path: Path) -> None:
    tsq = tmp_path / "checkpoint.tsq"
    tsq.write_bytes(timestamp.make_request(DATA))
    # ... carried to a TSA by hand; `openssl ts -reply` plays the TSA ...
    tsr = tmp_path / "checkpoint.tsr"
    tsr.write_bytes(tsa_mod.openssl_reply(pki, tsq.read_bytes()))
    token = timestamp.token_from_response(tsr.read_bytes(), request_der=tsq.read_bytes())
    assert _verify(token, DATA, pki).hash_algorithm == "sha256"
    # A .tsr for another request (other data, other nonce) is refused when matched to the .tsq.
    other_tsr = tsa_mod.openssl_reply(pki, timestamp.make_request(b"something else"))
    with pytest.raises(ProofError, match="imprint"):
        timestamp.token_from_response(other_tsr, request_der=tsq.read_bytes())
    same_data_other_nonce = tsa_mod.openssl_reply(pki, timestamp.make_request(DATA))
    with pytest.raises(ProofError, match="nonce"):
        timestamp.token_from_response(same_data_other_nonce, request_der=tsq.read_bytes())
    with pytest.raises(FormatError):
        timestamp.token_from_response(b"\x30\x03garbage")
