"""Preserve files and folders: a safe walk, one read per file, a signed ingest entry each.

Per file (docs/vault-layout.md §5):

1. open without following symlinks and without blocking (a FIFO never hangs us), check with
   ``fstat`` that it is a regular file (race-free: the check is on what we opened);
2. read it once: SHA-256 + BLAKE3 + the staged copy (``ObjectStore.stage_fd``), in parallel
   threads across files;
3. check that size and mtime did not change while it was read;
4. extract metadata from the *staged copy* (our immutable bytes) in an isolated worker;
5. append the ingest entry (serialised; a source already recorded for the case is skipped,
   so rerunning an interrupted ingest completes it without duplicate entries);
6. move the object into place.

A file that cannot be preserved is *rejected* with a named reason and nothing is recorded for
it; the other files are still preserved.  Symlinks and special files are *skipped* and
reported, never followed out of the ingested tree or opened.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import hmac
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from . import schema
from .derived import backed_index_hits, media_digest
from .entry import format_time
from .errors import InputError, StorageError
from .hashing import Digests
from .keys import CustodianKey
from .ledger import Draft, Tail, set_item_media
from .store import SourceChanged, SourceReadError, StagedObject
from .vault import Vault

__all__ = ["ingest", "IngestReport", "FileOutcome", "display_path", "walk", "check_roots", "check_not_vault",
           "known_cases", "NearDuplicatePair", "near_duplicate_pairs"]

MAX_NOTE = 4096


@dataclass(frozen=True)
class Candidate:
    path: bytes  # absolute path as the file system spells it
    root: bytes  # the ingested root it was found under
    rel: bytes  # path relative to the root (the file name itself for a single file)
    link: bytes | None = None  # absolute path of the symlink it was reached through (--follow-symlinks)
    # How to reopen it race-free (docs/vault-layout.md §5.1): ``base`` is opened as named (the
    # user chose it) and must still be (dev, ino) ``base_id``; then each folder of ``dirs`` is
    # opened relative to its parent with O_NOFOLLOW and must be the (dev, ino) listed (0, 0:
    # not checked, for a followed link's target); then the file, relative to the last folder,
    # with O_NOFOLLOW, must be ``ident``.  ``base`` None: a file named by the user, opened by path.
    base: bytes | None = None
    base_id: tuple[int, int] | None = None
    dirs: tuple[tuple[bytes, int, int], ...] = ()
    ident: tuple[int, int] | None = None
    single: bool = False  # named by the user as a file (its folder was not named: not recorded)


@dataclass
class FileOutcome:
    path: str  # display form
    status: str  # preserved | duplicate | already-recorded | rejected | skipped
    reason: str = ""
    sha256: str | None = None
    size: int = 0
    seq: int | None = None
    flags: list[str] = field(default_factory=list)
    media_errors: list[str] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class IngestReport:
    case: str
    outcomes: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    # Paths named by the user under which no regular file was found (an unmounted card?):
    # the others were ingested; the run is not ok (docs/vault-layout.md §5.2).
    empty_paths: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def bytes_read(self) -> int:
        return sum(o.size for o in self.outcomes if o.status in ("preserved", "duplicate", "already-recorded"))

    @property
    def ok(self) -> bool:
        return self.count("rejected") == 0 and not self.empty_paths

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "ok": self.ok,
            "files": len(self.outcomes),
            "preserved": self.count("preserved"),
            "duplicates": self.count("duplicate"),
            "already_recorded": self.count("already-recorded"),
            "rejected": self.count("rejected"),
            "skipped": self.count("skipped"),
            "empty_paths": list(self.empty_paths),
            "bytes": self.bytes_read,
            "seconds": round(self.seconds, 3),
            "outcomes": [o.__dict__ for o in self.outcomes],
        }


@dataclass(frozen=True)
class _Read:
    cand: Candidate
    staged: StagedObject
    mtime_ns: int
    flags: tuple[str, ...]
    media: Any  # media.MediaReport or None


ProgressFn = Callable[[str, int], None]  # (event, n): ("file", 1) / ("bytes", n) / ("total", bytes)


def display_path(raw: bytes) -> str:
    """A printable form of a file-system path; undecodable bytes shown as \\xNN."""
    return raw.decode("utf-8", errors="backslashreplace")


def _sign_media_digest(body: dict[str, Any], media_json: dict[str, Any]) -> None:
    """docs/ledger-format.md §4.1 ``media_sha256``: SHA-256 of the RFC 8785 bytes of the full
    metadata exactly as ``items.media_json`` stores it, so ``verify`` can check that unsigned column."""
    import json

    from .errors import FormatError

    try:
        body["media_sha256"] = media_digest(json.loads(json.dumps(media_json)))
    except (FormatError, ValueError, TypeError):
        pass  # not canonicalisable (e.g. NaN): only the signed summary is covered, as for old entries


@dataclass(frozen=True)
class SourcePolicy:
    """What an ingest entry says about where a file came from (docs/ledger-format.md §4.1).

    By default nothing that names the custodian's machine or account: no host name, and the
    folder named on the command line by its last component only.  ``record_host`` and
    ``record_absolute_path`` opt in to the host name and the absolute folder path.
    ``key_secret`` (the vault's source-key secret) makes ``source.key`` an HMAC, so that the
    key cannot be used to confirm a guessed host name or path; ``None`` (a vault created
    before the secret existed) keeps the old unkeyed SHA-256 so that reruns still match.
    """

    host: str
    key_secret: bytes | None = None
    record_host: bool = False
    record_absolute_path: bool = False


def _source_record(cand: Candidate, mtime_ns: int, policy: SourcePolicy) -> dict[str, Any]:
    if policy.record_absolute_path:
        root = cand.root
    else:
        root = b"" if cand.single else os.path.basename(cand.root.rstrip(b"/"))
    record: dict[str, Any] = {}
    if policy.record_host:
        record["host"] = policy.host
    record["root"] = display_path(root)
    record["path"] = display_path(cand.rel)
    record["mtime"] = format_time(datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc))
    try:
        (root + b"/" + cand.rel).decode("utf-8")  # the names recorded, not a link target
    except UnicodeDecodeError:
        # docs/ledger-format.md §4.1: names that are not UTF-8 are kept exactly, in base64.
        record["root_b64"] = base64.b64encode(root).decode()
        record["path_b64"] = base64.b64encode(cand.rel).decode()
    # The identity that makes a rerun idempotent: host + absolute path bytes, whatever is
    # recorded.  A followed symlink is a source of its own (its absolute path), not its target's.
    identity = policy.host.encode() + b"\x00" + (cand.link or cand.path)
    if policy.key_secret is None:
        record["key"] = hashlib.sha256(identity).hexdigest()
    else:
        record["key"] = hmac.new(policy.key_secret, identity, hashlib.sha256).hexdigest()
    return record


def check_roots(paths: Sequence[str | os.PathLike[str] | bytes], *,
                vault_root: str | os.PathLike[str] | None = None) -> list[tuple[bytes, os.stat_result]]:
    """Each path named by the user must be a file or a folder: else InputError, before any read.

    With ``vault_root``, a path that is the vault or lies inside it is refused too
    (``check_not_vault``); a folder *containing* the vault is found by the walk."""
    roots: list[tuple[bytes, os.stat_result]] = []
    for p in paths:
        raw = os.fsencode(p)
        try:
            st = os.stat(raw)  # a path the user named is followed, even if it is a link
        except FileNotFoundError:
            raise InputError("no such file or folder", subject=display_path(raw)) from None
        except OSError as exc:
            raise InputError(f"cannot access: {exc.strerror}", subject=display_path(raw)) from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise InputError(f"not a regular file or folder ({_kind(st.st_mode)})", subject=display_path(raw))
        roots.append((os.path.abspath(raw), st))
    if vault_root is not None:
        check_not_vault(roots, vault_root)
    return roots


@dataclass(frozen=True)
class _VaultIds:
    """What identifies the vault on disk, by (device, inode) so that no spelling of a path
    (symlink, bind mount, ``..``, another mount point of the same file system) hides it."""

    root: bytes  # as the vault was named, for messages
    folder: tuple[int, int]
    files: frozenset[tuple[int, int]]  # vault.json, ledger files, key files (hard links of them)


def _vault_ids(vault_root: str | os.PathLike[str] | bytes) -> _VaultIds | None:
    raw = os.fsencode(vault_root)
    try:
        st = os.stat(raw)
    except OSError:
        return None  # no vault folder: nothing to protect (Vault.open refuses it anyway)
    files: set[tuple[int, int]] = set()
    for sub in (b"vault.json", b"ledger.sqlite", b"ledger.sqlite-wal", b"ledger.sqlite-shm"):
        try:
            f = os.stat(os.path.join(raw, sub), follow_symlinks=False)
            files.add((f.st_dev, f.st_ino))
        except OSError:
            pass
    try:
        with os.scandir(os.path.join(raw, b"keys")) as it:
            for ent in it:
                f = ent.stat(follow_symlinks=False)
                files.add((f.st_dev, f.st_ino))
    except OSError:
        pass
    return _VaultIds(os.path.abspath(raw), (st.st_dev, st.st_ino), frozenset(files))


def _vault_refusal(source: bytes, vault: bytes, how: str, where: str = "") -> InputError:
    return InputError(
        f"refusing to ingest the vault into itself: {display_path(source)} {how} the vault "
        f"{display_path(vault)}{where}; it would preserve the live ledger and the private key files as evidence. "
        "Nothing was recorded",
        subject=display_path(source),
        hint="ingest the card or folder itself, not a folder holding the vault; keep the vault outside it",
    )


def check_not_vault(roots: Sequence[tuple[bytes, os.stat_result]], vault_root: str | os.PathLike[str] | bytes) -> None:
    """InputError if a root is the vault, lies inside it, or is one of its files (hard link).

    Compared by (device, inode) of the root and of every folder above its real path
    (docs/vault-layout.md §5.2); a root *containing* the vault is found during the walk."""
    ids = _vault_ids(vault_root)
    if ids is None:
        return
    for root, st in roots:
        if (st.st_dev, st.st_ino) == ids.folder:
            raise _vault_refusal(root, ids.root, "is")
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) in ids.files:
            raise _vault_refusal(root, ids.root, "is a file of")
        real = os.path.realpath(root)
        parent = os.path.dirname(real)
        while True:
            try:
                pst = os.stat(parent)
            except OSError:
                break
            if (pst.st_dev, pst.st_ino) == ids.folder:
                raise _vault_refusal(root, ids.root, "is inside")
            if parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)


def walk(paths: Sequence[str | os.PathLike[str] | bytes], *, follow_symlinks: bool = False,
         vault_root: str | os.PathLike[str] | bytes | None = None,
         empty_paths: list[str] | None = None) -> tuple[list[Candidate], list[FileOutcome]]:
    """Every regular file under ``paths``; symlinks and special files become skip outcomes.

    Raises InputError (before anything is read) if a given path does not exist or is not
    a file or folder, or (with ``vault_root``) is, lies inside or contains the vault, or is
    one of its files.  ``empty_paths``, if given, receives each named folder under which
    no regular file was found.
    """
    roots = check_roots(paths, vault_root=vault_root)
    ids = _vault_ids(vault_root) if vault_root is not None else None

    candidates: list[Candidate] = []
    skipped: list[FileOutcome] = []
    seen: set[bytes] = set()
    for root, st in roots:
        if stat.S_ISREG(st.st_mode):
            if root not in seen:
                seen.add(root)
                candidates.append(Candidate(root, os.path.dirname(root), os.path.basename(root),
                                            ident=(st.st_dev, st.st_ino), single=True))
            continue
        real_root = os.path.realpath(root)
        found = 0
        for cand, skip in _walk_dir(root, real_root, follow_symlinks, (st.st_dev, st.st_ino), ids):
            if skip is not None:
                skipped.append(skip)
            elif cand is not None:
                found += 1
                if (cand.link or cand.path) not in seen:
                    seen.add(cand.link or cand.path)
                    candidates.append(cand)
        if found == 0 and empty_paths is not None:
            empty_paths.append(display_path(root))
    return candidates, skipped


class _Swapped(Exception):
    """A folder or file is not what was listed: replaced (e.g. by a symlink) after listing."""


_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_chain(base: bytes, base_id: tuple[int, int] | None, dirs: Sequence[tuple[bytes, int, int]]) -> int:
    """A descriptor on the folder ``base``/``dirs``, each folder below ``base`` opened relative
    to its parent with O_NOFOLLOW and checked to be the one listed.  Raises _Swapped naming
    the folder that changed (docs/vault-layout.md §5.1)."""
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # named by the user: followed
    except OSError as exc:
        raise _Swapped(f"folder {display_path(base)} cannot be opened any more: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if base_id is not None and (st.st_dev, st.st_ino) != base_id:
            raise _Swapped(f"folder {display_path(base)} was replaced after it was listed")
        path = base
        for name, dev, ino in dirs:
            path = os.path.join(path, name)
            try:
                nxt = os.open(name, _DIR_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                what = _what_is(fd, name)
                if what == "gone":
                    raise _Swapped(f"folder {display_path(path)} vanished after it was listed") from None
                raise _Swapped(f"folder {display_path(path)} was replaced after it was listed "
                               f"(it is now {what}); not followed, nothing read through it"
                               if what else f"folder {display_path(path)} cannot be opened: {exc.strerror}") from None
            os.close(fd)
            fd = nxt
            st = os.fstat(fd)
            if ino and (st.st_dev, st.st_ino) != (dev, ino):
                raise _Swapped(f"folder {display_path(path)} was replaced by another folder after it was listed")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _what_is(dir_fd: int, name: bytes) -> str:
    """'a symlink to X' / 'a FIFO' / '' for what now stands at ``name`` (for messages only)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "gone"
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"a symlink to {display_path(os.readlink(name, dir_fd=dir_fd))}"
        except OSError:
            return "a symlink"
    return "" if stat.S_ISDIR(st.st_mode) else f"a {_kind(st.st_mode)}" if not stat.S_ISREG(st.st_mode) else "a file"


def _list_dir(fd: int) -> list[os.DirEntry[str]]:
    """The entries of the folder open on ``fd``, sorted by name (``fd`` stays open: scandir
    lists a duplicate of it)."""
    with os.scandir(fd) as it:
        return sorted(it, key=lambda e: e.name)


def _walk_dir(root: bytes, real_root: bytes, follow: bool, root_id: tuple[int, int] | None = None,
              vault: _VaultIds | None = None) -> Iterator[tuple[Candidate | None, FileOutcome | None]]:
    # Every folder is opened relative to its parent with O_NOFOLLOW, down the whole walk, and
    # must be the folder that was listed (dev, ino): a folder swapped for a symlink between
    # listing and opening is reported, never followed (docs/vault-layout.md §5.1).
    stack: list[tuple[bytes, tuple[tuple[bytes, int, int], ...]]] = [(root, ())]
    while stack:
        d, chain = stack.pop()
        try:
            fd = _open_chain(root, root_id, chain)
        except _Swapped as exc:
            yield None, FileOutcome(display_path(d), "rejected", str(exc))
            continue
        try:
            try:
                ents = _list_dir(fd)
            except OSError as exc:
                yield None, FileOutcome(display_path(d), "rejected", f"cannot list folder: {exc.strerror}")
                continue
            subdirs = []
            for ent in ents:
                name = os.fsencode(ent.name)
                path = os.path.join(d, name)
                rel = os.path.relpath(path, root)
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as exc:
                    yield None, FileOutcome(display_path(path), "rejected", f"cannot stat: {exc.strerror}")
                    continue
                mode = st.st_mode
                if stat.S_ISLNK(mode):
                    try:
                        link_text = os.readlink(name, dir_fd=fd)
                    except OSError:
                        link_text = b"?"
                    target = os.path.realpath(path)
                    inside = target == real_root or target.startswith(real_root + b"/")
                    cand = _followed(root, real_root, target, rel, path) if follow and inside else None
                    if cand is not None:
                        # Followed only inside the tree; its target is ingested under this name too.
                        yield cand, None
                    else:
                        why = "points outside the ingested folder" if not inside else "symlinks are not followed"
                        yield None, FileOutcome(
                            display_path(path), "skipped",
                            f"symlink to {display_path(link_text)} not followed ({why}; its target is not preserved through this link)",
                        )
                elif stat.S_ISDIR(mode):
                    if vault is not None and (st.st_dev, st.st_ino) == vault.folder:
                        # docs/vault-layout.md §5.2: the vault (or a bind mount of it) in the source.
                        raise _vault_refusal(root, vault.root, "contains", f" (found at {display_path(path)})")
                    subdirs.append((path, chain + ((name, st.st_dev, st.st_ino),)))
                elif stat.S_ISREG(mode):
                    if vault is not None and (st.st_dev, st.st_ino) in vault.files:
                        raise _vault_refusal(root, vault.root, "holds a hard link to a file of",
                                             f" ({display_path(path)})")
                    yield Candidate(path, root, rel, base=root, base_id=root_id, dirs=chain,
                                    ident=(st.st_dev, st.st_ino)), None
                else:
                    yield None, FileOutcome(display_path(path), "skipped", f"not a regular file ({_kind(mode)}); not opened")
            stack.extend(reversed(subdirs))
        finally:
            os.close(fd)


def _followed(root: bytes, real_root: bytes, target: bytes, rel: bytes, link: bytes) -> Candidate | None:
    """The candidate for a link followed with --follow-symlinks: its target (a regular file
    inside the tree) is reopened from the real root, every folder with O_NOFOLLOW."""
    try:
        st = os.stat(target, follow_symlinks=False)  # realpath: no link left in it
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        rst = os.stat(real_root)
    except OSError:
        return None
    parts = os.path.relpath(target, real_root).split(b"/")
    return Candidate(target, root, rel, link=link, base=real_root, base_id=(rst.st_dev, rst.st_ino),
                     dirs=tuple((p, 0, 0) for p in parts[:-1]), ident=(st.st_dev, st.st_ino))


def _open_candidate(cand: Candidate) -> int:
    """Step 1: open the file without following any link below the ingested root and without
    blocking; raises _Swapped if a folder on its way or the file itself is not what was listed."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if cand.base is None:
        fd = os.open(cand.path, flags)
    else:
        dfd = _open_chain(cand.base, cand.base_id, cand.dirs)
        try:
            try:
                fd = os.open(os.path.basename(cand.path), flags, dir_fd=dfd)
            except OSError as exc:
                what = _what_is(dfd, os.path.basename(cand.path))
                if exc.errno == errno.ELOOP:
                    raise _Swapped(f"the file was replaced after it was listed (it is now {what}); not followed") from None
                raise
        finally:
            os.close(dfd)
    if cand.ident is not None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != cand.ident:
            os.close(fd)
            raise _Swapped("the file was replaced by another file after it was listed; not read")
    return fd


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"


class _Rejected(Exception):
    pass


def _test_kill_point(point: str) -> None:
    """Test hook only: SIGKILL this process at ``point`` if $EVIDENCELOCK_TEST_KILL_AT names it.

    tests/test_crash.py uses it to stop an ingest at exact places (``after-stage``: object
    staged, no entry yet; ``after-ledger-commit``: entry committed, object not yet moved into
    place; ``between-files``: one file fully done, the next not recorded) and then checks that
    ``verify`` passes and a rerun completes the job.  Unset in normal use: one dict lookup.
    """
    if os.environ.get("EVIDENCELOCK_TEST_KILL_AT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _read_one(vault: Vault, cand: Candidate, *, extract: Callable[[Path, str], Any] | None) -> _Read:
    """Steps 1-4 for one file.  Raises _Rejected with a reason naming what went wrong."""
    try:
        fd = _open_candidate(cand)
    except _Swapped as exc:
        raise _Rejected(f"{exc}; run the ingest again on a stable source") from None
    except FileNotFoundError:
        raise _Rejected("file vanished before it could be read") from None
    except PermissionError:
        raise _Rejected("permission denied: cannot read this file") from None
    except OSError as exc:
        raise _Rejected(f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Rejected(f"not a regular file ({_kind(st.st_mode)}); not read")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        try:
            staged = vault.store.stage_fd(fd, expected_size=st.st_size, durable=False)
        except SourceChanged as exc:
            raise _Rejected(f"file changed while being read ({exc}); run the ingest again once it is stable") from None
        except SourceReadError as exc:
            raise _Rejected(f"read error: {exc.error.strerror} (damaged medium?)") from None
        after = os.fstat(fd)
        if after.st_size != st.st_size or after.st_mtime_ns != st.st_mtime_ns:
            vault.store.discard(staged)
            raise _Rejected(
                f"file changed while being read (size {st.st_size}→{after.st_size}, mtime changed: "
                f"{after.st_mtime_ns != st.st_mtime_ns}); run the ingest again once it is stable"
            )
    finally:
        os.close(fd)
    flags = []
    if staged.digests.size == 0:
        flags.append("empty-file")
    if not os.path.lexists(cand.path):
        flags.append("source-removed-during-ingest")
    media = None
    # Bytes already preserved were analysed when first ingested (the entry's duplicate_of
    # points there); decoding them again would cost seconds per video for nothing new.
    if extract is not None and staged.digests.size > 0 and not vault.ledger.is_recorded(staged.digests.sha256):
        mtime = format_time(datetime.fromtimestamp(st.st_mtime_ns / 1e9, timezone.utc))
        media = extract(staged.path, mtime)
    return _Read(cand, staged, st.st_mtime_ns, tuple(flags), media)


def _default_extract(path: Path, mtime: str) -> Any:
    from . import media  # imported lazily: the verification core never needs it

    return media.extract(path, mtime=mtime)


def ingest(
    vault: Vault,
    paths: Sequence[str | os.PathLike[str] | bytes],
    *,
    key: CustodianKey,
    case: str,
    note: str | None = None,
    now: Callable[[], datetime],
    jobs: int | None = None,
    follow_symlinks: bool = False,
    extract_media: bool = True,
    progress: ProgressFn | None = None,
    record_host: bool = False,
    record_absolute_path: bool = False,
) -> IngestReport:
    """Preserve ``paths`` into ``vault`` under ``case``; see the module docstring."""
    if not vault.writable:
        raise ValueError("vault must be opened writable")
    case = case.strip()
    if not case or len(case) > 256:
        raise InputError("a case name of 1 to 256 characters is required (--case CASE)")
    if note is not None and len(note) > MAX_NOTE:
        raise InputError(f"the note is longer than {MAX_NOTE} characters")
    started = time.monotonic()
    empty_paths: list[str] = []
    candidates, skipped = walk(paths, follow_symlinks=follow_symlinks, vault_root=vault.root,
                               empty_paths=empty_paths)
    if not candidates:
        # docs/vault-layout.md §5.2: nothing to preserve at all (an unmounted card?): bad input.
        named = ", ".join(empty_paths) or ", ".join(display_path(os.fsencode(p)) for p in paths)
        extra = ""
        if skipped:
            extra = (f"; {len(skipped)} other entries were skipped or rejected, e.g. "
                     f"{skipped[0].path}: {skipped[0].reason}")
        raise InputError(f"no regular files found under {named} (is the card or drive mounted?); nothing recorded{extra}",
                         subject=named)
    report = IngestReport(case=case, outcomes=list(skipped), empty_paths=empty_paths)
    source_policy = SourcePolicy(host=socket.gethostname(), key_secret=vault.source_key_secret(),
                                 record_host=record_host, record_absolute_path=record_absolute_path)
    extract = (_default_extract if extract_media else None)
    if progress:
        total = 0
        for c in candidates:
            try:
                total += os.lstat(c.path).st_size
            except OSError:
                pass
        progress("total", total)

    jobs = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="ingest") as pool:
        pending: dict[Future[_Read], Candidate] = {}
        queue = iter(candidates)

        # Bounded queue: at most 4*jobs files staged but not yet recorded, so an interrupted
        # run leaves little to redo and a huge folder does not fill the staging area.
        def refill() -> None:
            while len(pending) < 4 * jobs:
                cand = next(queue, None)
                if cand is None:
                    return
                pending[pool.submit(_read_one, vault, cand, extract=extract)] = cand

        refill()
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                batch = [(fut, pending.pop(fut)) for fut in done]
                refill()  # keep the readers busy while this batch is recorded
                outcomes = _finish_batch(vault, batch, key=key, case=case, note=note, now=now,
                                         source_policy=source_policy)
                report.outcomes.extend(outcomes)
                _test_kill_point("between-files")
                if progress:
                    for outcome in outcomes:
                        progress("file", 1)
                        progress("bytes", outcome.size)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    if extract_media:
        _note_near_duplicates(vault, report)
    report.seconds = time.monotonic() - started
    return report


def _note_near_duplicates(vault: Vault, report: IngestReport) -> None:
    """Near-duplicates of the items this run preserved, among every other item (this run's
    included): leads for an analyst, derived from the recorded fingerprints (docs/media.md)."""
    from . import neardup

    new = [o for o in report.outcomes if o.status == "preserved" and o.sha256]
    if not new:
        return
    found = neardup.near_duplicates_of(vault, [o.sha256 for o in new if o.sha256])
    for o in new:
        o.near_duplicates = [{"item": m.item, "distance": m.distance, "kind": m.kind, "segments": m.segments_json(),
                              "names": list(m.names)}
                             for m in found.get(o.sha256 or "", [])]


@dataclass(frozen=True)
class NearDuplicatePair:
    """Two items that look alike (a lead, never a proof): ``a`` preserved by this run, ``b``
    another item (this run's or an earlier one), each by the name it was ingested under."""

    a: str
    b: str
    distance: int


def near_duplicate_pairs(report: IngestReport) -> list[NearDuplicatePair]:
    """The near-duplicates the report found, each unordered pair of items once (a ~ b found
    from both sides is one pair), closest first."""
    name_of: dict[str, str] = {}
    for o in report.outcomes:
        if o.sha256:
            name_of.setdefault(o.sha256, o.path)  # the first name these bytes had in this run
    best: dict[frozenset[str], NearDuplicatePair] = {}
    for o in report.outcomes:
        for nd in o.near_duplicates:
            other = str(nd.get("item", ""))
            if not o.sha256 or not other:
                continue
            names = nd.get("names") or []
            b = name_of.get(other) or (str(names[0]) if names else other[:16] + "…")
            pair = NearDuplicatePair(o.path, b, int(nd.get("distance", 0)))
            k = frozenset((o.sha256, other))
            if k not in best or pair.distance < best[k].distance:
                best[k] = pair
    return sorted(best.values(), key=lambda p: (p.distance, p.a, p.b))


def known_cases(vault: Vault) -> list[str]:
    """Every case name any entry of the vault was recorded under, sorted.

    From the ``case_id`` column, which ``verify`` checks against each entry's signed bytes
    (docs/vault-layout.md §2); used to ask before a new case is started (§5.3)."""
    t = schema.entries
    with vault.ledger.reader() as conn:
        return sorted(r.case_id for r in conn.execute(select(t.c.case_id).where(t.c.case_id != "").distinct()))


def recorded_hits(conn: Connection, case: str, shas: Iterable[str]) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Inside the append transaction: ((sha256, source key) -> seq of the case's ingest entry
    recording that source, sha256 -> seq of the item's first ingest), for the items ``shas``,
    each index hit checked against its signed entry (``backed_index_hits``)."""
    shas = sorted(set(shas))
    recorded_sources: dict[tuple[str, str], int] = {}
    first_seq: dict[str, int] = {}
    for i in range(0, len(shas), 500):
        part = shas[i:i + 500]
        recorded_sources.update({
            (row.sha256, row.source_key): row.seq
            for row in conn.execute(
                select(schema.sources.c.sha256, schema.sources.c.source_key, schema.sources.c.seq).where(
                    schema.sources.c.case_id == case, schema.sources.c.sha256.in_(part)
                )
            )
        })
        first_seq.update({
            row.sha256: row.first_seq
            for row in conn.execute(
                select(schema.items.c.sha256, schema.items.c.first_seq).where(schema.items.c.sha256.in_(part))
            )
        })
    # Issue 9 item 10: a planted/edited index row must not skip a file or misdirect duplicate_of.
    return backed_index_hits(conn, case=case, sources=recorded_sources, first_seq=first_seq)


def ingest_body(d: Digests, source: dict[str, Any], *, seq: int, first_seq: dict[str, int], note: str | None,
                flags: Sequence[str] = (), media_json: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """The body of the ingest entry that will get ``seq`` (docs/ledger-format.md §4.1) and its
    status, ``preserved`` or ``duplicate``.  ``first_seq`` (sha256 -> seq of the item's first
    ingest) is updated, so later bodies of the same batch point ``duplicate_of`` here."""
    body: dict[str, Any] = {
        "item": d.sha256,
        "digests": {"sha256": d.sha256, d.second_algorithm: d.second},
        "size": d.size,
        "source": source,
    }
    if note:
        body["note"] = note
    if d.sha256 in first_seq:
        body["duplicate_of"] = first_seq[d.sha256]
        status = "duplicate"
    else:
        first_seq[d.sha256] = seq
        status = "preserved"
    if flags:
        body["flags"] = list(flags)
    if media_json is not None:
        body["media"] = {k: media_json[k] for k in ("kind", "summary", "flags", "errors", "extractor")
                         if k in media_json}
        _sign_media_digest(body, media_json)
    return body, status


def _finish_batch(vault: Vault, batch: list[tuple[Future[_Read], Candidate]], *, key: CustodianKey, case: str,
                  note: str | None, now: Callable[[], datetime], source_policy: SourcePolicy) -> list[FileOutcome]:
    """Steps 5-6 for the files read so far: one ledger transaction (group commit), then the
    objects moved into place with one file-system sync."""
    outcomes: list[FileOutcome | None] = []
    reads: list[tuple[int, _Read, dict[str, Any], dict[str, Any] | None]] = []
    for fut, cand in batch:
        try:
            read = fut.result()
        except StorageError as exc:
            # The vault's disk failed: stop the run, nothing half-recorded.  Say which file
            # was being preserved and where, so the user knows what the rerun will redo.
            raise StorageError(
                f"{exc.message} while preserving {display_path(cand.path)}",
                subject=exc.subject, hint=exc.hint,
            ) from None
        except _Rejected as exc:
            outcomes.append(FileOutcome(display_path(cand.link or cand.path), "rejected", str(exc)))
            continue
        media_json = read.media.to_dict() if read.media is not None else None
        reads.append((len(outcomes), read, _source_record(cand, read.mtime_ns, source_policy), media_json))
        outcomes.append(None)
    if not reads:
        return [o for o in outcomes if o is not None]

    state: dict[int, tuple[str, int]] = {}  # position -> (status, seq of the entry)
    dup_of: dict[int, int] = {}

    def build(conn: Connection, tail: Tail) -> list[Draft]:
        recorded_sources, first_seq = recorded_hits(conn, case, {r.staged.digests.sha256 for _, r, _, _ in reads})
        drafts: list[Draft] = []
        for pos, read, source, media_json in reads:
            d = read.staged.digests
            already = recorded_sources.get((d.sha256, source["key"]))
            if already is not None:
                state[pos] = ("already-recorded", already)
                continue
            seq = tail.size + len(drafts)
            body, status = ingest_body(d, source, seq=seq, first_seq=first_seq, note=note, flags=read.flags,
                                       media_json=media_json)
            state[pos] = (status, seq)
            if "duplicate_of" in body:
                dup_of[pos] = body["duplicate_of"]
            recorded_sources[(d.sha256, source["key"])] = seq
            drafts.append(Draft(format_time(now()), "ingest", case, key.key_id, body))
        return drafts

    def after(conn: Connection, signed: list[Any]) -> None:
        for pos, read, _, media_json in reads:
            if media_json is not None and state.get(pos, ("",))[0] == "preserved":
                set_item_media(conn, read.staged.digests.sha256, media_json)

    vault.store.sync()  # the staged bytes are durable before any entry records them
    _test_kill_point("after-stage")
    vault.ledger.append_many(build, key.sign, after=after)
    _test_kill_point("after-ledger-commit")
    # Also discards the staged copy of an object that is already in place.
    vault.store.commit_many([r.staged for _, r, _, _ in reads])
    for pos, read, _, media_json in reads:
        d = read.staged.digests
        status, seq = state[pos]
        reason = {"already-recorded": f"already recorded for this case at entry {seq}",
                  "duplicate": f"same bytes as entry {dup_of.get(pos)} (stored once)",
                  "preserved": ""}[status]
        media_errors = list(media_json.get("errors", [])) if media_json else []
        outcomes[pos] = FileOutcome(display_path(read.cand.link or read.cand.path), status, reason, d.sha256, d.size, seq,
                                    list(read.flags), media_errors)
    return [o for o in outcomes if o is not None]
