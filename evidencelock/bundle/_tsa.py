"""RFC 3161 timestamp check for a bundle's checkpoint (minimal; see evidencelock/timestamp.py).

The token is a DER ``TimeStampResp`` over the exact bytes of ``evidence/checkpoint.txt``; the
TSA chain comes from the bundle (``evidence/tsa-chain.pem``), so the result says the token is
*consistent* with that chain.  Pinning the TSA's root is the reader's job (reported).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from ..errors import FormatError, ProofError

__all__ = ["TimestampInfo", "verify_timestamp"]


@dataclass(frozen=True)
class TimestampInfo:
    gen_time: datetime
    tsa: str
    root_fingerprint: str  # SHA-256 of the DER root certificate used
    serial: int


def verify_timestamp(tsr: bytes, chain_pem: bytes, message: bytes) -> TimestampInfo:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from rfc3161_client import VerifierBuilder, decode_timestamp_response
    from rfc3161_client.errors import VerificationError

    try:
        resp = decode_timestamp_response(tsr)
    except Exception as exc:  # the decoder raises several types on garbage
        if "InvalidSetOrdering" in str(exc):
            # OpenSSL's `ts -reply -chain` writes the certificate SET unsorted (not DER); the
            # Rust decoder refuses it.  Fall back to `openssl ts -verify` for such tokens.
            return _verify_with_openssl(tsr, chain_pem, message)
        raise FormatError(f"timestamp is not a DER RFC 3161 TimeStampResp: {exc}", subject="evidence/timestamp.tsr") from None
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise FormatError(f"TSA chain is not PEM certificates: {exc}", subject="evidence/tsa-chain.pem") from None
    roots = [c for c in certs if c.issuer == c.subject]
    others = [c for c in certs if c.issuer != c.subject]
    if not roots:
        raise ProofError("TSA chain has no self-signed root certificate", subject="evidence/tsa-chain.pem")
    builder = VerifierBuilder(roots=roots, intermediates=others)
    try:
        builder.build().verify_message(resp, message)
    except VerificationError as exc:
        raise ProofError(f"RFC 3161 token does not verify over the checkpoint: {exc}", subject="evidence/timestamp.tsr",
                         hint="the token, the checkpoint or the chain may have been modified") from None
    except Exception as exc:  # noqa: BLE001 - untrusted DER reaches native code
        raise ProofError(f"RFC 3161 token unusable: {exc}", subject="evidence/timestamp.tsr") from None
    info = resp.tst_info
    expected = hashlib.sha256(message).digest()
    if bytes(info.message_imprint.message) != expected:  # belt and braces; the verifier checks it too
        raise ProofError(f"message imprint mismatch: expected={expected.hex()} "
                         f"found={bytes(info.message_imprint.message).hex()}", subject="evidence/timestamp.tsr")
    signer = others[0] if others else roots[0]
    tsa_name = signer.subject.rfc4514_string()
    fp = hashlib.sha256(roots[0].public_bytes(serialization.Encoding.DER)).hexdigest()
    return TimestampInfo(info.gen_time, tsa_name, fp, int(info.serial_number))


def _verify_with_openssl(tsr: bytes, chain_pem: bytes, message: bytes) -> TimestampInfo:
    import re
    import subprocess
    import tempfile
    from datetime import datetime, timezone
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with tempfile.TemporaryDirectory(prefix="evidencelock-ts-") as d:
        files = {"tsr": tsr, "chain": chain_pem, "data": message}
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        try:
            v = subprocess.run(["openssl", "ts", "-verify", "-data", "data", "-in", "tsr", "-CAfile", "chain",
                                "-untrusted", "chain"], cwd=d, capture_output=True, text=True, timeout=60)
            t = subprocess.run(["openssl", "ts", "-reply", "-in", "tsr", "-text"], cwd=d, capture_output=True, text=True,
                               timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProofError(f"token needs `openssl ts -verify`, which could not run: {exc}",
                             subject="evidence/timestamp.tsr") from None
    if v.returncode != 0 or "Verification: OK" not in v.stdout:
        raise ProofError(f"RFC 3161 token does not verify over the checkpoint (openssl): {v.stderr.strip()[-300:]}",
                         subject="evidence/timestamp.tsr", hint="the token, the checkpoint or the chain may have been modified")
    m = re.search(r"Time stamp: (.+)", t.stdout)
    tsa = re.search(r"TSA: (.+)", t.stdout)
    serial = re.search(r"Serial number: (0x[0-9A-Fa-f]+|[0-9]+)", t.stdout)
    when = datetime.strptime(m.group(1).strip().replace(" GMT", ""), "%b %d %H:%M:%S %Y").replace(tzinfo=timezone.utc) \
        if m else datetime.fromtimestamp(0, timezone.utc)
    certs = x509.load_pem_x509_certificates(chain_pem)
    root = next(c for c in certs if c.issuer == c.subject)
    fp = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    return TimestampInfo(when, tsa.group(1).strip() if tsa else "unknown TSA", fp,
                         int(serial.group(1), 0) if serial else 0)
