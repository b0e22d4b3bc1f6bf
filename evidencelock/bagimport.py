"""Import a plain BagIt bag (one made by another tool, e.g. bagit-python) into the vault.

docs/bundle-format.md "Importing plain BagIt bags".  The bag is untrusted input: it is read
through :mod:`evidencelock.bundle.source` (a folder or a zip, never extracted; symlinks, hard
links, special files, unsafe or colliding names, zip slip and zip bombs refused, named) and
validated FULLY before anything is preserved:

* ``bagit.txt`` (RFC 8493 §2.1.1): ``BagIt-Version`` 1.0 or 0.97, ``Tag-File-Character-Encoding``
  UTF-8, UTF-16 (with a byte-order mark) or ISO-8859-1; every other tag file is decoded with it;
* every ``manifest-<alg>.txt`` / ``tagmanifest-<alg>.txt`` (§2.1.3, §2.2.1) for md5, sha1,
  sha224, sha256, sha384 or sha512 (§2.4; any other algorithm is named and refuses the bag);
  lines as §2.1.3 allows them: hex in any case, one or more spaces or tabs, CR, LF or CRLF line
  ends, ``%0D %0A %25`` percent-decoded, a leading ``./`` normalised away;
* completeness both ways (§3): every listed file present (or listed in ``fetch.txt``), every
  payload file listed (1.0: in every payload manifest; 0.97: in at least one);
* every digest of every file recomputed in ONE read per file, payload and tag files;
* ``Payload-Oxum`` (§2.2.2) when present; ``bag-info.txt`` lines (label, value, continuations);
* ``fetch.txt`` (§2.2.3): entries are NEVER fetched; an entry naming a path outside ``data/``,
  an absolute path, a ``..`` component, or a malformed line refuses the bag.

Any problem refuses the whole bag (:class:`PlainBagRefused`, exit 1) with every problem named,
and nothing is written.  Then every payload file present is preserved by
:func:`evidencelock.receive.preserve_incoming` (bytes re-hashed while copied, checked against
the same digests again, all or nothing) with ``received`` =
``{"bagit": {version, encoding, bag_info, manifest_algorithms, digests, oxum?, identity}}``.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ._text import printable
from .bundle._paths import UnsafePath, check_bag_path
from .bundle.source import BagSource, Limits, open_source
from .errors import InputError, VerificationError
from .hashing import CHUNK_SIZE, new_hasher
from .ingest import ProgressFn
from .keys import CustodianKey
from .receive import Incoming, ReceiveReport, preserve_incoming, received_source
from .vault import Vault

__all__ = ["BagProblem", "PlainBagRefused", "PlainFile", "FetchEntry", "PlainBag", "PlainImportReport",
           "validate_plain_bag", "import_plain_bag", "parse_manifest_line", "received_member", "ALGORITHMS", "MAX_BAG_INFO_BYTES"]

# RFC 8493 §2.4 names md5, sha1, sha256, sha512; bagit-python also writes sha224 and sha384.
ALGORITHMS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}
VERSIONS = ("1.0", "0.97")
# bag-info.txt is copied into every received file's entry: bounded so 10,000 entries stay small.
MAX_BAG_INFO_BYTES = 64 << 10
MAX_PROBLEMS = 1000  # named individually; beyond that, counted

_MANIFEST = re.compile(r"\A(tag)?manifest-([^/]+)\.txt\Z")
_EOL = re.compile(r"\r\n|\r|\n")
_LINE = re.compile(r"\A([0-9A-Fa-f]+)[ \t]+(.+)\Z", re.S)
_PERCENT = re.compile(r"%(0[DdAa]|25)")
_OXUM = re.compile(r"\A([0-9]{1,20})\.([0-9]{1,20})\Z")
_LABEL = re.compile(r"\A([^:\s][^:]*?)[ \t]*:[ \t]*(.*)\Z", re.S)


@dataclass(frozen=True)
class BagProblem:
    check: str  # e.g. "bagit-payload-fixity", "bagit-fetch", "bagit-symlink"
    subject: str  # the file (bag path) or line it is about
    message: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "subject": self.subject, "message": self.message}

    def __str__(self) -> str:
        return f"{self.subject}: {self.message} [{self.check}]"


class PlainBagRefused(VerificationError):
    """The bag is not a valid BagIt bag: nothing was written.  Exit code 1."""

    def __init__(self, label: str, problems: Sequence[BagProblem], more: int = 0) -> None:
        n = len(problems) + more
        super().__init__(f"not a valid BagIt bag: {n} problem(s), first: {problems[0]}", subject=label,
                         hint="nothing was imported; ask the sender for an intact copy of the bag")
        self.problems = list(problems)
        self.more = more

    def to_json(self) -> dict[str, Any]:
        return {"ok": False, "refused": str(self), "problems": [p.to_json() for p in self.problems],
                "more_problems": self.more}


@dataclass(frozen=True)
class PlainFile:
    path: str  # bag path, "data/…"
    size: int
    sha256: str  # recomputed in the validation read
    digests: dict[str, str]  # alg -> lowercase hex, from the bag's payload manifests that list it


@dataclass(frozen=True)
class FetchEntry:
    url: str
    length: int | None  # None for "-"
    path: str  # bag path, "data/…"
    present: bool  # the file is in the bag anyway (then it is preserved from the bag; nothing is fetched)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "length": self.length, "path": self.path, "present": self.present}


@dataclass
class PlainBag:
    label: str  # the path as given
    name: str  # the folder or zip name (last component)
    version: str
    encoding: str
    bag_info: dict[str, list[str]]
    manifest_algorithms: list[str]
    tag_manifest_algorithms: list[str]
    files: list[PlainFile]
    fetch: list[FetchEntry]
    oxum: str | None
    identity: str  # docs/bundle-format.md: the plain-bag identity (source keys)

    @property
    def source_organization(self) -> list[str]:
        return self.bag_info.get("Source-Organization", [])

    @property
    def external_identifier(self) -> list[str]:
        return self.bag_info.get("External-Identifier", [])

    @property
    def not_fetched(self) -> list[FetchEntry]:
        return [f for f in self.fetch if not f.present]

    def to_json(self) -> dict[str, Any]:
        return {"bag": self.label, "name": self.name, "version": self.version, "encoding": self.encoding,
                "bag_info": self.bag_info, "manifest_algorithms": self.manifest_algorithms,
                "tag_manifest_algorithms": self.tag_manifest_algorithms, "files": len(self.files),
                "bytes": sum(f.size for f in self.files), "oxum": self.oxum, "identity": self.identity,
                "fetch": [f.to_json() for f in self.fetch]}


@dataclass
class PlainImportReport:
    bag: PlainBag
    receive: ReceiveReport
    notes: list[str] = field(default_factory=list)  # plain words for the person importing

    @property
    def ok(self) -> bool:
        return self.receive.ok

    def summary_lines(self) -> list[str]:
        """Plain words for the person importing (terminal-safe: names come from the bag)."""
        b, r = self.bag, self.receive
        lines = [printable(f"Plain BagIt bag {b.name} (BagIt {b.version}, {b.encoding} tag files): every file "
                           f"checked against its {', '.join(b.manifest_algorithms)} manifest digests. The bag is "
                           "not signed: it does not show who made it or what happened before it was made."),
                 *(printable(f"  {n}") for n in self.notes),
                 f"{r.count('preserved')} file(s) preserved, {r.count('duplicate')} duplicate(s) (stored once), "
                 f"{r.count('already-recorded')} already recorded for case {printable(r.case)}; {r.bytes_read} bytes."]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"kind": "plain-bagit", "ok": self.ok, "bag": self.bag.to_json(), "import": self.receive.to_json(),
                "not_fetched": [f.to_json() for f in self.bag.not_fetched], "notes": self.notes}


class _Problems:
    def __init__(self) -> None:
        self.items: list[BagProblem] = []
        self.more = 0

    def add(self, check: str, subject: str, message: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(BagProblem(check, subject, message))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.items)


# -- tag files ---------------------------------------------------------------------------------
def _codec(encoding: str) -> str | None:
    """The Python codec for a Tag-File-Character-Encoding we accept (RFC 8493 §2.1.1), else None."""
    e = encoding.strip().upper().replace("_", "-")
    return {"UTF-8": "utf-8", "UTF8": "utf-8", "UTF-16": "utf-16", "UTF-16LE": "utf-16-le", "UTF-16BE": "utf-16-be",
            "ISO-8859-1": "latin-1", "ISO8859-1": "latin-1", "LATIN-1": "latin-1", "LATIN1": "latin-1"}.get(e)


def _decode(data: bytes, codec: str, name: str, problems: _Problems) -> str | None:
    if codec == "utf-16" and data[:2] not in (b"\xff\xfe", b"\xfe\xff") and data:
        problems.add("bagit-encoding", name, "declared UTF-16 but has no byte-order mark (RFC 8493 §2.1.1: cannot tell "
                     "its byte order)")
        return None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        problems.add("bagit-encoding", name, f"not valid {codec} as bagit.txt declares (byte {exc.start})")
        return None
    return text[1:] if text.startswith("\ufeff") else text


def _lines(text: str) -> list[str]:
    """RFC 8493 §2.1.3: lines end with LF, CR or CRLF."""
    lines = _EOL.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _unpercent(path: str) -> str:
    # RFC 8493 §2.1.3: only CR, LF and % are percent-encoded in file paths; one pass, so "%250A" is "%0A".
    return _PERCENT.sub(lambda m: {"0d": "\r", "0a": "\n", "25": "%"}[m.group(1).lower()], path)


def _norm(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def parse_manifest_line(line: str) -> tuple[str, str] | None:
    """RFC 8493 §2.1.3: (lowercase digest, bag path) of one manifest line (its line end
    removed), or None if it is not '<hex> <spaces or tabs> <path>'.  The path is percent-
    decoded and its leading './' removed; its safety is checked separately (check_bag_path)."""
    m = _LINE.match(line)
    if not m:
        return None
    return m.group(1).lower(), _norm(_unpercent(m.group(2)))


def _read_tag(src: BagSource, name: str, codec: str, problems: _Problems, limit: int | None = None) -> str | None:
    try:
        data = src.read_small(name, limit)
    except InputError as exc:
        problems.add("bagit-limits", name, exc.message)
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged zip member or a vanished file is a named problem
        problems.add("bagit-unreadable", name, f"cannot be read: {exc}")
        return None
    return _decode(data, codec, name, problems)


def _declaration(src: BagSource, problems: _Problems) -> tuple[str, str, str | None]:
    """RFC 8493 §2.1.1: (version, encoding, codec or None)."""
    try:
        raw = src.read_small("bagit.txt", 4096)
    except Exception as exc:  # noqa: BLE001
        problems.add("bagit-declaration", "bagit.txt", f"cannot be read: {exc}")
        return "", "", None
    # §2.1.1: UTF-8; a UTF-8 byte-order mark (which some tools write) is tolerated.
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.add("bagit-declaration", "bagit.txt", "not UTF-8 (RFC 8493 §2.1.1)")
        return "", "", None
    fields: dict[str, str] = {}
    for n, line in enumerate(_lines(text), 1):
        m = _LABEL.match(line)
        if not m:
            problems.add("bagit-declaration", "bagit.txt", f"line {n} is not 'Label: value': {line[:80]!r}")
            continue
        fields[m.group(1)] = m.group(2).strip()
    version = fields.get("BagIt-Version", "")
    encoding = fields.get("Tag-File-Character-Encoding", "")
    if version not in VERSIONS:
        problems.add("bagit-declaration", "bagit.txt", f"BagIt-Version {version!r} is not supported "
                     f"(expected one of {', '.join(VERSIONS)})")
    codec = _codec(encoding)
    if codec is None:
        problems.add("bagit-declaration", "bagit.txt", f"Tag-File-Character-Encoding {encoding!r} is not supported "
                     "(expected UTF-8, UTF-16 or ISO-8859-1)")
    return version, encoding, codec


def _bag_info(src: BagSource, codec: str, problems: _Problems) -> dict[str, list[str]]:
    """RFC 8493 §2.2.2: 'Label: value' lines; a line starting with space or tab continues the
    value; labels may repeat (values kept in order, as lists)."""
    if "bag-info.txt" not in src.sizes:
        if "bag-info.txt" in src.refused:
            problems.add("bagit-bag-info", "bag-info.txt", "refused (see above) and cannot be read")
        return {}
    text = _read_tag(src, "bag-info.txt", codec, problems, MAX_BAG_INFO_BYTES)
    if text is None:
        return {}
    info: dict[str, list[str]] = {}
    last: tuple[str, int] | None = None
    for n, line in enumerate(_lines(text), 1):
        if line[:1] in (" ", "\t") and line.strip():
            if last is None:
                problems.add("bagit-bag-info", "bag-info.txt", f"line {n} continues no label: {line[:80]!r}")
                continue
            label, i = last
            info[label][i] += " " + line.strip()
            continue
        if not line.strip():
            continue
        m = _LABEL.match(line)
        if not m:
            problems.add("bagit-bag-info", "bag-info.txt", f"line {n} is not 'Label: value': {line[:80]!r}")
            continue
        label = m.group(1).strip()
        info.setdefault(label, []).append(m.group(2).strip())
        last = (label, len(info[label]) - 1)
    return info


def _manifest(src: BagSource, name: str, alg: str, codec: str, tag: bool, problems: _Problems,
              resolve: Callable[[str], str]) -> dict[str, str] | None:
    """path -> lowercase hex for one manifest (RFC 8493 §2.1.3 / §2.2.1), problems named."""
    text = _read_tag(src, name, codec, problems)
    if text is None:
        return None
    check = "bagit-tag-manifest" if tag else "bagit-manifest"
    entries: dict[str, str] = {}
    for n, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        parsed = parse_manifest_line(line)
        if parsed is None:
            problems.add(check, name, f"line {n} is not '<checksum> <path>': {line[:80]!r}")
            continue
        digest, p = parsed[0], resolve(parsed[1])
        if len(digest) != ALGORITHMS[alg]:
            problems.add(check, name, f"line {n}: a {alg} digest has {ALGORITHMS[alg]} hex digits, found {len(digest)}")
            continue
        try:
            check_bag_path(p)
        except UnsafePath as exc:
            problems.add("bagit-path-safety", name, f"line {n} names a path that escapes or confuses the bag "
                         f"{p[:80]!r}: {exc}")
            continue
        if not tag and not p.startswith("data/"):
            problems.add(check, name, f"line {n}: a payload manifest lists {p!r}, outside data/")
            continue
        if tag and p.startswith("data/"):
            problems.add(check, name, f"line {n}: a tag manifest lists payload file {p!r}")
            continue
        if p in entries:
            problems.add(check, name, f"line {n}: {p!r} listed twice")
            continue
        entries[p] = digest
    return entries


def _fetch(src: BagSource, codec: str, problems: _Problems, resolve: Callable[[str], str]) -> list[tuple[str, int | None, str]]:
    """RFC 8493 §2.2.3: 'URL LENGTH FILENAME' lines.  Never fetched; a malformed line or a path
    that is not a safe path under data/ refuses the bag."""
    if "fetch.txt" not in src.sizes:
        if "fetch.txt" in src.refused:
            problems.add("bagit-fetch", "fetch.txt", "refused (see above) and cannot be read")
        return []
    text = _read_tag(src, "fetch.txt", codec, problems)
    if text is None:
        return []
    out: list[tuple[str, int | None, str]] = []
    for n, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            problems.add("bagit-fetch", "fetch.txt", f"line {n} is not 'URL LENGTH FILENAME': {line[:80]!r}")
            continue
        url, length, raw = parts
        p = _unpercent(raw)
        if p.startswith("/"):
            problems.add("bagit-fetch", "fetch.txt", f"line {n}: absolute path {p[:80]!r} (the file must be under data/)")
            continue
        p = resolve(_norm(p))
        try:
            check_bag_path(p)
        except UnsafePath as exc:
            problems.add("bagit-fetch", "fetch.txt", f"line {n}: path {p[:80]!r} escapes or confuses the bag: {exc}")
            continue
        if not p.startswith("data/"):
            problems.add("bagit-fetch", "fetch.txt", f"line {n}: path {p!r} is outside data/")
            continue
        out.append((url, None if length == "-" else int(length), p))
    return out


# -- hashing -----------------------------------------------------------------------------------
def _hash_all(src: BagSource, want: dict[str, list[str]], jobs: int | None) -> dict[str, dict[str, str] | str]:
    """path -> {alg: hex} (every alg of ``want[path]`` from ONE read), or a reason it failed."""
    def one(p: str) -> tuple[str, dict[str, str] | str]:
        algs = want[p]
        hashers = [new_hasher(a) for a in algs]
        size = 0
        try:
            with src.open(p) as f:
                buf = bytearray(CHUNK_SIZE)
                view = memoryview(buf)
                while n := f.readinto(buf):  # type: ignore[attr-defined]
                    for h in hashers:
                        h.update(view[:n])
                    size += n
                    if size > src.sizes[p]:
                        break
        except Exception as exc:  # noqa: BLE001 - a damaged zip member or a vanished file is a named problem
            return p, f"cannot be read: {exc}"
        if size != src.sizes[p]:
            return p, f"size changed while being read: expected={src.sizes[p]} found={size}"
        return p, {a: h.hexdigest() for a, h in zip(algs, hashers)}

    order = sorted(want, key=lambda p: -src.sizes[p])  # big files first: better packing
    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1), thread_name_prefix="bag-hash") as pool:
        return dict(pool.map(one, order))


# -- validation --------------------------------------------------------------------------------
def _validate(src: BagSource, label: str, *, jobs: int | None = None) -> PlainBag:
    """Every check of the module docstring; raises PlainBagRefused naming every problem."""
    problems = _Problems()
    for p in src.problems:  # symlinks, hard links, unsafe names, zip slip, bombs…
        problems.add(p.name, p.subject, p.detail)
    names = set(src.sizes)
    if "bagit.txt" not in names and "bagit.txt" not in src.refused:
        raise InputError("not a BagIt bag: no bagit.txt (RFC 8493 §2.1.1)", subject=label,
                         hint="import-bundle reads an evidence bundle or a BagIt bag (folder or zip)")
    if "evidence/bundle.json" in names or "evidence/bundle.json" in src.refused:
        raise InputError("this is an evidence bundle, not a plain BagIt bag", subject=label,
                         hint="it must be imported as an evidence bundle, so that its signed custody records are verified")
    version, encoding, codec = ("", "", None)
    if "bagit.txt" in names:
        version, encoding, codec = _declaration(src, problems)
    else:
        problems.add("bagit-declaration", "bagit.txt", "refused (see above) and cannot be read (RFC 8493 §2.1.1)")
    if codec is None:
        raise PlainBagRefused(label, problems.items, problems.more)

    payload = sorted(p for p in names if p.startswith("data/"))
    nfc = {unicodedata.normalize("NFC", p): p for p in names}

    def resolve(p: str) -> str:
        # A manifest written on another system may spell a name in another Unicode normal form.
        return p if p in names else nfc.get(unicodedata.normalize("NFC", p), p)

    payload_m: dict[str, dict[str, str]] = {}
    tag_m: dict[str, dict[str, str]] = {}
    for name in sorted(n for n in names | src.refused if "/" not in n and _MANIFEST.match(n)):
        m = _MANIFEST.match(name)
        assert m is not None
        tag, alg = bool(m.group(1)), m.group(2)
        if alg not in ALGORITHMS:
            problems.add("bagit-manifest-algorithm", name, f"unknown algorithm {alg!r} (RFC 8493 §2.4; supported: "
                         f"{', '.join(ALGORITHMS)}): this manifest cannot be checked")
            continue
        if name not in names:
            problems.add("bagit-manifest", name, "refused (see above) and cannot be read")
            continue
        parsed = _manifest(src, name, alg, codec, tag, problems, resolve)
        if parsed is not None:
            (tag_m if tag else payload_m)[alg] = parsed
    if not payload_m and not any(p.check in ("bagit-manifest", "bagit-manifest-algorithm") for p in problems.items):
        problems.add("bagit-manifest", "manifest-<alg>.txt", "no payload manifest (RFC 8493 §2.1.3 requires one)")
    info = _bag_info(src, codec, problems)
    fetch_raw = _fetch(src, codec, problems, resolve)
    fetch_paths = {p for _, _, p in fetch_raw}

    # Completeness (RFC 8493 §3), both ways.
    listed: dict[str, dict[str, str]] = {}
    for alg, entries in sorted(payload_m.items()):
        for p, digest in entries.items():
            listed.setdefault(p, {})[alg] = digest
            if p not in names and p not in fetch_paths and p not in src.refused:
                problems.add("bagit-completeness", p, f"listed in manifest-{alg}.txt but missing from the bag")
    for p in payload:
        algs_listing = [a for a in payload_m if p in payload_m[a]]
        if not algs_listing:
            problems.add("bagit-completeness", p, "present in data/ but listed in no payload manifest (an added file?)")
        elif version == "1.0" and len(algs_listing) != len(payload_m):
            missing = sorted(set(payload_m) - set(algs_listing))
            problems.add("bagit-completeness", p, f"not listed in {', '.join(f'manifest-{a}.txt' for a in missing)} "
                         "(RFC 8493 §3: every payload file is listed in every payload manifest)")
    for _, _, p in fetch_raw:
        if p not in listed:
            problems.add("bagit-fetch", p, "listed in fetch.txt but in no payload manifest (RFC 8493 §2.2.3)")
    tag_files = sorted(p for p in names if not p.startswith("data/"))
    for alg, entries in sorted(tag_m.items()):
        for p in entries:
            if p not in names and p not in src.refused:
                problems.add("bagit-completeness", p, f"listed in tagmanifest-{alg}.txt but missing from the bag")

    # Fixity: every digest of every file in ONE read (plus SHA-256 of every file: the vault's
    # address of a payload file, and the bag identity over the tag files).
    want: dict[str, list[str]] = {}
    for p in payload:
        if p in listed:
            want[p] = sorted(set(listed[p]) | {"sha256"})
    for p in tag_files:
        want[p] = sorted({a for a in tag_m if p in tag_m[a]} | {"sha256"})
    computed = _hash_all(src, want, jobs)
    for p, r in sorted(computed.items()):
        check = "bagit-payload-fixity" if p.startswith("data/") else "bagit-tag-fixity"
        if isinstance(r, str):
            problems.add(src.damaged[p].name if p in src.damaged else check, p, r)
            continue
        expected_by = listed.get(p, {}) if p.startswith("data/") else {a: tag_m[a][p] for a in tag_m if p in tag_m[a]}
        for alg, expected in sorted(expected_by.items()):
            if r[alg] != expected:
                where = "manifest" if p.startswith("data/") else "tagmanifest"
                problems.add(check, p, f"{alg} mismatch: expected={expected} found={r[alg]} (from {where}-{alg}.txt; "
                             "the file may have been modified or damaged)")

    # Payload-Oxum (RFC 8493 §2.2.2): octets.streams of the payload.
    oxum_values = info.get("Payload-Oxum", [])
    oxum = oxum_values[0] if oxum_values else None
    if len(oxum_values) > 1:
        problems.add("bagit-payload-oxum", "bag-info.txt", f"Payload-Oxum given {len(oxum_values)} times")
    if oxum is not None:
        m = _OXUM.match(oxum)
        present = (sum(src.sizes[p] for p in payload), len(payload))
        if not m:
            problems.add("bagit-payload-oxum", "bag-info.txt", f"Payload-Oxum {oxum!r} is not '<octets>.<streams>'")
        else:
            found = (int(m.group(1)), int(m.group(2)))
            absent = [(ln, p) for _, ln, p in fetch_raw if p not in names]
            # With files listed in fetch.txt and absent, the Oxum may count them (their stated lengths).
            with_fetch = (present[0] + sum(ln or 0 for ln, _ in absent), present[1] + len(absent)) \
                if absent and all(ln is not None for ln, _ in absent) else None
            if found != present and found != with_fetch:
                problems.add("bagit-payload-oxum", "bag-info.txt",
                             f"Payload-Oxum mismatch: expected={oxum} found={present[0]}.{present[1]} (octets.files "
                             "in data/; a file was added, removed or changed in size)")
    for p, prob in sorted(src.damaged.items()):
        if not any(x.subject == p for x in problems.items):
            problems.add(prob.name, p, prob.detail)
    if problems or problems.more:
        raise PlainBagRefused(label, problems.items, problems.more)

    files = [PlainFile(p, src.sizes[p], computed[p]["sha256"], dict(sorted(listed[p].items())))  # type: ignore[index]
             for p in payload]
    fetch = [FetchEntry(url, ln, p, p in names) for url, ln, p in fetch_raw]
    return PlainBag(label=label, name=os.path.basename(label.rstrip("/")) or label, version=version, encoding=encoding,
                    bag_info=info, manifest_algorithms=sorted(payload_m), tag_manifest_algorithms=sorted(tag_m),
                    files=files, fetch=fetch, oxum=oxum,
                    identity=_identity({p: computed[p]["sha256"] for p in tag_files}))  # type: ignore[index]


def _identity(tag_sha256: dict[str, str]) -> str:
    """docs/bundle-format.md "Importing plain BagIt bags": hex SHA-256 of the lines
    ``<sha256 hex>  <bag path>\\n`` of every file outside data/, sorted by UTF-8 path bytes."""
    h = hashlib.sha256()
    for p in sorted(tag_sha256, key=lambda s: s.encode("utf-8")):
        h.update(f"{tag_sha256[p]}  {p}\n".encode("utf-8"))
    return h.hexdigest()


def validate_plain_bag(path: str | os.PathLike[str], *, limits: Limits | None = None, jobs: int | None = None) -> PlainBag:
    """Validate a plain BagIt bag (folder or zip) fully; nothing is written anywhere.

    Raises :class:`PlainBagRefused` (exit 1) naming every problem, :class:`InputError` (exit 2)
    for something that is not a bag at all."""
    src = open_source(Path(path), limits or Limits())
    try:
        return _validate(src, os.fspath(path), jobs=jobs)
    finally:
        src.close()


def received_member(bag: PlainBag, f: PlainFile) -> dict[str, Any]:
    """The ``received`` member of the ingest entry of payload file ``f`` (docs/bundle-format.md)."""
    bagit: dict[str, Any] = {"version": bag.version, "encoding": bag.encoding, "bag_info": bag.bag_info,
                             "manifest_algorithms": bag.manifest_algorithms, "digests": dict(f.digests),
                             "identity": bag.identity}
    if bag.oxum is not None:
        bagit["oxum"] = bag.oxum
    return {"bagit": bagit}


def import_plain_bag(
    vault: Vault,
    key: CustodianKey,
    path: str | os.PathLike[str],
    *,
    case: str,
    note: str | None = None,
    now: Callable[[], datetime],
    extract_media: bool = True,
    progress: ProgressFn | None = None,
    jobs: int | None = None,
    limits: Limits | None = None,
) -> PlainImportReport:
    """Validate the plain BagIt bag at ``path`` fully, then preserve every payload file in it.

    Refusals (nothing written): :class:`PlainBagRefused` (invalid bag, exit 1),
    :class:`~evidencelock.receive.ReceiveRefused` (bytes changed after validation, exit 1),
    :class:`InputError` (not a bag, bad case name; exit 2)."""
    if not case.strip() or len(case.strip()) > 256:
        raise InputError("a case name of 1 to 256 characters is required (--case CASE)")
    label = os.fspath(path)
    src = open_source(Path(path), limits or Limits())
    try:
        bag = _validate(src, label, jobs=jobs)
        incoming = [Incoming(f.path, f.sha256, f.size,
                             received_source(vault, root=bag.name, identity=bag.identity, bag_path=f.path),
                             received_member(bag, f), dict(f.digests))
                    for f in bag.files]
        report = preserve_incoming(vault, src, incoming, key=key, case=case, note=note, now=now,
                                   extract_media=extract_media, progress=progress, jobs=jobs)
    finally:
        src.close()
    notes: list[str] = []
    for label_name in ("Source-Organization", "External-Identifier"):
        for value in bag.bag_info.get(label_name, []):
            notes.append(f"{label_name}: {value}")
    for f in bag.not_fetched:
        notes.append(f"{f.path}: listed in fetch.txt ({f.url}), not fetched, not preserved")
    for f in bag.fetch:
        if f.present:
            notes.append(f"{f.path}: listed in fetch.txt but present in the bag: preserved from the bag, nothing fetched")
    return PlainImportReport(bag, report, notes)
