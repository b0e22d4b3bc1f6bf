"""RFC 3161 time-stamp tokens: proof from a third party that a checkpoint existed at a time.

Why: a signed checkpoint proves what the log contained, but our own clock proves nothing in
court.  An RFC 3161 time-stamp authority (TSA) signs ``(SHA-256 of the checkpoint body, time)``;
the token is stored next to the checkpoint and checked offline years later.

What is stamped: the exact checkpoint body bytes (docs/transparency.md §Timestamps) are
hashed with SHA-256 and that digest is the TimeStampReq ``messageImprint`` (RFC 3161 §2.4.1).

Online flow: :func:`request_token` (the only network IO in the verification core's
neighbourhood).  Offline flow: :func:`make_request` -> save as ``.tsq`` -> take it to a TSA ->
bring back the ``.tsr`` -> :func:`token_from_response`.  Either way, :func:`verify_token`
checks imprint, CMS signature, certificate chain (at the token's time) and time plausibility.
ASN.1 and CMS work is done by ``rfc3161-client``; this module only adds policy and errors.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import rfc3161_client
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from rfc3161_client import HashAlgorithm, PKIStatus, TimestampRequestBuilder, VerifierBuilder

from .errors import FormatError, InputError, ProofError, StorageError

__all__ = [
    "TimestampInfo",
    "make_request",
    "request_token",
    "request_token_and_query",
    "token_from_response",
    "verify_token",
    "check_token_imprint",
    "check_chain_to_trusted_roots",
    "request_facts",
    "TsaChain",
    "load_tsa_certificates",
    "MAX_RESPONSE_BYTES",
    "der_sorted_certificates",
]

MAX_RESPONSE_BYTES = 1 << 20  # a real TimeStampResp is a few KiB; refuse anything absurd
_HASHES = {
    "2.16.840.1.101.3.4.2.1": ("sha256", hashlib.sha256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashlib.sha384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashlib.sha512),
}
# DER of PKIStatusInfo { status granted(0) } (RFC 3161 §2.4.2): used to re-wrap a bare token.
_GRANTED_STATUS = bytes.fromhex("3003020100")


@dataclass(frozen=True)
class TimestampInfo:
    """The checked facts of a token (returned only after every check passed)."""

    time: datetime  # TSTInfo.genTime, UTC
    tsa_name: str  # TSTInfo.tsa if present, else the TSA certificate subject (RFC 4514)
    serial: int  # TSTInfo.serialNumber
    hash_algorithm: str  # imprint algorithm, e.g. "sha256"
    policy: str  # TSA policy OID (dotted)
    nonce: int | None = None  # TSTInfo.nonce, if the token carries one
    accuracy: timedelta = timedelta(0)  # TSTInfo.accuracy (RFC 3161 §2.4.2), zero when absent


def make_request(data: bytes) -> bytes:
    """DER TimeStampReq over SHA-256(``data``) with a random nonce and certReq=true (RFC 3161 §2.4.1)."""
    if not data:
        raise InputError("cannot timestamp empty data")
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    return request.as_bytes()


# -- tolerating an unsorted certificates SET (docs/transparency.md §5.1) -------------------
#
# rfc3161-client parses strict DER, where a SET OF must be sorted (X.690 §11.6).  OpenSSL's
# `ts -reply` with `certs = …` (and other TSAs) emits SignedData.certificates unsorted, signer
# first.  That SET is NOT covered by the CMS signature (RFC 5652 §5.1, §5.4: only the signed
# attributes are signed), so reordering it changes nothing a signature vouches for.  We make a
# parsing copy in which ONLY the elements of that SET are put in DER order: every other byte,
# the TSTInfo (eContent) and the signedAttrs included, is identical to what was received and is
# then parsed strictly by rfc3161-client.  The stored and exported token is always the bytes as
# received.  The walk to the SET is itself strict DER (definite, minimal lengths, low tag
# numbers), so a BER trick cannot make it look at other bytes than the strict parser does.

_MAX_EMBEDDED_CERTS = 64  # real TSAs embed 1-4 certificates


def _tlv(buf: bytes, pos: int, end: int, subject: str) -> tuple[int, int, int]:
    """(tag byte, content start, content end) of the DER TLV at ``pos``; strict: raises on BER."""
    if pos + 2 > end:
        raise FormatError("truncated ASN.1 element in the timestamp token", subject=subject)
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise FormatError("high-tag-number ASN.1 form where RFC 5652 has none", subject=subject)
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise FormatError("BER indefinite length in the timestamp token: DER is required (X.690 §10.1)",
                          subject=subject)
    else:
        count = first & 0x7F
        if count > 4 or pos + count > end:
            raise FormatError("ASN.1 length out of range in the timestamp token", subject=subject)
        length = int.from_bytes(buf[pos:pos + count], "big")
        if length < 0x80 or buf[pos] == 0:
            raise FormatError("non-minimal ASN.1 length in the timestamp token: DER is required (X.690 §10.1)",
                              subject=subject)
        pos += count
    if pos + length > end:
        raise FormatError("ASN.1 element runs past its container in the timestamp token", subject=subject)
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int, what: str, subject: str) -> tuple[int, int]:
    found, start, stop = _tlv(buf, pos, end, subject)
    if found != tag:
        raise FormatError(f"{what}: expected ASN.1 tag 0x{tag:02x} found 0x{found:02x}", subject=subject)
    return start, stop


def _token_span(tsr: bytes, subject: str) -> tuple[int, int] | None:
    """Where the TimeStampToken lies inside a TimeStampResp (RFC 3161 §2.4.2), or None if absent."""
    start, end = _expect(tsr, 0, len(tsr), 0x30, "TimeStampResp", subject)
    if end != len(tsr):
        raise FormatError("trailing bytes after the TimeStampResp", subject=subject)
    _, _, pos = _tlv(tsr, start, end, subject)  # PKIStatusInfo (parsed strictly later)
    if pos == end:
        return None
    _, _, stop = _tlv(tsr, pos, end, subject)
    if stop != end:
        raise FormatError("trailing bytes after the TimeStampToken", subject=subject)
    return pos, stop


def der_sorted_certificates(token: bytes, *, subject: str = "timestamp token") -> bytes:
    """A copy of the TimeStampToken ``token`` (DER CMS ContentInfo, RFC 5652 §3) in which only the
    elements of SignedData.certificates are in DER SET OF order (X.690 §11.6); every other byte
    unchanged.  For PARSING only: store and export ``token`` itself.  Returns ``token`` when
    there is nothing to sort."""
    start, end = _expect(token, 0, len(token), 0x30, "ContentInfo", subject)
    if end != len(token):
        raise FormatError("trailing bytes after the TimeStampToken", subject=subject)
    _, pos = _expect(token, start, end, 0x06, "ContentInfo.contentType", subject)
    explicit, end0 = _expect(token, pos, end, 0xA0, "ContentInfo.content [0]", subject)
    sd, sd_end = _expect(token, explicit, end0, 0x30, "SignedData", subject)
    _, pos = _expect(token, sd, sd_end, 0x02, "SignedData.version", subject)
    _, pos = _expect(token, pos, sd_end, 0x31, "SignedData.digestAlgorithms", subject)
    _, pos = _expect(token, pos, sd_end, 0x30, "SignedData.encapContentInfo", subject)
    if pos >= sd_end:
        raise FormatError("SignedData has no signerInfos", subject=subject)
    tag, c_start, c_end = _tlv(token, pos, sd_end, subject)
    if tag != 0xA0:  # certificates [0] IMPLICIT CertificateSet is OPTIONAL
        return token
    elements: list[bytes] = []
    at = c_start
    while at < c_end:
        _, _, stop = _tlv(token, at, c_end, subject)
        elements.append(token[at:stop])
        at = stop
        if len(elements) > _MAX_EMBEDDED_CERTS:
            raise FormatError(f"more than {_MAX_EMBEDDED_CERTS} embedded certificates", subject=subject)
    ordered = sorted(elements)
    if ordered == elements:
        return token
    return token[:c_start] + b"".join(ordered) + token[c_end:]


def _parse_response(tsr: bytes, subject: str) -> rfc3161_client.TimeStampResponse:
    if len(tsr) > MAX_RESPONSE_BYTES:
        raise FormatError(f"timestamp response is {len(tsr)} bytes, over {MAX_RESPONSE_BYTES}", subject=subject)
    try:
        span = _token_span(tsr, subject)
        if span is not None:  # §5.1: sort only the unsigned certificates SET, for the strict parser
            a, b = span
            tsr = tsr[:a] + der_sorted_certificates(tsr[a:b], subject=subject) + tsr[b:]
    except FormatError as exc:
        raise FormatError(f"not a DER RFC 3161 TimeStampResp: {exc.message}", subject=subject) from None
    try:
        return rfc3161_client.decode_timestamp_response(tsr)
    except ValueError as exc:
        raise FormatError(f"not a DER RFC 3161 TimeStampResp: {exc}", subject=subject) from None


def _token_as_received(tsr: bytes, subject: str) -> bytes:
    """The TimeStampToken bytes exactly as the TSA sent them (never the parsing copy)."""
    span = _token_span(tsr, subject)
    if span is None:
        raise FormatError("the TimeStampResp carries no TimeStampToken", subject=subject)
    return tsr[span[0]:span[1]]


def _check_against_request(response: rfc3161_client.TimeStampResponse, request_der: bytes, subject: str) -> None:
    try:
        request = rfc3161_client._rust.parse_timestamp_request(request_der)
    except ValueError as exc:
        raise FormatError(f"not a DER TimeStampReq: {exc}", subject=subject) from None
    info = response.tst_info
    expected, found = request.message_imprint.message, info.message_imprint.message
    if expected != found:
        raise ProofError(
            f"TSA stamped another hash: expected imprint={expected.hex()} found={found.hex()}", subject=subject
        )
    # RFC 3161 §2.4.2: the nonce MUST equal the request's; this defeats replayed responses.
    if request.nonce is not None and info.nonce != request.nonce:
        raise ProofError(f"nonce mismatch: expected={request.nonce} found={info.nonce}", subject=subject,
                         hint="the response may be replayed or belong to another request")


def token_from_response(tsr_bytes: bytes, *, request_der: bytes | None = None) -> bytes:
    """The TimeStampToken (DER CMS ContentInfo) inside a TimeStampResp (a ``.tsr`` file).

    Refuses a response whose status is not ``granted`` (RFC 3161 §2.4.2).  With
    ``request_der`` (the saved ``.tsq``), also checks the imprint and nonce match it.
    """
    subject = "timestamp response"
    response = _parse_response(tsr_bytes, subject)
    if response.status != PKIStatus.GRANTED:
        texts = "; ".join(response.status_string) or "no status text"
        raise StorageError(f"TSA refused the request: status={response.status} ({texts})", subject=subject)
    if request_der is not None:
        _check_against_request(response, request_der, subject)
    return _token_as_received(tsr_bytes, subject)


def request_token(url: str, data: bytes, *, timeout: float = 30.0) -> bytes:
    """Ask the TSA at ``url`` to stamp SHA-256(``data``) (RFC 3161 §3.4 over HTTP); return the token DER.

    Raises :class:`StorageError` when the TSA cannot be reached or refuses, and
    :class:`FormatError` when it answers something that is not a TimeStampResp.
    """
    return request_token_and_query(url, data, timeout=timeout)[0]


def request_token_and_query(url: str, data: bytes, *, timeout: float = 30.0) -> tuple[bytes, bytes]:
    """:func:`request_token`, also returning the DER TimeStampReq sent, so it can be stored with
    the token and its nonce checked again later (docs/transparency.md §5, step 5)."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise InputError(f"TSA URL must be http or https, found {url!r}")
    query = make_request(data)
    http_request = urllib.request.Request(
        url,
        data=query,
        method="POST",
        headers={"Content-Type": "application/timestamp-query", "Accept": "application/timestamp-reply"},
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as reply:  # noqa: S310 (scheme checked above)
            body = reply.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise StorageError(f"TSA answered HTTP {exc.code} {exc.reason}", subject=url,
                           hint="try again later or use another TSA (--tsa URL)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(f"cannot reach the TSA: {reason}", subject=url,
                           hint="check the network, or use the offline .tsq/.tsr flow") from None
    response = _parse_response(body, url)
    if response.status != PKIStatus.GRANTED:
        texts = "; ".join(response.status_string) or "no status text"
        raise StorageError(f"TSA refused the request: status={response.status} ({texts})", subject=url)
    _check_against_request(response, query, url)
    return _token_as_received(body, url), query


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _wrap_token(token_der: bytes) -> bytes:
    """TimeStampResp { status granted, token }: rfc3161-client parses responses, not bare tokens."""
    inner = _GRANTED_STATUS + token_der
    return b"\x30" + _der_length(len(inner)) + inner


def _load_certs(pems: Sequence[bytes], what: str) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for pem in pems:
        try:
            certs.extend(x509.load_pem_x509_certificates(pem))
        except ValueError as exc:
            raise FormatError(f"{what} is not a PEM certificate: {exc}") from None
    return certs


def verify_token(
    token_der: bytes,
    data: bytes,
    *,
    tsa_certificate_pem: bytes,
    root_certificates_pem: Sequence[bytes],
    intermediate_certificates_pem: Sequence[bytes] = (),
    now: datetime,
    max_clock_skew: timedelta = timedelta(minutes=5),
) -> TimestampInfo:
    """Check that ``token_der`` stamps SHA-256 (or the token's algorithm) of ``data``; return its facts.

    Checks, in order: the token parses; the message imprint equals the hash of ``data``
    (expected vs found in the error); the CMS signature verifies and the TSA certificate
    chains to one of the roots at the token's time (RFC 3161 §2.3: the certificate carries a
    critical id-kp-timeStamping EKU); the signer is ``tsa_certificate_pem``; and the token
    time is not after ``now`` + ``max_clock_skew``.  Raises :class:`ProofError` on any failure.
    """
    subject = "timestamp token"
    if len(token_der) > MAX_RESPONSE_BYTES:
        raise FormatError(f"timestamp token is {len(token_der)} bytes, over {MAX_RESPONSE_BYTES}", subject=subject)
    response = _parse_response(_wrap_token(token_der), subject)
    info = response.tst_info
    algorithm = info.message_imprint.hash_algorithm.dotted_string
    if algorithm not in _HASHES:
        raise ProofError(f"unsupported imprint hash algorithm {algorithm}", subject=subject)
    name, hasher = _HASHES[algorithm]
    expected = hasher(data).digest()
    found = info.message_imprint.message
    if expected != found:
        raise ProofError(
            f"message imprint mismatch ({name}): expected={expected.hex()} found={found.hex()}",
            subject=subject,
            hint="the token is for other data: the checkpoint or the token may have been swapped or modified",
        )
    tsa_certs = _load_certs([tsa_certificate_pem], "TSA certificate")
    if len(tsa_certs) != 1:
        raise FormatError(f"expected one TSA certificate, found {len(tsa_certs)}", subject=subject)
    roots = _load_certs(root_certificates_pem, "root certificate")
    if not roots:
        raise InputError("at least one trusted root certificate is needed to verify a timestamp", subject=subject)
    builder = VerifierBuilder().tsa_certificate(tsa_certs[0])
    for root in roots:
        builder = builder.add_root_certificate(root)
    for cert in _load_certs(intermediate_certificates_pem, "intermediate certificate"):
        builder = builder.add_intermediate_certificate(cert)
    try:
        builder.build().verify(response, expected)
    except rfc3161_client.VerificationError as exc:
        raise ProofError(
            f"timestamp signature or certificate check failed: {exc}",
            subject=subject,
            hint="the token was not issued by the expected TSA, or it was modified",
        ) from None
    gen_time = info.gen_time
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC time as now")
    if gen_time > now + max_clock_skew:
        raise ProofError(f"timestamp time {gen_time.isoformat()} is after now={now.isoformat()}", subject=subject,
                         hint="the TSA clock is wrong or the token is forged")
    tsa_name = info.name
    if tsa_name is not None and isinstance(tsa_name, x509.DirectoryName):
        display = tsa_name.value.rfc4514_string()
    elif tsa_name is not None:
        display = str(tsa_name.value)
    else:
        display = tsa_certs[0].subject.rfc4514_string()
    acc = info.accuracy
    accuracy = timedelta(0)
    if acc is not None:
        accuracy = timedelta(seconds=acc.seconds or 0, milliseconds=acc.millis or 0, microseconds=acc.micros or 0)
    return TimestampInfo(
        time=gen_time,
        tsa_name=display,
        serial=int(info.serial_number),
        hash_algorithm=name,
        policy=info.policy.dotted_string,
        nonce=None if info.nonce is None else int(info.nonce),
        accuracy=accuracy,
    )


def check_chain_to_trusted_roots(
    tsa_certificate_pem: bytes,
    intermediate_certificates_pem: Sequence[bytes],
    trusted_roots_pem: Sequence[bytes],
    *,
    at: datetime,
    subject: str = "timestamp token",
) -> x509.Certificate:
    """Walk issuer links from the TSA certificate through ``intermediate_certificates_pem`` to one
    of ``trusted_roots_pem`` (certificates the *user* trusts); return that root, else raise.

    Why a walk of our own: the token verifier pools the TSA certificate, intermediates and roots
    into one trust set, so a self-signed "TSA" or a self-made CA that travels with the token
    would be accepted as a trust anchor.  Here only ``trusted_roots_pem`` ends a path.  Each link
    is a signature check (``verify_directly_issued_by``); each certificate on the path must be
    valid at ``at`` (the token's genTime) and every issuer must be a CA (basicConstraints).
    """
    tsa = _load_certs([tsa_certificate_pem], "TSA certificate")
    roots = _load_certs(trusted_roots_pem, "trusted TSA root")
    inter = _load_certs(intermediate_certificates_pem, "intermediate certificate")
    if len(tsa) != 1 or not roots:
        raise InputError("a TSA certificate and at least one trusted root are needed", subject=subject)

    def valid_at(cert: x509.Certificate) -> bool:
        return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc

    def is_ca(cert: x509.Certificate) -> bool:
        try:
            return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            return False

    def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        if cert.issuer != issuer.subject or not is_ca(issuer) or not valid_at(issuer):
            return False
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    current = tsa[0]
    if not valid_at(current):
        raise ProofError(f"the TSA certificate was not valid at the token's time {at.isoformat()}", subject=subject)
    for _ in range(8):  # RFC 5280 paths of real TSAs are 2-4 certificates long
        root = next((r for r in roots if issued_by(current, r)), None)
        if root is not None:
            return root
        nxt = next((i for i in inter if i != current and issued_by(current, i)), None)
        if nxt is None:
            break
        current = nxt
    raise ProofError(
        f"the TSA certificate ({tsa[0].subject.rfc4514_string()}) does not chain to any trusted root "
        f"(trusted: {', '.join(r.subject.rfc4514_string() for r in roots)})",
        subject=subject,
        hint="the token may come from a self-made authority; its time is only that authority's claim",
    )


def request_facts(request_der: bytes, *, subject: str = "timestamp request") -> tuple[bytes, int | None, str | None]:
    """(imprint digest, nonce, requested policy OID) of a DER TimeStampReq (RFC 3161 §2.4.1)."""
    try:
        request = rfc3161_client._rust.parse_timestamp_request(request_der)
    except ValueError as exc:
        raise FormatError(f"not a DER TimeStampReq: {exc}", subject=subject) from None
    policy = request.policy.dotted_string if request.policy is not None else None
    nonce = None if request.nonce is None else int(request.nonce)
    return bytes(request.message_imprint.message), nonce, policy


def check_token_imprint(token_der: bytes, data: bytes, *, subject: str = "timestamp token") -> str:
    """Check only that ``token_der`` stamps the hash of ``data``; return the algorithm name.

    For a token whose TSA chain is not at hand: it proves which bytes the token is *about*,
    not who signed it or when (the CMS signature is NOT checked).  Callers must say so.
    """
    if len(token_der) > MAX_RESPONSE_BYTES:
        raise FormatError(f"timestamp token is {len(token_der)} bytes, over {MAX_RESPONSE_BYTES}", subject=subject)
    imprint = _parse_response(_wrap_token(token_der), subject).tst_info.message_imprint
    algorithm = imprint.hash_algorithm.dotted_string
    if algorithm not in _HASHES:
        raise ProofError(f"unsupported imprint hash algorithm {algorithm}", subject=subject)
    name, hasher = _HASHES[algorithm]
    expected, found = hasher(data).digest(), bytes(imprint.message)
    if expected != found:
        raise ProofError(f"message imprint mismatch ({name}): expected={expected.hex()} found={found.hex()}",
                         subject=subject,
                         hint="the token is for other data: the checkpoint or the token may have been swapped or modified")
    return name


@dataclass(frozen=True)
class TsaChain:
    """A TSA certificate with its chain (roots are the self-signed ones), from one PEM file."""

    tsa_pem: bytes
    roots_pem: tuple[bytes, ...]
    intermediates_pem: tuple[bytes, ...]
    pem: bytes  # the whole file, stored next to the token


def load_tsa_certificates(pem: bytes, *, subject: str = "TSA certificate") -> TsaChain:
    """Split a PEM file: the first certificate is the TSA's, self-signed ones are roots, others intermediates."""
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise FormatError(f"not PEM certificates: {exc}", subject=subject) from None
    if len(certs) < 2:
        raise FormatError(
            "the file must hold the TSA certificate followed by its CA certificate(s)",
            subject=subject,
            hint="e.g. cat tsa.crt ca.crt > tsa-chain.pem",
        )
    tsa, rest = certs[0], certs[1:]
    roots = tuple(c.public_bytes(Encoding.PEM) for c in rest if c.issuer == c.subject)
    inter = tuple(c.public_bytes(Encoding.PEM) for c in rest if c.issuer != c.subject)
    if not roots:
        raise FormatError("no self-signed root certificate among the CA certificates", subject=subject)
    return TsaChain(tsa.public_bytes(Encoding.PEM), roots, inter, pem)
