"""verify-bundle: check an untrusted evidence bundle offline (docs/bundle-format.md §5).

Two layers, each a list of named checks; every problem is collected, then the caller decides
(STYLE.md §6).  Nothing here raises for a problem *in* the bundle: only unusable input (not a
folder or zip, not a bag at all) raises :class:`InputError`.

* BagIt layer (RFC 8493): declaration, safe paths, completeness both ways, payload fixity
  for every payload manifest in one read per file, tag fixity, Payload-Oxum.
* Evidence layer: entries parse as canonical entries and match their by-hand copies; keys
  match their enrolment entries; every entry's Ed25519 signature under a key enrolled by an
  earlier included entry; an RFC 9162 inclusion proof per entry against the checkpoint; the
  checkpoint's signed-note signature, by a key not revoked inside its tree; the RFC 3161 token
  over the checkpoint; every payload file covered by an ingest entry with the same SHA-256 and
  size, and every digest such an entry records (BLAKE3 …) recomputed; the exporter's signature
  over bundle.json (an enrolled, unrevoked key), which pins the unsigned tag files (metadata,
  report, certification); with pins, the checkpoint and bundle.json signers are pinned keys.

The trusted part imports no database, no click, no media parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from collections.abc import Iterator  # _manifest_lines
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .. import checkpoint as cp_mod
from .. import merkle, timestamp
from ..checkpoint import Checkpoint, SignedNote
from ..entry import SignedEntry
from ..errors import EvidenceLockError, FormatError, InputError, SignatureError
from .. import _strictjson
from ..findings import SCHEMA, bundle_finding
from ..keys import PublicKey, key_id_for, public_key_from_pem, verify_ed25519
from ._paths import UnsafePath, check_bag_path, derivable_from
from .source import BagSource, Limits, open_source
from . import human

__all__ = ["Check", "BundleReport", "verify_bundle", "note_signer", "tsa_root_sha256", "BUNDLE_FORMAT",
           "BUNDLE_VERSION", "HASH_ALGORITHMS"]

BUNDLE_FORMAT = "evidencelock-bundle"
# Version 2 (issue 9): signed `record` of included entries, all four manifests, closed file list,
# bag-info bound to signed data.  Version 1 bundles cannot show completeness: refused, named.
BUNDLE_VERSION = 2
HASH_ALGORITHMS = {"sha256": 64, "sha512": 128, "sha384": 96, "sha224": 56, "sha1": 40, "md5": 32}
_MANIFEST = re.compile(r"\A(tag)?manifest-([a-z0-9]+)\.txt\Z")
# §2 manifest line: lowercase hex digest, exactly two spaces, the path taken literally; LF ends it.
_LINE = re.compile(r"\A([0-9a-f]+)  ([^ ].*)\Z", re.DOTALL)
# RFC 8493 §2.1.3 as other bagging tools write it; used only for a plain bag (no evidence/bundle.json).
_RFC_LINE = re.compile(r"\A([0-9A-Fa-f]+)[ \t]+\*?(.+)\Z")
_SEQ_FILE = re.compile(r"\Aevidence/entries/(0|[1-9][0-9]{0,18})\.(json|sig)\Z")
_KEY_FILE = re.compile(r"\Aevidence/keys/([0-9a-f]{64})\.pem\Z")
# 1 MiB reads into one reused buffer: large enough for few syscalls and to release the GIL, small
# enough that SHA-256 and then SHA-512 find it still in cache (4 MiB measured 25% slower here).
READ_CHUNK = 1 << 20


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
# No clock given: a token's time is not compared with "now" (verify_token needs a bound).
_NO_CLOCK = datetime(9999, 1, 1, tzinfo=timezone.utc)


def note_signer(note: SignedNote, keys: Iterable[PublicKey], name: str, *,
                revoked: Mapping[str, int] | None = None, pinned: set[str] | frozenset[str] = frozenset(),
                notices: list[str] | None = None) -> PublicKey:
    """The key that signed ``note`` under ``name``, decided independently of the order of its lines; else raise.

    bundle-format §4.4 / transparency §3: a line whose name and key ID match none of ``keys`` is
    ignored (witnesses).  A line by a key revoked at r < the note's tree size (``revoked``) is
    ignored, with a notice appended to ``notices``: it is neither accepted nor allowed to spoil
    the note.  Every other matching line MUST verify (one that does not rejects the note).  At
    least one verifying line by a known, unrevoked key is required; if ``pinned`` (key ids) is
    given and one of those verifies, it is the signer returned.  Otherwise the signer returned is
    the verifying key with the smallest key id (a stable choice, not the first line).
    """
    revoked = revoked or {}
    size = note.unverified_checkpoint.tree_size
    by_id: dict[bytes, dict[str, PublicKey]] = {}
    for k in keys:
        # A pinned PublicKey and its enrolled twin share a key id: the later (enrolled) name wins.
        by_id.setdefault(cp_mod.note_key_id(name, k.raw), {})[k.key_id] = k
    good: dict[str, PublicKey] = {}
    bad: list[str] = []
    ignored: list[str] = []
    for sig in note.signatures:
        cands = by_id.get(sig.key_id, {}) if sig.name == name else {}
        if not cands:
            continue  # unknown key: ignored (signed-note §Signatures)
        verified = None
        for k in cands.values():
            try:
                verify_ed25519(k.raw, note.unverified_body, sig.signature, subject="checkpoint")
                verified = k
                break
            except EvidenceLockError:
                continue
        live = [k for k in cands.values() if not (k.key_id in revoked and revoked[k.key_id] < size)]
        if not live:
            k = next(iter(cands.values()))
            ignored.append(f"entry {revoked[k.key_id]} revoked key {k.name!r} ({k.key_id[:16]}…) before this checkpoint "
                           f"(tree size {size}): its signature line was ignored")
            continue
        if verified is None:
            bad.append(", ".join(k[:16] + "…" for k in sorted(cands)))
        elif verified.key_id in {k.key_id for k in live}:
            good[verified.key_id] = verified
    if bad:
        raise SignatureError(f"a signature line of a known, unrevoked key does not verify (key {'; '.join(bad)}): every "
                             "such line MUST verify", hint="the checkpoint was altered or a forged line was added")
    if notices is not None:
        notices.extend(ignored)
    if not good:
        raise SignatureError(f"no valid signature by any known, unrevoked key under name {name!r}: found signers "
                             f"{[(s.name, s.key_id.hex()) for s in note.signatures]}"
                             + (f"; {'; '.join(ignored)}; a revoked key may not sign" if ignored else ""),
                             hint="the checkpoint was signed by a key that is not enrolled in this bundle, or revoked")
    for kid in sorted(good):
        if kid in pinned:
            return good[kid]
    return good[min(good)]


def _line_signature(note: SignedNote, name: str, key: PublicKey) -> bytes | None:
    """The signature on ``note``'s line for ``key`` under ``name`` (None without such a line)."""
    kid = cp_mod.note_key_id(name, key.raw)
    return next((s.signature for s in note.signatures if s.name == name and s.key_id == kid), None)


def tsa_root_sha256(chain: timestamp.TsaChain) -> str:
    """SHA-256 of the DER root certificate: what a reader compares with the TSA's published one."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(x509.load_pem_x509_certificate(chain.roots_pem[0]).public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Check:
    name: str  # stable: "bagit-…" for the BagIt layer, otherwise the evidence layer
    ok: bool
    detail: str
    subject: str = ""
    warning: bool = False  # issue 11: passed, but the reader must act (e.g. a consistency proof is missing)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "ok": self.ok, "detail": self.detail, "subject": self.subject}
        if self.warning:
            data["warning"] = True
        return data


@dataclass
class BundleReport:
    path: str
    checks: list[Check] = field(default_factory=list)
    kind: str = "unknown"  # evidence-bundle | bagit-only | unknown
    established: list[str] = field(default_factory=list)
    not_established: list[str] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    timestamp: dict[str, Any] | None = None
    custody: dict[str, Any] | None = None  # issue 10: custody derived from the verified entries only
    keys: dict[str, str] = field(default_factory=dict)
    case: str = ""
    payload_files: int = 0
    payload_bytes: int = 0
    verify_html: dict[str, Any] | None = None  # docs/browser-verifier.md: the carried browser verifier
    upstream: list[dict[str, Any]] = field(default_factory=list)  # §4.9: each earlier organisation's part
    custody_paths: list[dict[str, Any]] = field(default_factory=list)  # §4.9: A → B → C per received item
    exporter: dict[str, str] | None = None  # {"key_id", "name"} of the bundle.json signer, once its signature verifies
    # The Established lines that are about one payload file each (a subset of ``established``): the
    # one-screen summary counts them, --verbose lists them.  Not a separate JSON member.
    item_claims: list[str] = field(default_factory=list, repr=False)
    listed_sha256: dict[str, str] = field(default_factory=dict, repr=False)  # manifest-sha256.txt: payload path -> hex

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def bagit_ok(self) -> bool:
        return all(c.ok for c in self.checks if c.name.startswith("bagit"))

    @property
    def ok(self) -> bool:
        return not self.failures and self.kind == "evidence-bundle"

    def add(self, name: str, ok: bool, detail: str, subject: str = "", *, warning: bool = False) -> None:
        self.checks.append(Check(name, ok, detail, subject, warning and ok))

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.warning]

    def fail(self, name: str, detail: str, subject: str = "") -> None:
        self.add(name, False, detail, subject)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bundle": self.path,
            "kind": self.kind,
            "bagit_ok": self.bagit_ok,
            "case": self.case,
            "payload_files": self.payload_files,
            "payload_bytes": self.payload_bytes,
            "checks": [c.to_json() for c in self.checks],
            "established": self.established,
            "not_established": self.not_established,
            "checkpoint": self.checkpoint,
            "timestamp": self.timestamp,
            "custody": self.custody,
            "keys": self.keys,
            "items": self.items,
            "upstream": self.upstream,
            "custody_paths": self.custody_paths,
            "verify_html": self.verify_html,
            "exporter": self.exporter,
            # docs/findings.md §4: every failed check as a finding in the shape `verify --json` uses.
            "schema": SCHEMA,
            "findings": self.findings_json(),
        }

    def findings_json(self) -> list[dict[str, Any]]:
        by_path = {**self.listed_sha256,
                   **{i["path"]: i["digests"].get("sha256") for i in self.items if isinstance(i.get("digests"), dict)}}
        return [bundle_finding(c.name, c.detail, c.subject, by_path) for c in self.failures]


# ---------------------------------------------------------------------------------------------
def verify_bundle(
    path: str | os.PathLike[str],
    *,
    trusted_keys: Iterable[PublicKey | str] = (),
    checkpoint: bytes | None = None,
    limits: Limits = Limits(),
    jobs: int | None = None,
    now: datetime | None = None,
    tsa_roots: Iterable[bytes] = (),
    tsa_policies: Iterable[str] = (),
    source: BagSource | None = None,
    precomputed: Mapping[str, Mapping[str, str]] | None = None,
    consistency_proof: bytes | None = None,
    checkpoint_name: str = "CHECKPOINT",
) -> BundleReport:
    """Verify the bundle at ``path`` (folder or zip); return every finding.

    ``trusted_keys``: public keys (or full 64-hex key ids) obtained independently; the checkpoint,
    ``bundle.json`` and a given ``checkpoint`` must each be signed by one of them (§5 step 12).
    A key-id prefix, or any other string, raises :class:`InputError`.  ``checkpoint``: a signed
    note obtained independently (e.g. published earlier); the bundle must prove it consistent.
    ``now``: the current time, to refuse timestamp tokens from the future (None: not checked).
    ``tsa_roots``: PEM root certificates of timestamp authorities the user trusts (obtained
    independently); a token's time is *established* only if its TSA chains to one of them
    (§5 step 9).  ``tsa_policies``: if given, the token's policy OID must be one of them.
    Raises :class:`InputError` only when ``path`` is not a bag at all.
    ``consistency_proof``: a consistency proof file (docs/transparency.md §7.1) from the bundle's
    checkpoint to a NEWER given ``checkpoint`` (the custodian's latest published one), made by
    ``evidencelock consistency --from-bundle``; without it a newer ``checkpoint`` is a warning
    naming that command (``checkpoint_name`` is the file name shown in it), not a failure.
    ``source``: read the bag through this view instead of opening ``path`` (import-bundle verifies
    the copies it staged, so the bytes verified are the bytes committed).  ``precomputed``: bag
    path -> {algorithm: hex} of payload files already hashed from exactly the bytes ``source``
    serves (one read per file); used instead of reading those files again when it holds every
    algorithm needed.
    """
    trusted_keys = list(trusted_keys)
    trusted_key_ids(trusted_keys)  # bad usage is refused before the bundle is even opened
    if consistency_proof is not None and checkpoint is None:
        raise InputError("a consistency proof is checked between the bundle's checkpoint and a given checkpoint: "
                         "give the checkpoint too (--checkpoint FILE)")
    parsed_proof = None
    if consistency_proof is not None:  # a malformed proof file is bad input (exit 2), before the bundle is read
        from ..proofs import parse_consistency_proof_file
        parsed_proof = parse_consistency_proof_file(consistency_proof)
    src = source if source is not None else open_source(Path(path), limits)
    try:
        report = BundleReport(str(path))
        computed = _check_bagit(src, report, jobs=jobs, precomputed=precomputed)
        if computed is None:
            return report
        _check_evidence(src, report, computed, list(trusted_keys), checkpoint, now,
                        tsa=_TsaTrust(tuple(tsa_roots), tuple(tsa_policies)),
                        external_proof=_ExternalProof(parsed_proof, str(path), checkpoint_name))
        return report
    finally:
        src.close()


_FULL_KEY_ID = re.compile(r"\A[0-9a-f]{64}\Z")


def trusted_key_ids(trusted: Iterable[PublicKey | str]) -> set[str]:
    """Key ids of the pinned keys; raise InputError for anything but a key or a full key id.

    bundle-format §5 step 12: a pin is a whole key id (64 lowercase hex digits, 256 bits) or a
    public key.  A prefix is refused: 8 hex digits are 32 bits, which an attacker matches with a
    key of their own by generating about 2^32 keys.
    """
    ids: set[str] = set()
    for t in trusted:
        if isinstance(t, PublicKey):
            ids.add(t.key_id)
        elif isinstance(t, str) and _FULL_KEY_ID.match(t):
            ids.add(t)
        else:
            raise InputError(f"a trusted key must be a public key or a full key id (64 lowercase hex digits), found {str(t)[:80]!r}",
                             hint="key-id prefixes are refused: a short prefix can be matched by an attacker's own key")
    return ids


# -- BagIt layer --------------------------------------------------------------------------------
def _parse_manifest(src: BagSource, name: str, alg: str, report: BundleReport, *, tag: bool) -> dict[str, str] | None:
    """path -> lowercase hex, or None (with a failure recorded) if the manifest is unusable.

    docs/bundle-format.md §5 step 2: the manifest is streamed line by line (memory bounded by
    one read buffer and the entries kept), and it may list at most as many entries as the bag
    holds files of its kind plus 100 (so that some missing files can still be named): a
    longer manifest is abandoned, whatever its size on disk.
    """
    check = "bagit-tag-manifest" if tag else "bagit-manifest"
    size = src.sizes.get(name)
    if size is None or size > src.limits.max_tag_file_bytes:
        report.fail(check, f"unreadable: file is {size} bytes, over the {src.limits.max_tag_file_bytes}-byte limit "
                    "for this kind of file", name)
        return None
    files = sum(1 for p in src.sizes if p.startswith("data/") != tag)
    max_entries = files + 100
    entries: dict[str, str] = {}
    bad = 0
    # §2: an evidence bundle's manifests are held to the one form the exporter writes; a plain
    # BagIt bag (never VERIFIED, §5 step 3) is read as RFC 8493 allows, so its BagIt verdict is true.
    strict = "evidence/bundle.json" in src.sizes or "evidence/bundle.json" in src.refused
    try:
        with src.open(name) as f:
            for n, raw in enumerate(_manifest_lines(f, src.limits.max_line_bytes), 1):
                if raw is _UNTERMINATED:
                    if not strict:
                        break
                    report.fail(check, f"line {n - 1} does not end with LF (§2: every line ends with one LF)", name)
                    return None
                if raw is None:
                    report.fail(check, f"line {n} is longer than {src.limits.max_line_bytes} bytes", name)
                    bad += 1
                    if bad > 100:
                        report.fail(check, "too many malformed lines; manifest abandoned", name)
                        return None
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    report.fail(check, f"not UTF-8 (RFC 8493 §2.1.3), line {n}", name)
                    return None
                if not strict:
                    line = line[:-1] if line.endswith("\r") else line
                    if not line.strip():
                        continue
                if not (m := (_LINE if strict else _RFC_LINE).match(line)) and not _RFC_LINE.match(line):
                    report.fail(check, f"line {n} is not '<checksum>  <path>': {line[:80]!r}", name)
                    bad += 1
                elif strict and (problem := _manifest_line_problem(line)):
                    report.fail(check, f"line {n}: {problem}: {line[:80]!r}", name)
                    bad += 1
                elif m is None:
                    report.fail(check, f"line {n} is not '<lowercase hex>  <path>': {line[:80]!r}", name)
                    bad += 1
                elif len(m.group(1)) != HASH_ALGORITHMS[alg]:
                    report.fail(check, f"line {n}: a {alg} digest has {HASH_ALGORITHMS[alg]} hex digits, found {len(m.group(1))}", name)
                    bad += 1
                else:
                    # §2: the path is literal; bundle names never contain % (§3), so no percent-decoding.
                    # RFC 8493 §2.1.3 (plain bags only): CR, LF and % in paths are percent-encoded.
                    p = m.group(2) if strict else m.group(2).replace("%0D", "\r").replace("%0d", "\r") \
                        .replace("%0A", "\n").replace("%0a", "\n").replace("%25", "%")
                    try:
                        check_bag_path(p)
                    except UnsafePath as exc:
                        report.fail("bagit-path-safety", f"line {n} names an unsafe path {p[:80]!r}: {exc}", name)
                        bad += 1
                        continue
                    if tag and (m2 := _MANIFEST.match(p)) and m2.group(1):
                        report.fail(check, f"line {n}: a tag manifest lists a tag manifest {p!r} (§2: tag manifests "
                                    "cover every file outside data/ except the tag manifests)", name)
                        bad += 1
                    elif tag == p.startswith("data/"):
                        report.fail(check, f"line {n}: {'a tag manifest lists payload' if tag else 'a payload manifest lists a file outside data/'} {p!r}", name)
                        bad += 1
                    elif p in entries:
                        report.fail(check, f"line {n}: {p!r} listed twice", name)
                        bad += 1
                    elif len(entries) >= max_entries:
                        report.fail(check, f"lists more than {max_entries} files while the bag holds {files} "
                                    f"{'tag' if tag else 'payload'} files; manifest abandoned at line {n}", name)
                        return None
                    else:
                        entries[p] = m.group(1).lower()
                if bad > 100:
                    report.fail(check, "too many malformed lines; manifest abandoned", name)
                    return None
    except Exception as exc:  # noqa: BLE001 - a damaged zip member or a vanished file is a finding
        report.fail(check, f"unreadable: {exc}", name)
        return None
    return entries


_EOL = re.compile(rb"\n")
_UNTERMINATED: Any = object()  # yielded by _manifest_lines after a last line that lacks its LF


def _manifest_line_problem(line: str) -> str | None:
    """§2: the forms other verifiers accept but a bundle never holds, named (None if none)."""
    if "\r" in line:
        return "CR in the line (CRLF or CR line end; §2 allows LF only)"
    if "\t" in line:
        return "TAB in the line (§2: digest and path are separated by exactly two spaces)"
    if not line:
        return "empty line"
    digest, _, rest = line.partition(" ")
    if digest != digest.lower():
        return "uppercase hex digest (§2: lowercase only)"
    if not rest.startswith(" "):
        return "one space between digest and path (§2: exactly two)"
    if rest[1:].startswith((" ", "*")):
        return "path starts with a space or '*' (a sha256sum binary marker; §2: the path follows two spaces)"
    if "%" in rest:
        return "'%' in the path (§2/§3: bundle names never contain it; no percent-decoding)"
    return None


def _manifest_lines(f: Any, max_line: int) -> Iterator[bytes | None]:
    """Lines of ``f`` without their LF (§2: LF is the only line end; a CR stays in the line and
    is refused), read 1 MiB at a time; ``None`` stands for a line longer than ``max_line``
    bytes, which is skipped unread; ``_UNTERMINATED`` follows a last line without its LF."""
    rest = b""
    skipping = False
    while True:
        chunk = f.read(READ_CHUNK)
        data = rest + chunk if rest else chunk
        if not chunk:
            if rest and not skipping:
                yield rest if len(rest) <= max_line else None
            if rest:
                yield _UNTERMINATED
            return
        pos = 0
        for m in _EOL.finditer(data):
            if skipping:
                skipping = False
            else:
                yield data[pos:m.start()] if m.start() - pos <= max_line else None
            pos = m.end()
        rest = data[pos:]
        if len(rest) > max_line:
            if not skipping:
                yield None
                skipping = True
            rest = b""


def _hash_members(src: BagSource, paths: list[str], algs: list[str], jobs: int | None) -> dict[str, dict[str, str] | str]:
    """One read per file, every algorithm at once, files in parallel (hashlib releases the GIL)."""
    def one(p: str) -> tuple[str, dict[str, str] | str]:
        hashers = [_new_hasher(a) for a in algs]
        try:
            with src.open(p) as f:
                try:
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)  # type: ignore[attr-defined]
                except (AttributeError, OSError, ValueError, Exception):
                    pass
                buf = bytearray(READ_CHUNK)
                view = memoryview(buf)
                size = 0
                while n := f.readinto(buf):  # type: ignore[attr-defined]
                    chunk = view[:n]
                    for h in hashers:
                        h.update(chunk)
                    size += n
        except Exception as exc:  # noqa: BLE001 - a damaged zip member or a vanished file is a finding
            return p, f"cannot read: {exc}"
        if size != src.sizes[p]:
            return p, f"size changed while reading: expected={src.sizes[p]} found={size}"
        return p, {a: h.hexdigest() for a, h in zip(algs, hashers)}

    # One thread per core: hashing is the bottleneck (SHA-512), and with a warm or fast disk more
    # threads only contend; each file is read once, every algorithm fed from the same buffer.
    workers = max(1, jobs or _cores())
    order = sorted(paths, key=lambda p: -src.sizes[p])  # big files first: better packing
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bag-hash") as pool:
        return dict(pool.map(one, order))


def _new_hasher(alg: str) -> Any:
    """A hashlib object, or BLAKE3 (the ledger's second digest, docs/adr/0001) under the name "blake3"."""
    if alg == "blake3":
        import blake3

        return blake3.blake3(max_threads=1)
    return hashlib.new(alg)


def _entry_digest_algorithms() -> list[str]:
    """Algorithms computed for every payload file besides the manifests' (same read, §5 step 10a)."""
    try:
        import blake3  # noqa: F401
    except ImportError:  # a verifier without the package reports BLAKE3 digests as not checked
        return []
    return ["blake3"]


def _check_bagit(src: BagSource, report: BundleReport, *, jobs: int | None,
                 precomputed: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, dict[str, str]] | None:
    """Run the BagIt checks; return path -> {alg: hex} for every readable file, or None if not a bag."""
    for p in src.problems:
        report.fail(p.name, p.detail, p.subject)
    names = set(src.sizes)
    manifests = {n: _MANIFEST.match(n) for n in names if "/" not in n and _MANIFEST.match(n)}
    # RFC 8493 §2.1.1 / bundle-format §5 step 2: without bagit.txt the input is not a bag at all
    # (exit 2).  A bagit.txt that is present but refused (unsafe, damaged) is a named failure.
    if "bagit.txt" not in names and "bagit.txt" not in src.refused:
        what = "no bagit.txt and no manifest" if not manifests else "no bagit.txt (RFC 8493 §2.1.1 requires it)"
        raise InputError(f"not a BagIt bag: {what}", subject=src.label,
                         hint="an evidence bundle is a folder or zip made by `evidencelock export`")
    # RFC 8493 §2.1.1: the bag declaration.
    if "bagit.txt" not in names:
        report.fail("bagit-declaration", "bagit.txt was refused (see above) and cannot be read (RFC 8493 §2.1.1)", "bagit.txt")
    else:
        try:
            decl = src.read_small("bagit.txt", 4096).decode("utf-8")
            fields = dict(ln.split(": ", 1) for ln in decl.splitlines() if ": " in ln)
            if fields.get("BagIt-Version") not in ("1.0", "0.97") or fields.get("Tag-File-Character-Encoding", "").upper() != "UTF-8":
                report.fail("bagit-declaration", f"expected BagIt-Version 1.0 and UTF-8 tag files, found {fields}", "bagit.txt")
            else:
                report.add("bagit-declaration", True, f"BagIt-Version {fields['BagIt-Version']}, UTF-8", "bagit.txt")
        except (InputError, UnicodeDecodeError, ValueError, OSError) as exc:
            report.fail("bagit-declaration", f"unreadable: {exc}", "bagit.txt")
    payload = sorted(p for p in names if p.startswith("data/"))
    report.payload_files = len(payload)
    report.payload_bytes = sum(src.sizes[p] for p in payload)
    payload_manifests: dict[str, dict[str, str]] = {}
    tag_manifests: dict[str, dict[str, str]] = {}
    for name, m in sorted(manifests.items()):
        tag, alg = bool(m.group(1)), m.group(2)
        if alg not in HASH_ALGORITHMS:
            report.fail("bagit-manifest-algorithm", f"unsupported algorithm {alg!r}: cannot check this manifest", name)
            continue
        parsed = _parse_manifest(src, name, alg, report, tag=tag)
        if parsed is not None:
            (tag_manifests if tag else payload_manifests)[alg] = parsed
    report.listed_sha256 = dict(payload_manifests.get("sha256", {}))  # for findings' sha256 (docs/findings.md §4)
    if not payload_manifests:
        report.fail("bagit-manifest", "no usable payload manifest (RFC 8493 §2.1.3 requires one)", "manifest-*.txt")
    # Completeness, both ways (RFC 8493 §3): every payload file in every manifest, every listed file present.
    listed_anywhere: set[str] = set()
    for alg, entries in payload_manifests.items():
        listed_anywhere |= set(entries)
        missing = sorted(p for p in entries if p not in src.sizes and p not in src.refused)
        unlisted = sorted(p for p in payload if p not in entries)
        for p in missing[:50]:
            report.fail("bagit-completeness", f"listed in manifest-{alg}.txt but missing from the bag", p)
        for p in unlisted[:50]:
            report.fail("bagit-completeness", f"present in data/ but not listed in manifest-{alg}.txt (an added file?)", p)
        if len(missing) + len(unlisted) > 100:
            report.fail("bagit-completeness", f"{len(missing)} missing and {len(unlisted)} unlisted files in total", f"manifest-{alg}.txt")
    tag_files = sorted(p for p in names if not p.startswith("data/") and not (("/" not in p) and p.startswith("tagmanifest-")))
    for alg, entries in tag_manifests.items():
        for p in sorted(p for p in entries if p not in src.sizes and p not in src.refused)[:50]:
            report.fail("bagit-completeness", f"listed in tagmanifest-{alg}.txt but missing from the bag", p)
        for p in [p for p in tag_files if p not in entries][:50]:
            report.fail("bagit-completeness", f"tag file not listed in tagmanifest-{alg}.txt (an added file?)", p)
    # Fixity: one read per file for every algorithm that lists it.
    palgs = sorted(payload_manifests)
    talgs = sorted(set(tag_manifests) | {"sha256"})
    readable_payload = [p for p in payload if p in listed_anywhere]
    computed: dict[str, dict[str, str]] = {}
    # The entries' second digest (BLAKE3) is computed in the same read (bundle-format §5 step 10a).
    # SHA-256 and SHA-512 are always computed: bundle.json records both (§5 step 10a), even if a manifest is missing.
    payload_algs = sorted(set(palgs) | {"sha256", "sha512"}) + _entry_digest_algorithms()
    # import-bundle: digests taken while staging the very bytes ``src`` serves (one read per file).
    known = {p: dict(precomputed[p]) for p in readable_payload
             if precomputed and p in precomputed and all(a in precomputed[p] for a in payload_algs)}
    results: dict[str, dict[str, str] | str] = dict(known)
    results.update(_hash_members(src, [p for p in readable_payload if p not in known], payload_algs, jobs))
    results.update(_hash_members(src, tag_files, talgs, jobs))
    bad_payload = bad_tag = 0
    for p, r in results.items():
        if isinstance(r, str):
            if p in src.damaged:
                continue  # reported below, under its zip check name
            report.fail("bagit-payload-fixity" if p.startswith("data/") else "bagit-tag-fixity", r, p)
            continue
        computed[p] = r
    for which, manifests_, check in ((palgs, payload_manifests, "bagit-payload-fixity"), (sorted(tag_manifests), tag_manifests, "bagit-tag-fixity")):
        for alg in which:
            for p, expected in manifests_[alg].items():
                found = computed.get(p, {}).get(alg)
                if found is not None and found != expected:
                    report.fail(check, f"{alg} mismatch: expected={expected} found={found} (the file may have been modified)", p)
                    if check == "bagit-payload-fixity":
                        bad_payload += 1
                    else:
                        bad_tag += 1
    if payload_manifests and not bad_payload:
        report.add("bagit-payload-fixity", True, f"{len(readable_payload)} payload files, {report.payload_bytes} bytes: "
                   f"{'+'.join(palgs)} recomputed and matching every payload manifest")
    if tag_manifests and not bad_tag:
        report.add("bagit-tag-fixity", True, f"{len(tag_files)} tag files matching {'+'.join(sorted(tag_manifests))} tag manifests")
    _check_bag_info(src, report, payload)
    _report_damaged_members(src, report)
    if not any(c.name == "bagit-completeness" for c in report.checks):
        report.add("bagit-completeness", True, "every payload file is listed in every manifest and every listed file is present")
    return computed


def _report_damaged_members(src: BagSource, report: BundleReport) -> None:
    """§5 step 1: a zip member whose bytes failed to decode (CRC-32, deflate data) while the
    BagIt layer read it is a named failure of that member, never a crash."""
    for p, prob in sorted(src.damaged.items()):
        report.fail(prob.name, prob.detail, p)


def _check_bag_info(src: BagSource, report: BundleReport, payload: list[str]) -> None:
    if "bag-info.txt" not in src.sizes:
        return  # RFC 8493 §2.2.2: optional
    try:
        text = src.read_small("bag-info.txt", 1 << 20).decode("utf-8")
    except (InputError, UnicodeDecodeError, OSError) as exc:
        report.fail("bagit-bag-info", f"unreadable: {exc}", "bag-info.txt")
        return
    oxum = None
    for line in text.splitlines():
        if line.startswith("Payload-Oxum:"):
            oxum = line.split(":", 1)[1].strip()
    if oxum is None:
        return
    expected = f"{sum(src.sizes[p] for p in payload)}.{len(payload)}"
    if oxum != expected:
        report.fail("bagit-payload-oxum", f"Payload-Oxum mismatch: expected={oxum} found={expected} (octets.files)", "bag-info.txt")
    else:
        report.add("bagit-payload-oxum", True, f"Payload-Oxum {oxum} matches", "bag-info.txt")


# -- evidence layer ------------------------------------------------------------------------------
def _json_file(src: BagSource, name: str, report: BundleReport, check: str) -> Any:
    try:
        return _strict_json(src.read_small(name, 64 << 20))
    except KeyError:
        report.fail(check, "missing", name)
    except (InputError, OSError, UnicodeDecodeError, ValueError) as exc:
        report.fail(check, f"unreadable or not JSON: {exc}", name)
    return None


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise FormatError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("not valid base64") from None


def _hexbytes(value: Any, n: int = 32) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(rf"[0-9a-f]{{{2 * n}}}", value):
        raise FormatError(f"expected {2 * n} lowercase hex digits")
    return bytes.fromhex(value)


def _check_evidence(src: BagSource, report: BundleReport, computed: dict[str, dict[str, str]],
                    trusted: list[PublicKey | str], external_checkpoint: bytes | None, now: datetime | None,
                    tsa: "_TsaTrust | None" = None, external_proof: "_ExternalProof | None" = None) -> None:
    if "evidence/bundle.json" not in src.sizes:
        report.kind = "bagit-only"
        state = "valid" if report.bagit_ok else "INVALID"
        report.fail("evidence-present", f"BagIt layer {state}, evidence layer absent: this is a plain BagIt bag, not an "
                    "evidencelock bundle; nothing about custody, signatures or time can be established", "evidence/bundle.json")
        report.not_established.append("Custody, signatures and time: the bag carries no evidence layer.")
        return
    report.kind = "evidence-bundle"
    _check_required_manifests(src, report)
    if not any(c.name == "bagit-tag-fixity" and c.ok for c in report.checks):
        report.fail("evidence-tag-manifest", "an evidence bundle must carry a tag manifest covering its evidence files", "tagmanifest-sha256.txt")
    meta = _json_file(src, "evidence/bundle.json", report, "evidence-format")
    if (not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT or not _is_int(meta.get("version"))
            or meta.get("version") != BUNDLE_VERSION):
        if isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT and _is_int(meta.get("version")) and meta.get("version") == 1:
            report.fail("evidence-format", "bundle format version 1 (made by evidencelock before the signed record of "
                        "included entries existed): which custody entries were left out cannot be checked; ask the "
                        f"custodian to export the case again (format version {BUNDLE_VERSION})", "evidence/bundle.json")
        elif meta is not None:
            report.fail("evidence-format", f"expected format {BUNDLE_FORMAT!r} version {BUNDLE_VERSION}", "evidence/bundle.json")
        return
    # §4.7 "Strict JSON": every member with its type, checked before any of it is used.
    shape = _bundle_json_problems(meta)
    for problem in shape:
        report.fail("evidence-format", f"bundle.json {problem}", "evidence/bundle.json")
    if shape:
        return
    report.case = str(meta.get("case", ""))
    origin = meta.get("origin")

    # 1. Entries: canonical bytes + signature, and their by-hand copies.
    entries: dict[int, SignedEntry] = {}
    lines_raw = b""
    try:
        lines_raw = src.read_small("evidence/entries.jsonl")
    except KeyError:
        report.fail("evidence-entries", "missing", "evidence/entries.jsonl")
    except (InputError, OSError) as exc:
        report.fail("evidence-entries", str(exc), "evidence/entries.jsonl")
    for n, line in enumerate(lines_raw.splitlines(), 1):
        subject = f"evidence/entries.jsonl line {n}"
        try:
            obj = _strict_json(line)
            if not isinstance(obj, dict) or set(obj) != {"seq", "canonical", "signature"}:
                raise FormatError("expected an object with seq, canonical, signature")
            if not _is_int(obj["seq"]):
                raise FormatError(f"seq must be an integer, found {obj['seq']!r}")
            signed = SignedEntry.from_bytes(_b64(obj["canonical"]), _b64(obj["signature"]), subject=subject)
            if signed.entry.seq != obj["seq"]:
                raise FormatError(f"seq mismatch: line says {obj['seq']!r}, entry says {signed.entry.seq}")
            if signed.entry.seq in entries:
                raise FormatError(f"entry {signed.entry.seq} appears twice")
            if entries and signed.entry.seq < next(reversed(entries)):  # §4.1: ascending seq (last added = largest)
                raise FormatError(f"entries out of order: entry {signed.entry.seq} follows entry {next(reversed(entries))} "
                                  "(§4.1 requires ascending seq)")
        except (ValueError, EvidenceLockError) as exc:
            report.fail("evidence-entries", str(exc), subject)
            continue
        entries[signed.entry.seq] = signed
    for p in src.sizes:
        m = _SEQ_FILE.match(p)
        if m and int(m.group(1)) not in entries:
            report.fail("evidence-entry-files", "entry file for an entry not in entries.jsonl", p)
    for seq, s in entries.items():
        for ext, expected in (("json", s.canonical), ("sig", s.signature)):
            p = f"evidence/entries/{seq}.{ext}"
            try:
                found = src.read_small(p, 1 << 21)
            except (KeyError, InputError, OSError) as exc:
                report.fail("evidence-entry-files", f"by-hand copy unavailable: {exc!s}", p)
                continue
            if found != expected:
                report.fail("evidence-entry-files", "differs from the entry in entries.jsonl: the by-hand check would "
                            "verify different bytes", p)
    if entries:
        report.add("evidence-entries", not any(c.name == "evidence-entries" for c in report.failures),
                   f"{len(entries)} custody entries parsed as RFC 8785 canonical entries")

    # 2. Keys: enrolment entries establish them; PEM files must be exactly those keys.
    enrolled: dict[str, tuple[PublicKey, int]] = {}
    revoked: dict[str, int] = {}
    for seq in sorted(entries):
        e = entries[seq].entry
        if e.type == "key-enroll":
            raw_hex, kid = e.body.get("public_key"), e.body.get("key_id")
            try:
                raw = _hexbytes(raw_hex)
                if key_id_for(raw) != kid:
                    raise FormatError(f"key_id mismatch: expected={key_id_for(raw)} found={kid}")
            except EvidenceLockError as exc:
                report.fail("evidence-keys", f"bad key-enroll entry: {exc.message}", f"entry {seq}")
                continue
            name = e.body.get("name")
            enrolled.setdefault(kid, (PublicKey(raw, name if isinstance(name, str) else ""), seq))
        elif e.type == "key-revoke" and isinstance(e.body.get("key_id"), str):
            revoked.setdefault(e.body["key_id"], seq)
    pem_keys: set[str] = set()
    for p in sorted(src.sizes):
        if not p.startswith("evidence/keys/"):
            continue
        m = _KEY_FILE.match(p)
        try:
            if not m:
                raise FormatError("key files are named evidence/keys/<key id>.pem")
            raw = public_key_from_pem(src.read_small(p, 1 << 16))
        except (EvidenceLockError, OSError) as exc:
            report.fail("evidence-keys", str(exc), p)
            continue
        kid = key_id_for(raw)
        if kid != m.group(1):
            report.fail("evidence-keys", f"public key swapped: file name says key {m.group(1)[:16]}…, the PEM holds key "
                        f"{kid[:16]}… (expected={m.group(1)} found={kid})", p)
        elif kid not in enrolled:
            report.fail("evidence-keys", f"key {kid[:16]}… is not enrolled by any key-enroll entry in this bundle", p)
        else:
            pem_keys.add(kid)
    for kid in enrolled:
        if kid not in pem_keys and not any(c.subject == f"evidence/keys/{kid}.pem" for c in report.failures):
            report.fail("evidence-keys", "enrolled key has no PEM file (needed to verify by hand)", f"evidence/keys/{kid}.pem")
    report.keys = {kid: k.name for kid, (k, _) in enrolled.items()}

    # 3. Signatures: each entry under a key enrolled by an earlier included entry, not revoked.
    sig_ok = 0
    for seq in sorted(entries):
        s = entries[seq]
        e = s.entry
        subject = f"entry {seq}"
        if e.type == "key-enroll" and seq == 0:
            key_seq = enrolled.get(e.actor)
            if key_seq is None or key_seq[1] != 0:
                report.fail("evidence-signature", "genesis entry must enrol the key that signs it", subject)
                continue
            key = key_seq[0]
        else:
            ks = enrolled.get(e.actor)
            if ks is None or ks[1] >= seq:
                report.fail("evidence-signature", f"signed by key {e.actor[:16]}… which no earlier entry in this bundle "
                            "enrols: a signature from an unknown key proves nothing about custody", subject)
                continue
            if e.actor in revoked and revoked[e.actor] < seq:
                report.fail("evidence-signature", f"signed by key {e.actor[:16]}… revoked at entry {revoked[e.actor]}", subject)
                continue
            key = ks[0]
        try:
            s.verify_signature(key)
            sig_ok += 1
        except EvidenceLockError as exc:
            report.fail("evidence-signature", exc.message + (f" ({exc.hint})" if exc.hint else ""), subject)
    if entries and sig_ok == len(entries):
        report.add("evidence-signature", True, f"all {sig_ok} entry signatures verify (Ed25519) under enrolled keys")

    # 4. Checkpoint (C2SP signed note) and its by-hand copies.
    cp: Checkpoint | None = None
    note: SignedNote | None = None
    signer: PublicKey | None = None
    stated_signer: PublicKey | None = None
    # Enrolled keys last: note_signer keeps the last key per id, so a pinned key shows its enrolled name.
    all_keys = [t for t in trusted if isinstance(t, PublicKey)] + [k for k, _ in enrolled.values()]
    try:
        note = cp_mod.parse_note(src.read_small("evidence/checkpoint.txt", cp_mod.MAX_NOTE_BYTES))
        name = note.unverified_checkpoint.origin
        if origin != name:
            report.fail("evidence-checkpoint", f"origin mismatch: expected={origin!r} (bundle.json) found={name!r}",
                        "evidence/checkpoint.txt")
        ignored: list[str] = []
        signer = note_signer(note, all_keys, name, revoked=revoked, pinned=trusted_key_ids(trusted), notices=ignored)
        cp = note.verify(name, signer.raw)
        report.add("evidence-checkpoint-signature", True, f"checkpoint of {cp.origin} at tree size {cp.tree_size}, root "
                   f"{cp.root_hash.hex()[:16]}…, signed by {_who(signer.key_id, enrolled)}"
                   + (f" (every other line of a known key verifies; {'; '.join(ignored)})" if ignored else ""),
                   "evidence/checkpoint.txt")
        report.checkpoint = {"origin": cp.origin, "size": cp.tree_size, "root": cp.root_hash.hex(), "signer": signer.key_id,
                             "signer_name": (enrolled[signer.key_id][0].name if signer.key_id in enrolled else "") or signer.name}
        # §4.4: checkpoint.sig is the raw signature of one line by a known, unrevoked key (every
        # such line verified above), whichever the pins make the reported signer.
        live_ids = {cp_mod.note_key_id(name, k.raw) for k in all_keys
                    if not (k.key_id in revoked and revoked[k.key_id] < cp.tree_size)}
        sigs = {s.signature for s in note.signatures if s.name == name and s.key_id in live_ids}
        for p, expected in (("evidence/checkpoint-body.txt", {note.unverified_body}), ("evidence/checkpoint.sig", sigs)):
            try:
                data = src.read_small(p, 1 << 16)
                if data not in expected:
                    report.fail("evidence-checkpoint-files", "differs from the signed note in checkpoint.txt", p)
                elif p == "evidence/checkpoint.sig":
                    # The human files name the key whose line checkpoint.sig holds (the exporter's
                    # choice, §4.4), whichever key the pins make the reported signer: a verified fact.
                    stated_signer = next((k for k in reversed(all_keys) if k.key_id not in revoked or revoked[k.key_id] >= cp.tree_size
                                          if _line_signature(note, name, k) == data), signer)
            except (KeyError, InputError, OSError) as exc:
                report.fail("evidence-checkpoint-files", f"by-hand copy unavailable: {exc!s}", p)
    except KeyError:
        report.fail("evidence-checkpoint-signature", "missing", "evidence/checkpoint.txt")
    except EvidenceLockError as exc:
        report.fail("evidence-checkpoint-signature", str(exc), "evidence/checkpoint.txt")
        signer, cp = None, None
    _check_checkpoint_signer(report, signer, cp, revoked, enrolled)

    # 5. Inclusion proofs (RFC 9162 §2.1.3.2) against that checkpoint.
    proofs = _json_file(src, "evidence/proofs.json", report, "evidence-inclusion")
    shape_problems: list[tuple[str, str]] = []
    if cp is not None and "evidence/proofs.json" in src.sizes:
        shape_problems = _proofs_problems(proofs, entries, cp)
        for subject, problem in shape_problems:
            report.fail("evidence-inclusion", problem, subject)
        if not isinstance(proofs, dict):
            proofs = None
    if isinstance(proofs, dict) and cp is not None:
        try:
            size, root = proofs.get("tree_size"), _hexbytes(proofs.get("root_hash"))
        except FormatError as exc:
            report.fail("evidence-inclusion", f"proofs.json root_hash: {exc}", "evidence/proofs.json")
            size, root = None, b""
        if size != cp.tree_size or root != cp.root_hash:
            report.fail("evidence-inclusion", f"proofs are for another tree: checkpoint size={cp.tree_size} root={cp.root_hash.hex()}, "
                        f"proofs.json size={size} root={root.hex() if root else None}", "evidence/proofs.json")
        incl = proofs.get("inclusion") if isinstance(proofs.get("inclusion"), dict) else {}
        good = 0
        for seq, s in sorted(entries.items()):
            subject = f"entry {seq}"
            try:
                path = incl.get(str(seq))
                if not isinstance(path, list):
                    raise FormatError("no inclusion proof for this entry")
                if seq >= cp.tree_size:
                    raise FormatError(f"seq {seq} is not below the checkpoint's tree size {cp.tree_size}")
                merkle.verify_inclusion(s.leaf_hash, seq, cp.tree_size, [_hexbytes(h) for h in path], cp.root_hash)
                good += 1
            except EvidenceLockError as exc:
                report.fail("evidence-inclusion", str(exc), subject)
        if entries and good == len(entries) and not shape_problems:
            report.add("evidence-inclusion", True, f"all {good} entries are included in the checkpoint's tree "
                       f"(RFC 9162 inclusion proofs, tree size {cp.tree_size})")
        _check_carried_consistency(report, proofs, cp)
        _check_consistency(report, proofs, cp, external_checkpoint, all_keys, external_proof)
        _check_external_signer(report, cp, external_checkpoint, all_keys, revoked, enrolled, trusted)
    elif external_checkpoint is not None:
        report.fail("evidence-external-checkpoint", "cannot be compared: the bundle's own checkpoint or proofs are unusable")

    # 6. Timestamp (§4.6): an RFC 3161 token over the checkpoint *body* (docs/transparency.md §5).
    _check_timestamp(src, report, cp, note, now, tsa or _TsaTrust())
    _check_entry_times(report, entries, cp)

    # 7. Payload coverage: each payload file's recomputed SHA-256 and size match an ingest entry.
    ingests: dict[str, list[SignedEntry]] = {}
    for s in entries.values():
        if s.entry.type == "ingest" and isinstance(s.entry.body.get("item"), str):
            ingests.setdefault(s.entry.body["item"], []).append(s)
    items_meta = {i.get("path"): i for i in meta.get("items", []) if isinstance(i, dict)}
    covered = 0
    payload = sorted(p for p in src.sizes if p.startswith("data/"))
    for p in payload:
        digest = computed.get(p, {}).get("sha256")
        if digest is None:
            report.fail("evidence-payload-covered", "no SHA-256 could be computed (needs manifest-sha256.txt)", p)
            continue
        cands = ingests.get(digest, [])
        good = [s for s in cands if s.entry.body.get("size") == src.sizes[p]
                and isinstance(s.entry.body.get("digests"), dict) and s.entry.body["digests"].get("sha256") == digest]
        if not good:
            report.fail("evidence-payload-covered", f"no ingest entry in the bundle records sha256={digest} with size "
                        f"{src.sizes[p]}: this file is not part of the custody record", p)
            continue
        listed = items_meta.get(p)
        if listed is None or listed.get("sha256") != digest:
            report.fail("evidence-payload-covered", "bundle.json does not list this file with this digest", p)
            continue
        covered += 1
        report.items.append(_item_summary(p, src.sizes[p], computed.get(p, {}), good, entries, enrolled, listed))
    for p in items_meta:
        if p not in src.sizes:
            report.fail("evidence-payload-covered", "listed in bundle.json but not in the bag", str(p))
    if payload and covered == len(payload):
        report.add("evidence-payload-covered", True, f"every payload file ({covered}) matches the SHA-256 and size recorded "
                   "by a signed ingest entry")
    for s in entries.values():
        if s.entry.type not in ("key-enroll", "key-revoke") and s.entry.case != report.case:
            report.fail("evidence-case", f"entry belongs to case {s.entry.case!r}, bundle is for {report.case!r}", f"entry {s.entry.seq}")

    # 7b. Completeness of the custody record (§4.7 record), hash chain (§5 step 6b), names (§3),
    #     bag-info fields (§2) and the closed list of files (§2).
    _check_record(report, meta, entries)
    _check_bundle_checkpoint(report, meta, cp)
    _check_chain(report, entries)
    _check_names(report, meta, entries)
    _check_bag_info_signed(src, report, meta)
    _check_allowed_files(src, report)
    from .upstream import check_upstream  # §4.9, §5 step 16: earlier organisations' parts

    check_upstream(src, report, meta, entries, computed, trusted=trusted, now=now, tsa=tsa)
    _check_bagit_txt_exact(src, report)
    if "evidence/metadata.json" in src.sizes:  # §4 "Strict JSON", §4.8: an object
        if not isinstance(_json_file(src, "evidence/metadata.json", report, "evidence-format"), dict):
            if not any(c.subject == "evidence/metadata.json" for c in report.failures):
                report.fail("evidence-format", "must be a JSON object (§4.8)", "evidence/metadata.json")

    # 8. The exporter's signature over bundle.json pins the unsigned tag files.
    _check_bundle_signature(src, report, meta, computed, enrolled)
    _check_verify_html(src, report, computed)  # docs/browser-verifier.md
    _check_bundle_signer(report, meta, enrolled, revoked, trusted)
    _check_digests(src, report, meta, computed, entries)
    _check_custody(report, meta, entries, enrolled)  # §5 step 14a (issue 10)
    human.check_human_files(src, report, meta, entries, enrolled, cp, stated_signer or signer, report.timestamp,  # §4.7
                            "evidence/timestamp.tst" in src.sizes)

    # 9. Pinning and plain-words statements.
    _conclude(report, trusted, signer, cp, entries, enrolled, external_checkpoint)
    human.not_established(report, src)


@dataclass(frozen=True)
class _TsaTrust:
    """What the user trusts for time (§5 step 9): TSA roots obtained independently, policy OIDs."""

    roots: tuple[bytes, ...] = ()
    policies: tuple[str, ...] = ()


def _check_timestamp(src: BagSource, report: BundleReport, cp: Checkpoint | None, note: SignedNote | None,
                     now: datetime | None, tsa: _TsaTrust = _TsaTrust()) -> None:
    name, tst, pem = "evidence-timestamp", "evidence/timestamp.tst", "evidence/tsa-chain.pem"
    if tst not in src.sizes:
        if pem in src.sizes:
            report.fail(name, "a TSA certificate chain without a timestamp token", pem)
        return
    if cp is None or note is None:
        report.fail(name, "cannot be checked: the checkpoint it stamps is unusable (see above)", tst)
        return
    body = note.unverified_body  # verified above (cp is not None only then)
    try:
        token = src.read_small(tst, timestamp.MAX_RESPONSE_BYTES)
        if pem not in src.sizes:
            # A token without its chain: we can say which bytes it is about, not who signed it or when.
            timestamp.check_token_imprint(token, body, subject=tst)
            report.add(name, True, "an RFC 3161 token stamps this checkpoint's body, but the bundle carries no TSA "
                       "certificate chain: its signature and time were NOT verified", tst)
            report.not_established.append("When the log existed: the timestamp token could not be verified (no TSA "
                                          "certificate chain in the bundle); obtain the TSA's certificates and check "
                                          "it with `openssl ts -verify` (VERIFY.md §6).")
            if tsa.roots:
                report.fail("evidence-timestamp-trust", "--tsa-root was given but the bundle carries no TSA certificate "
                            "chain, so the token cannot be related to a trusted root", tst)
            return
        chain = timestamp.load_tsa_certificates(src.read_small(pem, 1 << 20), subject=pem)
        info = timestamp.verify_token(token, body, tsa_certificate_pem=chain.tsa_pem, root_certificates_pem=chain.roots_pem,
                                      intermediate_certificates_pem=chain.intermediates_pem, now=now or _NO_CLOCK)
    except (EvidenceLockError, OSError, ValueError) as exc:
        report.fail(name, str(exc), tst)
        return
    when = info.time.isoformat()
    report.timestamp = {"time": when, "tsa": info.tsa_name, "root_sha256": tsa_root_sha256(chain), "trusted": False,
                        "policy": info.policy, "slack_us": _slack_us(info)}
    report.add(name, True, f"RFC 3161 token: signature and certificate chain verify; it claims the checkpoint existed "
               f"at {when}, signed by {info.tsa_name} (chain from the bundle, root SHA-256 "
               f"{report.timestamp['root_sha256'][:16]}…)", tst)
    # RFC 3161 §2.4.2 policy: a user who names acceptable policies gets only those.
    if tsa.policies and info.policy not in tsa.policies:
        report.fail("evidence-timestamp-policy", f"the token's TSA policy is not an accepted one: expected one of "
                    f"{list(tsa.policies)} found={info.policy}", tst)
    _check_timestamp_request(src, report, info)
    if not tsa.roots:
        return
    # §5 step 9: the time is established only through a root the USER trusts, never one from the bundle.
    try:
        root = timestamp.check_chain_to_trusted_roots(chain.tsa_pem, chain.intermediates_pem, tsa.roots,
                                                      at=info.time, subject=tst)
        from cryptography.hazmat.primitives.serialization import Encoding

        timestamp.verify_token(token, body, tsa_certificate_pem=chain.tsa_pem,
                               root_certificates_pem=[root.public_bytes(Encoding.PEM)],
                               intermediate_certificates_pem=chain.intermediates_pem, now=now or _NO_CLOCK)
        root_sha = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    except (EvidenceLockError, ValueError) as exc:
        report.fail("evidence-timestamp-trust", f"the token's authority is not trusted: {exc}", tst)
        return
    report.timestamp.update(trusted=True, root_sha256=root_sha)
    report.add("evidence-timestamp-trust", True, f"the TSA certificate chains to the trusted root "
               f"{root.subject.rfc4514_string()} (SHA-256 {root_sha[:16]}…) given with --tsa-root", tst)


def _slack_us(info: timestamp.TimestampInfo) -> int:
    """How far an entry may be dated after genTime: the token's accuracy plus 1 s (genTime may be truncated to
    whole seconds, RFC 3161 §2.4.2), in microseconds."""
    return int((info.accuracy.total_seconds() + 1) * 1_000_000)


def _check_timestamp_request(src: BagSource, report: BundleReport, info: timestamp.TimestampInfo) -> None:
    """§4.6: if the bundle carries the request (`timestamp.tsq`), the token MUST answer it (nonce, policy)."""
    tsq = "evidence/timestamp.tsq"
    if tsq not in src.sizes:
        return
    try:
        _, nonce, policy = timestamp.request_facts(src.read_small(tsq, 1 << 16), subject=tsq)
    except (EvidenceLockError, OSError, KeyError) as exc:
        report.fail("evidence-timestamp-request", str(exc), tsq)
        return
    if nonce is not None and nonce != info.nonce:
        report.fail("evidence-timestamp-request", f"nonce mismatch (RFC 3161 §2.4.2): expected={nonce} "
                    f"found={info.nonce}; the token does not answer the stored request", tsq)
    elif policy is not None and policy != info.policy:
        report.fail("evidence-timestamp-request", f"policy mismatch: requested={policy} found={info.policy}", tsq)
    else:
        report.add("evidence-timestamp-request", True, "the token answers the stored request (nonce, policy)", tsq)


def _check_entry_times(report: BundleReport, entries: Mapping[int, SignedEntry], cp: Checkpoint | None) -> None:
    """§5 step 9a: entry times never go backwards along seq, and no entry the timestamped checkpoint covers
    is dated after the token's time (+ its accuracy): either would put a time under "Established" that the
    record itself contradicts."""
    from ..entry import parse_time

    prev: tuple[int, datetime] | None = None
    backwards = 0
    for seq in sorted(entries):
        try:
            t = parse_time(entries[seq].entry.time)
        except EvidenceLockError:
            continue  # refused by the entry parser already
        if prev is not None and t < prev[1]:
            backwards += 1
            report.fail("evidence-time-order", f"entry {seq} is dated {entries[seq].entry.time}, before entry {prev[0]} "
                        f"({entries[prev[0]].entry.time}): entry times go backwards along seq", f"entry {seq}")
        prev = (seq, t)
    stamp = report.timestamp if cp is not None else None
    late = 0
    if stamp is not None and cp is not None:
        late = _entries_after_stamp(report, entries, cp, stamp)
    if entries and not backwards and not late:
        report.add("evidence-time-order", True, "entry times do not decrease along seq, and none of the entries the "
                   "timestamped checkpoint contains is dated after its timestamp" if stamp else
                   "entry times do not decrease along seq")


def _entries_after_stamp(report: BundleReport, entries: Mapping[int, SignedEntry], cp: Checkpoint,
                         stamp: Mapping[str, Any]) -> int:
    from ..entry import parse_time

    gen = datetime.fromisoformat(stamp["time"])
    limit = gen + timedelta(microseconds=stamp["slack_us"])
    late = 0
    for seq in sorted(entries):
        if seq >= cp.tree_size:
            continue
        try:
            t = parse_time(entries[seq].entry.time)
        except EvidenceLockError:
            continue
        if t > limit:
            late += 1
            report.fail("evidence-time-after-timestamp", f"entry {seq} is dated {entries[seq].entry.time}, after the "
                        f"timestamp {stamp['time']} of the checkpoint (size {cp.tree_size}) that contains it: the "
                        "entry's time or the token's time is false", f"entry {seq}")
    return late


@dataclass(frozen=True)
class _ExternalProof:
    """What ``verify-bundle --consistency-proof`` gave (issue 11), and the names for the hint."""

    proof: Any  # proofs.ConsistencyProofFile | None
    bundle_name: str
    checkpoint_name: str

    def command(self) -> str:
        import shlex

        return (f"evidencelock consistency --from-bundle {shlex.quote(self.bundle_name)} "
                f"--to {shlex.quote(self.checkpoint_name)} -o consistency-proof.json")


def _check_consistency(report: BundleReport, proofs: Mapping[str, Any], cp: Checkpoint, external: bytes | None,
                       keys: list[PublicKey], given: _ExternalProof | None = None) -> None:
    if external is None:
        return
    name = "evidence-external-checkpoint"
    subject = "--checkpoint"
    proof_file = given.proof if given is not None else None
    try:
        note = cp_mod.parse_note(external)
        if note.unverified_checkpoint.origin != cp.origin:
            raise FormatError(f"origin mismatch: expected={cp.origin!r} found={note.unverified_checkpoint.origin!r}")
        try:
            who = note_signer(note, keys, cp.origin)
        except SignatureError as exc:  # no known key signed it: after a key rotation, the reader pins the new one
            exc.message += _ROTATION_HINT
            raise
        other = note.verify(cp.origin, who.raw)
        if other.tree_size > cp.tree_size:
            # transparency §7.1 (issue 11): the custodian's latest checkpoint is newer than the bundle.
            if proof_file is None:
                command = given.command() if given is not None else "evidencelock consistency --from-bundle BUNDLE --to CHECKPOINT -o consistency-proof.json"
                report.add(name, True, f"WARNING: the given checkpoint (size {other.tree_size}) is newer than the bundle's "
                           f"(size {cp.tree_size}) and no consistency proof between them was given, so the bundle was NOT "
                           f"checked against it (the bundle's own integrity is unaffected). Ask the custodian to run "
                           f"`{command}` and pass the file with --consistency-proof", subject, warning=True)
                return
            from ..proofs import verify_consistency_between

            subject = "--consistency-proof"
            verify_consistency_between(proof_file, cp, other)
            report.add(name, True, f"the given checkpoint (size {other.tree_size}, signed by {who.key_id[:16]}…) extends the "
                       f"bundle's (size {cp.tree_size}): the consistency proof from the custodian verifies, so the log was only "
                       "appended to in between", subject)
            return
        if proof_file is not None:
            subject = "--consistency-proof"
            raise FormatError(f"a consistency proof file is only used with a checkpoint newer than the bundle's; the given "
                              f"checkpoint has size {other.tree_size} and the bundle's {cp.tree_size} (the bundle carries "
                              "the proofs from older ones)")
        if other.tree_size == cp.tree_size:
            merkle.verify_consistency(cp.tree_size, cp.tree_size, [], other.root_hash, cp.root_hash)
        else:
            found = None
            for c in proofs.get("consistency", []) if isinstance(proofs.get("consistency"), list) else []:
                if isinstance(c, dict) and c.get("from_size") == other.tree_size:
                    found = c
            if found is None:
                raise FormatError(f"the bundle carries no consistency proof from size {other.tree_size}")
            if not isinstance(found.get("proof"), list):
                raise FormatError(f"the consistency proof from size {other.tree_size} is not a list of hashes")
            merkle.verify_consistency(other.tree_size, cp.tree_size, [_hexbytes(h) for h in found["proof"]], other.root_hash, cp.root_hash)
        report.add(name, True, f"the given checkpoint (size {other.tree_size}, signed by {who.key_id[:16]}…) is consistent with the "
                   f"bundle's (size {cp.tree_size}): the log was only appended to in between", "--checkpoint")
    except EvidenceLockError as exc:
        report.fail(name, str(exc), subject)


def _check_bundle_signature(src: BagSource, report: BundleReport, meta: Mapping[str, Any],
                            computed: dict[str, dict[str, str]], enrolled: dict[str, tuple[PublicKey, int]]) -> None:
    name = "evidence-bundle-signature"
    exporter = meta.get("exporter")
    try:
        sig = src.read_small("evidence/bundle.json.sig", 1024)
        data = src.read_small("evidence/bundle.json", 64 << 20)
    except (KeyError, InputError, OSError) as exc:
        report.fail(name, f"missing or unreadable: {exc!s}", "evidence/bundle.json.sig")
        return
    ks = enrolled.get(exporter) if isinstance(exporter, str) else None
    if ks is None:
        report.fail(name, f"exporter key {str(exporter)[:16]}… is not enrolled in this bundle", "evidence/bundle.json")
        return
    try:
        ks[0].verify(data, sig, subject="evidence/bundle.json")
    except EvidenceLockError as exc:
        report.fail(name, str(exc), "evidence/bundle.json.sig")
        return
    report.exporter = {"key_id": ks[0].key_id, "name": ks[0].name}
    files = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    bad = 0
    for p, expected in files.items():
        found = computed.get(p, {}).get("sha256")
        if found != expected:
            bad += 1
            report.fail(name, f"sha256 mismatch with the signed bundle.json: expected={expected} found={found} "
                        "(the file may have been edited after export)", str(p))
    unsigned = [p for p in src.sizes if not p.startswith("data/") and p not in files and not _signed_by_structure(p)]
    for p in unsigned[:50]:
        bad += 1
        report.fail(name, "tag file not covered by the exporter's signed bundle.json (added after export?)", p)
    if not bad:
        report.add(name, True, f"bundle.json signed by exporter {_who(exporter, enrolled)}; it pins the "
                   f"{len(files)} report and metadata files", "evidence/bundle.json")


def _check_verify_html(src: BagSource, report: BundleReport, computed: dict[str, dict[str, str]]) -> None:
    """docs/browser-verifier.md: a carried verify.html MUST be byte-equal to the verify.html this
    package ships or to a published earlier version: a bundle holder could ship one that lies."""
    from .browser import PUBLISHED_SHA256, VERIFY_HTML, verify_html_sha256

    shipped = verify_html_sha256()
    if VERIFY_HTML not in src.sizes:
        report.verify_html = {"present": False, "sha256": None, "shipped_sha256": shipped}
        return
    found = computed.get(VERIFY_HTML, {}).get("sha256")
    if found is None:
        try:
            with src.open(VERIFY_HTML) as f:
                found = hashlib.file_digest(f, "sha256").hexdigest()
        except (KeyError, InputError, OSError) as exc:
            report.fail("evidence-verify-html", f"unreadable: {exc!s}", VERIFY_HTML)
            return
    known = found == shipped or found in PUBLISHED_SHA256
    report.verify_html = {"present": True, "sha256": found, "shipped_sha256": shipped, "known": known}
    if known:
        report.add("evidence-verify-html", True, f"verify.html is a published evidencelock browser verifier (SHA-256 "
                   f"{found})", VERIFY_HTML)
    else:
        report.fail("evidence-verify-html", f"verify.html is not a browser verifier published by evidencelock: expected "
                    f"SHA-256={shipped} (this version) or one of {len(PUBLISHED_SHA256)} earlier published versions, "
                    f"found={found}; it may have been replaced with one that lies: do not use it", VERIFY_HTML)


_REQUIRED_MANIFESTS = ("manifest-sha256.txt", "manifest-sha512.txt", "tagmanifest-sha256.txt", "tagmanifest-sha512.txt")
# Digest names a signed entry may record that this verifier recomputes with a second read (the
# ledger's own are SHA-256 and BLAKE3, computed in the first read).  SHAKE needs a length: not here.
_EXTRA_DIGESTS = frozenset(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake"))
_HEX = re.compile(r"\A[0-9a-f]{16,256}\Z")


def _signer_name(key: PublicKey, enrolled: Mapping[str, tuple[PublicKey, int]]) -> str:
    """The custodian name of a signer for a claim: its enrolled name (a key pinned by PEM carries none), never empty."""
    ks = enrolled.get(key.key_id)
    name = (ks[0].name if ks is not None else "") or key.name
    return name or ("enrolled without a name" if ks is not None else "not enrolled in this bundle")


def _who(key_id: str, enrolled: Mapping[str, tuple[PublicKey, int]]) -> str:
    """A signer in words: the custodian name from its signed key-enroll entry, and the key id."""
    ks = enrolled.get(key_id)
    if ks is not None and ks[0].name:
        return f"custodian {ks[0].name!r} (key {key_id[:16]}…)"
    return f"key {key_id[:16]}… ({'enrolled without a name' if ks is not None else 'not enrolled in this bundle'})"


def _check_required_manifests(src: BagSource, report: BundleReport) -> None:
    """bundle-format §2, §5 step 2: both digest families, for the payload and for the tag files."""
    missing = [n for n in _REQUIRED_MANIFESTS if n not in src.sizes]
    for n in missing:
        report.fail("evidence-manifests", "missing: an evidence bundle MUST carry SHA-256 and SHA-512 payload and tag "
                    "manifests (bundle-format §2); without it the bundle rests on a single digest family", n)
    if not missing:
        report.add("evidence-manifests", True, "SHA-256 and SHA-512 payload and tag manifests present")


_ROTATION_HINT = ("; if the custodian rotated keys after this bundle was made, pin with --trusted-key both the "
                  "new key and the key that signed the bundle, each obtained from the custodian independently "
                  "(docs/transparency.md §7.1)")


def _check_checkpoint_signer(report: BundleReport, signer: PublicKey | None, cp: Checkpoint | None,
                             revoked: Mapping[str, int], enrolled: Mapping[str, tuple[PublicKey, int]]) -> None:
    """§5 step 7: a checkpoint of size S MUST NOT be signed by a key revoked by an entry with seq < S."""
    if signer is None or cp is None:
        return
    r = revoked.get(signer.key_id)
    if r is not None and r < cp.tree_size:
        report.fail("evidence-checkpoint-signature", f"signed by {_who(signer.key_id, enrolled)}, which entry {r} revoked "
                    f"before this checkpoint (tree size {cp.tree_size} covers entries 0 to {cp.tree_size - 1}): a revoked "
                    "key may not sign; the checkpoint may have been re-signed with a stolen or retired key",
                    "evidence/checkpoint.txt")


def _check_external_signer(report: BundleReport, cp: Checkpoint, external: bytes | None, keys: list[PublicKey],
                           revoked: Mapping[str, int], enrolled: Mapping[str, tuple[PublicKey, int]],
                           trusted: list[PublicKey | str]) -> None:
    """§5 step 13: the given checkpoint's signer, like the bundle's, is not revoked before it and is pinned."""
    if external is None:
        return
    try:
        note = cp_mod.parse_note(external)
        who = note_signer(note, keys, cp.origin, revoked=revoked, pinned=trusted_key_ids(trusted))
        other = note.verify(cp.origin, who.raw)
    except EvidenceLockError as exc:
        if not any(c.name == "evidence-external-checkpoint" and not c.ok for c in report.checks):
            report.fail("evidence-external-checkpoint", str(exc), "--checkpoint")
        return  # otherwise _check_consistency has named the problem
    r = revoked.get(who.key_id)
    if r is not None and r < other.tree_size:
        report.fail("evidence-external-checkpoint", f"signed by {_who(who.key_id, enrolled)}, which entry {r} revoked before "
                    f"that checkpoint (tree size {other.tree_size}): a revoked key may not sign", "--checkpoint")
    ids = trusted_key_ids(trusted)
    if ids and who.key_id not in ids:
        report.fail("evidence-trusted-key", f"the --checkpoint file is signed by {_who(who.key_id, enrolled)} (key id "
                    f"{who.key_id}), which is not among the --trusted-key keys {sorted(ids)}", "--checkpoint")


def _check_bundle_signer(report: BundleReport, meta: Mapping[str, Any], enrolled: Mapping[str, tuple[PublicKey, int]],
                         revoked: Mapping[str, int], trusted: list[PublicKey | str]) -> None:
    """§4.7, §5 steps 11-12: the exporter key is not revoked by any included entry, and is pinned when keys are."""
    exporter = meta.get("exporter")
    if not isinstance(exporter, str) or exporter not in enrolled:
        return  # _check_bundle_signature has refused it
    who = _who(exporter, enrolled)
    r = revoked.get(exporter)
    if r is not None:
        # Every key-revoke entry of the log at export time is included (§4.1): one in the bundle
        # predates the export, so the exporter signed with a key it no longer held legitimately.
        report.fail("evidence-bundle-signature", f"bundle.json is signed by {who}, which entry {r} of this bundle revokes: "
                    "a revoked key may not sign an export; bundle.json and the files it pins (names, report, "
                    "certification, metadata) may have been rewritten", "evidence/bundle.json.sig")
    ids = trusted_key_ids(trusted)
    if not ids:
        return
    if exporter in ids:
        report.add("evidence-trusted-key", True, f"bundle.json signed by pinned {who}", "evidence/bundle.json.sig")
    else:
        report.fail("evidence-trusted-key", f"bundle.json is signed by {who} (key id {exporter}), which is not among the "
                    f"--trusted-key keys {sorted(ids)}: the names, report and certification it pins are not vouched "
                    "for by a pinned key", "evidence/bundle.json.sig")


def _check_digests(src: BagSource, report: BundleReport, meta: Mapping[str, Any], computed: dict[str, dict[str, str]],
                   entries: Mapping[int, SignedEntry]) -> None:
    """§5 step 10a: bundle.json's SHA-512 and size per item, and every digest a signed entry records.

    Each digest an entry records for a payload file's bytes (``body.digests``, keyed by algorithm
    name) is recomputed and compared: SHA-256 and BLAKE3 come from the fixity read, other hashlib
    algorithms from a second read.  A name this verifier cannot compute is reported as NOT checked.
    """
    name = "evidence-digests"
    bad = 0
    items = meta.get("items") if isinstance(meta.get("items"), list) else []
    for i in items:
        if (not isinstance(i, dict) or not isinstance(i.get("path"), str) or not i["path"].startswith("data/")
                or i["path"] not in computed):
            continue  # coverage (step 10) names items that are not in the bag
        p, found = i["path"], computed[i["path"]]
        for field_, value in (("sha512", found.get("sha512")), ("size", src.sizes.get(p))):
            if i.get(field_) != value:
                bad += 1
                report.fail(name, f"bundle.json item {field_} mismatch: expected={i.get(field_)} (signed bundle.json) "
                            f"found={value} (recomputed from the payload file)", p)
    by_sha = {d["sha256"]: p for p, d in computed.items() if p.startswith("data/") and "sha256" in d}
    extra: dict[tuple[str, str], str | None] = {}
    not_checked: list[str] = []
    checked_algs: set[str] = set()
    n_entries = 0
    for seq in sorted(entries):
        body = entries[seq].entry.body
        digests, item = body.get("digests"), body.get("item")
        if not isinstance(digests, dict) or not isinstance(item, str) or item not in by_sha:
            continue
        p = by_sha[item]
        n_entries += 1
        for alg, recorded in sorted(digests.items()):
            if alg in computed[p]:
                found = computed[p][alg]
            elif alg in _EXTRA_DIGESTS:
                if (p, alg) not in extra:
                    r = _hash_members(src, [p], [alg], 1)[p]
                    extra[(p, alg)] = r[alg] if isinstance(r, dict) else None
                found = extra[(p, alg)]
            else:
                not_checked.append(f"entry {seq} records a {str(alg)[:40]!r} digest of {p}")
                continue
            if not isinstance(recorded, str) or not _HEX.match(recorded) or found is None or recorded != found:
                bad += 1
                report.fail(name, f"body.digests.{alg} does not match the payload file {p}: expected={recorded!r} "
                            f"(signed entry) found={found} (recomputed); the entry describes other bytes", f"entry {seq}")
            else:
                checked_algs.add(alg)
    if not_checked:
        report.not_established.append("Digests this verifier cannot compute were NOT checked: " + "; ".join(not_checked[:20])
                                      + (f" (and {len(not_checked) - 20} more)" if len(not_checked) > 20 else "") + ".")
    if not bad and (items or n_entries):
        report.add(name, True, f"bundle.json's SHA-512 and size of every item, and every digest recorded by the {n_entries} "
                   f"signed entries about the payload ({', '.join(sorted(checked_algs)) or 'none'}), recomputed and matching"
                   + (f"; {len(not_checked)} digest(s) of unknown algorithms NOT checked" if not_checked else ""))


def _signed_by_structure(p: str) -> bool:
    """Tag files whose integrity the evidence checks establish directly (not via bundle.json)."""
    return (p in ("bagit.txt", "bag-info.txt", "evidence/bundle.json", "evidence/bundle.json.sig", "evidence/entries.jsonl",
                  "evidence/proofs.json", "evidence/checkpoint.txt", "evidence/checkpoint-body.txt", "evidence/checkpoint.sig",
                  "evidence/timestamp.tst", "evidence/tsa-chain.pem", "evidence/timestamp.tsq")
            or bool(_MANIFEST.match(p)) or bool(_SEQ_FILE.match(p)) or bool(_KEY_FILE.match(p))
            or p.startswith("evidence/upstream/"))  # §4.9: bound by U, named in signed receipts


def _item_summary(path: str, size: int, digests: Mapping[str, str], ingests: list[SignedEntry],
                  entries: Mapping[int, SignedEntry], enrolled: Mapping[str, tuple[PublicKey, int]],
                  listed: Mapping[str, Any]) -> dict[str, Any]:
    sha = digests.get("sha256", "")
    custody = []
    for s in sorted(entries.values(), key=lambda s: s.entry.seq):
        if s.entry.body.get("item") == sha:
            e = s.entry
            custody.append({"seq": e.seq, "time": e.time, "type": e.type, "actor": e.actor,
                            "custodian": enrolled.get(e.actor, (PublicKey(b"\0" * 32), 0))[0].name,
                            "source": e.body.get("source", {}).get("path") if isinstance(e.body.get("source"), dict) else None,
                            "note": e.body.get("note")})
    # §3 / issue 9 item 4: the names a reader sees are the signed source paths, not bundle.json's.
    signed_names = [c["source"] for c in custody if c["type"] == "ingest" and isinstance(c["source"], str)]
    return {"path": path, "size": size, "digests": dict(digests), "original_names": listed.get("original_names", []),
            "signed_names": signed_names, "custody": custody}


_ENTRY_CHECKS = ("evidence-entries", "evidence-signature", "evidence-inclusion", "evidence-record", "evidence-chain",
                 "evidence-entry-files")


def _check_custody(report: BundleReport, meta: Mapping[str, Any], entries: Mapping[int, SignedEntry],
                   enrolled: Mapping[str, tuple[PublicKey, int]]) -> None:
    """§5 step 14a (issue 10): custody of each item, derived by evidencelock.timeline from the
    entries whose own checks passed (an entry named by a failed entry check is left out: say less).

    A custody finding of severity "fail" (an acceptance that does not match a pending release to
    its signer, …) is an ``evidence-custody`` failure naming the entry; a notice is listed under
    "Not established".  The result (``report.custody``) is what the verifier states about custody."""
    from .._text import printable
    from ..timeline import build, human_time

    if not {"evidence-signature", "evidence-inclusion"} <= {c.name for c in report.checks}:
        return  # no entry could be verified: nothing is stated about custody
    bad = {c.subject for c in report.failures if c.name in _ENTRY_CHECKS}
    verified = [entries[seq] for seq in sorted(entries) if f"entry {seq}" not in bad]
    if not verified:
        return
    names = {kid: k.name for kid, (k, _) in enrolled.items()}
    tl = build(verified, names)
    case = report.case
    fails = [f for f in tl.findings if f.severity == "fail"]
    for f in fails:
        report.fail("evidence-custody", f"{f.code}: {f.message}", f"entry {f.seq}")
    for f in tl.findings:
        if f.severity != "fail":
            report.not_established.append(f"Custody notice, entry {f.seq} ({f.code}): {f.message}")

    def who(kid: Any, name: str = "") -> dict[str, Any]:
        kid = kid if isinstance(kid, str) else ""
        return {"key_id": kid, "name": name or names.get(kid, "")}

    def event(ev: Any) -> dict[str, Any]:
        return {"seq": ev.seq, "time": ev.time, "when": human_time(ev.time), "type": ev.type, "premis": ev.premis,
                "actor": ev.actor, "actor_name": ev.actor_name, "text": ev.text, "status": ev.status,
                "related": list(ev.related), "item": ev.item,
                **({"key_id": ev.body["key_id"]} if ev.type.startswith("key-") and isinstance(ev.body.get("key_id"), str) else {})}

    by_seq = {ev.seq: ev for ic in tl.items.values() for ev in ic.events}
    items = []
    paths = {i["sha256"]: i.get("path") for i in meta.get("items", []) if isinstance(i, dict) and isinstance(i.get("sha256"), str)}
    counts = {"accepted": 0, "pending": 0, "superseded": 0}
    for listed in meta.get("items", []):
        sha = listed.get("sha256") if isinstance(listed, dict) else None
        ic = tl.items.get((case, sha)) if isinstance(sha, str) else None
        if ic is None:
            continue
        transfers = []
        for ev in ic.events:
            if ev.type != "transfer" or ev.status is None:
                continue
            counts[ev.status] = counts.get(ev.status, 0) + 1
            accept = next((by_seq[r] for r in ev.related if r in by_seq and by_seq[r].type == "transfer-accept"), None)
            transfers.append({"seq": ev.seq, "time": ev.time, "from": who(ev.actor, ev.actor_name),
                              "to": who(ev.body.get("to")), "status": ev.status,
                              "note": printable(ev.body["note"]) if isinstance(ev.body.get("note"), str) else None,
                              "accept": None if accept is None or ev.status != "accepted" else
                              {"seq": accept.seq, "time": accept.time, "when": human_time(accept.time),
                               "by": who(accept.actor, accept.actor_name)}})
        derived_from, derived_copies = [], []
        for ev in ic.events:
            copy, orig = ev.body.get("item"), ev.body.get("original")
            if ev.type != "derive" or not isinstance(copy, str) or not isinstance(orig, str):
                continue
            link = {"seq": ev.seq, "action": printable(str(ev.body.get("action", ""))), "by": who(ev.actor, ev.actor_name)}
            if copy == sha:
                derived_from.append({**link, "sha256": orig, "path": paths.get(orig)})
            elif orig == sha:
                derived_copies.append({**link, "sha256": copy, "path": paths.get(copy)})
        items.append({"path": listed.get("path"), "sha256": sha, "derived_from": derived_from,
                      "derived_copies": derived_copies,
                      "holder": who(ic.holder, ic.holder_name) if ic.holder else None,
                      "in_transit_to": who(ic.in_transit_to, ic.in_transit_name) if ic.in_transit_to else None,
                      "events": [event(ev) for ev in ic.events], "transfers": transfers})
    from ..report import signer_key_events

    report.custody = {"basis": f"{len(verified)} of the {len(entries)} entries, those whose signature, inclusion and "
                               "record checks passed",
                      "items": items, "case_events": [event(ev) for ev in tl.case_events.get(case, [])],
                      "key_events": [event(ev) for ev in signer_key_events(verified, tl.case_events)],
                      "findings": [{"code": f.code, "seq": f.seq, "severity": f.severity, "message": f.message}
                                   for f in tl.findings]}
    if not fails:
        report.add("evidence-custody", True, f"custody of {len(items)} items derived from {len(verified)} verified "
                   f"entries: {counts['accepted']} transfers accepted by their receivers, {counts['pending']} pending "
                   f"(never accepted), {counts['superseded']} superseded; every acceptance matches its release")


# Checks every verdict rests on (§5): each MUST have run and passed for VERIFIED.
_CORE_CHECKS = ("bagit-payload-fixity", "bagit-tag-fixity", "evidence-entries", "evidence-signature",
                "evidence-checkpoint-signature", "evidence-inclusion", "evidence-record", "evidence-chain",
                "evidence-bundle-checkpoint", "evidence-bundle-signature", "evidence-payload-covered")


def _passed(report: BundleReport) -> set[str]:
    """Names of checks that ran, passed and never failed."""
    failed = {c.name for c in report.failures}
    return {c.name for c in report.checks if c.ok} - failed


class _Claims:
    """The only way to state an "Established" line: each claim names the checks it rests on, and is
    stated only if every one of them ran and passed; otherwise it is listed as NOT established."""

    def __init__(self, report: BundleReport, passed: set[str]) -> None:
        self.report, self.passed = report, passed

    def add(self, requires: tuple[str, ...], text: str, *, per_item: bool = False) -> None:
        missing = [r for r in requires if r not in self.passed]
        if missing:
            self.report.not_established.append(f"NOT checked ({', '.join(missing)} did not run or did not pass), so not "
                                               f"stated: {text}")
        else:
            self.report.established.append(text)
            if per_item:
                self.report.item_claims.append(text)


def _conclude(report: BundleReport, trusted: list[PublicKey | str], signer: PublicKey | None, cp: Checkpoint | None,
              entries: Mapping[int, SignedEntry], enrolled: Mapping[str, tuple[PublicKey, int]],
              external: bytes | None) -> None:
    # §5 step 12: a pin is a whole key id (trusted_key_ids refuses prefixes); equality, never startswith.
    trusted_ids = trusted_key_ids(trusted)
    passed = _passed(report)
    if trusted:
        if signer is not None and signer.key_id in trusted_ids:
            bound = ("; every included entry is bound to it by its inclusion proof" if "evidence-inclusion" in passed else "")
            report.add("evidence-trusted-key", True, f"checkpoint signed by pinned {_who(signer.key_id, enrolled)}{bound}",
                       "evidence/checkpoint.txt")
        else:
            report.fail("evidence-trusted-key", f"the checkpoint is signed by "
                        f"{_who(signer.key_id, enrolled) + ' (key id ' + signer.key_id + ')' if signer else '(no verified signer)'}"
                        f", which is not among the --trusted-key keys {sorted(trusted_ids)}", "evidence/checkpoint.txt")
    # No claim without its check: a check that every verdict rests on and that did not run is a failure.
    for check in _CORE_CHECKS if not report.failures else ():
        if check not in passed:
            report.fail(check, "this check did not run (nothing to check, or its input was unusable): what it would "
                        "establish is not established")
    if report.failures:
        report.not_established.append("Because of the failures above, this bundle does NOT establish the integrity or "
                                      "custody of its contents.")
        return
    claim = _Claims(report, passed)
    n = len(report.items)
    claim.add(("evidence-payload-covered", "evidence-digests", "bagit-payload-fixity"), f"The {n} payload files are byte-identical to the files recorded in the custody ledger: "
                              "their SHA-256 and SHA-512 were recomputed now and match the manifests and the signed "
                              "bundle.json, and the size and every digest that the signed ingest entries record for them "
                              "(SHA-256, BLAKE3) match; any digest that could not be computed is listed below.")
    for item in report.items:
        first = next((c for c in item["custody"] if c["type"] == "ingest"), None)
        if first:
            signed_names = ", ".join(repr(n) for n in item.get("signed_names", [])) or "(none)"
            claim.add(("evidence-payload-covered", "evidence-signature", "evidence-payload-name"),
                      f"{item['path']} (signed source name {signed_names}): ingested (dated {first['time']} "
                                      f"by the signer's own clock) by custodian "
                                      f"{first['custodian'] or first['actor'][:16]} (key {first['actor'][:16]}…), entry {first['seq']}.",
                      per_item=True)
    if cp is not None and signer is not None:
        claim.add(("evidence-inclusion", "evidence-checkpoint-signature", "evidence-entries"),
                  f"All {len(entries)} custody entries are part of log {cp.origin} as committed by the "
                                  f"checkpoint at tree size {cp.tree_size} (root {cp.root_hash.hex()[:16]}…) signed by key "
                                  f"{signer.key_id[:16]}… ({_signer_name(signer, enrolled)}); none of them can have been rewritten without "
                                  "changing that checkpoint.")
        links = sum(1 for seq in entries if seq == 0 or seq - 1 in entries)
        claim.add(("evidence-record", "evidence-chain", "evidence-bundle-signature"),
                  f"Every entry listed in the exporter's signed record is present ({len(entries)} entries), "
                                  f"and the hash-chain link (prev) was checked for the {links} entries whose predecessor "
                                  "is also in the bundle (entry 0: the genesis value); the others are bound to the log "
                                  "by their inclusion proofs only.")
        if report.custody is not None:
            claim.add(("evidence-custody", "evidence-signature", "evidence-inclusion", "evidence-record"),
                      "Custody (section Custody): each item's holder is derived from the signed entries in this bundle; a "
                      "transfer is shown as accepted only where the named receiver's enrolled key signed an acceptance "
                      "that points at that release (its seq and entry hash); a release without one is shown as pending "
                      "and the item as in transit.")
        report.not_established.append("That the exporter listed every relevant entry: the signed record is the exporter's "
                                      "statement; someone holding an enrolled key could export a bundle that omits entries "
                                      "(compare with a bundle or audit obtained from another custodian).")
    if report.timestamp and report.timestamp.get("trusted"):
        claim.add(("evidence-timestamp",), f"That checkpoint existed no later than {report.timestamp['time']}, according to the "
                                  f"timestamp authority {report.timestamp['tsa']}, whose certificate chains to the "
                                  f"root you trusted with --tsa-root (SHA-256 {report.timestamp['root_sha256']}).")
    elif report.timestamp:
        report.not_established.append(f"When the log existed: the token claims {report.timestamp['time']}, signed by "
                                      f"{report.timestamp['tsa']}, but this time is claimed by an untrusted TSA: its "
                                      f"root certificate (SHA-256 {report.timestamp['root_sha256']}) came with the "
                                      "bundle, and anyone can make such a token with any time. Obtain the authority's "
                                      "root certificate independently and pass --tsa-root FILE.")
    elif not any(c.name == "evidence-timestamp" for c in report.checks):
        report.not_established.append("When the log existed: the checkpoint carries no RFC 3161 timestamp; the times in "
                                      "the entries are the custodians' own statements.")
    if not trusted:
        ids = sorted({signer.key_id} if signer else set())
        report.not_established.append(f"Who the keys belong to: the checkpoint is signed by key {ids[0][:16] if ids else '?'}…, "
                                      "which was not pinned. Anyone can build a self-consistent bundle with keys of their "
                                      "own; obtain the custodian organisation's key independently and pass --trusted-key to pin it.")
        report.not_established.append("Who signed: the identities of the checkpoint signer"
                                      f"{' (' + _who(signer.key_id, enrolled) + ')' if signer else ''} and of the bundle.json "
                                      "signer (the exporter) rest only on key-enroll entries and keys carried inside this "
                                      "bundle; the names are what those entries say, not verified facts. Pass --trusted-key "
                                      "with the keys obtained independently to pin both.")
    if external is None:
        report.not_established.append("That the log was only appended to since an earlier published checkpoint: pass "
                                      "--checkpoint FILE with a checkpoint obtained independently.")
    else:
        _conclude_external(report, claim, cp)
    report.not_established.append("Who filmed or created the files, whether what they show is genuine or staged, and "
                                  "anything that happened to them before ingest. Capture metadata (times, places, devices) "
                                  "is what the files themselves claim, not a verified fact.")
    report.not_established.append("Ledger entries outside this bundle (other items, other cases) were not seen.")


def _conclude_external(report: BundleReport, claim: "_Claims", cp: Checkpoint | None) -> None:
    """§5 step 13 in words (issue 11): consistency with the given checkpoint is stated only when it was
    checked; a newer checkpoint without a consistency proof is listed as NOT established."""
    ext = [c for c in report.checks if c.name == "evidence-external-checkpoint"]
    warned = [c for c in ext if c.warning]
    if warned:
        report.not_established.append("Consistency with the checkpoint you gave (--checkpoint): it is newer than the "
                                      "bundle's and no consistency proof was given, so it was not checked. "
                                      + warned[0].detail.removeprefix("WARNING: ").split(". ", 1)[-1] + ".")
        return
    if cp is not None:
        claim.add(("evidence-external-checkpoint", "evidence-checkpoint-signature"),
                  f"The bundle's checkpoint (tree size {cp.tree_size}) is consistent with the checkpoint you gave "
                  "(--checkpoint): one of them extends the other by appended entries only, as an RFC 9162 consistency "
                  "proof between the two signed checkpoints shows.")


# -- completeness, chain, names, bag-info, closed file list (issue 9 items 1, 4, 6) ---------------
_GENESIS_PREV = "0" * 64
_REQUIRED_RECORD_KEYS = {"seq", "leaf", "type", "case", "item"}


def _listed_items(meta: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    items = meta.get("items") if isinstance(meta.get("items"), list) else []
    return {i["sha256"]: i for i in items if isinstance(i, dict) and isinstance(i.get("sha256"), str)}


def _check_record(report: BundleReport, meta: Mapping[str, Any], entries: Mapping[int, SignedEntry]) -> None:
    """§4.7 ``record``: the signed list of every included entry.  Each listed entry MUST be present
    with the listed leaf hash, type, case and item; no entry may be present that is not listed; each
    listed item MUST have an ingest entry of the case; entries MUST be relevant (§4.1)."""
    name, subject = "evidence-record", "evidence/bundle.json"
    record = meta.get("record")
    if not isinstance(record, list):
        report.fail(name, "bundle.json has no signed 'record' of the included entries: a dropped entry could not be "
                    "detected", subject)
        return
    bad = 0
    listed: dict[int, Mapping[str, Any]] = {}
    for n, r in enumerate(record):
        if (not isinstance(r, dict) or set(r) != _REQUIRED_RECORD_KEYS or not isinstance(r["seq"], int)
                or isinstance(r["seq"], bool) or r["seq"] < 0 or r["seq"] in listed):
            report.fail(name, f"record[{n}] is malformed or repeated (expected an object with {sorted(_REQUIRED_RECORD_KEYS)})",
                        subject)
            bad += 1
            continue
        listed[r["seq"]] = r
    if [r.get("seq") for r in record if isinstance(r, dict)] != sorted(listed):
        report.fail(name, "record is not in ascending seq order", subject)
        bad += 1
    for seq, r in sorted(listed.items()):
        s = entries.get(seq)
        if s is None:
            report.fail(name, f"entry {seq} ({r.get('type')}, case {r.get('case')!r}) is listed in the signed record but "
                        "missing from the bundle: it was removed after export", f"entry {seq}")
            bad += 1
            continue
        e = s.entry
        found = {"seq": seq, "leaf": s.leaf_hash.hex(), "type": e.type, "case": e.case, "item": e.body.get("item")}
        diff = [k for k in sorted(_REQUIRED_RECORD_KEYS) if r.get(k) != found[k]]
        if diff:
            report.fail(name, "differs from the signed record: " + "; ".join(f"{k} expected={r.get(k)!r} found={found[k]!r}"
                                                                            for k in diff), f"entry {seq}")
            bad += 1
    for seq in sorted(set(entries) - set(listed)):
        report.fail(name, "entry is in the bundle but not in the exporter's signed record (added after export?)", f"entry {seq}")
        bad += 1
    items = _listed_items(meta)
    case = meta.get("case")
    for sha in sorted(items):
        if not any(s.entry.type == "ingest" and s.entry.body.get("item") == sha and s.entry.case == case
                   for s in entries.values()):
            report.fail(name, f"no ingest entry of case {case!r} for item {sha[:16]}…: its first custody entry is missing",
                        str(items[sha].get("path", sha)))
            bad += 1
    for sha, it in sorted(items.items()):
        ingest_seqs = sorted(seq for seq, s in entries.items() if s.entry.type == "ingest"
                             and s.entry.body.get("item") == sha and s.entry.case == case)
        if ingest_seqs and it.get("entries") != ingest_seqs:
            report.fail(name, f"items[].entries expected={ingest_seqs} (the item's ingest entries in the bundle) "
                        f"found={it.get('entries')}", str(it.get("path", sha)))
            bad += 1
    for seq, s in sorted(entries.items()):
        e = s.entry
        item = e.body.get("item")
        if e.type not in ("key-enroll", "key-revoke") and item is not None and (not isinstance(item, str) or item not in items):
            report.fail(name, f"entry is about item {str(item)[:16]}…, which the bundle does not carry (§4.1)", f"entry {seq}")
            bad += 1
    if not bad:
        report.add(name, True, f"the exporter's signed record lists exactly the {len(listed)} included entries (leaf "
                   "hash, type, case, item), and every item's ingest entry is among them", subject)


def _check_chain(report: BundleReport, entries: Mapping[int, SignedEntry]) -> None:
    """docs/ledger-format.md: ``prev`` of entry N is the entry hash of entry N-1 (of the genesis
    value for entry 0).  Checked wherever both ends are in the bundle."""
    name = "evidence-chain"
    links = bad = 0
    for seq, s in sorted(entries.items()):
        if seq == 0:
            expected = _GENESIS_PREV
        elif seq - 1 in entries:
            expected = entries[seq - 1].entry_hash
        else:
            continue
        links += 1
        if s.entry.prev != expected:
            bad += 1
            report.fail(name, f"hash chain broken: expected prev={expected} found prev={s.entry.prev} (an entry "
                        "between them was removed, replaced or reordered)", f"entry {seq}")
    if not bad:
        report.add(name, True, f"{links} hash-chain links checked (every entry whose predecessor is present; entry 0 "
                   "against the genesis value); "
                   "entries whose predecessor is not in the bundle are bound by their inclusion proofs instead")


def _check_carried_consistency(report: BundleReport, proofs: Mapping[str, Any], cp: Checkpoint) -> None:
    """§4.5: every consistency proof the bundle carries MUST verify, with or without --checkpoint."""
    name = "evidence-consistency"
    carried = proofs.get("consistency", [])
    if not isinstance(carried, list):
        report.fail(name, "'consistency' is not a list", "evidence/proofs.json")
        return
    bad = 0
    for n, c in enumerate(carried):
        subject = f"evidence/proofs.json consistency[{n}]"
        try:
            if not isinstance(c, dict) or set(c) != {"from_size", "from_root", "proof"}:
                raise FormatError("expected an object with from_size, from_root, proof")
            size, proof = c["from_size"], c["proof"]
            if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= cp.tree_size or not isinstance(proof, list):
                raise FormatError(f"from_size must be an integer in 1..{cp.tree_size}, found {size!r}")
            merkle.verify_consistency(size, cp.tree_size, [_hexbytes(h) for h in proof], _hexbytes(c["from_root"]),
                                      cp.root_hash)
        except EvidenceLockError as exc:
            report.fail(name, str(exc), subject)
            bad += 1
    if carried and not bad:
        report.add(name, True, f"all {len(carried)} consistency proofs carried verify (RFC 9162 §2.1.4.2) up to tree "
                   f"size {cp.tree_size}", "evidence/proofs.json")


def _check_names(report: BundleReport, meta: Mapping[str, Any], entries: Mapping[int, SignedEntry]) -> None:
    """§3: each payload path MUST be derivable from a signed source path of the item's ingest
    entries in the case; ``original_names`` MUST be those signed paths."""
    name = "evidence-payload-name"
    case = meta.get("case")
    bad = 0
    items = _listed_items(meta)
    for sha, item in sorted(items.items()):
        path = item.get("path")
        signed = [_signed_source_path(s) for _, s in sorted(entries.items())
                  if s.entry.type == "ingest" and s.entry.body.get("item") == sha and s.entry.case == case]
        if not isinstance(path, str) or not signed:
            continue  # reported by evidence-record / evidence-payload-covered
        if not any(derivable_from(path, o, sha) for o in signed):
            report.fail(name, f"payload path is not derived from the signed source name(s) {signed} (§3): the file was "
                        "renamed after ingest", path)
            bad += 1
        if item.get("original_names") != signed:
            report.fail(name, f"original_names expected={signed} (signed ingest entries) found={item.get('original_names')}",
                        path)
            bad += 1
    if items and not bad:
        report.add(name, True, f"every payload path ({len(items)}) is derived from the source name signed at ingest")


def _signed_source_path(s: SignedEntry) -> str:
    """§3: ``body.source.path`` of an ingest entry; the empty string when it has none."""
    src = s.entry.body.get("source")
    path = src.get("path") if isinstance(src, dict) else None
    return path if isinstance(path, str) else ""


_BAG_INFO_FIXED = {"Internal-Sender-Description": "evidencelock evidence bundle: see VERIFY.md and report.html"}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_bag_info_signed(src: BagSource, report: BundleReport, meta: Mapping[str, Any]) -> None:
    """§2: every bag-info.txt field is either derived from signed bundle.json values or fixed text;
    any other field is refused (bag-info.txt itself is not signed)."""
    name, subject = "evidence-bag-info", "bag-info.txt"
    try:
        text = src.read_small(subject, 1 << 20).decode("utf-8")
    except KeyError:
        report.fail(name, "missing (§2 requires bag-info.txt)", subject)
        return
    except (InputError, UnicodeDecodeError, OSError) as exc:
        report.fail(name, f"unreadable: {exc}", subject)
        return
    expected = {
        "Bag-Software-Agent": _one_line(str(meta.get("software", ""))),
        "Bagging-Date": str(meta.get("created", ""))[:10],
        "External-Identifier": _one_line(str(meta.get("case", ""))),
        "Source-Organization": _one_line(str(meta.get("origin", ""))),
        **_BAG_INFO_FIXED,
    }
    items = _listed_items(meta).values()
    expected["Payload-Oxum"] = f"{sum(i.get('size', 0) for i in items if isinstance(i.get('size'), int))}.{len(items)}"
    seen: set[str] = set()
    bad = 0
    for n, line in enumerate(text.splitlines(), 1):
        label, sep, value = line.partition(":")
        if not sep or label in seen or label not in expected:
            why = ("is not 'Label: value'" if not sep else f"repeats {label!r}" if label in seen
                   else f"field {label!r} is not part of the signed bundle (added after export?)")
            report.fail(name, f"line {n} {why}", subject)
            bad += 1
            continue
        seen.add(label)
        if value.strip() != expected[label]:
            report.fail(name, f"{label} expected={expected[label]!r} (signed bundle.json) found={value.strip()!r}", subject)
            bad += 1
    for label in sorted(set(expected) - seen):
        report.fail(name, f"field {label} is missing", subject)
        bad += 1
    if not bad:
        report.add(name, True, "every bag-info.txt field matches the signed bundle.json (case, origin, date, software, "
                   "Payload-Oxum)", subject)


_ALLOWED_TOP = {"bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt", "tagmanifest-sha256.txt",
                "tagmanifest-sha512.txt", "VERIFY.md", "report.html", "report.pdf", "certification.md",
                "certification.docx", "certification.odt", "verify.html",
                "evidence/bundle.json", "evidence/bundle.json.sig", "evidence/entries.jsonl", "evidence/proofs.json",
                "evidence/checkpoint.txt", "evidence/checkpoint-body.txt", "evidence/checkpoint.sig",
                "evidence/timestamp.tst", "evidence/tsa-chain.pem", "evidence/timestamp.tsq", "evidence/metadata.json"}


def _check_allowed_files(src: BagSource, report: BundleReport) -> None:
    """§2 "No other files": an extra manifest (e.g. manifest-md5.txt) or any unlisted tag file is refused."""
    name = "evidence-unexpected-file"
    extra = sorted(p for p in src.sizes if not p.startswith("data/") and p not in _ALLOWED_TOP
                   and not p.startswith("evidence/upstream/")  # §4.9: upstream.check_upstream decides those
                   and not _SEQ_FILE.match(p) and not _KEY_FILE.match(p))
    for p in extra[:50]:
        report.fail(name, "file not allowed in an evidence bundle (§2: no other files)", p)
    if not extra:
        report.add(name, True, "the bag holds only the files §2 allows")


def _check_bundle_checkpoint(report: BundleReport, meta: Mapping[str, Any], cp: Checkpoint | None) -> None:
    """§4.7: bundle.json ``checkpoint`` MUST name the checkpoint the bundle carries."""
    name, subject = "evidence-bundle-checkpoint", "evidence/bundle.json"
    if cp is None:
        return  # the checkpoint itself failed (reported above)
    claimed = meta.get("checkpoint")
    expected = {"size": cp.tree_size, "root": cp.root_hash.hex(), "file": "evidence/checkpoint.txt"}
    if claimed != expected:
        report.fail(name, f"bundle.json checkpoint expected={expected} (evidence/checkpoint.txt) found={claimed}", subject)
    else:
        report.add(name, True, f"bundle.json names the carried checkpoint (size {cp.tree_size})", subject)


_BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


def _check_bagit_txt_exact(src: BagSource, report: BundleReport) -> None:
    """§2 / RFC 8493 §2.1.1: ``bagit.txt`` is exactly two lines; it is not signed, so nothing else
    may be added to it."""
    name, subject = "evidence-bagit-declaration", "bagit.txt"
    try:
        found = src.read_small(subject, 4096)
    except (KeyError, InputError, OSError) as exc:
        report.fail(name, f"missing or unreadable: {exc!s}", subject)
        return
    if found != _BAGIT_TXT:
        report.fail(name, f"expected exactly {_BAGIT_TXT!r}, found {found[:200]!r}", subject)
    else:
        report.add(name, True, "BagIt 1.0 declaration, exactly as §2 requires", subject)


# -- strict JSON and shapes of untrusted JSON (bundle-format §4, "Strict JSON") -------------------
def _strict_json(data: bytes) -> Any:
    """Parse untrusted JSON: UTF-8, no duplicate member names, no NaN/Infinity."""
    return _strictjson.loads(data)


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool and float are not integers here


def _is_hex(v: Any, n: int = 64) -> bool:
    return isinstance(v, str) and re.fullmatch(rf"[0-9a-f]{{{n}}}", v) is not None


_META_MEMBERS = {"format", "version", "origin", "case", "created", "software", "exporter", "checkpoint", "items",
                 "record", "files"}
_ITEM_MEMBERS = {"path", "sha256", "sha512", "size", "original_names", "entries"}
# §4.7: the human-readable files bundle.json pins; nothing else may be listed in ``files``.
_HUMAN_FILES = frozenset({"VERIFY.md", "certification.md", "evidence/metadata.json", "report.html", "report.pdf",
                          "certification.docx", "certification.odt",  # issue 11: editable certification, digest only
                          "verify.html"})


def _bundle_json_problems(meta: Mapping[str, Any]) -> list[str]:
    """§4.7: the members and types of bundle.json; one message per offending member."""
    from ..entry import format_time, parse_time

    out: list[str] = []
    if set(meta) | {"record"} != _META_MEMBERS:  # a missing record is named by evidence-record (§4.7)
        out.append(f"members expected={sorted(_META_MEMBERS)} found={sorted(meta)}")
    if not _is_int(meta.get("version")):
        out.append(f"version must be an integer, found {meta.get('version')!r}")
    for k in ("format", "origin", "case", "software"):
        if not isinstance(meta.get(k), str):
            out.append(f"{k} must be a string, found {type(meta.get(k)).__name__}")
    if not _is_hex(meta.get("exporter")):
        out.append("exporter must be a key id (64 lowercase hex digits)")
    created = meta.get("created")
    try:
        if format_time(parse_time(created)) != created:
            raise FormatError("not in canonical form")
    except (FormatError, ValueError):
        out.append(f"created must be a time YYYY-MM-DDTHH:MM:SS.ffffffZ (ledger-format §2.3), found {created!r}")
    cp = meta.get("checkpoint")
    if (not isinstance(cp, dict) or set(cp) != {"size", "root", "file"} or not _is_int(cp["size"])
            or not _is_hex(cp["root"]) or not isinstance(cp["file"], str)):
        out.append("checkpoint must be an object with exactly size (integer), root (64 hex), file (string)")
    items = meta.get("items")
    if not isinstance(items, list):
        out.append(f"items must be a list, found {type(items).__name__}")
    else:
        for n, i in enumerate(items):
            if (not isinstance(i, dict) or set(i) != _ITEM_MEMBERS or not isinstance(i["path"], str)
                    or not _is_hex(i["sha256"]) or not _is_hex(i["sha512"], 128) or not _is_int(i["size"])
                    or not isinstance(i["original_names"], list) or not all(isinstance(x, str) for x in i["original_names"])
                    or not isinstance(i["entries"], list) or not all(_is_int(x) for x in i["entries"])):
                out.append(f"items[{n}] must be an object with exactly path (string), sha256 (64 hex), sha512 (128 hex), "
                           "size (integer), original_names (list of strings), entries (list of integers)")
    record = meta.get("record")
    if isinstance(record, list):
        for n, r in enumerate(record):
            if (not isinstance(r, dict) or set(r) != _REQUIRED_RECORD_KEYS or not _is_int(r["seq"]) or not _is_hex(r["leaf"])
                    or not isinstance(r["type"], str) or not isinstance(r["case"], str)
                    or not (r["item"] is None or isinstance(r["item"], str))):
                out.append(f"record[{n}] must be an object with exactly seq (integer), leaf (64 hex), type (string), "
                           "case (string), item (string or null)")
    files = meta.get("files")
    if not isinstance(files, dict):
        out.append(f"files must be an object, found {type(files).__name__}")
    else:
        for p, h in files.items():
            if p not in _HUMAN_FILES:
                out.append(f"files lists {p!r}, which is not one of the files bundle.json pins {sorted(_HUMAN_FILES)}")
            elif not _is_hex(h):
                out.append(f"files[{p!r}] must be a SHA-256 (64 lowercase hex digits)")
    return out[:50]


def _proofs_problems(proofs: Any, entries: Mapping[int, SignedEntry], cp: Checkpoint) -> list[tuple[str, str]]:
    """§4.5: shape of proofs.json, and exactly one inclusion proof per included entry, each entry
    below the checkpoint's tree size.  Returns (subject, problem) pairs."""
    f = "evidence/proofs.json"
    beyond = [(f"entry {seq}", f"entry seq {seq} is not below the checkpoint's tree size {cp.tree_size}: the "
               "checkpoint does not contain it (added after the log was signed?)") for seq in sorted(entries)
              if seq >= cp.tree_size][:50]
    if not isinstance(proofs, dict):
        return beyond + [(f, f"must be a JSON object with tree_size, root_hash, inclusion, consistency; found {type(proofs).__name__}: "
                    "without it no entry is bound to the checkpoint")]
    out: list[tuple[str, str]] = beyond
    if set(proofs) != {"tree_size", "root_hash", "inclusion", "consistency"}:
        out.append((f, f"members expected=['consistency', 'inclusion', 'root_hash', 'tree_size'] found={sorted(proofs)}"))
    if not _is_int(proofs.get("tree_size")):
        out.append((f, f"tree_size must be an integer, found {proofs.get('tree_size')!r}"))
    incl = proofs.get("inclusion")
    if not isinstance(incl, dict):
        out.append((f, f"inclusion must be an object, found {type(incl).__name__}"))
        incl = {}
    if not isinstance(proofs.get("consistency"), list):
        out.append((f, "consistency must be a list"))
    wanted = {str(seq) for seq in entries}
    for k in sorted(set(incl) - wanted)[:50]:
        out.append((f"{f} inclusion[{k!r}]", "inclusion proof for an entry that the bundle does not include"))
    for k, path in incl.items():
        if k in wanted and (not isinstance(path, list) or not all(_is_hex(h) for h in path)):
            out.append((f"entry {k}", "inclusion proof must be a list of 64-hex hashes"))
    return out
