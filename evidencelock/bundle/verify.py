"""verify-bundle: check an untrusted evidence bundle offline (docs/bundle-format.md §5).

Two layers, each a list of named checks; every problem is collected, then the caller decides
(STYLE.md §6).  Nothing here raises for a problem *in* the bundle: only unusable input (not a
folder or zip, not a bag at all) raises :class:`InputError`.

* BagIt layer (RFC 8493): declaration, safe paths, completeness both ways, payload fixity
  for every payload manifest in one read per file, tag fixity, Payload-Oxum.
* Evidence layer: entries parse as canonical entries and match their by-hand copies; keys
  match their enrolment entries; every entry's Ed25519 signature under a key enrolled by an
  earlier included entry; an RFC 9162 inclusion proof per entry against the checkpoint; the
  checkpoint's signed-note signature; the RFC 3161 token over the checkpoint; every payload
  file covered by an ingest entry with the same SHA-256 and size; the exporter's signature
  over bundle.json, which pins the unsigned tag files (metadata, report, certification).

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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import checkpoint as cp_mod
from .. import merkle, timestamp
from ..checkpoint import Checkpoint, SignedNote
from ..entry import SignedEntry
from ..errors import EvidenceLockError, FormatError, InputError, SignatureError
from ..keys import PublicKey, key_id_for, public_key_from_pem
from ._paths import UnsafePath, check_bag_path
from .source import BagSource, Limits, open_source

__all__ = ["Check", "BundleReport", "verify_bundle", "note_signer", "tsa_root_sha256", "BUNDLE_FORMAT",
           "BUNDLE_VERSION", "HASH_ALGORITHMS"]

BUNDLE_FORMAT = "evidencelock-bundle"
BUNDLE_VERSION = 1
HASH_ALGORITHMS = {"sha256": 64, "sha512": 128, "sha384": 96, "sha224": 56, "sha1": 40, "md5": 32}
_MANIFEST = re.compile(r"\A(tag)?manifest-([a-z0-9]+)\.txt\Z")
_LINE = re.compile(r"\A([0-9A-Fa-f]+)[ \t]+\*?(.+)\Z")
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


def note_signer(note: SignedNote, keys: Iterable[PublicKey], name: str) -> PublicKey:
    """The key among ``keys`` whose signed-note signature under ``name`` verifies; else raise.

    signed-note §Signatures: lines from unknown keys are ignored, a known key's line that does
    not verify rejects the note (SignedNote.verify raises).  Returns the key so callers can
    say who signed and pin it.
    """
    by_id = {}
    for k in keys:
        by_id[cp_mod.note_key_id(name, k.raw)] = k
    for sig in note.signatures:
        key = by_id.get(sig.key_id) if sig.name == name else None
        if key is not None:
            note.verify(name, key.raw)
            return key
    raise SignatureError(f"no signature by any known key under name {name!r}: found signers "
                         f"{[(s.name, s.key_id.hex()) for s in note.signatures]}",
                         hint="the checkpoint was signed by a key that is not enrolled in this bundle")


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

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "subject": self.subject}


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
    keys: dict[str, str] = field(default_factory=dict)
    case: str = ""
    payload_files: int = 0
    payload_bytes: int = 0

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def bagit_ok(self) -> bool:
        return all(c.ok for c in self.checks if c.name.startswith("bagit"))

    @property
    def ok(self) -> bool:
        return not self.failures and self.kind == "evidence-bundle"

    def add(self, name: str, ok: bool, detail: str, subject: str = "") -> None:
        self.checks.append(Check(name, ok, detail, subject))

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
            "keys": self.keys,
            "items": self.items,
        }


# ---------------------------------------------------------------------------------------------
def verify_bundle(
    path: str | os.PathLike[str],
    *,
    trusted_keys: Iterable[PublicKey | str] = (),
    checkpoint: bytes | None = None,
    limits: Limits = Limits(),
    jobs: int | None = None,
    now: datetime | None = None,
) -> BundleReport:
    """Verify the bundle at ``path`` (folder or zip); return every finding.

    ``trusted_keys``: public keys (or key ids) obtained independently; the bundle's checkpoint
    must be signed by one of them for the keys to count as pinned.  ``checkpoint``: a signed
    note obtained independently (e.g. published earlier); the bundle must prove it consistent.
    ``now``: the current time, to refuse timestamp tokens from the future (None: not checked).
    Raises :class:`InputError` only when ``path`` is not a bag at all.
    """
    src = open_source(Path(path), limits)
    try:
        report = BundleReport(str(path))
        computed = _check_bagit(src, report, jobs=jobs)
        if computed is None:
            return report
        _check_evidence(src, report, computed, list(trusted_keys), checkpoint, now)
        return report
    finally:
        src.close()


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
    try:
        with src.open(name) as f:
            for n, raw in enumerate(_manifest_lines(f, src.limits.max_line_bytes), 1):
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
                if not line.strip():
                    continue
                if not (m := _LINE.match(line)):
                    report.fail(check, f"line {n} is not '<checksum> <path>': {line[:80]!r}", name)
                    bad += 1
                elif len(m.group(1)) != HASH_ALGORITHMS[alg]:
                    report.fail(check, f"line {n}: a {alg} digest has {HASH_ALGORITHMS[alg]} hex digits, found {len(m.group(1))}", name)
                    bad += 1
                else:
                    # RFC 8493 §2.1.3: CR, LF and % in paths are percent-encoded.
                    p = m.group(2).replace("%0D", "\r").replace("%0d", "\r").replace("%0A", "\n").replace("%0a", "\n").replace("%25", "%")
                    try:
                        check_bag_path(p)
                    except UnsafePath as exc:
                        report.fail("bagit-path-safety", f"line {n} names an unsafe path {p[:80]!r}: {exc}", name)
                        bad += 1
                        continue
                    if tag == p.startswith("data/"):
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


_EOL = re.compile(rb"\r\n|\r|\n")


def _manifest_lines(f: Any, max_line: int) -> Iterator[bytes | None]:
    """Lines of ``f`` without their end (CRLF, LF or CR, RFC 8493 §2.1.3), read 1 MiB at a
    time; ``None`` stands for a line longer than ``max_line`` bytes, which is skipped unread."""
    rest = b""
    skipping = False
    while True:
        chunk = f.read(READ_CHUNK)
        data = rest + chunk if rest else chunk
        if not chunk:
            if rest and not skipping:
                tail = rest[:-1] if rest.endswith(b"\r") else rest
                yield tail if len(tail) <= max_line else None
            return
        pos = 0
        for m in _EOL.finditer(data):
            if m.end() == len(data) and data.endswith(b"\r"):
                break  # a CR at the end of a read may be the first half of a CRLF
            if skipping:
                skipping = False
            else:
                yield data[pos:m.start()] if m.start() - pos <= max_line else None
            pos = m.end()
        rest = data[pos:]
        if len(rest) > max_line + 1:
            if not skipping:
                yield None
                skipping = True
            rest = rest[-1:] if rest.endswith(b"\r") else b""


def _hash_members(src: BagSource, paths: list[str], algs: list[str], jobs: int | None) -> dict[str, dict[str, str] | str]:
    """One read per file, every algorithm at once, files in parallel (hashlib releases the GIL)."""
    def one(p: str) -> tuple[str, dict[str, str] | str]:
        hashers = [hashlib.new(a) for a in algs]
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


def _check_bagit(src: BagSource, report: BundleReport, *, jobs: int | None) -> dict[str, dict[str, str]] | None:
    """Run the BagIt checks; return path -> {alg: hex} for every readable file, or None if not a bag."""
    for p in src.problems:
        report.fail(p.name, p.detail, p.subject)
    names = set(src.sizes)
    manifests = {n: _MANIFEST.match(n) for n in names if "/" not in n and _MANIFEST.match(n)}
    if "bagit.txt" not in names and not manifests:
        raise InputError("not a BagIt bag: no bagit.txt and no manifest", subject=src.label,
                         hint="an evidence bundle is a folder or zip made by `evidencelock export`")
    # RFC 8493 §2.1.1: the bag declaration.
    if "bagit.txt" not in names:
        report.fail("bagit-declaration", "bagit.txt is missing (RFC 8493 §2.1.1)", "bagit.txt")
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
    results = _hash_members(src, readable_payload, palgs or ["sha256"], jobs)
    results.update(_hash_members(src, tag_files, talgs, jobs))
    bad_payload = bad_tag = 0
    for p, r in results.items():
        if isinstance(r, str):
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
    if not any(c.name == "bagit-completeness" for c in report.checks):
        report.add("bagit-completeness", True, "every payload file is listed in every manifest and every listed file is present")
    return computed


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
        return json.loads(src.read_small(name, 64 << 20).decode("utf-8"))
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
                    trusted: list[PublicKey | str], external_checkpoint: bytes | None, now: datetime | None) -> None:
    if "evidence/bundle.json" not in src.sizes:
        report.kind = "bagit-only"
        state = "valid" if report.bagit_ok else "INVALID"
        report.fail("evidence-present", f"BagIt layer {state}, evidence layer absent: this is a plain BagIt bag, not an "
                    "evidencelock bundle; nothing about custody, signatures or time can be established", "evidence/bundle.json")
        report.not_established.append("Custody, signatures and time: the bag carries no evidence layer.")
        return
    report.kind = "evidence-bundle"
    if not any(c.name == "bagit-tag-fixity" and c.ok for c in report.checks):
        report.fail("evidence-tag-manifest", "an evidence bundle must carry a tag manifest covering its evidence files", "tagmanifest-sha256.txt")
    meta = _json_file(src, "evidence/bundle.json", report, "evidence-format")
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT or meta.get("version") != BUNDLE_VERSION:
        if meta is not None:
            report.fail("evidence-format", f"expected format {BUNDLE_FORMAT!r} version {BUNDLE_VERSION}", "evidence/bundle.json")
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
            obj = json.loads(line)
            if not isinstance(obj, dict) or set(obj) != {"seq", "canonical", "signature"}:
                raise FormatError("expected an object with seq, canonical, signature")
            signed = SignedEntry.from_bytes(_b64(obj["canonical"]), _b64(obj["signature"]), subject=subject)
            if signed.entry.seq != obj["seq"]:
                raise FormatError(f"seq mismatch: line says {obj['seq']!r}, entry says {signed.entry.seq}")
            if signed.entry.seq in entries:
                raise FormatError(f"entry {signed.entry.seq} appears twice")
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
    all_keys = [k for k, _ in enrolled.values()] + [t for t in trusted if isinstance(t, PublicKey)]
    try:
        note = cp_mod.parse_note(src.read_small("evidence/checkpoint.txt", cp_mod.MAX_NOTE_BYTES))
        name = note.unverified_checkpoint.origin
        if origin != name:
            report.fail("evidence-checkpoint", f"origin mismatch: expected={origin!r} (bundle.json) found={name!r}",
                        "evidence/checkpoint.txt")
        signer = note_signer(note, all_keys, name)
        cp = note.verify(name, signer.raw)
        report.add("evidence-checkpoint-signature", True, f"checkpoint of {cp.origin} at tree size {cp.tree_size}, root "
                   f"{cp.root_hash.hex()[:16]}…, signed by key {signer.key_id[:16]}… ({signer.name})", "evidence/checkpoint.txt")
        report.checkpoint = {"origin": cp.origin, "size": cp.tree_size, "root": cp.root_hash.hex(), "signer": signer.key_id,
                             "signer_name": signer.name}
        sig = next(s for s in note.signatures if s.name == name and s.key_id == cp_mod.note_key_id(name, signer.raw))
        for p, expected in (("evidence/checkpoint-body.txt", note.unverified_body), ("evidence/checkpoint.sig", sig.signature)):
            try:
                if src.read_small(p, 1 << 16) != expected:
                    report.fail("evidence-checkpoint-files", "differs from the signed note in checkpoint.txt", p)
            except (KeyError, InputError, OSError) as exc:
                report.fail("evidence-checkpoint-files", f"by-hand copy unavailable: {exc!s}", p)
    except KeyError:
        report.fail("evidence-checkpoint-signature", "missing", "evidence/checkpoint.txt")
    except EvidenceLockError as exc:
        report.fail("evidence-checkpoint-signature", str(exc), "evidence/checkpoint.txt")
        signer, cp = None, None

    # 5. Inclusion proofs (RFC 9162 §2.1.3.2) against that checkpoint.
    proofs = _json_file(src, "evidence/proofs.json", report, "evidence-inclusion")
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
                merkle.verify_inclusion(s.leaf_hash, seq, cp.tree_size, [_hexbytes(h) for h in path], cp.root_hash)
                good += 1
            except EvidenceLockError as exc:
                report.fail("evidence-inclusion", str(exc), subject)
        if entries and good == len(entries):
            report.add("evidence-inclusion", True, f"all {good} entries are included in the checkpoint's tree "
                       f"(RFC 9162 inclusion proofs, tree size {cp.tree_size})")
        _check_consistency(report, proofs, cp, external_checkpoint, all_keys)
    elif external_checkpoint is not None:
        report.fail("evidence-external-checkpoint", "cannot be compared: the bundle's own checkpoint or proofs are unusable")

    # 6. Timestamp (§4.6): an RFC 3161 token over the checkpoint *body* (docs/transparency.md §5).
    _check_timestamp(src, report, cp, note, now)

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

    # 8. The exporter's signature over bundle.json pins the unsigned tag files.
    _check_bundle_signature(src, report, meta, computed, enrolled)

    # 9. Pinning and plain-words statements.
    _conclude(report, trusted, signer, cp, entries, enrolled, external_checkpoint)


def _check_timestamp(src: BagSource, report: BundleReport, cp: Checkpoint | None, note: SignedNote | None,
                     now: datetime | None) -> None:
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
            return
        chain = timestamp.load_tsa_certificates(src.read_small(pem, 1 << 20), subject=pem)
        info = timestamp.verify_token(token, body, tsa_certificate_pem=chain.tsa_pem, root_certificates_pem=chain.roots_pem,
                                      intermediate_certificates_pem=chain.intermediates_pem, now=now or _NO_CLOCK)
    except (EvidenceLockError, OSError, ValueError) as exc:
        report.fail(name, str(exc), tst)
        return
    when = info.time.isoformat()
    report.timestamp = {"time": when, "tsa": info.tsa_name, "root_sha256": tsa_root_sha256(chain)}
    report.add(name, True, f"RFC 3161 token: the checkpoint existed at {when} according to {info.tsa_name} "
               f"(certificate chain from the bundle)", tst)


def _check_consistency(report: BundleReport, proofs: Mapping[str, Any], cp: Checkpoint, external: bytes | None,
                       keys: list[PublicKey]) -> None:
    if external is None:
        return
    name = "evidence-external-checkpoint"
    try:
        note = cp_mod.parse_note(external)
        if note.unverified_checkpoint.origin != cp.origin:
            raise FormatError(f"origin mismatch: expected={cp.origin!r} found={note.unverified_checkpoint.origin!r}")
        who = note_signer(note, keys, cp.origin)
        other = note.verify(cp.origin, who.raw)
        if other.tree_size > cp.tree_size:
            raise FormatError(f"the given checkpoint (size {other.tree_size}) is newer than the bundle's (size {cp.tree_size}); "
                              "ask the custodian for a consistency proof between them")
        if other.tree_size == cp.tree_size:
            merkle.verify_consistency(cp.tree_size, cp.tree_size, [], other.root_hash, cp.root_hash)
        else:
            found = None
            for c in proofs.get("consistency", []) if isinstance(proofs.get("consistency"), list) else []:
                if isinstance(c, dict) and c.get("from_size") == other.tree_size:
                    found = c
            if found is None:
                raise FormatError(f"the bundle carries no consistency proof from size {other.tree_size}")
            merkle.verify_consistency(other.tree_size, cp.tree_size, [_hexbytes(h) for h in found.get("proof", [])], other.root_hash, cp.root_hash)
        report.add(name, True, f"the given checkpoint (size {other.tree_size}, signed by {who.key_id[:16]}…) is consistent with the "
                   f"bundle's (size {cp.tree_size}): the log was only appended to in between", "--checkpoint")
    except EvidenceLockError as exc:
        report.fail(name, str(exc), "--checkpoint")


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
        report.add(name, True, f"bundle.json signed by exporter {ks[0].name} ({exporter[:16]}…); it pins the "
                   f"{len(files)} report and metadata files", "evidence/bundle.json")


def _signed_by_structure(p: str) -> bool:
    """Tag files whose integrity the evidence checks establish directly (not via bundle.json)."""
    return (p in ("bagit.txt", "bag-info.txt", "evidence/bundle.json", "evidence/bundle.json.sig", "evidence/entries.jsonl",
                  "evidence/proofs.json", "evidence/checkpoint.txt", "evidence/checkpoint-body.txt", "evidence/checkpoint.sig",
                  "evidence/timestamp.tst", "evidence/tsa-chain.pem")
            or bool(_MANIFEST.match(p)) or bool(_SEQ_FILE.match(p)) or bool(_KEY_FILE.match(p)))


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
    return {"path": path, "size": size, "digests": dict(digests), "original_names": listed.get("original_names", []),
            "custody": custody}


def _conclude(report: BundleReport, trusted: list[PublicKey | str], signer: PublicKey | None, cp: Checkpoint | None,
              entries: Mapping[int, SignedEntry], enrolled: Mapping[str, tuple[PublicKey, int]],
              external: bytes | None) -> None:
    trusted_ids = {t.key_id if isinstance(t, PublicKey) else t.lower() for t in trusted}
    if trusted:
        if signer is not None and any(signer.key_id.startswith(t) for t in trusted_ids if len(t) >= 8):
            report.add("evidence-trusted-key", True, f"checkpoint signed by pinned key {signer.key_id[:16]}… ({signer.name}); "
                       "every included entry is bound to it by its inclusion proof")
        else:
            report.fail("evidence-trusted-key", f"the checkpoint is signed by key {signer.key_id if signer else '(none verified)'}"
                        f", which is not among the --trusted-key keys {sorted(trusted_ids)}")
    if report.failures:
        report.not_established.append("Because of the failures above, this bundle does NOT establish the integrity or "
                                      "custody of its contents.")
        return
    n = len(report.items)
    report.established.append(f"The {n} payload files are byte-identical to the files recorded in the custody ledger: "
                              "their SHA-256 and SHA-512 were recomputed now and match the manifests, and each SHA-256 "
                              "and size matches a signed ingest entry.")
    for item in report.items:
        first = next((c for c in item["custody"] if c["type"] == "ingest"), None)
        if first:
            report.established.append(f"{item['path']}: ingested at {first['time']} by custodian "
                                      f"{first['custodian'] or first['actor'][:16]} (key {first['actor'][:16]}…), entry {first['seq']}.")
    if cp is not None and signer is not None:
        report.established.append(f"All {len(entries)} custody entries are part of log {cp.origin} as committed by the "
                                  f"checkpoint at tree size {cp.tree_size} (root {cp.root_hash.hex()[:16]}…) signed by key "
                                  f"{signer.key_id[:16]}… ({signer.name}); none of them can have been rewritten without "
                                  "changing that checkpoint.")
    if report.timestamp:
        report.established.append(f"That checkpoint existed no later than {report.timestamp['time']}, according to the "
                                  f"timestamp authority {report.timestamp['tsa']}.")
        report.not_established.append(f"The TSA certificate chain came from the bundle (root SHA-256 "
                                      f"{report.timestamp['root_sha256'][:16]}…): compare it with the authority's "
                                      "published certificate before relying on the time.")
    elif not any(c.name == "evidence-timestamp" for c in report.checks):
        report.not_established.append("When the log existed: the checkpoint carries no RFC 3161 timestamp; the times in "
                                      "the entries are the custodians' own statements.")
    if not trusted:
        ids = sorted({signer.key_id} if signer else set())
        report.not_established.append(f"Who the keys belong to: the checkpoint is signed by key {ids[0][:16] if ids else '?'}…, "
                                      "which was not pinned. Anyone can build a self-consistent bundle with keys of their "
                                      "own; obtain the custodian organisation's key independently and pass --trusted-key to pin it.")
    if external is None:
        report.not_established.append("That the log was only appended to since an earlier published checkpoint: pass "
                                      "--checkpoint FILE with a checkpoint obtained independently.")
    report.not_established.append("Who filmed or created the files, whether what they show is genuine or staged, and "
                                  "anything that happened to them before ingest. Capture metadata (times, places, devices) "
                                  "is what the files themselves claim, not a verified fact.")
    report.not_established.append("Ledger entries outside this bundle (other items, other cases) were not seen.")
