"""Regenerate docs/vectors/tsa-unsorted-certs/ (docs/transparency.md §5.1): a real token from
``openssl ts -reply`` with ``certs = …`` whose SignedData certificates SET is not DER-sorted.

    PYTHONPATH=. python3 tests/vectors/make_tsa_vector.py

The token is random each run (keys, nonce, time): regenerate only on purpose, and commit the files.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import tsa as tsa_mod  # noqa: E402

from evidencelock import timestamp  # noqa: E402

OUT = HERE.parent.parent / "docs" / "vectors" / "tsa-unsorted-certs"
BODY = b"evidencelock.example/vault-7f3a\n7\nmMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pki = tsa_mod.make_chain_pki(Path(tmp))
        assert pki.intermediate_cert is not None
        query = timestamp.make_request(BODY)
        token = timestamp.token_from_response(tsa_mod.openssl_reply(pki, query), request_der=query)
        start, end, elements = tsa_mod.certificate_elements(token)
        assert elements != sorted(elements), "expected OpenSSL's unsorted order (signer first)"
        chain = timestamp.load_tsa_certificates(pki.tsa_cert.read_bytes() + pki.intermediate_cert.read_bytes()
                                                + pki.ca_cert.read_bytes())
        info = timestamp.verify_token(token, BODY, tsa_certificate_pem=chain.tsa_pem, root_certificates_pem=chain.roots_pem,
                                      intermediate_certificates_pem=chain.intermediates_pem,
                                      now=datetime.now(timezone.utc))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "body.txt").write_bytes(BODY)
        (OUT / "token.der").write_bytes(token)
        (OUT / "token-sorted.der").write_bytes(timestamp.der_sorted_certificates(token))
        (OUT / "tsa-chain.pem").write_bytes(chain.pem)
        (OUT / "root.pem").write_bytes(pki.ca_cert.read_bytes())
        from cryptography import x509

        meta = {
            "description": "RFC 3161 TimeStampToken from `openssl ts -reply` with `certs = intermediate+root` and "
                           "`ess_cert_id_chain = yes`: SignedData.certificates holds TSA, intermediate, root in that "
                           "(non-DER) order. A verifier MUST accept it (the SET is unsigned) and MUST keep token.der "
                           "byte-exact; token-sorted.der is the parsing copy with only that SET in DER order.",
            "token_sha256": hashlib.sha256(token).hexdigest(),
            "certificates_offset": [start, end],
            "certificates_as_received": [x509.load_der_x509_certificate(e).subject.rfc4514_string() for e in elements],
            "gen_time": info.time.isoformat(),
            "serial": info.serial,
            "policy": info.policy,
            "tsa": info.tsa_name,
            "verify_at": (info.time + timedelta(days=1)).isoformat(),
            "root_subject": x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()).subject.rfc4514_string(),
        }
        (OUT / "vector.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
