"""Preserve files that arrive in a bag (a plain BagIt bag or an evidence bundle).

The same guarantees as ``ingest`` (docs/vault-layout.md §4), for bytes that come with the
digests someone else recorded for them:

1. every member is streamed once from the bag (``BagSource.open``: a folder or a zip, never
   extracted) into staging (``ObjectStore.stage_stream``), hashed with SHA-256, BLAKE3 and
   every further digest the bag states for it, in the same pass;
2. each result is compared with what the bag states (size, SHA-256, the other digests): if ANY
   file differs or cannot be read, every staged copy of this import is removed and
   :class:`ReceiveRefused` (exit 1) names each file, the algorithm, expected and found:
   nothing is recorded for the whole import;
3. metadata is extracted from the staged copies in the isolated worker, as by ``ingest``;
4. the staged bytes are flushed (``syncfs``), then ONE ledger transaction appends one
   ``ingest`` entry per received file (bodies built by ``ingest.ingest_body``: the same rules,
   ``duplicate_of``, ``media``, ``media_sha256``) plus the caller's ``received`` member;
5. the objects are moved into place.

A process killed at any point leaves either unreferenced staged files (removed by the next
writer, ``recover``) or recorded objects still in staging (rolled forward by the next writer);
re-running the same import completes it: a file already recorded for the case with the same
source key is skipped (``already-recorded``), without being read again.

The source key of a received file (docs/ledger-format.md §4.1) is an HMAC over an identity that
names the bag: ``"bag:" + <bag identity> + "\\0" + <bag path>`` (:func:`received_source`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from .bundle.source import BagSource, ZipMemberError
from .entry import format_time
from .errors import InputError, StorageError, VerificationError
from .hashing import new_hasher
from .ingest import (MAX_NOTE, FileOutcome, IngestReport, ProgressFn, _default_extract, _note_near_duplicates,
                     _test_kill_point, ingest_body, recorded_hits)
from .keys import CustodianKey
from .ledger import Draft, Tail, set_item_media
from .store import SourceChanged, SourceReadError, StagedObject, is_sha256_hex
from .vault import Vault

__all__ = ["Incoming", "ReceiveProblem", "ReceiveRefused", "ReceiveReport", "preserve_incoming",
           "received_source", "source_key"]


@dataclass(frozen=True)
class Incoming:
    """One file of a bag to preserve, with what the bag states about it."""

    bag_path: str  # e.g. "data/DCIM/a.jpg" inside the bag
    sha256: str  # expected (lowercase hex); the copy is refused, named, if the bytes differ
    size: int  # expected
    source: dict[str, Any]  # the ingest body's `source` member (see received_source)
    received: dict[str, Any]  # the ingest body's `received` member
    # Further expected digests checked while copying, e.g. {"sha512": …, "md5": …}: any
    # algorithm ``blake3`` or ``hashlib.new`` computes.  Hex, any case.
    digests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceiveProblem:
    path: str  # bag path
    check: str  # receive-digest-mismatch | receive-size-mismatch | receive-unreadable
    message: str
    algorithm: str | None = None
    expected: str | None = None
    found: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class ReceiveRefused(VerificationError):
    """Some received bytes differ from what the bag states (or cannot be read): nothing was
    recorded for the whole import.  Exit code 1.  ``problems`` names every file."""

    def __init__(self, label: str, problems: Sequence[ReceiveProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(
            f"{first.path}: {first.message}{more}",
            subject=label,
            hint="nothing was recorded for this import; the bag may have been modified or damaged after it "
                 "was made or validated: obtain a good copy and import it again",
        )
        self.problems = list(problems)

    def to_json(self) -> dict[str, Any]:
        return {"ok": False, "refused": str(self), "problems": [p.to_json() for p in self.problems]}


@dataclass
class ReceiveReport(IngestReport):
    bag: str = ""  # the bag's label (folder or zip path)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["bag"] = self.bag
        return out


def source_key(secret: bytes | None, identity: str, bag_path: str) -> str:
    """docs/ledger-format.md §4.1: the source key of a file received in a bag.

    I = UTF-8("bag:" + identity) ‖ 0x00 ‖ UTF-8(bag_path); key = hex HMAC-SHA256(secret, I),
    or hex SHA-256(I) in a vault without a source-key secret.  ``identity`` names the bag
    (an evidence bundle: U, the hex SHA-256 of its tagmanifest-sha256.txt; a plain BagIt bag:
    docs/bundle-format.md "Importing plain BagIt bags").  No host name contains ":", so I never
    equals the identity of a file ingested from a folder.
    """
    ident = ("bag:" + identity).encode("utf-8") + b"\x00" + bag_path.encode("utf-8")
    if secret is None:
        return hashlib.sha256(ident).hexdigest()
    return hmac.new(secret, ident, hashlib.sha256).hexdigest()


def received_source(vault: Vault, *, root: str, identity: str, bag_path: str) -> dict[str, Any]:
    """The ``source`` member of a received file's ingest entry: ``root`` = the bag's folder or
    zip name (last component only), ``path`` = the bag path without ``data/``, ``key`` =
    :func:`source_key`.  No ``mtime``: a copy's time stamps say nothing about the file."""
    path = bag_path[len("data/"):] if bag_path.startswith("data/") else bag_path
    return {"root": os.path.basename(root.rstrip("/")), "path": path,
            "key": source_key(vault.source_key_secret(), identity, bag_path)}


@dataclass
class _Staged:
    pos: int
    inc: Incoming
    staged: StagedObject
    media: dict[str, Any] | None = None


def _check_request(src: BagSource, incoming: Sequence[Incoming]) -> None:
    """Malformed requests are the caller's bug or bad input: InputError before anything is read."""
    seen: set[str] = set()
    for inc in incoming:
        if inc.bag_path in seen:
            raise InputError("the same bag file is listed twice for preservation", subject=inc.bag_path)
        seen.add(inc.bag_path)
        if not is_sha256_hex(inc.sha256):
            raise InputError(f"expected SHA-256 is not 64 lowercase hex digits: {inc.sha256!r}", subject=inc.bag_path)
        if not isinstance(inc.size, int) or isinstance(inc.size, bool) or inc.size < 0:
            raise InputError(f"expected size is not a non-negative integer: {inc.size!r}", subject=inc.bag_path)
        if not isinstance(inc.source.get("key"), str) or not is_sha256_hex(inc.source["key"]):
            raise InputError("the source member has no 64-hex-digit key", subject=inc.bag_path)
        if inc.bag_path not in src.sizes:
            raise InputError("not a readable file of the bag", subject=inc.bag_path)
        for alg, hexd in inc.digests.items():
            try:
                new_hasher(alg)
            except ValueError:
                raise InputError(f"cannot compute the {alg!r} digest stated for this file", subject=inc.bag_path) from None
            if not isinstance(hexd, str) or not hexd or any(c not in "0123456789abcdefABCDEF" for c in hexd):
                raise InputError(f"the stated {alg} digest is not hex: {hexd!r}", subject=inc.bag_path)


def _stage_one(vault: Vault, src: BagSource, inc: Incoming) -> tuple[StagedObject | None, list[ReceiveProblem]]:
    """Step 1-2 for one file: (staged copy, []) or (None, problems naming it)."""
    algs = [a for a in inc.digests if a != "sha256"]
    try:
        with src.open(inc.bag_path) as f:
            staged = vault.store.stage_stream(f, expected_size=inc.size, durable=False, extra=algs)
    except SourceChanged as exc:
        return None, [ReceiveProblem(inc.bag_path, "receive-size-mismatch",
                                     f"size differs from the bag's statement ({exc})", "size", str(inc.size))]
    except SourceReadError as exc:
        return None, [ReceiveProblem(inc.bag_path, "receive-unreadable",
                                     f"read error: {exc.error.strerror or exc.error} (damaged medium?)")]
    except ZipMemberError as exc:
        return None, [ReceiveProblem(inc.bag_path, "receive-unreadable", exc.message)]
    except StorageError:
        raise
    except (OSError, KeyError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [ReceiveProblem(inc.bag_path, "receive-unreadable", f"cannot be read: {why}")]
    d = staged.digests
    problems: list[ReceiveProblem] = []
    checks = [("sha256", inc.sha256, d.sha256)] + [(a, inc.digests[a].lower(), d.extra[a]) for a in algs]
    if "sha256" in inc.digests and inc.digests["sha256"].lower() != inc.sha256:
        checks.append(("sha256", inc.digests["sha256"].lower(), d.sha256))
    for alg, expected, found in checks:
        if expected != found:
            problems.append(ReceiveProblem(inc.bag_path, "receive-digest-mismatch",
                                           f"{alg} mismatch: expected={expected} found={found}; the bytes differ "
                                           "from the bag's manifest", alg, expected, found))
    if problems:
        vault.store.discard(staged)
        return None, problems
    return staged, []


def preserve_incoming(
    vault: Vault,
    src: BagSource,
    incoming: Sequence[Incoming],
    *,
    key: CustodianKey,
    case: str,
    note: str | None,
    now: Callable[[], datetime],
    extract_media: bool = True,
    progress: ProgressFn | None = None,
    jobs: int | None = None,
    after_stage: Callable[[Mapping[str, StagedObject]], None] | None = None,
) -> ReceiveReport:
    """Preserve ``incoming`` from ``src`` into ``vault`` under ``case``; see the module docstring.

    All or nothing: raises :class:`ReceiveRefused` (nothing recorded, nothing left staged) if
    any file differs from what the bag states; :class:`StorageError` if the vault's disk fails.
    ``after_stage(staged)`` (bag path -> staged copy, files already recorded are not staged) runs
    once every file is staged and matched, before anything is recorded: import-bundle verifies
    the bundle there, from the staged digests; whatever it raises refuses the import (the staged
    copies are discarded, nothing recorded).
    """
    if not vault.writable:
        raise ValueError("vault must be opened writable")
    case = case.strip()
    if not case or len(case) > 256:
        raise InputError("a case name of 1 to 256 characters is required (--case CASE)")
    if note is not None and len(note) > MAX_NOTE:
        raise InputError(f"the note is longer than {MAX_NOTE} characters")
    _check_request(src, incoming)
    started = time.monotonic()
    report = ReceiveReport(case=case, bag=src.label)
    outcomes: list[FileOutcome | None] = [None] * len(incoming)

    # A rerun after an interruption: files already recorded for this case from this bag are
    # not read again (checked once more inside the append transaction).
    with vault.ledger.reader() as conn:
        recorded, _ = recorded_hits(conn, case, {inc.sha256 for inc in incoming})
    todo: list[tuple[int, Incoming]] = []
    for pos, inc in enumerate(incoming):
        seq = recorded.get((inc.sha256, inc.source["key"]))
        if seq is not None:
            outcomes[pos] = FileOutcome(inc.bag_path, "already-recorded", f"already recorded for this case at entry {seq}",
                                        inc.sha256, inc.size, seq)
        else:
            todo.append((pos, inc))
    if progress:
        progress("total", sum(inc.size for _, inc in todo))

    staged: list[_Staged] = []
    problems: list[ReceiveProblem] = []
    jobs = max(1, jobs or os.cpu_count() or 1)
    futures: list[Future[tuple[StagedObject | None, list[ReceiveProblem]]]] = []
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="receive") as pool:
            try:
                futures = [pool.submit(_stage_one, vault, src, inc) for _, inc in todo]
                for n, ((pos, inc), fut) in enumerate(zip(todo, futures)):
                    obj, found = fut.result()
                    problems.extend(found)
                    if obj is not None:
                        staged.append(_Staged(pos, inc, obj))
                    if n == 0:
                        _test_kill_point("receive-mid-stage")
                    if progress:
                        progress("bytes", inc.size)
            except BaseException:
                for fut in futures:
                    fut.cancel()  # the pool then waits only for the files being copied now
                raise
            if problems:
                raise ReceiveRefused(src.label, problems)
            if after_stage is not None:
                after_stage({s.inc.bag_path: s.staged for s in staged})
            if extract_media:
                _extract_all(vault, pool, staged)
    except BaseException:
        # Nothing of a refused or failed import stays staged (the pool has finished here).
        for fut in futures:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                obj, _ = fut.result()
                if obj is not None:
                    vault.store.discard(obj)
        raise

    state: dict[int, tuple[str, int]] = {}
    dup_of: dict[int, int] = {}

    def build(conn: Connection, tail: Tail) -> list[Draft]:
        state.clear()
        dup_of.clear()
        recorded_sources, first_seq = recorded_hits(conn, case, {s.staged.digests.sha256 for s in staged})
        drafts: list[Draft] = []
        for s in sorted(staged, key=lambda s: s.pos):
            d = s.staged.digests
            already = recorded_sources.get((d.sha256, s.inc.source["key"]))
            if already is not None:
                state[s.pos] = ("already-recorded", already)
                continue
            seq = tail.size + len(drafts)
            body, status = ingest_body(d, dict(s.inc.source), seq=seq, first_seq=first_seq, note=note,
                                       flags=("empty-file",) if d.size == 0 else (), media_json=s.media)
            body["received"] = s.inc.received
            state[s.pos] = (status, seq)
            if "duplicate_of" in body:
                dup_of[s.pos] = body["duplicate_of"]
            recorded_sources[(d.sha256, s.inc.source["key"])] = seq
            drafts.append(Draft(format_time(now()), "ingest", case, key.key_id, body))
        return drafts

    def after(conn: Connection, signed: list[Any]) -> None:
        done: set[str] = set()
        for s in staged:
            sha = s.staged.digests.sha256
            if s.media is not None and state.get(s.pos, ("",))[0] == "preserved" and sha not in done:
                set_item_media(conn, sha, s.media)
                done.add(sha)

    # From here on a failure leaves the staged copies where they are, as ingest does: if the
    # ledger did commit, they are recorded objects that the next writer rolls forward; if not,
    # it removes them (docs/vault-layout.md §4).  Removing them here could lose a recorded object.
    vault.store.sync()  # the staged bytes are durable before any entry records them
    _test_kill_point("after-stage")
    vault.ledger.append_many(build, key.sign, after=after)
    _test_kill_point("after-ledger-commit")
    vault.store.commit_many([s.staged for s in staged])  # also drops copies of objects already in place

    for s in staged:
        status, seq = state[s.pos]
        d = s.staged.digests
        reason = {"already-recorded": f"already recorded for this case at entry {seq}",
                  "duplicate": f"same bytes as entry {dup_of.get(s.pos)} (stored once)",
                  "preserved": ""}[status]
        outcomes[s.pos] = FileOutcome(s.inc.bag_path, status, reason, d.sha256, d.size, seq,
                                      ["empty-file"] if d.size == 0 else [],
                                      list(s.media.get("errors", [])) if s.media else [])
        if progress:
            progress("file", 1)
    report.outcomes = [o for o in outcomes if o is not None]
    if extract_media:
        _note_near_duplicates(vault, report)
    report.seconds = time.monotonic() - started
    return report


def _extract_all(vault: Vault, pool: ThreadPoolExecutor, staged: list[_Staged]) -> None:
    """Step 3: metadata from the staged copy (our bytes), in the isolated worker, once per new
    item; bytes already preserved were analysed when first ingested (as in ``ingest``)."""
    first: dict[str, _Staged] = {}
    for s in staged:
        d = s.staged.digests
        if d.size > 0 and d.sha256 not in first and not vault.ledger.is_recorded(d.sha256):
            first[d.sha256] = s
    futures = {sha: pool.submit(_default_extract, s.staged.path, None) for sha, s in first.items()}
    for sha, fut in futures.items():
        report = fut.result()
        first[sha].media = report.to_dict() if report is not None else None
