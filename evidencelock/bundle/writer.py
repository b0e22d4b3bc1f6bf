"""export: write an evidence bundle (BagIt 1.0 bag + evidence tag files) crash-safely.

Order (STYLE.md §9; docs/bundle-format.md §4, §6):

0. items, payload names (§3) and included entries (§4.1) are decided from the signed entries
   before anything is written or signed; the payload is copied and checked against the ledger
   before a new checkpoint (a signed entry) may be made for the bundle;
1. everything is written into ``.<name>.partial-<random>`` next to the target: payload copied
   in one read per file (SHA-256 checked against the ledger, SHA-512 computed in the same
   pass, files in parallel), evidence files, report, manifests, tag manifests; then one
   syncfs(2) (or an fsync per file and folder) makes it all durable; for ``.zip`` the zip
   is built (also under a temporary name) and fsync'd;
2. the ``export`` entry is appended to the ledger (it records the tag manifest's digest, so it
   can only be written once the bag is complete);
3. the temporary folder or zip is renamed to the target and the parent directory fsync'd.

A crash before (2) leaves only a ``.partial-`` folder that nothing references; a crash
between (2) and (3) leaves a recorded export whose bag is complete under the temporary name.
The target is never overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from .. import checkpoint as cp_mod
from .. import merkle, schema, timestamp, transparency, treestore
from ..entry import SignedEntry
from ..errors import DigestMismatch, EvidenceLockError, InputError, StorageError, VerificationError
from ..hashing import open_regular
from ..keys import CustodianKey, PublicKey
from ..store import _fsync_dir, _syncfs, _write_all  # one syncfs(2) helper for the whole package
from ..vault import Vault
from ._paths import NameAllocator
from . import browser
from .verify import BUNDLE_FORMAT, BUNDLE_VERSION, _cores, note_signer, tsa_root_sha256

__all__ = ["export_bundle", "ExportResult"]

CHUNK = 1 << 20  # see verify.READ_CHUNK: the buffer is hashed twice, so it must stay in cache


@dataclass(frozen=True)
class ExportResult:
    path: Path
    case: str
    items: int
    payload_bytes: int
    entries: int
    checkpoint_size: int
    checkpoint_created: bool
    timestamped: bool
    export_seq: int
    tagmanifest_sha256: str
    seconds_copy: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def _software() -> str:
    try:
        from importlib.metadata import version

        return f"evidencelock {version('evidencelock')}"
    except Exception:  # noqa: BLE001
        return "evidencelock"


def _write(path: Path, data: bytes) -> None:
    """Write a new file; durability comes from one :func:`_make_durable` over the whole bag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, memoryview(data))
    finally:
        os.close(fd)


def _make_durable(root: Path) -> None:
    """Every file and folder under ``root`` on stable storage before the export is recorded.

    One syncfs(2) of the file system (Linux) costs about what `sync` after `cp -r` costs; a
    per-file fsync would serialise on the journal.  Elsewhere: fsync each file and folder.
    """
    try:
        _syncfs(root)
        return
    except (OSError, TypeError):  # TypeError: no syncfs(2) here (store._SYNCFS is None)
        pass
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _copy_one(src: Path, dst: Path, expected_sha256: str, expected_size: int) -> tuple[str, str, int]:
    """One read: bytes feed SHA-256, SHA-512 and the copy.  The SHA-256 must equal the ledger's."""
    h256, h512 = hashlib.sha256(), hashlib.sha512()
    dst.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with os.fdopen(_open_object_file(src), "rb", buffering=0) as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                os.posix_fadvise(fin.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except (AttributeError, OSError):
                pass
            while n := fin.readinto(buf):
                chunk = view[:n]
                h256.update(chunk)
                h512.update(chunk)
                out = chunk
                while out:
                    out = out[os.write(fd, out):]
                size += n
        finally:
            os.close(fd)
    found = h256.hexdigest()
    if found != expected_sha256 or size != expected_size:
        raise DigestMismatch(str(src), "sha256", f"{expected_sha256} ({expected_size} bytes)", f"{found} ({size} bytes)",
                             hint="the stored object differs from the ledger; run `evidencelock verify`; nothing was exported")
    return found, h512.hexdigest(), size


def _open_object_file(src: Path) -> int:
    """An object opened without following a link or blocking on a FIFO (docs/vault-layout.md §3)."""
    try:
        return open_regular(src)
    except OSError as exc:
        raise VerificationError(f"the stored object cannot be exported: {exc.strerror}", subject=str(src),
                                hint="the vault was altered outside evidencelock; run `evidencelock verify`; "
                                     "nothing was exported") from None


def _check_objects_openable(vault: Vault, sha_items: Sequence[str]) -> None:
    """Before anything is signed or written: every object to export opens as a regular file
    (a FIFO or link planted in objects/ is refused here, never waited on)."""
    for sha in sha_items:
        try:
            os.close(vault.store.open_object(sha))
        except OSError as exc:
            raise VerificationError(f"item {sha[:16]}…: the stored object cannot be exported: {exc.strerror}",
                                    subject=str(vault.store.path_for(sha)),
                                    hint="the vault was altered outside evidencelock; run `evidencelock verify`; "
                                         "nothing was exported or signed") from None


def _require_index(vault: Vault, case: str) -> None:
    """Issue 9 item 10: the item list, entry selection, names, sizes and metadata below come
    from derived tables and columns; refuse (exit 1, rows named) unless every one of them
    agrees with the signed entry bytes, and the tree with the entries (docs/vault-layout.md §6)."""
    from ..derived import require_index_consistent

    with vault.ledger.reader() as conn:
        require_index_consistent(conn, action=f"export case {case!r}")


def _resolve_items(vault: Vault, case: str, items: Sequence[str] | None) -> list[str]:
    with vault.ledger.reader() as conn:
        in_case = [r.sha256 for r in conn.execute(
            select(schema.sources.c.sha256).where(schema.sources.c.case_id == case).distinct()).all()]
    if not in_case:
        raise InputError(f"no items are recorded for case {case!r}", hint="see `evidencelock log --case CASE`")
    if not items:
        return sorted(set(in_case))
    chosen = []
    for q in items:
        q = q.strip().lower().removeprefix("sha256:")
        m = [s for s in set(in_case) if s.startswith(q)] if len(q) >= 6 else []
        if len(m) != 1:
            raise InputError(f"--item {q!r} matches {len(m)} items of case {case!r} (give at least 6 hex digits of one)")
        chosen.append(m[0])
    return sorted(set(chosen))


def _load_entries(vault: Vault, case: str, items: list[str]) -> dict[int, SignedEntry]:
    """The entries a bundle of ``items`` of ``case`` includes (§4.1), decided from the signed bytes.

    The ``type``/``case_id`` columns only select candidate rows: export has just required every
    derived column to equal its signed bytes (``_require_index``, issue 9 items 1, 10), and each
    candidate's signed type and case are checked again here, so an edited column can neither drop
    nor add an entry.
    """
    t = schema.entries
    wanted = set(items)
    out: dict[int, SignedEntry] = {}
    with vault.ledger.reader() as conn:
        rows = conn.execute(select(t.c.seq, t.c.canonical, t.c.signature, t.c.type, t.c.case_id, t.c.item).where(
            or_(t.c.case_id == case, t.c.type.in_(("key-enroll", "key-revoke")))))
        for r in rows:
            s = SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}")
            e = s.entry
            found, expected = (r.seq, r.type, r.case_id, r.item), (e.seq, e.type, e.case, e.item)
            if found != expected:
                raise VerificationError(
                    f"the database's derived columns (seq, type, case, item) disagree with the signed entry: "
                    f"expected={expected} found={found}", subject=f"entry {r.seq}",
                    hint="the vault database may have been modified; run `evidencelock verify`; nothing was exported")
            if is_relevant(s, case, wanted):
                out[e.seq] = s
    return out


def is_relevant(s: SignedEntry, case: str, items: set[str]) -> bool:
    """docs/bundle-format.md §4.1: the entries a bundle of ``items`` of ``case`` must include."""
    e = s.entry
    if e.type in ("key-enroll", "key-revoke"):
        return True
    if e.case != case:
        return False
    item = e.body.get("item")
    return item is None or item in items


def _record(entries: dict[int, SignedEntry]) -> list[dict[str, Any]]:
    """§4.7 ``record``: every included entry, signed by the exporter so none can be dropped."""
    return [{"seq": seq, "leaf": entries[seq].leaf_hash.hex(), "type": entries[seq].entry.type,
             "case": entries[seq].entry.case, "item": entries[seq].entry.body.get("item")}
            for seq in sorted(entries)]


def _plan_names(entries: dict[int, SignedEntry], sha_items: list[str], item_sizes: dict[str, int]) -> list[dict[str, Any]]:
    """§3: one payload path per item, from the source path of its first ingest entry in the case.

    Decided before anything is written or signed (an impossible name fails here, harmlessly).
    """
    ingest_of: dict[str, list[SignedEntry]] = {}
    for seq in sorted(entries):
        s = entries[seq]
        if s.entry.type == "ingest":
            ingest_of.setdefault(s.entry.body["item"], []).append(s)
    missing = [h for h in sha_items if h not in ingest_of]
    if missing:
        raise InputError(f"item {missing[0]} has no ingest entry in this case",
                         hint="run `evidencelock verify`; nothing was exported")
    names = NameAllocator()
    plan: list[dict[str, Any]] = []
    for sha in sorted(sha_items, key=lambda h: ingest_of[h][0].entry.seq):
        originals = [_source_path(s) for s in ingest_of[sha]]
        try:
            path = names.allocate(originals[0], sha)  # §3: no source path -> "unnamed" (+ suffix)
        except ValueError as exc:
            raise InputError(str(exc), hint="nothing was exported") from None
        plan.append({"sha256": sha, "path": path, "original_names": originals,
                     "size": item_sizes[sha], "entries": [s.entry.seq for s in ingest_of[sha]]})
    return plan


def _source_path(s: SignedEntry) -> str:
    src = s.entry.body.get("source")
    return str(src.get("path", "")) if isinstance(src, dict) else ""


@dataclass(frozen=True)
class _Stamp:
    """A stored RFC 3161 token over the checkpoint body (docs/transparency.md §5), checked here."""

    token: bytes  # DER TimeStampToken, as transparency stores it
    chain: timestamp.TsaChain | None  # None: no chain was given when the token was obtained
    info: timestamp.TimestampInfo | None  # set when the chain verified the token
    request: bytes | None = None  # the DER TimeStampReq it answers, when stored (§4.6 timestamp.tsq)


def _pick_stamp(stored: transparency.StoredCheckpoint, body: bytes, now: datetime) -> _Stamp | None:
    """The first stored token that fully verifies with its stored chain; else one that at least
    stamps this body (imprint only, reported as unverified); else None."""
    fallback: _Stamp | None = None
    for record in stored.tokens:
        try:
            token = base64.b64decode(str(record["token"]), validate=True)
            chain_text = record.get("chain")
            if isinstance(chain_text, str):
                chain = timestamp.load_tsa_certificates(chain_text.encode("ascii"))
                info = timestamp.verify_token(token, body, tsa_certificate_pem=chain.tsa_pem,
                                              root_certificates_pem=chain.roots_pem,
                                              intermediate_certificates_pem=chain.intermediates_pem, now=now)
                return _Stamp(token, chain, info, _stored_request(record))
            if fallback is None:
                timestamp.check_token_imprint(token, body)
                fallback = _Stamp(token, None, None, _stored_request(record))
        except (EvidenceLockError, ValueError, UnicodeEncodeError):
            continue  # check_checkpoints reports a bad stored token; the bundle just does not use it
    return fallback


def _stored_request(record: Mapping[str, Any]) -> bytes | None:
    tsq = record.get("tsq")
    try:
        return base64.b64decode(tsq, validate=True) if isinstance(tsq, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class _Chosen:
    stored: transparency.StoredCheckpoint
    note: cp_mod.SignedNote
    checkpoint: cp_mod.Checkpoint
    signer: PublicKey
    created: bool
    earlier: list[tuple[int, bytes]]  # (size, root) of older verified checkpoints: consistency proofs


def _verified_checkpoints(vault: Vault, raw_keys: list[bytes]) -> list[tuple[transparency.StoredCheckpoint, cp_mod.SignedNote, cp_mod.Checkpoint]]:
    """Stored checkpoints that verify and agree with the tree, newest (largest) first."""
    out = []
    with vault.ledger.reader() as conn:
        size_now = treestore.tree_size(conn)
        for stored in sorted(transparency.list_checkpoints(vault), key=lambda c: (c.tree_size, c.id), reverse=True):
            try:
                note, head = transparency.verified_note(stored.note_with_cosignatures(), vault.config.origin, raw_keys,
                                                        revoked=transparency.revocations(conn))
            except EvidenceLockError:
                continue  # `verify`/`audit` report it; a bundle is proven against a good one only
            if head.tree_size <= size_now and head.root_hash == treestore.root_at(conn, head.tree_size):
                out.append((stored, note, head))
    return out


def _choose_checkpoint(vault: Vault, key: CustodianKey, keys: dict[str, PublicKey], need_size: int, now: datetime, *,
                       tsa_urls: Sequence[str], tsa_certificates: Sequence[bytes], tsa_timeout: float) -> _Chosen:
    """The checkpoint the bundle is proven against (docs/bundle-format.md §4.4).

    With ``tsa_urls``: a new checkpoint, timestamped now.  Otherwise the newest stored one
    that covers the exported entries, verifies and agrees with the tree; else a new one.
    New checkpoints are made by :func:`transparency.create_checkpoint`, so they are stored and
    recorded by a signed ``checkpoint`` entry exactly as ``evidencelock checkpoint`` does.
    """
    raw_keys = [k.raw for k in keys.values()]
    created = True
    if tsa_urls:
        result = transparency.create_checkpoint(vault, key, now=now, tsa_urls=tsa_urls, tsa_timeout=tsa_timeout,
                                                tsa_certificates=tsa_certificates)
        if result.tsa_all_failed:
            raise StorageError("no timestamp authority answered: " + "; ".join(f"{r.url}: {r.error}" for r in result.tsa),
                               subject=result.checkpoint.describe(),
                               hint="nothing was exported (the checkpoint was recorded without a timestamp); "
                                    "try again later, use another --tsa, or export without --tsa")
        chosen_id = result.checkpoint.id
    else:
        covering = [v for v in _verified_checkpoints(vault, raw_keys) if v[2].tree_size >= need_size]
        created = not covering
        chosen_id = covering[0][0].id if covering else transparency.create_checkpoint(vault, key, now=now).checkpoint.id
    verified = _verified_checkpoints(vault, raw_keys)
    pick = next((v for v in verified if v[0].id == chosen_id), None)
    if pick is None:
        raise StorageError(f"checkpoint #{chosen_id} does not verify against the ledger",
                           hint="run `evidencelock verify`; nothing was exported")
    stored, note, head = pick
    return _Chosen(stored, note, head, note_signer(note, list(keys.values()), head.origin), created,
                   [(v[2].tree_size, v[2].root_hash) for v in verified if 0 < v[2].tree_size < head.tree_size])


def export_bundle(
    vault: Vault,
    *,
    case: str,
    out: str | os.PathLike[str],
    key: CustodianKey,
    now: Callable[[], datetime],
    items: Sequence[str] | None = None,
    tsa_urls: Sequence[str] = (),
    tsa_certificates: Sequence[bytes] = (),
    tsa_timeout: float = 30.0,
    jobs: int | None = None,
    report: bool = True,
    purpose: str | None = None,
) -> ExportResult:
    """Write the evidence bundle for ``case`` (or the given ``items`` of it) to ``out``.

    ``tsa_urls``: timestamp a new checkpoint for this bundle (transparency.create_checkpoint);
    ``tsa_certificates``: PEM files (TSA certificate + CA chain) that verify the token and are
    put in the bundle so a reader can check it.  Raises :class:`StorageError` (nothing
    exported) if every TSA fails.
    """
    import time

    from . import handbook
    from ..custody import access_body, append_export

    access_body("", purpose=purpose or "export to evidence bundle", action="export")  # checked before any work
    if not vault.writable:
        raise ValueError("vault must be opened writable: the export is recorded")
    out = Path(out)
    as_zip = out.suffix.lower() == ".zip"
    if out.exists() or out.is_symlink():
        raise InputError("the bundle target already exists; choose a new name", subject=str(out))
    if not out.parent.is_dir():
        raise InputError("the folder for the bundle does not exist", subject=str(out.parent))
    _require_index(vault, case)
    sha_items = _resolve_items(vault, case, items)
    _check_objects_openable(vault, sha_items)
    entries = _load_entries(vault, case, sha_items)
    keys = vault.enrolled_keys()
    if key.key_id not in keys:
        raise InputError("the exporting custodian's key is not enrolled in this vault")
    # Item 18 / §6: decide the items, their names and the entries before anything is signed.
    with vault.ledger.reader() as conn:
        item_rows = {r.sha256: r for r in conn.execute(select(schema.items).where(schema.items.c.sha256.in_(sha_items))).all()}
    unknown = [h for h in sha_items if h not in item_rows]
    if unknown:
        raise InputError(f"item {unknown[0]} is not preserved in this vault", hint="run `evidencelock verify`; nothing was exported")
    plan = _plan_names(entries, sha_items, {h: int(r.size) for h, r in item_rows.items()})
    upstream = _upstream_parts(vault, entries)  # checked before anything is signed or written
    created = now()
    # Check what we are about to certify, with the same core the verifier uses.
    for seq, s in entries.items():
        s.verify_signature(keys[s.entry.actor]) if s.entry.actor in keys else None

    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(6)}"
    tmp.mkdir()
    zip_tmp: Path | None = None
    try:
        t0 = time.monotonic()
        # One thread per core: SHA-512 is the bottleneck; writes go to the page cache and the
        # single syncfs below makes them durable (hashlib releases the GIL on each 1 MiB buffer).
        workers = max(1, jobs or _cores())
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
            results = list(pool.map(lambda p: _copy_one(vault.store.path_for(p["sha256"]), tmp / p["path"],
                                                        p["sha256"], p["size"]), plan))
        copy_seconds = time.monotonic() - t0
        for p, (_, sha512, _) in zip(plan, results):
            p["sha512"] = sha512
        # Only now, with every payload byte copied and checked against the ledger, may a new
        # checkpoint be signed (§6: a failure above leaves no signed entry and no bag).
        chosen = _choose_checkpoint(vault, key, keys, max(entries) + 1, created, tsa_urls=tsa_urls,
                                    tsa_certificates=tsa_certificates, tsa_timeout=tsa_timeout)
        cp, note, signer, earlier = chosen.checkpoint, chosen.note, chosen.signer, chosen.earlier
        body = note.unverified_body  # verified: _choose_checkpoint checked the signature
        stamp = _pick_stamp(chosen.stored, body, created)
        with vault.ledger.reader() as conn:
            proofs = {seq: treestore.inclusion_proof_at(conn, seq, cp.tree_size) for seq in sorted(entries)}
            consistency = [{"from_size": s, "from_root": r.hex(),
                            "proof": [h.hex() for h in treestore.consistency_proof_at(conn, s, cp.tree_size)]}
                           for s, r in earlier]
        for seq, s in entries.items():
            merkle.verify_inclusion(s.leaf_hash, seq, cp.tree_size, proofs[seq], cp.root_hash)
        ev = tmp / "evidence"
        # Entries: JSON lines + the by-hand copies (exact canonical bytes, raw signature).
        lines = []
        for seq in sorted(entries):
            s = entries[seq]
            lines.append(json.dumps({"seq": seq, "canonical": base64.b64encode(s.canonical).decode(),
                                     "signature": base64.b64encode(s.signature).decode()}, sort_keys=True))
            _write(ev / "entries" / f"{seq}.json", s.canonical)
            _write(ev / "entries" / f"{seq}.sig", s.signature)
        _write(ev / "entries.jsonl", ("\n".join(lines) + "\n").encode())
        _write(ev / "proofs.json", json.dumps({"tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(),
                                               "inclusion": {str(k): [h.hex() for h in v] for k, v in proofs.items()},
                                               "consistency": consistency}, indent=1, sort_keys=True).encode())
        # §4.4: the note with every witness cosignature; the body and the log's raw signature for openssl.
        sig = next(s for s in note.signatures
                   if s.name == cp.origin and s.key_id == cp_mod.note_key_id(cp.origin, signer.raw))
        _write(ev / "checkpoint.txt", note.text().encode("utf-8"))
        _write(ev / "checkpoint-body.txt", body)
        _write(ev / "checkpoint.sig", sig.signature)
        if stamp is not None:  # §4.6: the token as transparency stores it, over the note body
            _write(ev / "timestamp.tst", stamp.token)
            if stamp.chain is not None:
                _write(ev / "tsa-chain.pem", stamp.chain.pem)
            if stamp.request is not None:
                _write(ev / "timestamp.tsq", stamp.request)
        enrolled_here = {s.entry.body["key_id"] for s in entries.values() if s.entry.type == "key-enroll"}
        for kid in sorted(enrolled_here):
            _write(ev / "keys" / f"{kid}.pem", keys[kid].to_pem())
        media = {}
        for p in plan:
            raw = item_rows[p["sha256"]].media_json
            try:
                media[p["sha256"]] = json.loads(raw) if raw else None
            except ValueError:
                media[p["sha256"]] = None
        _write(ev / "metadata.json", json.dumps({"note": "Extracted at ingest from the files themselves; NOT signed and "
                                                 "not verified fact. Re-derivable from the payload bytes.",
                                                 "items": media}, indent=1, sort_keys=True, ensure_ascii=False).encode())
        # §4.7: the report renders the metadata exactly as a verifier reads it back from metadata.json.
        media = json.loads((ev / "metadata.json").read_bytes())["items"]
        ctx = handbook.Context(
            case=case, origin=cp.origin, created=_fmt(created), software=_software(), exporter=key.key_id,
            exporter_name=key.name, checkpoint=cp, checkpoint_signer=signer, timestamp=_stamp_info(stamp),
            plan=plan, entries=entries, keys={k: keys[k] for k in enrolled_here}, media=media, bag=tmp,
            checkpoint_created=chosen.created, custody_paths=_custody_paths(upstream, entries, cp.origin))
        files: dict[str, str] = {}
        for name, data in handbook.human_files(ctx, with_report=report).items():
            _write(tmp / name, data)
            files[name] = hashlib.sha256(data).hexdigest()
        files["evidence/metadata.json"] = hashlib.sha256((ev / "metadata.json").read_bytes()).hexdigest()
        # docs/browser-verifier.md: the browser verifier this package ships, pinned like the human files.
        page = browser.verify_html_bytes()
        _write(tmp / browser.VERIFY_HTML, page)
        files[browser.VERIFY_HTML] = hashlib.sha256(page).hexdigest()
        bundle_json = json.dumps({
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "origin": cp.origin, "case": case,
            "created": _fmt(created), "software": _software(), "exporter": key.key_id,
            "checkpoint": {"size": cp.tree_size, "root": cp.root_hash.hex(), "file": "evidence/checkpoint.txt"},
            "items": [{k: p[k] for k in ("path", "sha256", "sha512", "size", "original_names", "entries")} for p in plan],
            "record": _record(entries),
            "files": files,
        }, indent=1, sort_keys=True, ensure_ascii=False).encode()
        _write(ev / "bundle.json", bundle_json)
        _write(ev / "bundle.json.sig", key.sign(bundle_json))
        # §4.9: the stored tag files of every bundle an included receipt names, verbatim.
        _copy_upstream(upstream, ev / "upstream")
        # BagIt (RFC 8493): declaration, payload manifests, bag-info, then tag manifests last.
        _write(tmp / "bagit.txt", b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
        for alg in ("sha256", "sha512"):
            _write(tmp / f"manifest-{alg}.txt", "".join(f"{p[alg]}  {p['path']}\n" for p in plan).encode())
        total = sum(p["size"] for p in plan)
        info = [("Bag-Software-Agent", _one_line(_software())), ("Bagging-Date", _fmt(created)[:10]),
                ("Payload-Oxum", f"{total}.{len(plan)}"), ("External-Identifier", _one_line(case)),
                ("Source-Organization", _one_line(cp.origin)),
                ("Internal-Sender-Description", "evidencelock evidence bundle: see VERIFY.md and report.html")]
        _write(tmp / "bag-info.txt", "".join(f"{k}: {v}\n" for k, v in info).encode())
        tag_files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()
                           and not str(p.relative_to(tmp)).startswith("data/"))
        digests = {f: (hashlib.sha256((tmp / f).read_bytes()).hexdigest(), hashlib.sha512((tmp / f).read_bytes()).hexdigest())
                   for f in tag_files}
        _write(tmp / "tagmanifest-sha256.txt", "".join(f"{digests[f][0]}  {f}\n" for f in tag_files).encode())
        _write(tmp / "tagmanifest-sha512.txt", "".join(f"{digests[f][1]}  {f}\n" for f in tag_files).encode())
        tagmanifest_sha256 = hashlib.sha256((tmp / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
        _make_durable(tmp)
        final_tmp: Path = tmp
        if as_zip:
            zip_tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(6)}.zip"
            _zip_folder(tmp, zip_tmp, top=out.stem)
            final_tmp = zip_tmp
        # (2) record the export, then (3) move it into place.
        # One access entry per exported item, in the export entry's transaction (custody-events §2.3).
        signed = append_export(vault, key, now=created, case=case, items=sha_items, bundle=out.name, purpose=purpose, body={
            "items": sha_items,
            "bundle": {"name": out.name, "format": f"{BUNDLE_FORMAT}/{BUNDLE_VERSION}", "tagmanifest_sha256": tagmanifest_sha256,
                       "payload_oxum": f"{total}.{len(plan)}", "checkpoint_size": cp.tree_size,
                       "checkpoint_root": cp.root_hash.hex()},
        })
        assert signed is not None
        if out.exists():
            raise InputError("the bundle target appeared while exporting; the bag is kept under a temporary name",
                             subject=str(final_tmp))
        os.rename(final_tmp, out)
        _fsync_dir(out.parent)
        if as_zip:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        if not out.exists() or (zip_tmp is not None and not zip_tmp.exists()):
            shutil.rmtree(tmp, ignore_errors=True)
            if zip_tmp is not None:
                zip_tmp.unlink(missing_ok=True)
        raise
    return ExportResult(out, case, len(plan), total, len(entries), cp.tree_size, chosen.created, stamp is not None,
                        signed.entry.seq, tagmanifest_sha256, copy_seconds)


def _upstream_parts(vault: Vault, entries: Mapping[int, SignedEntry]) -> dict[str, Path]:
    """docs/bundle-format.md §4.9: U -> the stored ``imports/<U>`` folder, for every U that an
    included ingest entry names in ``received.bundle``.  A missing or altered stored import
    refuses the export (nothing signed, nothing written), naming the folder."""
    from ..importer import IMPORTS_DIR, stored_import_problems

    parts: dict[str, Path] = {}
    for seq in sorted(entries):
        e = entries[seq].entry
        rec = e.body.get("received") if e.type == "ingest" else None
        u = rec.get("bundle") if isinstance(rec, dict) else None
        if not isinstance(u, str) or u in parts:
            continue
        folder = vault.root / IMPORTS_DIR / u
        if len(u) != 64 or not folder.is_dir() or folder.is_symlink():
            raise VerificationError(f"entry {seq} received item {str(e.body.get('item'))[:16]}… in a bundle whose tag files "
                                    "are not stored in this vault", subject=f"{IMPORTS_DIR}/{u[:64]}",
                                    hint="run `evidencelock verify`; nothing was exported")
        problems = stored_import_problems(folder, u)
        if problems:
            raise VerificationError(f"the stored import differs from the bundle received: {problems[0]}",
                                    subject=f"{IMPORTS_DIR}/{u}", hint="run `evidencelock verify`; nothing was exported")
        parts[u] = folder
    return parts


def _custody_paths(parts: Mapping[str, Path], entries: Mapping[int, SignedEntry], origin: str) -> list[dict[str, Any]]:
    """§4.9: the "Earlier custodians" of the human files, from the stored imports (the same words
    verify-bundle renders from the verified upstream parts)."""
    if not parts:
        return []
    from .source import DirSource, Limits
    from .upstream import custody_paths, enrolled_names, receipts_of, stored_parts

    opened = stored_parts(lambda u: DirSource(parts[u], Limits()), entries)
    return custody_paths(receipts_of(entries), origin, enrolled_names(entries), opened)


def _copy_upstream(parts: Mapping[str, Path], dest: Path) -> None:
    for u, folder in sorted(parts.items()):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                _write(dest / u / path.relative_to(folder), path.read_bytes())


def _zip_add_utc(z: zipfile.ZipFile, path: Path, arcname: str, method: int) -> None:
    """Like ``z.write`` but the member time is UTC: ZIP stores a zone-less time, and the local
    time ``z.write`` puts there would reveal the exporting computer's time zone (issue 9 item 19)."""
    import time

    info = zipfile.ZipInfo.from_file(path, arcname)
    info.date_time = max(time.gmtime(path.stat().st_mtime)[:6], (1980, 1, 1, 0, 0, 0))
    info.compress_type = method
    with open(path, "rb") as src, z.open(info, "w") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _zip_folder(folder: Path, target: Path, *, top: str) -> None:
    """Payload STORED (media is already compressed), tag files deflated; one top folder."""
    try:
        with zipfile.ZipFile(target, "x", allowZip64=True) as z:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    rel = str(path.relative_to(folder))
                    method = zipfile.ZIP_STORED if rel.startswith("data/") else zipfile.ZIP_DEFLATED
                    _zip_add_utc(z, path, f"{top}/{rel}", method)
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot write the zip: {exc.strerror or exc}", subject=str(target),
                           hint="nothing was recorded; free space and export again") from None


def _fmt(t: datetime) -> str:
    from ..entry import format_time

    return format_time(t)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _stamp_info(stamp: _Stamp | None) -> dict[str, Any] | None:
    """What the report says about the timestamp; ``verified`` is False for a token without a chain."""
    if stamp is None:
        return None
    if stamp.info is None or stamp.chain is None:
        return {"verified": False, "time": "", "tsa": "unknown (no TSA certificate chain was given)", "root_sha256": ""}
    return {"verified": True, "time": stamp.info.time.isoformat(), "tsa": stamp.info.tsa_name,
            "root_sha256": tsa_root_sha256(stamp.chain)}

