"""import-bundle: preserve another organisation's evidence bundle, with its custody record.

Order (STYLE.md §9; docs/bundle-format.md §7 "Import"), on top of :mod:`evidencelock.receive`
(the one copy-and-record machinery shared with the plain-bag import):

1. every tag file (every file outside ``data/``) is copied into
   ``staging/<session>/import-<random>/`` (nothing under ``imports/`` yet);
2. ``receive.preserve_incoming`` reads every payload file ONCE: its bytes feed the staged copy
   and SHA-256, BLAKE3 and SHA-512, compared with bundle.json;
3. in its ``after_stage`` hook, before anything is recorded, the bundle is verified
   (``verify_bundle``) THROUGH THOSE COPIES: tag files read from the copies, payload digests
   those taken while staging.  The bytes verified are exactly the bytes committed: no window
   between verification and copy.  Any failure: the staged files and the copies are removed,
   nothing is recorded (exit 1, the failures named);
4. still in the hook: the staged bytes made durable, the tag files renamed into ``imports/<U>/``
   (U = SHA-256 of ``tagmanifest-sha256.txt``; made durable first; never overwritten: an
   existing ``imports/<U>`` is kept and must hash to U);
5. ``preserve_incoming`` appends one ``ingest`` entry per item, with ``received``
   (docs/bundle-format.md §4.9), in one transaction; a rerun finds every source already recorded
   and records nothing twice; then the objects are moved into place.

A plain BagIt bag (no evidence layer) is handed to :mod:`evidencelock.bagimport`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from .bundle.source import BagSource, Limits, open_source
from .bundle.upstream import items_by_sha256, receipt_problems
from .receive import Incoming, ReceiveRefused, preserve_incoming, received_source
from .bundle.verify import BundleReport, verify_bundle
from .entry import SignedEntry
from .errors import EvidenceLockError, InputError, VerificationError
from .hashing import open_regular
from .keys import CustodianKey, PublicKey
from .store import StagedObject, _fsync_dir, _makedirs_durable, _syncfs, _write_all
from .vault import Vault

__all__ = ["import_bundle", "ImportResult", "ImportedItem", "IMPORTS_DIR", "check_imports", "stored_import_problems"]

IMPORTS_DIR = "imports"
_HEX64 = frozenset("0123456789abcdef")


@dataclass
class ImportedItem:
    path: str  # payload path in the bundle
    sha256: str
    size: int
    status: str  # imported | duplicate | already-recorded
    seq: int | None
    transfer: dict[str, Any] | None  # the release this receipt accepts, if the bundle has one

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ImportResult:
    bundle: str
    ok: bool
    kind: str  # evidence-bundle | plain-bag
    case: str = ""
    tagmanifest_sha256: str = ""
    stored: str = ""  # imports/<U>
    stored_now: bool = False
    origin: str = ""
    source_case: str = ""
    items: list[ImportedItem] = field(default_factory=list)
    report: BundleReport | None = None
    plain: Any = None  # bagimport's result for a plain bag

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "bundle": self.bundle, "kind": self.kind, "case": self.case,
                               "tagmanifest_sha256": self.tagmanifest_sha256, "stored": self.stored,
                               "stored_now": self.stored_now, "origin": self.origin, "source_case": self.source_case,
                               "items": [i.to_json() for i in self.items]}
        if self.report is not None:
            out["verification"] = self.report.to_json()
        if self.plain is not None and hasattr(self.plain, "to_json"):
            out["plain"] = self.plain.to_json()
        return out


class _StagedView(BagSource):
    """The bag as copied: same listing and safety findings as the original; tag files and staged
    payload read from the copies; payload already recorded (not staged on a rerun) from the bag."""

    def __init__(self, orig: BagSource, files: Mapping[str, Path], unread: Mapping[str, str]) -> None:
        super().__init__(orig.label, orig.limits)
        self.sizes = dict(orig.sizes)
        self.problems = list(orig.problems)
        self.refused = set(orig.refused)
        self.damaged = orig.damaged  # shared: a zip member that fails to decode is named once
        self._orig = orig
        self._files = dict(files)
        self._unread = dict(unread)

    def open(self, path: str) -> BinaryIO:
        if path not in self.sizes:
            raise KeyError(path)
        if path in self._files:
            return os.fdopen(open_regular(self._files[path]), "rb", buffering=0)
        if path.startswith("data/") and path not in self._unread:
            return self._orig.open(path)
        raise OSError(f"{path}: could not be read while copying ({self._unread.get(path, 'unreadable')})")


def _copy_tag(src: BagSource, path: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with src.open(path) as f:
            while chunk := f.read(1 << 20):
                _write_all(fd, memoryview(chunk))
    finally:
        os.close(fd)


def _is_plain_bag(src: BagSource) -> bool:
    return "evidence/bundle.json" not in src.sizes and "evidence/bundle.json" not in src.refused


def import_bundle(
    vault: Vault,
    bundle: str | os.PathLike[str],
    *,
    key: CustodianKey,
    now: Callable[[], datetime],
    case: str | None = None,
    note: str | None = None,
    trusted_keys: Iterable[PublicKey | str] = (),
    tsa_roots: Iterable[bytes] = (),
    extract_media: bool = True,
    jobs: int | None = None,
    limits: Limits = Limits(),
) -> ImportResult:
    """Verify the bundle at ``bundle`` and preserve it in ``vault`` (module docstring).

    Returns a result with ``ok=False`` and the verification report when the bundle does not
    verify (nothing written, nothing recorded).  Raises :class:`InputError` for unusable input
    (not a bag) and :class:`StorageError` when the vault cannot be written.
    """
    if not vault.writable:
        raise ValueError("vault must be opened writable: the import is recorded")
    if note is not None and len(note) > 4096:
        raise InputError("the note is longer than 4096 characters")
    if case is not None:
        case = case.strip()
        if not case or len(case) > 256:
            raise InputError("a case name of 1 to 256 characters is required (--case CASE)")
    trusted_keys = list(trusted_keys)
    tsa_roots = list(tsa_roots)
    bundle_path = Path(bundle)
    src = open_source(bundle_path, limits)
    try:
        if _is_plain_bag(src):
            if "bagit.txt" not in src.sizes and "bagit.txt" not in src.refused:
                raise InputError("not a BagIt bag: no bagit.txt (RFC 8493 §2.1.1 requires it)", subject=str(bundle_path))
            src.close()
            return _import_plain(vault, bundle_path, key=key, now=now, case=case, note=note,
                                 extract_media=extract_media, jobs=jobs)
        return _import_evidence(vault, bundle_path, src, key=key, now=now, case=case, note=note,
                                trusted_keys=trusted_keys, tsa_roots=tsa_roots, extract_media=extract_media, jobs=jobs)
    finally:
        src.close()


def _import_plain(vault: Vault, path: Path, *, key: CustodianKey, now: Callable[[], datetime], case: str | None,
                  note: str | None, extract_media: bool, jobs: int | None) -> ImportResult:
    """A plain BagIt bag: validated fully and preserved by the bagit module (design10)."""
    try:
        from . import bagimport  # type: ignore[attr-defined]
    except ImportError:
        raise InputError("this is a plain BagIt bag (no evidencelock evidence layer); importing plain bags is not "
                         "available in this version", subject=str(path),
                         hint="use `evidencelock ingest` on its data/ folder, or `verify-bundle` to check it") from None
    if case is None:
        raise InputError("a plain BagIt bag names no case: give --case CASE", subject=str(path))
    plain = bagimport.import_plain_bag(vault, key, path, case=case, note=note, now=now, extract_media=extract_media,
                                       jobs=jobs)  # raises PlainBagRefused (exit 1, every problem named): nothing recorded
    return ImportResult(str(path), True, "plain-bag", case=case, plain=plain)


class _Refused(Exception):
    """The bundle did not verify (raised from inside ``preserve_incoming``: nothing recorded)."""

    def __init__(self, report: BundleReport) -> None:
        super().__init__("the bundle does not verify")
        self.report = report


def _incoming(vault: Vault, bundle_path: Path, src: BagSource, partial: Path, key: CustodianKey,
              ) -> tuple[str, dict[str, Any], list[Incoming]]:
    """U, bundle.json and one :class:`Incoming` per item, read from the copied tag files (NOT yet
    verified: the receipts are signed only after the bundle verified through these very copies).
    Raises ValueError/KeyError/TypeError for a bundle.json or entries that cannot even be read."""
    u = hashlib.sha256((partial / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    meta, entries = _read_verified(partial)
    releases = releases_to(entries, key.key_id)
    incoming = []
    for it in meta["items"]:
        path, sha, size = it["path"], it["sha256"], it["size"]
        if (not isinstance(path, str) or path not in src.sizes or not path.startswith("data/") or not isinstance(sha, str)
                or len(sha) != 64 or not set(sha) <= _HEX64 or type(size) is not int or size < 0
                or not isinstance(it["sha512"], str)):
            raise ValueError(f"bundle.json item {str(path)[:80]!r} is not usable")
        incoming.append(Incoming(bag_path=path, sha256=sha, size=size,
                                 source=received_source(vault, root=bundle_path.name, identity=u, bag_path=path),
                                 received=receipt_for(meta, u, it, releases.get(sha)), digests={"sha512": it["sha512"]}))
    return u, meta, incoming


def _import_evidence(vault: Vault, bundle_path: Path, src: BagSource, *, key: CustodianKey,
                     now: Callable[[], datetime], case: str | None, note: str | None,
                     trusted_keys: list[PublicKey | str], tsa_roots: list[bytes], extract_media: bool,
                     jobs: int | None) -> ImportResult:
    verify_now = now()

    def verify_original() -> ImportResult:
        # Refusal path only: the bundle as it is on disk, with every finding named.
        report = verify_bundle(bundle_path, trusted_keys=trusted_keys, now=verify_now, tsa_roots=tsa_roots, jobs=jobs)
        if report.ok:  # it verifies now but did not while being copied: changed meanwhile
            report.fail("evidence-import", "the bundle changed while it was being copied; import it again once it "
                        "is stable", str(bundle_path))
        return ImportResult(str(bundle_path), False, "evidence-bundle", report=report)

    if src.problems:
        return verify_original()  # unsafe names, links, zip bombs: refused before a byte is copied
    imports = vault.root / IMPORTS_DIR
    if imports.is_symlink():
        raise InputError("the vault's imports/ folder is a symlink: refused", subject=str(imports),
                         hint="a link there was not made by evidencelock")
    # The tag files are copied into this process's staging session (nothing under imports/ until
    # the bundle verified); a crash leaves only this folder there, which no entry names.
    partial = vault.store._session_dir() / f"import-{secrets.token_hex(8)}"
    partial.mkdir()
    try:
        files: dict[str, Path] = {}
        unread: dict[str, str] = {}
        for p in sorted(p for p in src.sizes if not p.startswith("data/")):
            try:
                _copy_tag(src, p, partial / p)
                files[p] = partial / p
            except (OSError, InputError) as exc:
                unread[p] = f"{type(exc).__name__}: {exc}"
        try:
            u, meta, incoming = _incoming(vault, bundle_path, src, partial, key)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EvidenceLockError):
            return verify_original()
        stored: list[bool] = []
        verified: list[BundleReport] = []

        def verify_staged(staged: Mapping[str, StagedObject]) -> None:
            """Between staging and recording: the bundle verified through the copies, the payload
            digests those of the staged bytes; then imports/<U> before any receipt names it."""
            view = _StagedView(src, {**files, **{p: o.path for p, o in staged.items()}}, unread)
            precomputed = {p: {"sha256": o.digests.sha256, "blake3": o.digests.second or "", **o.digests.extra}
                           for p, o in staged.items() if o.digests.second}
            report = verify_bundle(bundle_path, trusted_keys=trusted_keys, now=verify_now, tsa_roots=tsa_roots,
                                   source=view, precomputed=precomputed, jobs=jobs)
            if not report.ok:
                raise _Refused(report)
            vault.store.sync()  # the staged bytes are durable before the folder and entries that name them
            stored.append(_store_import(imports, partial, u))
            verified.append(report)

        try:
            got = preserve_incoming(vault, src, incoming, key=key, case=case or meta["case"], note=note, now=now,
                                    extract_media=extract_media, jobs=jobs, after_stage=verify_staged)
        except _Refused as exc:
            return ImportResult(str(bundle_path), False, "evidence-bundle", report=exc.report)
        except ReceiveRefused:
            return verify_original()
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    by_path = {o.path: o for o in got.outcomes}
    items = []
    for inc in incoming:
        o = by_path[inc.bag_path]
        status = {"preserved": "imported"}.get(o.status, o.status)
        items.append(ImportedItem(inc.bag_path, inc.sha256, inc.size, status, o.seq,
                                  inc.received.get("transfer") if status != "already-recorded" else None))
    return ImportResult(str(bundle_path), True, "evidence-bundle", case=got.case, tagmanifest_sha256=u,
                        stored=f"{IMPORTS_DIR}/{u}", stored_now=bool(stored and stored[0]), origin=meta["origin"],
                        source_case=meta["case"], items=items, report=verified[0] if verified else None)


def _read_verified(partial: Path) -> tuple[dict[str, Any], dict[int, SignedEntry]]:
    """bundle.json and the entries of a bundle that verify_bundle has just verified (copies in ``partial``)."""
    meta = json.loads((partial / "evidence" / "bundle.json").read_bytes())
    return meta, load_entries(partial / "evidence" / "entries.jsonl")


def load_entries(path: Path) -> dict[int, SignedEntry]:
    import base64

    out: dict[int, SignedEntry] = {}
    for line in path.read_bytes().splitlines():
        obj = json.loads(line)
        s = SignedEntry.from_bytes(base64.b64decode(obj["canonical"]), base64.b64decode(obj["signature"]),
                                   subject=f"entry {obj['seq']}")
        out[s.entry.seq] = s
    return out


def releases_to(entries: Mapping[int, SignedEntry], receiver: str) -> dict[str, SignedEntry]:
    """item -> the latest ``transfer`` of it addressed to ``receiver`` among ``entries`` (one pass)."""
    # Only a release still pending at the end of the bundle's entries can be accepted
    # (docs/custody-events.md §2.3, §4): not superseded by a later release of the item, not
    # already accepted.  Its receipt would otherwise claim a custody the sender's log denies.
    latest: dict[str, SignedEntry] = {}
    accepted: set[int] = set()
    for seq in sorted(entries):
        e = entries[seq].entry
        if e.type == "transfer" and isinstance(e.body.get("item"), str):
            latest[e.body["item"]] = entries[seq]
        elif e.type == "transfer-accept" and isinstance(e.body.get("transfer"), dict):
            ref = e.body["transfer"].get("seq")
            if isinstance(ref, int):
                accepted.add(ref)
    return {item: rel for item, rel in latest.items()
            if rel.entry.body.get("to") == receiver and rel.entry.seq not in accepted}


def receipt_for(meta: Mapping[str, Any], u: str, item: Mapping[str, Any], release: SignedEntry | None) -> dict[str, Any]:
    """docs/bundle-format.md §4.9 ``received``: what the receiver signs about the bundle an item came in."""
    received: dict[str, Any] = {
        "bundle": u, "origin": meta["origin"], "case": meta["case"], "exporter": meta["exporter"],
        "checkpoint": {"size": meta["checkpoint"]["size"], "root": meta["checkpoint"]["root"]},
        "ingests": list(item["entries"]),
    }
    if release is not None:
        received["transfer"] = {"seq": release.entry.seq, "entry_hash": release.entry_hash}
    return received


def _store_import(imports: Path, partial: Path, u: str) -> bool:
    """``imports/<U>``: made durable, then renamed into place; never overwritten. True if written now."""
    _makedirs_durable(imports)
    final = imports / u
    try:
        st = os.lstat(final)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise VerificationError("the stored import is not a folder (a link or file was planted)", subject=str(final),
                                    hint="run `evidencelock verify`; nothing was recorded")
        problems = stored_import_problems(final, u)
        if problems:
            raise VerificationError(f"the stored copy of this bundle's tag files differs from the bundle: {problems[0]}",
                                    subject=str(final), hint="run `evidencelock verify`; nothing was recorded")
        return False
    for dirpath, _dirs, names in os.walk(partial):  # write-once: read-only, like the objects
        for name in names:
            os.chmod(os.path.join(dirpath, name), 0o444)
    try:
        _syncfs(partial)
    except (OSError, TypeError):
        for dirpath, _dirs, names in os.walk(partial):
            for name in names:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(Path(dirpath))
    try:
        os.rename(partial, final)  # rename(2) never replaces a non-empty folder: write-once
    except OSError:
        if not final.is_dir() or final.is_symlink():
            raise
        return _store_import(imports, partial, u)  # a concurrent import of the same bundle won: check its copy
    _fsync_dir(imports)
    return True


# -- vault verify / audit: every stored import ------------------------------------------------
def stored_import_problems(folder: Path, u: str) -> list[str]:
    """What is wrong with ``imports/<U>`` (empty list: nothing).  The folder's
    ``tagmanifest-sha256.txt`` MUST hash to U, and every file of the folder MUST be listed in it
    with its SHA-256 (and every listed file be present); ``tagmanifest-sha512.txt``, when
    present, likewise.  Links are never followed."""
    problems: list[str] = []
    tm = folder / "tagmanifest-sha256.txt"
    try:
        data = _read_regular(tm)
    except OSError as exc:
        return [f"tagmanifest-sha256.txt unreadable: {exc.strerror or exc}"]
    found = hashlib.sha256(data).hexdigest()
    if found != u:
        problems.append(f"tagmanifest-sha256.txt does not hash to the folder's name: expected={u} found={found}")
    present: set[str] = set()
    for dirpath, dirs, names in os.walk(folder):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            present.add(os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/"))
    for alg in ("sha256", "sha512"):
        name = f"tagmanifest-{alg}.txt"
        if name not in present:
            if alg == "sha256":
                continue
            problems.append(f"{name} missing")
            continue
        try:
            lines = _read_regular(folder / name).decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{name} unreadable: {exc}")
            continue
        listed: dict[str, str] = {}
        for n, line in enumerate(lines, 1):
            digest, sep, p = line.partition("  ")
            if not sep or not p or ".." in p.split("/") or p.startswith("/"):
                problems.append(f"{name} line {n} is malformed")
                continue
            listed[p] = digest
        for p in sorted(present - set(listed) - {"tagmanifest-sha256.txt", "tagmanifest-sha512.txt"}):
            problems.append(f"{p}: file not listed in {name} (added after the import?)")
        for p, digest in sorted(listed.items()):
            if p not in present:
                problems.append(f"{p}: listed in {name} but missing")
                continue
            try:
                got = hashlib.new(alg, _read_regular(folder / p)).hexdigest()
            except OSError as exc:
                problems.append(f"{p}: unreadable ({exc.strerror or exc})")
                continue
            if got != digest:
                problems.append(f"{p}: {alg} mismatch: expected={digest} found={got} (modified after the import?)")
    return problems


def _read_regular(path: Path) -> bytes:
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def check_imports(vault: Vault, receipts: Sequence[SignedEntry], add: Callable[[str, str, str], None]) -> None:
    """Vault ``verify``/``audit`` (docs/vault-layout.md §7): every stored import folder is intact,
    and every receipt's ``received`` values equal the stored bundle's signed bundle.json and entries.

    ``receipts``: the ingest entries whose body has ``received.bundle`` (collected during the
    ledger pass); ``add(code, subject, message)`` records a finding."""
    imports = vault.root / IMPORTS_DIR
    folders: dict[str, Path] = {}
    if imports.is_symlink():
        add("import-folder", IMPORTS_DIR, "the imports/ folder is a symlink (not made by evidencelock)")
        return
    if imports.is_dir():
        for ent in sorted(os.scandir(imports), key=lambda e: e.name):
            sub = f"{IMPORTS_DIR}/{ent.name}"
            if len(ent.name) != 64 or not set(ent.name) <= _HEX64 or not ent.is_dir(follow_symlinks=False):
                add("import-folder", sub, "not an import folder (its name must be the 64-hex SHA-256 of its tag manifest)")
                continue
            folders[ent.name] = Path(ent.path)
            for problem in stored_import_problems(Path(ent.path), ent.name):
                add("import-folder", sub, problem)
    cache: dict[str, tuple[dict[str, Any], dict[int, SignedEntry], dict[str, Any]] | None] = {}
    for s in receipts:
        e = s.entry
        rec = e.body.get("received")
        if not isinstance(rec, dict) or "bundle" not in rec:
            continue
        u = rec.get("bundle")
        subject = f"entry {e.seq} ({IMPORTS_DIR}/{str(u)[:64]})"
        if not isinstance(u, str) or u not in folders:
            add("import-receipt", subject, "the receipt names a bundle whose tag files are not stored under imports/")
            continue
        if u not in cache:
            try:
                meta_u, entries_u = _read_verified(folders[u])
                cache[u] = (meta_u, entries_u, items_by_sha256(meta_u))
            except (OSError, ValueError, KeyError, TypeError, Exception) as exc:  # noqa: BLE001 - a damaged stored file is a finding
                cache[u] = None
                add("import-receipt", subject, f"the stored bundle.json or entries cannot be read: {exc}")
        got = cache[u]
        if got is None:
            continue
        meta, entries, index = got
        for problem in receipt_problems(rec, e.actor, e.body.get("item"), meta, entries, index):
            add("import-receipt", subject, problem)
