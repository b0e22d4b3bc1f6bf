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
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Pki", "TsaServer", "make_pki", "make_tsa_cert", "serve", "openssl_reply"]


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca_cert: Path
    ca_key: Path
    tsa_cert: Path
    tsa_key: Path
    config: Path


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
        self.mode = "ok"  # "ok", "garbage" (200 with junk), "error" (HTTP 500)
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
                body = b"<html>not a timestamp</html>" if server.mode == "garbage" else openssl_reply(server.pki, query)
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
