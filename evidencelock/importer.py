"""import-bundle: preserve another organisation's evidence bundle, with its custody record.

Order (STYLE.md §9; docs/bundle-format.md §7 "Import"):

1. every payload file of the bag is read ONCE: its bytes feed the staged copy in the vault's
   staging area and every digest the verification needs (SHA-256, BLAKE3, SHA-512 and the
   algorithms of the bag's payload manifests); every tag file (every file outside ``data/``)
   is copied into ``staging/<session>/import-<random>/`` (nothing under ``imports/`` yet);
2. the bundle is verified (``verify_bundle``) THROUGH THOSE COPIES: the tag files are read from
   the partial folder, the payload digests are the ones taken while staging.  The bytes verified
   are exactly the bytes that will be committed: no window between verification and copy;
3. any failure: the staged files and the partial folder are removed, nothing is recorded
   (exit 1, the failures named);
4. the tag files are renamed into ``imports/<U>/`` (U = SHA-256 of ``tagmanifest-sha256.txt``;
   made durable first; never overwritten: an existing ``imports/<U>`` is kept and must hash to U);
5. one ``ingest`` entry per item, with ``received`` (docs/ledger-format.md §4.1), in one
   transaction; a rerun finds every source already recorded and records nothing twice;
6. the objects are moved into place.

A plain BagIt bag (no evidence layer) is handed to :mod:`evidencelock.bagimport`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, select

from . import schema
from .bundle.source import BagSource, Limits, open_source
from .bundle.upstream import receipt_problems
from .bundle.verify import HASH_ALGORITHMS, BundleReport, verify_bundle
from .entry import SignedEntry, format_time
from .errors import InputError, StorageError, VerificationError
from .hashing import open_regular
from .keys import CustodianKey, PublicKey
from .ledger import Draft, Tail, set_item_media
from .store import SourceChanged, SourceReadError, StagedObject, _fsync_dir, _makedirs_durable, _syncfs
from .vault import Vault

__all__ = ["import_bundle", "ImportResult", "ImportedItem", "IMPORTS_DIR", "check_imports", "stored_import_problems"]

IMPORTS_DIR = "imports"
_HEX64 = frozenset("0123456789abcdef")
_PAYLOAD_MANIFEST_PREFIX = "manifest-"


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
    """The bag as copied: same listing and safety findings as the original, bytes from the copies."""

    def __init__(self, orig: BagSource, files: Mapping[str, Path], unread: Mapping[str, str]) -> None:
        super().__init__(orig.label, orig.limits)
        self.sizes = dict(orig.sizes)
        self.problems = list(orig.problems)
        self.refused = set(orig.refused)
        self.damaged = dict(orig.damaged)
        self._files = dict(files)
        self._unread = dict(unread)

    def open(self, path: str) -> BinaryIO:
        if path not in self.sizes:
            raise KeyError(path)
        if path not in self._files:
            raise OSError(f"{path}: could not be read while copying ({self._unread.get(path, 'unreadable')})")
        return os.fdopen(open_regular(self._files[path]), "rb", buffering=0)


def _manifest_algorithms(src: BagSource) -> list[str]:
    algs = {"sha512"}
    for name in src.sizes:
        if "/" not in name and name.startswith(_PAYLOAD_MANIFEST_PREFIX) and name.endswith(".txt"):
            alg = name[len(_PAYLOAD_MANIFEST_PREFIX):-4]
            if alg in HASH_ALGORITHMS:
                algs.add(alg)
    return sorted(algs)


def _copy_tag(src: BagSource, path: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with src.open(path) as f:
            while chunk := f.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
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
            return _import_plain(vault, bundle_path, key=key, now=now, case=case, note=note)
        return _import_evidence(vault, bundle_path, src, key=key, now=now, case=case, note=note,
                                trusted_keys=trusted_keys, tsa_roots=tsa_roots, extract_media=extract_media, jobs=jobs)
    finally:
        src.close()


def _import_plain(vault: Vault, path: Path, *, key: CustodianKey, now: Callable[[], datetime], case: str | None,
                  note: str | None) -> ImportResult:
    """A plain BagIt bag: validated fully and preserved by the bagit module (design10)."""
    try:
        from . import bagimport  # type: ignore[attr-defined]
    except ImportError:
        raise InputError("this is a plain BagIt bag (no evidencelock evidence layer); importing plain bags is not "
                         "available in this version", subject=str(path),
                         hint="use `evidencelock ingest` on its data/ folder, or `verify-bundle` to check it") from None
    if case is None:
        raise InputError("a plain BagIt bag names no case: give --case CASE", subject=str(path))
    plain = bagimport.import_plain_bag(vault, path, key=key, case=case, note=note, now=now)
    ok = bool(getattr(plain, "ok", True))
    return ImportResult(str(path), ok, "plain-bag", case=case, plain=plain)


def _import_evidence(vault: Vault, bundle_path: Path, src: BagSource, *, key: CustodianKey,
                     now: Callable[[], datetime], case: str | None, note: str | None,
                     trusted_keys: list[PublicKey | str], tsa_roots: list[bytes], extract_media: bool,
                     jobs: int | None) -> ImportResult:
    verify_now = now()
    if src.problems:
        # Unsafe names, links, zip bombs: refused before a single byte is copied.
        report = verify_bundle(bundle_path, trusted_keys=trusted_keys, now=verify_now, tsa_roots=tsa_roots, jobs=jobs)
        return ImportResult(str(bundle_path), False, "evidence-bundle", report=report)
    imports = vault.root / IMPORTS_DIR
    if imports.is_symlink():
        raise InputError("the vault's imports/ folder is a symlink: refused", subject=str(imports),
                         hint="a link there was not made by evidencelock")
    # The tag files are copied into this process's staging session (nothing under imports/ until
    # the bundle verified); a crash leaves only this folder there, which no entry names.
    partial = vault.store._session_dir() / f"import-{secrets.token_hex(8)}"
    partial.mkdir()
    staged: dict[str, tuple[StagedObject, dict[str, str]]] = {}
    committed = False
    try:
        files: dict[str, Path] = {}
        unread: dict[str, str] = {}
        payload = sorted(p for p in src.sizes if p.startswith("data/"))
        algs = _manifest_algorithms(src)

        def stage(p: str) -> tuple[str, tuple[StagedObject, dict[str, str]] | str]:
            try:
                with src.open(p) as f:
                    return p, vault.store.stage_stream(f, expected_size=src.sizes[p], extra=algs)
            except StorageError:
                raise
            except (SourceChanged, SourceReadError, OSError, InputError) as exc:
                return p, f"{type(exc).__name__}: {exc}"

        workers = max(1, jobs or os.cpu_count() or 1)
        # (the session folder was made above, before the threads: it is created lazily, without a lock)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="import") as pool:
            for p, r in pool.map(stage, sorted(payload, key=lambda q: -src.sizes[q])):
                if isinstance(r, str):
                    unread[p] = r
                else:
                    staged[p] = r
                    files[p] = r[0].path
        for p in sorted(p for p in src.sizes if not p.startswith("data/")):
            try:
                _copy_tag(src, p, partial / p)
                files[p] = partial / p
            except (OSError, InputError) as exc:
                unread[p] = f"{type(exc).__name__}: {exc}"
        view = _StagedView(src, files, unread)
        precomputed = {p: d for p, (o, d) in staged.items()}
        report = verify_bundle(bundle_path, trusted_keys=trusted_keys, now=verify_now, tsa_roots=tsa_roots,
                               source=view, precomputed=precomputed, jobs=jobs)
        if not report.ok:
            return ImportResult(str(bundle_path), False, "evidence-bundle", report=report)
        result = _record_import(vault, bundle_path, partial, staged, report, key=key, now=now, case=case, note=note,
                                extract_media=extract_media)
        committed = True
        return result
    finally:
        if not committed:
            for o, _ in staged.values():
                vault.store.discard(o)
        shutil.rmtree(partial, ignore_errors=True)


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


def receipt_for(meta: Mapping[str, Any], entries: Mapping[int, SignedEntry], u: str, item: Mapping[str, Any],
                receiver: str) -> dict[str, Any]:
    """design10 ``received``: what the receiver signs about the bundle an item came in."""
    received: dict[str, Any] = {
        "bundle": u, "origin": meta["origin"], "case": meta["case"], "exporter": meta["exporter"],
        "checkpoint": {"size": meta["checkpoint"]["size"], "root": meta["checkpoint"]["root"]},
        "ingests": list(item["entries"]),
    }
    releases = [s for seq, s in sorted(entries.items()) if s.entry.type == "transfer"
                and s.entry.body.get("item") == item["sha256"] and s.entry.body.get("to") == receiver]
    if releases:
        received["transfer"] = {"seq": releases[-1].entry.seq, "entry_hash": releases[-1].entry_hash}
    return received


def _source_key(vault: Vault, u: str, path: str) -> str:
    """The identity that makes a rerun idempotent: this bundle (U) and this payload path."""
    ident = b"import\x00" + u.encode() + b"\x00" + path.encode("utf-8")
    secret = vault.source_key_secret()
    return hmac.new(secret, ident, hashlib.sha256).hexdigest() if secret else hashlib.sha256(ident).hexdigest()


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


def _record_import(vault: Vault, bundle_path: Path, partial: Path, staged: Mapping[str, tuple[StagedObject, dict[str, str]]],
                   report: BundleReport, *, key: CustodianKey, now: Callable[[], datetime], case: str | None,
                   note: str | None, extract_media: bool) -> ImportResult:
    meta, entries = _read_verified(partial)
    u = hashlib.sha256((partial / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    case = case or meta["case"]
    media: dict[str, Any] = {}
    if extract_media:
        from .ingest import _default_extract

        for it in meta["items"]:
            o = staged[it["path"]][0]
            if o.digests.size > 0 and it["sha256"] not in media and not vault.ledger.is_recorded(it["sha256"]):
                rep = _default_extract(o.path, meta["created"])
                media[it["sha256"]] = rep.to_dict() if rep is not None else None
    vault.store.sync()  # the staged bytes are durable before the folder and entries that name them
    stored_now = _store_import(vault.root / IMPORTS_DIR, partial, u)
    root = bundle_path.name
    items: list[ImportedItem] = []
    state: dict[str, tuple[str, int]] = {}

    def build(conn: Connection, tail: Tail) -> list[Draft]:
        from .derived import backed_index_hits
        from .ingest import _sign_media_digest

        shas = sorted({it["sha256"] for it in meta["items"]})
        keys = {it["path"]: _source_key(vault, u, it["path"]) for it in meta["items"]}
        recorded_sources = {(r.sha256, r.source_key): r.seq for r in conn.execute(
            select(schema.sources.c.sha256, schema.sources.c.source_key, schema.sources.c.seq).where(
                schema.sources.c.case_id == case, schema.sources.c.sha256.in_(shas)))}
        first_seq = {r.sha256: r.first_seq for r in conn.execute(
            select(schema.items.c.sha256, schema.items.c.first_seq).where(schema.items.c.sha256.in_(shas)))}
        recorded_sources, first_seq = backed_index_hits(conn, case=case, sources=recorded_sources, first_seq=first_seq)
        drafts: list[Draft] = []
        for it in meta["items"]:
            sha, path = it["sha256"], it["path"]
            already = recorded_sources.get((sha, keys[path]))
            if already is not None:
                state[path] = ("already-recorded", already)
                continue
            o, d = staged[path]
            seq = tail.size + len(drafts)
            body: dict[str, Any] = {"item": sha, "digests": {"sha256": sha, "blake3": d["blake3"]}, "size": o.digests.size,
                                    "source": {"root": root, "path": path[len("data/"):], "key": keys[path]}}
            if note:
                body["note"] = note
            if sha in first_seq:
                body["duplicate_of"] = first_seq[sha]
                state[path] = ("duplicate", seq)
            else:
                first_seq[sha] = seq
                state[path] = ("imported", seq)
            if o.digests.size == 0:
                body["flags"] = ["empty-file"]
            m = media.get(sha) if state[path][0] == "imported" else None
            if m is not None:
                body["media"] = {k: m[k] for k in ("kind", "summary", "flags", "errors", "extractor") if k in m}
                _sign_media_digest(body, m)
            body["received"] = receipt_for(meta, entries, u, it, key.key_id)
            recorded_sources[(sha, keys[path])] = seq
            drafts.append(Draft(format_time(now()), "ingest", case, key.key_id, body))
        return drafts

    def after(conn: Connection, signed: list[Any]) -> None:
        for it in meta["items"]:
            m = media.get(it["sha256"])
            if m is not None and state.get(it["path"], ("",))[0] == "imported":
                set_item_media(conn, it["sha256"], m)

    signed = vault.ledger.append_many(build, key.sign, after=after)
    vault.store.commit_many([o for o, _ in staged.values()])
    by_seq = {s.entry.seq: s for s in signed}
    for it in meta["items"]:
        status, seq = state[it["path"]]
        tr = None
        if seq in by_seq:
            tr = by_seq[seq].entry.body.get("received", {}).get("transfer")
        items.append(ImportedItem(it["path"], it["sha256"], int(it["size"]), status, seq, tr))
    return ImportResult(str(bundle_path), True, "evidence-bundle", case=case, tagmanifest_sha256=u,
                        stored=f"{IMPORTS_DIR}/{u}", stored_now=stored_now, origin=meta["origin"],
                        source_case=meta["case"], items=items, report=report)


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
    cache: dict[str, tuple[dict[str, Any], dict[int, SignedEntry]] | None] = {}
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
                cache[u] = _read_verified(folders[u])
            except (OSError, ValueError, KeyError, TypeError, Exception) as exc:  # noqa: BLE001 - a damaged stored file is a finding
                cache[u] = None
                add("import-receipt", subject, f"the stored bundle.json or entries cannot be read: {exc}")
        got = cache[u]
        if got is None:
            continue
        meta, entries = got
        for problem in receipt_problems(rec, e.actor, e.body.get("item"), meta, entries):
            add("import-receipt", subject, problem)
