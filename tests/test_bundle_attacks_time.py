"""Issue 9 item 7: time you can trust.  Each test performs the attack on a real exported bundle
(or a real vault) with real RFC 3161 tokens made by ``openssl`` and runs the real CLI.

* a self-made "TSA" (its own CA, from the attacker's laptop) stamps the checkpoint: its time must
  not be "Established" unless the user trusts its root (``--tsa-root``), and with the genuine root
  pinned it is refused;
* the same self-made TSA *backdates* the checkpoint: the entries it contains are dated after the
  token, which is refused even without ``--tsa-root``;
* a self-signed "TSA" certificate travelling with the token (the token verifier pools certificates
  into one trust set) is refused with the genuine root pinned;
* ``--tsa-policy``: a token under another policy is refused;
* a vault whose clock went backwards, or ran ahead of the TSA, exports a bundle that is refused.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import PASSPHRASE, run_cli
from evidencelock.bundle import export_bundle, verify_bundle
from evidencelock.ingest import ingest
from evidencelock.timestamp import make_request, token_from_response
from test_bundle_support import LocalTSA, bag, build_vault, exported, regen_tag_manifests  # noqa: F401
from tsa import make_pki, openssl_reply, serve

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl binary")

GENUINE_POLICY = "1.3.6.1.4.1.99999.2.1"  # tests/tsa.py default_policy


# -- an attacker's own timestamp authority ---------------------------------------------------------
def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        while p > 0x7F:
            p >>= 7
            chunk.append(0x80 | (p & 0x7F))
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def backdated_token(pki_dir: Path, cert: Path, key: Path, data: bytes, when: datetime) -> bytes:
    """An RFC 3161 TimeStampToken over SHA-256(data) with genTime ``when``, signed with ``key``:
    TSTInfo built by hand (RFC 3161 §2.4.2), wrapped in CMS SignedData by ``openssl cms -sign``
    with eContentType id-ct-TSTInfo.  What anyone with their own "TSA" certificate can make."""
    import hashlib

    imprint = _der(0x30, _der(0x30, _oid("2.16.840.1.101.3.4.2.1") + b"\x05\x00") + _der(0x04, hashlib.sha256(data).digest()))
    tst_info = _der(0x30, _der(0x02, b"\x01") + _oid(GENUINE_POLICY) + imprint + _der(0x02, b"\x2a")
                    + _der(0x18, when.strftime("%Y%m%d%H%M%SZ").encode()))
    (pki_dir / "tstinfo.der").write_bytes(tst_info)
    subprocess.run(["openssl", "cms", "-sign", "-binary", "-nodetach", "-in", "tstinfo.der", "-signer", str(cert),
                    "-inkey", str(key), "-econtent_type", "1.2.840.113549.1.9.16.1.4", "-md", "sha256",
                    "-outform", "DER", "-out", "token.der"], cwd=pki_dir, check=True, capture_output=True)
    return (pki_dir / "token.der").read_bytes()


def dated_pki(d: Path, not_before: datetime, *, cn: str = "Test TSA") -> tuple[Path, Path, Path]:
    """(ca.crt, tsa.crt, tsa.key): an attacker's own CA and TSA certificate (critical id-kp-timeStamping
    EKU), valid from ``not_before``, so a backdated token is valid at its own time."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    ca_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Root CA")])
    tsa_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    until = datetime.now(timezone.utc) + timedelta(days=30)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    tsa = (x509.CertificateBuilder().subject_name(tsa_name).issuer_name(ca_name).public_key(tsa_key.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(until)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
           .sign(ca_key, hashes.SHA256()))
    paths = (d / "ca.crt", d / "tsa.crt", d / "tsa.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(tsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def swap_timestamp(bag: Path, token: bytes, chain: bytes) -> None:
    """Replace the bundle's token and chain (files not pinned by bundle.json) and fix the tag manifests;
    the stored request (optional) goes too, as its nonce would betray the swap."""
    (bag / "evidence/timestamp.tsq").unlink(missing_ok=True)
    (bag / "evidence/timestamp.tst").write_bytes(token)
    (bag / "evidence/tsa-chain.pem").write_bytes(chain)
    regen_tag_manifests(bag)


def verify(bundle: Path, *args: str | Path):
    return run_cli("verify-bundle", bundle, *args)


def section(stdout: str, title: str) -> str:
    """The bullet lines under 'Established' or 'Not established' in the human output."""
    m = re.search(rf"^{title}\n(.*?)(?:\n\n|\Z)", stdout, flags=re.S | re.M)
    return m.group(1) if m else ""


@pytest.fixture
def genuine_root(exported, tmp_path) -> Path:
    """The genuine TSA's root, as a user obtains it from the authority itself."""
    p = tmp_path / "genuine-root.pem"
    p.write_bytes(exported["tsa"].pki.ca_cert.read_bytes())
    return p


# -- the genuine case: the checks can pass ----------------------------------------------------------
def test_genuine_timestamp_is_established_only_with_the_trusted_root(exported, genuine_root):
    bundle = exported["A"]
    p = verify(bundle)
    assert p.code == 0, p.stdout + p.stderr
    assert "existed no later than" not in section(p.stdout, "Established")
    assert "claimed by an untrusted TSA" in section(p.stdout, "Not established")
    p = verify(bundle, "--verbose", "--tsa-root", genuine_root)
    assert p.code == 0, p.stdout + p.stderr
    assert "existed no later than" in section(p.stdout, "Established") and "Test TSA" in section(p.stdout, "Established")
    assert "claimed by an untrusted TSA" not in p.stdout
    assert "ok   evidence-timestamp-trust" in p.stdout and "ok   evidence-time-order" in p.stdout
    data = run_cli("verify-bundle", bundle, "--tsa-root", genuine_root, "--tsa-policy", GENUINE_POLICY, "--json").json()
    assert data["ok"] and data["timestamp"]["trusted"] is True and data["timestamp"]["policy"] == GENUINE_POLICY


# -- a self-made TSA -------------------------------------------------------------------------------
def test_self_made_tsa_time_is_not_established(bag, genuine_root, tmp_path):
    """The attacker's own CA + TSA re-stamps the genuine checkpoint (current time): no key needed."""
    evil = make_pki(tmp_path / "evil")
    body = (bag / "evidence/checkpoint-body.txt").read_bytes()
    token = token_from_response(openssl_reply(evil, make_request(body)))  # a real `openssl ts -reply` token
    swap_timestamp(bag, token, evil.tsa_cert.read_bytes() + evil.ca_cert.read_bytes())
    p = verify(bag)
    # The time is NOT presented as a fact; and the exporter's certification, VERIFY.md and report
    # still describe the genuine token, which the bundle no longer carries: refused (§4.7 Human files).
    assert p.code == 1, p.stdout
    assert "existed no later than" not in section(p.stdout, "Established")
    assert any(ln.startswith("FAIL evidence-certification certification.md") for ln in p.stdout.splitlines()), p.stdout
    # With the genuine authority's root pinned, the self-made TSA is refused, by name.
    p = verify(bag, "--tsa-root", genuine_root)
    assert p.code == 1, p.stdout
    fail = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL evidence-timestamp-trust")]
    assert fail and "does not chain to any trusted root" in fail[0] and "evidence/timestamp.tst" in fail[0]
    assert "existed no later than" not in p.stdout and "FAILED" in p.stdout


def test_self_made_tsa_backdated_checkpoint_is_refused(bag, genuine_root, tmp_path):
    """The attacker's TSA backdates the checkpoint to 2010: entries it contains are dated later."""
    ca, cert, key = dated_pki(tmp_path / "evil", datetime(2009, 1, 1, tzinfo=timezone.utc))
    body = (bag / "evidence/checkpoint-body.txt").read_bytes()
    token = backdated_token(tmp_path / "evil", cert, key, body, datetime(2010, 1, 1, tzinfo=timezone.utc))
    swap_timestamp(bag, token, cert.read_bytes() + ca.read_bytes())
    for extra in ((), ("--tsa-root", genuine_root)):
        p = verify(bag, "--verbose", *extra)
        assert p.code == 1, p.stdout
        late = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL evidence-time-after-timestamp")]
        assert late and "entry 0" in late[0] and "2010-01-01T00:00:00+00:00" in late[0]
        assert "ok   evidence-timestamp " in p.stdout  # the token itself verifies: only the dates betray it
        assert "existed no later than" not in p.stdout
    assert "FAIL evidence-timestamp-trust" in p.stdout  # and with the root pinned, the TSA itself is refused


def test_backdated_token_by_a_trusted_tsa_is_still_refused(bag, tmp_path):
    """Even a token from an authority the user trusts (compromised or misconfigured) cannot date the
    checkpoint before the entries it contains."""
    ca, cert, key = dated_pki(tmp_path / "trusted", datetime(2019, 1, 1, tzinfo=timezone.utc))
    body = (bag / "evidence/checkpoint-body.txt").read_bytes()
    token = backdated_token(tmp_path / "trusted", cert, key, body, datetime(2020, 6, 1, tzinfo=timezone.utc))
    swap_timestamp(bag, token, cert.read_bytes() + ca.read_bytes())
    p = verify(bag, "--verbose", "--tsa-root", ca)
    assert p.code == 1, p.stdout
    assert "ok   evidence-timestamp-trust" in p.stdout  # the chain is trusted ...
    assert "FAIL evidence-time-after-timestamp" in p.stdout  # ... the time contradicts the record
    assert "existed no later than" not in p.stdout


def test_self_signed_tsa_certificate_is_refused_with_the_trusted_root(bag, exported, genuine_root, tmp_path):
    """A self-signed "TSA" certificate, followed by the genuine root to look the part: the token
    library trusts every certificate it is given, so only our own path walk refuses it."""
    d = tmp_path / "selfsigned"
    d.mkdir()
    key, cert = d / "tsa.key", d / "tsa.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/O=evidencelock tests/CN=Test TSA",
                    "-addext", "extendedKeyUsage=critical,timeStamping", "-addext", "keyUsage=critical,digitalSignature"],
                   check=True, capture_output=True)
    body = (bag / "evidence/checkpoint-body.txt").read_bytes()
    token = backdated_token(d, cert, key, body, datetime.now(timezone.utc).replace(microsecond=0))
    swap_timestamp(bag, token, cert.read_bytes() + exported["tsa"].pki.ca_cert.read_bytes())
    p = verify(bag)
    assert "existed no later than" not in p.stdout, p.stdout
    p = verify(bag, "--tsa-root", genuine_root)
    assert p.code == 1, p.stdout
    assert "FAIL evidence-timestamp" in p.stdout
    assert "existed no later than" not in p.stdout
    r = verify_bundle(bag, tsa_roots=[genuine_root.read_bytes()])
    if not [c for c in r.failures if c.name == "evidence-timestamp"]:  # the token library accepted it ...
        trust = [c for c in r.failures if c.name == "evidence-timestamp-trust"]  # ... our path walk did not
        assert trust and "CN=Test TSA" in trust[0].detail, r.failures


def test_token_under_another_policy_is_refused(exported, genuine_root):
    p = verify(exported["A"], "--tsa-root", genuine_root, "--tsa-policy", "1.3.6.1.4.1.99999.7.7")
    assert p.code == 1, p.stdout
    fail = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL evidence-timestamp-policy")]
    assert fail and "1.3.6.1.4.1.99999.7.7" in fail[0] and GENUINE_POLICY in fail[0]
    p = verify(exported["A"], "--tsa-root", genuine_root, "--tsa-policy", GENUINE_POLICY)
    assert p.code == 0, p.stdout


def test_bad_tsa_root_or_policy_is_bad_input(exported, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    p = verify(exported["A"], "--tsa-root", junk)
    assert p.code == 2 and "junk.pem" in p.stderr and "Traceback" not in p.stderr
    p = verify(exported["A"], "--tsa-policy", "not-an-oid")
    assert p.code == 2 and "not-an-oid" in p.stderr and "Traceback" not in p.stderr


def test_bundle_without_chain_is_refused_when_a_root_is_pinned(bag, genuine_root):
    (bag / "evidence/tsa-chain.pem").unlink()
    regen_tag_manifests(bag)
    p = verify(bag)
    # The time is not established; the certification's "timestamped by … at …" is no longer backed
    # by a verifiable token, so it is refused (§4.7 Human files).
    assert p.code == 1 and "existed no later than" not in section(p.stdout, "Established"), p.stdout
    assert any(ln.startswith("FAIL evidence-certification certification.md") for ln in p.stdout.splitlines()), p.stdout
    p = verify(bag, "--tsa-root", genuine_root)
    assert p.code == 1 and "FAIL evidence-timestamp-trust" in p.stdout, p.stdout


# -- the custodian's own clock ---------------------------------------------------------------------
def _small_case(root: Path, name: str, content: bytes) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / f"{name}.txt").write_bytes(content)
    return d


def test_entry_times_going_backwards_are_refused(tmp_path, monkeypatch):
    """A ledger whose times go backwards (written by an implementation without the §2.3 rule, or by
    an older version, here: the rule switched off while the laptop's clock is set back two days):
    the bundle is refused, both entries named."""
    from evidencelock.ledger import Ledger

    start = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    vault, clock = build_vault(tmp_path, start)
    key = vault.unlock(PASSPHRASE)
    ingest(vault, [_small_case(tmp_path, "one", b"first\n")], key=key, case="Case T", now=clock, extract_media=False)
    good = export_bundle(vault, case="Case T", out=tmp_path / "good", key=key, now=clock, report=False)
    clock.t = start - timedelta(days=2)  # the laptop's clock is set back two days
    monkeypatch.setattr(Ledger, "_last_time", staticmethod(lambda conn, tail: None))
    ingest(vault, [_small_case(tmp_path, "two", b"second\n")], key=key, case="Case T", now=clock, extract_media=False)
    bad = export_bundle(vault, case="Case T", out=tmp_path / "bad", key=key, now=clock, report=False)
    vault.close()
    assert run_cli("verify-bundle", good.path).code == 0
    p = run_cli("verify-bundle", bad.path)
    assert p.code == 1, p.stdout
    fail = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL evidence-time-order")]
    assert fail and "go backwards" in fail[0] and "2024-02-28" in fail[0]
    assert "VERIFIED" not in p.stdout


def test_clock_set_back_does_not_make_times_go_backwards(tmp_path):
    """docs/ledger-format.md §2.3: the writer never records an entry dated before its predecessor
    (a clock set back, or a writer that took its time before waiting for the lock): the entry gets
    its predecessor's time, and the bundle verifies."""
    start = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    vault, clock = build_vault(tmp_path, start)
    key = vault.unlock(PASSPHRASE)
    ingest(vault, [_small_case(tmp_path, "one", b"first\n")], key=key, case="Case T", now=clock, extract_media=False)
    last = vault.append(key, now=start + timedelta(hours=1), type="annotate", case="Case T", body={"text": "later"})
    late = vault.append(key, now=start - timedelta(days=2), type="annotate", case="Case T", body={"text": "clock back"})
    assert late.entry.time == last.entry.time
    clock.t = start - timedelta(days=2)  # the laptop's clock is set back two days
    ingest(vault, [_small_case(tmp_path, "two", b"second\n")], key=key, case="Case T", now=clock, extract_media=False)
    res = export_bundle(vault, case="Case T", out=tmp_path / "b", key=key, now=clock, report=False)
    vault.close()
    p = run_cli("verify-bundle", "--verbose", res.path)
    assert p.code == 0 and "ok   evidence-time-order" in p.stdout, p.stdout


def test_entries_dated_after_the_trusted_timestamp_are_refused(tmp_path):
    """The custodian's clock runs a day ahead; the genuine, trusted TSA stamps the real time: the
    entries claim to be later than the checkpoint that contains them."""
    vault, clock = build_vault(tmp_path, datetime.now(timezone.utc) + timedelta(days=1))
    key = vault.unlock(PASSPHRASE)
    ingest(vault, [_small_case(tmp_path, "one", b"first\n")], key=key, case="Case T", now=clock, extract_media=False)
    tsa = LocalTSA(tmp_path / "tsa")
    with serve(tsa.pki) as server:
        res = export_bundle(vault, case="Case T", out=tmp_path / "b", key=key, now=clock, report=False,
                            tsa_urls=[server.url], tsa_certificates=[tsa.chain])
    vault.close()
    root = tmp_path / "root.pem"
    root.write_bytes(tsa.pki.ca_cert.read_bytes())
    p = run_cli("verify-bundle", res.path, "--tsa-root", root)
    assert p.code == 1, p.stdout
    late = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL evidence-time-after-timestamp")]
    assert late and "entry 0" in late[0]
    assert "existed no later than" not in p.stdout
    r = verify_bundle(res.path, tsa_roots=[root.read_bytes()])
    assert {c.subject for c in r.failures if c.name == "evidence-time-after-timestamp"} >= {"entry 0", "entry 1"}


# -- nonce and stored request ------------------------------------------------------------------------
def test_token_swapped_for_another_genuine_token_fails_the_stored_request(bag, exported, genuine_root):
    """A second genuine token from the same trusted TSA over the same checkpoint (e.g. a later one,
    replayed): everything verifies except that it does not answer the request stored with it."""
    assert (bag / "evidence/timestamp.tsq").is_file()  # export keeps the request it sent
    p = verify(bag, "--verbose", "--tsa-root", genuine_root)
    assert p.code == 0 and "ok   evidence-timestamp-request" in p.stdout, p.stdout
    body = (bag / "evidence/checkpoint-body.txt").read_bytes()
    (bag / "evidence/timestamp.tst").write_bytes(exported["tsa"].token(body))
    regen_tag_manifests(bag)
    p = verify(bag, "--tsa-root", genuine_root)
    assert p.code == 1, p.stdout
    fail = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL evidence-timestamp-request")]
    assert fail and "nonce mismatch" in fail[0] and "evidence/timestamp.tsq" in fail[0]


# -- the same rules in the vault (`verify`) -----------------------------------------------------------
def _vault_with_stamped_checkpoint(tmp_path: Path, start: datetime):
    from conftest import Clock
    from evidencelock.vault import Vault

    clock = Clock(start)
    vp = tmp_path / "vault"
    Vault.init(vp, custodian="Field Team A", passphrase=PASSPHRASE, now=clock()).close()
    with Vault.open(vp, writable=True) as v:
        key = v.unlock(PASSPHRASE)
        for i in range(3):
            v.append(key, now=clock(), type="annotate", case="C-1", body={"text": f"n{i}"})
    pki = make_pki(tmp_path / "pki")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki.tsa_cert.read_bytes() + pki.ca_cert.read_bytes())
    with serve(pki) as server:
        p = run_cli("checkpoint", "--tsa", server.url, "--tsa-cert", chain, "--json", vault=vp)
    assert p.code == 0, p.stderr
    return vp, pki, p.json()["id"]


def _stamps(vp: Path, cp_id: int, change=None) -> list[dict]:
    """A checkpoint row's timestamp records, optionally edited in place (direct database write)."""
    from sqlalchemy import select, update

    from evidencelock import schema
    from evidencelock.vault import Vault

    with Vault.open(vp, writable=True) as v, v.ledger.engine.begin() as conn:
        row = schema.checkpoints.c.id == cp_id
        stamps = json.loads(conn.execute(select(schema.checkpoints.c.timestamps_json).where(row)).scalar_one())
        if change is not None:
            change(stamps)
            conn.execute(update(schema.checkpoints).where(row).values(timestamps_json=json.dumps(stamps)))
    return stamps


def test_vault_token_swapped_for_another_genuine_token_is_refused_by_verify(tmp_path):
    """Someone with write access to the database swaps a checkpoint's token for another genuine
    token over the same body: `verify` names the nonce mismatch with the stored request."""
    import base64

    vp, pki, cp_id = _vault_with_stamped_checkpoint(tmp_path, datetime.now(timezone.utc) - timedelta(minutes=1))
    assert run_cli("verify", vault=vp).code == 0
    stamps = _stamps(vp, cp_id)
    assert stamps[0].get("tsq"), "the request is stored with the token"
    from evidencelock import transparency as tr
    from evidencelock.vault import Vault

    with Vault.open(vp) as v:
        body = tr.get_checkpoint(v, cp_id).body
    other = token_from_response(openssl_reply(pki, make_request(body)))

    def swap(st):
        st[0]["token"] = base64.b64encode(other).decode()

    _stamps(vp, cp_id, swap)
    p = run_cli("verify", vault=vp)
    assert p.code == 1, p.stdout + p.stderr
    assert "checkpoint-timestamp-invalid" in p.stdout + p.stderr and "nonce mismatch" in p.stdout + p.stderr


def test_vault_clock_ahead_of_the_tsa_is_reported_by_verify(tmp_path):
    """The laptop clock runs a day ahead: the entries a stamped checkpoint covers are dated after
    the genuine TSA's time, and `verify` says so (before any bundle is made)."""
    vp, _, _ = _vault_with_stamped_checkpoint(tmp_path, datetime.now(timezone.utc) + timedelta(days=1))
    p = run_cli("verify", vault=vp)
    assert p.code == 1, p.stdout + p.stderr
    assert "checkpoint-timestamp-contradicts" in p.stdout + p.stderr


def test_vault_timestamp_record_without_a_token_is_refused(tmp_path):
    """A record of the undocumented "whole note" form (no `token`) is not accepted any more."""
    vp, _, cp_id = _vault_with_stamped_checkpoint(tmp_path, datetime.now(timezone.utc) - timedelta(minutes=1))

    def legacy(st):
        st[0]["response"] = st[0].pop("token")

    _stamps(vp, cp_id, legacy)
    p = run_cli("verify", vault=vp)
    assert p.code == 1 and "holds no TimeStampToken" in p.stdout + p.stderr, p.stdout + p.stderr


def test_tsa_certificate_issued_by_a_non_ca_leaf_of_the_trusted_root_is_refused(bag, exported, genuine_root, tmp_path):
    """The attacker holds some end-entity certificate from the trusted CA (not a CA itself) and uses
    its key to issue a "TSA" certificate of their own: chain = evil TSA, that leaf, genuine root."""
    from tsa import make_tsa_cert

    pki = exported["tsa"].pki
    d = tmp_path / "leafca"
    d.mkdir()
    leaf_cert, leaf_key = make_tsa_cert(d, "Some Leaf", pki.ca_cert, pki.ca_key)  # CA:FALSE, genuine issuer
    evil_cert, evil_key = make_tsa_cert(d, "Test TSA", leaf_cert, leaf_key)
    body = (bag / "evidence/checkpoint-body.txt").read_bytes()
    token = backdated_token(d, evil_cert, evil_key, body, datetime.now(timezone.utc).replace(microsecond=0))
    swap_timestamp(bag, token, evil_cert.read_bytes() + leaf_cert.read_bytes() + pki.ca_cert.read_bytes())
    p = verify(bag, "--tsa-root", genuine_root)
    assert p.code == 1, p.stdout
    assert "existed no later than" not in p.stdout
    assert "FAIL evidence-timestamp" in p.stdout


def test_chain_walk_accepts_only_paths_to_the_users_roots(exported, tmp_path):
    """The path walk itself (not the token library): genuine chain -> the root; a non-CA issuer, a
    self-made CA, or a certificate not valid at genTime -> refused."""
    from evidencelock.errors import ProofError
    from evidencelock.timestamp import check_chain_to_trusted_roots
    from tsa import make_tsa_cert

    pki = exported["tsa"].pki
    root = pki.ca_cert.read_bytes()
    now = datetime.now(timezone.utc)
    got = check_chain_to_trusted_roots(pki.tsa_cert.read_bytes(), [], [root], at=now)
    assert "Test Root CA" in got.subject.rfc4514_string()
    d = tmp_path / "w"
    d.mkdir()
    leaf, leaf_key = make_tsa_cert(d, "Some Leaf", pki.ca_cert, pki.ca_key)
    evil, _ = make_tsa_cert(d, "Evil TSA", leaf, leaf_key)
    other = make_pki(tmp_path / "other")
    now = datetime.now(timezone.utc)  # after every certificate above was made (validity starts at creation)
    with pytest.raises(ProofError, match="does not chain to any trusted root"):
        check_chain_to_trusted_roots(evil.read_bytes(), [leaf.read_bytes()], [root], at=now)
    with pytest.raises(ProofError, match="does not chain"):
        check_chain_to_trusted_roots(other.tsa_cert.read_bytes(), [other.ca_cert.read_bytes()], [root], at=now)
    with pytest.raises(ProofError, match="not valid at"):
        check_chain_to_trusted_roots(pki.tsa_cert.read_bytes(), [], [root], at=datetime(2001, 1, 1, tzinfo=timezone.utc))
