"""Full, read-only check of a live vault: collect typed findings, then report them all.

What ``verify`` establishes (docs/vault-layout.md §6):

* every ledger row parses as a canonical entry, the seq/prev chain is unbroken, every
  signature verifies under a key enrolled (and not revoked) earlier in the same ledger;
* the stored Merkle tree agrees with the tree recomputed from the entries, and every stored
  checkpoint is consistent with it (when the transparency module is present);
* every item an ingest entry records has its object, whose bytes hash to the recorded SHA-256
  (and BLAKE3 with ``all_digests``) and size; no object exists that no entry records;
* the derived tables (items, keys) agree with the entries.

Findings are collected and returned; nothing is raised for a problem in the vault, so one
bad object never hides another (STYLE.md §6).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .derived import Derivation, Mismatch, entry_column_mismatches
from .entry import ChainVerifier, SignedEntry
from .errors import EvidenceLockError, FormatError
from .findings import SCHEMA, finding
from .hashing import hash_file
from .keys import CustodianKey
from .store import is_sha256_hex
from .vault import Vault

__all__ = ["Finding", "VerifyReport", "verify_vault", "audit_vault"]


@dataclass(frozen=True)
class Finding:
    code: str  # stable machine name, e.g. "object-digest-mismatch"
    subject: str  # "entry 12", "item ab12…", "object objects/sha256/…"
    message: str
    severity: str = "error"  # error | notice
    # Structured values (docs/findings.md); None where they do not apply or are read from the text.
    path: str | None = None  # vault-relative path of the object concerned
    sha256: str | None = None  # full SHA-256 of the item or object concerned
    seq: int | None = None  # the entry concerned (the recording entry, for an object)
    expected: str | None = None
    found: str | None = None

    def to_json(self) -> dict[str, str]:
        """The four members an audit entry records (docs/ledger-format.md §4.4): unchanged."""
        return {"code": self.code, "subject": self.subject, "message": self.message, "severity": self.severity}

    def to_finding(self) -> dict[str, Any]:
        """The finding in the shared shape of docs/findings.md (``verify --json``, ``audit --json``)."""
        return finding(self.code, severity=self.severity, message=self.message, subject=self.subject, path=self.path,
                       sha256=self.sha256, seq=self.seq, expected=self.expected, found=self.found)


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    entries: int = 0
    objects_checked: int = 0
    bytes_checked: int = 0
    digests: tuple[str, ...] = ("sha256",)
    tree_size: int = 0
    root_hash: str = ""
    checkpoints_checked: int = 0
    shard: tuple[int, int] | None = None  # (K, N) of --shard K/N: only that shard's objects were re-hashed
    shard_objects: int = 0  # recorded objects in the shard (with --shard)
    objects_total: int = 0  # recorded objects in the snapshot, all shards
    receipts: list[SignedEntry] = field(default_factory=list, repr=False)  # import receipts seen (not in JSON)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, code: str, subject: str, message: str, severity: str = "error", **values: Any) -> None:
        self.findings.append(Finding(code, subject, message, severity, **values))

    def shard_json(self) -> dict[str, int] | None:
        if self.shard is None:
            return None
        return {"index": self.shard[0], "count": self.shard[1], "objects": self.shard_objects,
                "objects_total": self.objects_total}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "entries": self.entries,
            "objects_checked": self.objects_checked,
            "bytes_checked": self.bytes_checked,
            "digests": list(self.digests),
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "checkpoints_checked": self.checkpoints_checked,
            "shard": self.shard_json(),
            "findings": [f.to_finding() for f in self.findings],
        }


@dataclass(frozen=True)
class _Recorded:
    sha256: str
    second: str | None
    size: int
    seq: int
    name: str = ""

    @property
    def subject(self) -> str:
        return f"item {self.sha256[:16]}…" + (f" ({self.name})" if self.name else "")


ProgressFn = Callable[[str, int], None]


def verify_vault(vault: Vault, *, all_digests: bool = False, jobs: int | None = None,
                 progress: ProgressFn | None = None, shard: tuple[int, int] | None = None) -> VerifyReport:
    report = VerifyReport(digests=("sha256", "blake3") if all_digests else ("sha256",), shard=shard)
    # One read transaction for every ledger read (§6, "consistent snapshot"): a concurrent
    # ingest's later entries are not seen, so entries, tree, indexes and checkpoints agree.
    # The object listing is taken AFTER the snapshot: every object the snapshot records was
    # placed, or is being placed, by then (write order §4: record, then place).
    with vault.ledger.snapshot() as snap:
        listing = list(vault.store.iter_objects())
        # Re-hashing the objects (I/O and hashlib, which release the GIL) starts at once and runs
        # while this thread checks the ledger; results are matched with the records afterwards.
        # Two threads per core keep a core busy while the other thread of the pair waits on I/O.
        with ThreadPoolExecutor(max_workers=max(1, jobs or 2 * (os.cpu_count() or 1))) as pool:
            hashing: dict[str, Future[Any]] = {}
            for name, path in listing:
                if vault.store.object_is_placed_correctly(name, path) and _in_shard(name, shard):
                    hashing[name] = pool.submit(_hash_or_error, path, all_digests)
            try:
                recorded, leaf_hashes, derivation = _check_ledger(vault, report)
                _check_tree(vault, report, leaf_hashes)
                _check_derived(vault, report, recorded, derivation)
                _check_imports(vault, report)
                _check_custody(vault, report)
                unrecorded = _check_objects(vault, report, recorded, listing, hashing, all_digests=all_digests,
                                            progress=progress, shard=shard)
            finally:
                for fut in hashing.values():
                    fut.cancel()
    _report_unrecorded(vault, report, unrecorded, snap.size)
    return report


def _check_imports(vault: Vault, report: VerifyReport) -> None:
    """docs/vault-layout.md §7: every stored import (imports/<U>) intact, every receipt matching it."""
    from .importer import check_imports

    check_imports(vault, report.receipts, report.add)


def _check_custody(vault: Vault, report: VerifyReport) -> None:
    """Custody rules over the signed entries (docs/custody-events.md §4): an acceptance that
    breaks them is an error (``custody-accept``), a release by a non-holder a notice."""
    from .custody import custody_findings

    for f in custody_findings(vault):
        report.add(f.code, f"entry {f.seq}", f.message, "error" if f.severity == "fail" else "notice")


def _report_unrecorded(vault: Vault, report: VerifyReport, unrecorded: list[tuple[str, str]], snapshot_size: int) -> None:
    """``object-unrecorded`` for objects no entry records, read AFTER the snapshot closed.

    An object placed by an ingest that committed after the snapshot is recorded by an entry
    at seq >= ``snapshot_size``: it is outside what this run checks, not an anomaly.  An
    object is placed only after its entry commits (§4), so one that is still unrecorded now
    was added outside evidencelock (or its entry was deleted).
    """
    if not unrecorded:
        return
    later: set[str] = set()
    for row in vault.ledger.rows(start=snapshot_size):
        try:
            e = SignedEntry.from_bytes(row.canonical, row.signature).entry
        except FormatError:
            continue
        if e.type == "ingest" and isinstance(e.body.get("item"), str):
            later.add(e.body["item"])
    for name, rel in unrecorded:
        if name not in later:
            report.add("object-unrecorded", f"object {rel}",
                       "object in the store that no ledger entry records; it was added outside evidencelock or its entry was deleted",
                       path=rel, sha256=name)


def _in_shard(sha: str, shard: tuple[int, int] | None) -> bool:
    return shard is None or int(sha[:8], 16) % shard[1] == shard[0]


def _hash_or_error(path: Any, second: bool) -> Any:
    try:
        return hash_file(path, second=second)
    except OSError as exc:
        return exc


def _check_ledger(vault: Vault, report: VerifyReport) -> tuple[dict[str, _Recorded], list[bytes], Derivation]:
    verifier = ChainVerifier()
    recorded: dict[str, _Recorded] = {}
    leaf_hashes: list[bytes] = []
    derivation = Derivation()
    # start=None: every row, also one with a negative seq (only a database edit makes one).
    for row in vault.ledger.rows(start=None, columns=True):
        report.entries += 1
        subject = f"entry {row.seq}"
        try:
            signed = SignedEntry.from_bytes(row.canonical, row.signature, subject=subject)
        except FormatError as exc:
            report.add("entry-malformed", subject, f"{exc.message}; the entry may have been edited in the database")
            if row.seq >= 0:  # a planted negative row must not resynchronise the chain check
                verifier.next_seq = row.seq + 1
                verifier.prev = row.entry_hash
            leaf_hashes.append(bytes.fromhex(row.leaf_hash) if len(row.leaf_hash) == 64 else b"")
            continue
        leaf_hashes.append(signed.leaf_hash)
        if signed.entry.seq != row.seq:
            report.add("entry-seq-mismatch", subject,
                       f"row seq {row.seq} holds an entry with seq {signed.entry.seq}; rows may have been reordered")
        if row.entry_hash != signed.entry_hash or row.leaf_hash != signed.leaf_hash.hex():
            report.add("entry-hash-column", subject,
                       f"stored hash columns do not match the entry bytes: expected={signed.entry_hash} found={row.entry_hash}")
        if row.seq < 0:
            continue  # only a database edit makes one (reported above); keep the chain checks of the real rows
        trusted = True
        try:
            verifier.feed(signed)
        except EvidenceLockError as exc:
            trusted = False
            report.add(_code_for(exc), subject, exc.message + (f" ({exc.hint})" if exc.hint else ""))
        _add(report, entry_column_mismatches(row.seq, row.columns or {}, signed))
        if signed.entry.seq == row.seq:  # a copy planted at another seq derives nothing (reported above)
            derivation.feed(signed, trusted=trusted)
        e = signed.entry
        if e.type == "ingest":
            body = e.body
            sha = body.get("item")
            digests = body.get("digests") if isinstance(body.get("digests"), dict) else {}
            if not isinstance(sha, str) or not is_sha256_hex(sha) or digests.get("sha256") != sha:
                report.add("entry-malformed", subject, "ingest entry lacks a valid item digest")
                continue
            if isinstance(body.get("received"), dict):
                report.receipts.append(signed)  # checked against imports/ by _check_imports
            prior = recorded.get(sha)
            size = body.get("size")
            if prior is not None and (prior.size != size or (digests.get("blake3") not in (None, prior.second))):
                report.add("item-digest-conflict", subject,
                           f"item {sha[:16]}… recorded with size/digests that differ from entry {prior.seq}", sha256=sha)
            if prior is None and isinstance(size, int):
                src = body.get("source") if isinstance(body.get("source"), dict) else {}
                recorded[sha] = _Recorded(sha, digests.get("blake3"), size, e.seq, str(src.get("path", "")))
    report.tree_size = len(leaf_hashes)
    return recorded, leaf_hashes, derivation


def _add(report: VerifyReport, mismatches: list[Mismatch]) -> None:
    for m in mismatches:
        report.add(m.code, m.subject, m.message, m.severity)


def _code_for(exc: EvidenceLockError) -> str:
    name = type(exc).__name__
    return {"ChainError": "chain-broken", "SignatureError": "signature-invalid", "FormatError": "entry-malformed"}.get(
        name, "entry-invalid"
    )


def _check_tree(vault: Vault, report: VerifyReport, leaf_hashes: list[bytes]) -> None:
    """The stored Merkle tree must equal the one recomputed from the entries."""
    from . import merkle, treestore

    from .errors import ProofError, StorageError

    usable = all(len(h) == merkle.HASH_SIZE for h in leaf_hashes)  # a malformed row may lack one
    root = merkle.root_hash(leaf_hashes) if usable else b""
    report.root_hash = root.hex()
    with vault.ledger.reader() as conn:
        stored_size = treestore.tree_size(conn)
        if stored_size != len(leaf_hashes):
            report.add("tree-size-mismatch", "merkle tree",
                       f"stored tree has {stored_size} leaves, the ledger has {len(leaf_hashes)} entries")
        elif stored_size and usable:
            stored_root = treestore.root_at(conn, stored_size)
            if stored_root != root:
                report.add("tree-root-mismatch", "merkle tree",
                           f"stored tree root differs from the root recomputed from the entries: "
                           f"expected={root.hex()} found={stored_root.hex()}")
            # Every stored node, not only the root path: proofs are built from any of them.
            try:
                treestore.verify_nodes(conn, leaf_hashes)
            except (ProofError, StorageError) as exc:
                report.add("tree-node-mismatch", "merkle tree", exc.message + (f" ({exc.hint})" if exc.hint else ""))
    try:
        from . import transparency  # checkpoint checks, when that module is present
    except ImportError:
        return
    transparency.check_checkpoints(vault, report, leaf_hashes)


def _check_derived(vault: Vault, report: VerifyReport, recorded: dict[str, _Recorded], derivation: Derivation) -> None:
    """Every row of items (incl. media_json), sources and keys against the entries (§6)."""
    with vault.ledger.reader() as conn:
        _add(report, derivation.compare(conn))


def _check_objects(vault: Vault, report: VerifyReport, recorded: dict[str, _Recorded], listing: list[tuple[str, Any]],
                   hashing: dict[str, Future[Any]], *, all_digests: bool, progress: ProgressFn | None,
                   shard: tuple[int, int] | None) -> list[tuple[str, str]]:
    """Returns the (name, path) of objects the snapshot does not record (see _report_unrecorded)."""
    store = vault.store
    present: dict[str, Any] = {}
    unrecorded: list[tuple[str, str]] = []
    for name, path in listing:
        rel = os.path.relpath(path, vault.root)
        if not store.object_is_placed_correctly(name, path):
            report.add("object-stray", f"object {rel}", "file in the object store with a name or place that is not a valid object address",
                       path=rel)
            continue
        if name not in recorded:
            hashing.pop(name, None)
            unrecorded.append((name, rel))  # reported after the snapshot, unless a later entry records it
            continue
        present[name] = path
    staged = {}
    for path, sha in store.leftovers():
        if sha is not None and sha in recorded and sha not in present:
            staged[sha] = path
            report.add("object-awaiting-rollforward", f"item {sha[:16]}…",
                       "recorded, and still in staging after an interrupted run; the next ingest or audit moves it into place",
                       "notice", sha256=sha, seq=recorded[sha].seq)
        else:
            report.add("staging-leftover", os.path.relpath(path, vault.root),
                       "unrecorded leftover of an interrupted run (not evidence); removed by the next ingest", "notice")
    todo = []
    report.objects_total = len(recorded)
    for sha, rec in sorted(recorded.items()):
        if not _in_shard(sha, shard):
            continue
        report.shard_objects += 1
        path = present.get(sha) or staged.get(sha) or _placed_since(vault, sha)
        if path is None:
            report.add("object-missing", rec.subject, f"recorded at entry {rec.seq} but its object is missing from the store",
                       path=os.path.relpath(store.path_for(sha), vault.root), sha256=sha, seq=rec.seq)
            continue
        todo.append((rec, path, sha in staged))
    if progress:
        progress("total", sum(r.size for r, _, _ in todo))

    for rec, path, is_staged in todo:
        fut = hashing.get(rec.sha256)
        result = _hash_or_error(path, all_digests) if is_staged or fut is None else fut.result()
        if isinstance(result, OSError) and is_staged and store.path_for(rec.sha256).is_file():
            path, is_staged = store.path_for(rec.sha256), False  # rolled forward meanwhile (§4)
            result = _hash_or_error(path, all_digests)
        subject = rec.subject
        rel = os.path.relpath(path, vault.root)
        at = {"path": rel, "sha256": rec.sha256, "seq": rec.seq}
        report.objects_checked += 1
        if isinstance(result, OSError):
            report.add("object-unreadable", subject, f"cannot read {rel}: {result.strerror}", **at)
            continue
        report.bytes_checked += result.size
        if progress:
            progress("bytes", result.size)
        if result.sha256 != rec.sha256:
            report.add("object-digest-mismatch", subject,
                       f"sha256 of {rel}: expected={rec.sha256} found={result.sha256}; the stored copy has been modified",
                       **at, expected=rec.sha256, found=result.sha256)
        elif result.size != rec.size:
            report.add("object-size-mismatch", subject, f"size expected={rec.size} found={result.size}",
                       **at, expected=str(rec.size), found=str(result.size))
        elif all_digests and rec.second and result.second != rec.second:
            report.add("object-digest-mismatch", subject, f"blake3 of {rel}: expected={rec.second} found={result.second}",
                       **at, expected=rec.second, found=result.second)
        if not is_staged and not store.is_read_only(path):
            report.add("object-writable", subject, f"{rel} is writable; objects must be read-only", "notice", **at)
    return unrecorded


def _placed_since(vault: Vault, sha: str, *, wait: float = 60.0) -> Any:
    """The object of a recorded item that the listing did not see, if a running ingest placed
    it meanwhile (§4: an entry commits before its object is linked into place).

    While a LIVE staging session still holds ``<sha>.*.staged`` the object is being placed:
    wait for it (bounded).  No staged copy and no object: it is missing (None).
    """
    import time

    final = vault.store.path_for(sha)

    def placed() -> bool:  # reached without following any link below objects/ (a planted link is not the object)
        try:
            os.close(vault.store.open_object(sha))
        except OSError:
            return False
        return True

    deadline = time.monotonic() + wait
    while True:
        if placed():
            return final
        if not _in_flight(vault, sha) or time.monotonic() > deadline:
            return final if placed() else None
        time.sleep(0.05)


def _in_flight(vault: Vault, sha: str) -> bool:
    """A staged copy of ``sha`` in some staging session (links are not followed)."""
    try:
        with os.scandir(vault.store.staging_dir) as sessions:
            for session in sessions:
                if not session.is_dir(follow_symlinks=False):
                    continue
                try:
                    with os.scandir(session.path) as files:
                        if any(f.name.startswith(sha + ".") and f.name.endswith(".staged") for f in files):
                            return True
                except OSError:
                    continue
    except OSError:
        return False
    return False


def audit_vault(vault: Vault, *, key: CustodianKey, now: Callable[[], datetime], all_digests: bool = False,
                jobs: int | None = None, progress: ProgressFn | None = None) -> tuple[VerifyReport, int | None]:
    """``verify`` plus a signed audit entry recording the result.  Returns (report, seq)."""
    report = verify_vault(vault, all_digests=all_digests, jobs=jobs, progress=progress)
    started = now()
    body = {
        "result": "pass" if report.ok else "fail",
        "checked_entries": report.entries,
        "tree_size": report.tree_size,
        "root_hash": report.root_hash,
        "objects_checked": report.objects_checked,
        "bytes_checked": report.bytes_checked,
        "digests": list(report.digests),
        "finding_count": len(report.errors),
        "findings": [f.to_json() for f in report.errors[:50]],
        "software": _software(),
    }
    signed = vault.append(key, now=started, type="audit", case="", body=body)
    return report, (signed.entry.seq if signed else None)


def _software() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"evidencelock {version('evidencelock')}"
    except PackageNotFoundError:  # pragma: no cover
        return "evidencelock"


