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
