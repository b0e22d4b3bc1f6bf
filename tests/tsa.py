"""A real RFC 3161 time-stamp authority for tests: an openssl CA, a TSA certificate and
``openssl ts -reply`` behind a tiny ``http.server`` on 127.0.0.1 (random port), in a thread.

Usage (see tests/test_timestamp.py)::

    pki = make_pki(tmp_path)          # skips the test if openssl is missing
    with serve(pki) as tsa:           # tsa.url, tsa.mode = "ok" | "garbage" | "error"
        ...
"""

from __future__ import annotations

import contextlib
import http.server
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

__all__ = ["Pki", "TsaServer", "make_pki", "make_chain_pki", "make_tsa_cert", "serve", "openssl_reply",
           "strip_cert_req", "certificate_elements"]


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca_cert: Path
    ca_key: Path
    tsa_cert: Path
    tsa_key: Path
    config: Path
    intermediate_cert: Path | None = None  # make_chain_pki only: Root CA -> this -> TSA


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed: cannot run a local TSA")
    return path


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run([_openssl(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr}")


def make_tsa_cert(directory: Path, name: str, ca_cert: Path, ca_key: Path, *, eku: str = "critical,timeStamping") -> tuple[Path, Path]:
    """A P-256 key and certificate for CN=``name`` issued by the CA, with the given EKU."""
    stem = name.replace(" ", "-")  # openssl treats some file arguments as URIs: avoid spaces
    key, csr, cert = directory / f"{stem}.key", directory / f"{stem}.csr", directory / f"{stem}.crt"
    ext = directory / f"{stem}.ext"
    ext.write_text(
        f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={eku}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
         "-out", str(csr), "-subj", f"/O=evidencelock tests/CN={name}", cwd=directory)
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
         "-out", str(cert), "-days", "3650", "-sha256", "-extfile", str(ext), cwd=directory)
    return cert, key


def make_pki(directory: Path) -> Pki:
    """Test CA + TSA certificate (extendedKeyUsage=critical,timeStamping) + ``openssl ts`` config."""
    _openssl()
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(ca_key),
         "-out", str(ca_cert), "-days", "3650", "-sha256", "-subj", "/O=evidencelock tests/CN=Test Root CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         cwd=directory)
    tsa_cert, tsa_key = make_tsa_cert(directory, "Test TSA", ca_cert, ca_key)
    (directory / "tsaserial").write_text("01\n")
    config = directory / "tsa.cnf"
    config.write_text(
        f"""[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
serial = {directory / 'tsaserial'}
crypto_device = builtin
signer_cert = {tsa_cert}
signer_key = {tsa_key}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.2.1
other_policies = 1.3.6.1.4.1.99999.2.2
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 0
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
    )
    return Pki(directory, ca_cert, ca_key, tsa_cert, tsa_key, config)


def make_chain_pki(directory: Path) -> Pki:
    """Root CA -> Intermediate CA -> TSA, and a TSA that EMBEDS its chain the way OpenSSL-based TSAs
    do: ``certs = chain.pem`` and ``ess_cert_id_chain = yes``.  ``openssl ts -reply`` then puts the
    signer first and the chain after it: a certificates SET that is not DER-sorted."""
    pki = make_pki(directory)
    inter_key, inter_csr, inter = directory / "inter.key", directory / "inter.csr", directory / "inter.crt"
    ext = directory / "inter.ext"
    ext.write_text("basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(inter_key),
         "-out", str(inter_csr), "-subj", "/O=evidencelock tests/CN=Test Intermediate CA", cwd=directory)
    _run("x509", "-req", "-in", str(inter_csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key), "-CAcreateserial",
         "-out", str(inter), "-days", "3650", "-sha256", "-extfile", str(ext), cwd=directory)
    tsa_cert, tsa_key = make_tsa_cert(directory, "Chain TSA", inter, inter_key)
    embedded = directory / "embedded-chain.pem"
    embedded.write_bytes(inter.read_bytes() + pki.ca_cert.read_bytes())
    config = pki.config.read_text().replace(str(pki.tsa_cert), str(tsa_cert)).replace(str(pki.tsa_key), str(tsa_key))
    config = config.replace("ess_cert_id_chain = no", "ess_cert_id_chain = yes") + f"certs = {embedded}\n"
    pki.config.write_text(config)
    return Pki(directory, pki.ca_cert, pki.ca_key, tsa_cert, tsa_key, pki.config, inter)


def strip_cert_req(query: bytes) -> bytes:
    """The same TimeStampReq (imprint, nonce) with certReq removed: a TSA that embeds no certificate.

    Our requests end with ``certReq BOOLEAN TRUE`` (01 01 ff) inside a short-form SEQUENCE."""
    assert query[0] == 0x30 and query[1] < 0x80 and query.endswith(b"\x01\x01\xff"), query.hex()
    inner = query[2:-3]
    return bytes([0x30, len(inner)]) + inner


def certificate_elements(token: bytes) -> tuple[int, int, list[bytes]]:
    """(start, end, elements) of SignedData.certificates in a DER token, found with ``openssl asn1parse``
    (an independent parser, so tests do not build their inputs with the code under test)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "token.der"
        path.write_bytes(token)
        listing = subprocess.run([_openssl(), "asn1parse", "-inform", "DER", "-in", str(path)], capture_output=True,
                                 text=True, timeout=60, check=True).stdout.splitlines()
    rows = []
    for line in listing:
        m = re.match(r"\s*(\d+):d=(\d+)\s+hl=(\d+)\s+l=\s*(\d+)\s+(.*)", line)
        assert m, line
        rows.append((int(m[1]), int(m[2]), int(m[3]), int(m[4]), m[5]))
    # ContentInfo(d0) > [0](d1) > SignedData(d2) > children at d3; certificates = the [0] at depth 3.
    certs = next(r for r in rows if r[1] == 3 and "cont [ 0 ]" in r[4])
    start, end = certs[0] + certs[2], certs[0] + certs[2] + certs[3]
    elements = [token[r[0]:r[0] + r[2] + r[3]] for r in rows if r[1] == 4 and start <= r[0] < end]
    return start, end, elements


def openssl_reply(pki: Pki, query: bytes) -> bytes:
    """Run ``openssl ts -reply`` on a DER TimeStampReq; return the DER TimeStampResp."""
    with tempfile.TemporaryDirectory(dir=pki.dir) as tmp:
        tsq, tsr = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
        tsq.write_bytes(query)
        _run("ts", "-reply", "-config", str(pki.config), "-queryfile", str(tsq), "-out", str(tsr), cwd=pki.dir)
        return tsr.read_bytes()


class TsaServer:
    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.mode = "ok"  # "ok", "nocert" (no certificate embedded), "garbage" (200 with junk), "error" (HTTP 500)
        self.requests: list[bytes] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", "0"))
                query = self.rfile.read(length)
                server.requests.append(query)
                if server.mode == "error":
                    self.send_error(500, "TSA broken")
                    return
                if server.mode == "garbage":
                    body = b"<html>not a timestamp</html>"
                else:
                    body = openssl_reply(server.pki, strip_cert_req(query) if server.mode == "nocert" else query)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tsr"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@contextlib.contextmanager
def serve(pki: Pki) -> Iterator[TsaServer]:
    tsa = TsaServer(pki)
    tsa.thread.start()
    try:
        yield tsa
    finally:
        tsa.httpd.shutdown()
        tsa.httpd.server_close()
        tsa.thread.join(timeout=5)


def make_tsa_cert_valid(directory: Path, name: str, pki: Pki, *, not_before: datetime, not_after: datetime) -> Pki:
    """A TSA certificate (critical timeStamping EKU) issued by the test root with the given validity, and a
    copy of the TSA config signing with it (for expired-certificate cases; openssl x509 3.0 cannot backdate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evidencelock tests"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    stem = name.replace(" ", "-")
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    config = directory / f"{stem}.cnf"
    config.write_text(pki.config.read_text().replace(str(pki.tsa_cert), str(cert_path))
                      .replace(str(pki.tsa_key), str(key_path)))
    return Pki(pki.dir, pki.ca_cert, pki.ca_key, cert_path, key_path, config, pki.intermediate_cert)
