"""Write-once, content-addressed object store (docs/vault-layout.md §3).

Objects live at ``objects/sha256/ab/cd/<64 hex>``: the name is the SHA-256 of the bytes, so
``sha256sum`` checks any object by hand.  The write order (STYLE.md §9, restic's design) is:

1. ``stage``: the source is read once; the bytes feed SHA-256, BLAKE3 and a temporary file
   ``staging/<session>/<random>.partial``; the file is fsync'd and renamed to
   ``staging/<session>/<sha256>.<random>.staged``.  Nothing under ``objects/`` yet.
2. the caller commits the ledger entry that records the object;
3. ``commit``: the staged file is made read-only, hard-linked to its final name (``link``
   never replaces an existing file, so an object is never rewritten), the directory is
   fsync'd, and the staged name is removed.

A crash before (2) leaves only a staged file that no entry references: it is never under
``objects/``, so it is never mistaken for evidence, and it is removed when its session is
found dead.  A crash between (2) and (3) leaves a recorded object in staging: the next writer
to open the vault rolls it forward (:meth:`ObjectStore.recover`).  Hence a stray file under
``objects/`` is always an anomaly that ``verify`` reports.

Each writing process owns one session directory and holds an ``flock`` on it while alive, so
two concurrent ingests never delete each other's work.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import DigestMismatch, InputError, StorageError
from .hashing import CHUNK_SIZE, Digests, MultiHasher, hash_fd, open_regular

__all__ = ["ObjectStore", "StagedObject", "SourceChanged", "SourceReadError",
           "is_sha256_hex", "INTERNAL_DIRS"]

_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_STAGED = re.compile(r"\A([0-9a-f]{64})\.[0-9a-f]{16}\.staged\Z")
_PARTIAL = re.compile(r"\A[0-9a-f]{16}\.partial\Z")
_IMPORT_COPY = re.compile(r"\Aimport-[0-9a-f]{16}\Z")  # importer.py: tag files of a bundle being imported
_SESSION = re.compile(r"\A[0-9]+-[0-9a-f]{8}\Z")  # <pid>-<8 hex>, see _session_dir

# docs/vault-layout.md §1: folders and files of the vault that MUST NOT be symlinks.
INTERNAL_DIRS = ("objects", "objects/sha256", "staging", "keys")
INTERNAL_FILES = ("vault.json", "ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm")
_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_sha256_hex(text: str) -> bool:
    return bool(_HEX64.match(text))


class SourceChanged(Exception):
    """The source file changed (size or mtime) while it was being read."""


class SourceReadError(Exception):
    """Reading the source failed (e.g. EIO on a damaged card); wraps the OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


@dataclass(frozen=True)
class StagedObject:
    path: Path
    digests: Digests


def _load_syncfs():
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()
_HAVE_SYNCFS = _SYNCFS is not None


def _syncfs(path: Path) -> None:
    """syncfs(2): flush the whole file system holding ``path`` (Linux)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing each parent whose entry we created."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(d.parent)


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / "objects" / "sha256"
        self.staging_dir = self.root / "staging"
        self._session: Path | None = None
        self._session_fd: int | None = None
        self._session_lock = threading.Lock()  # reader threads stage concurrently: one session per process

    # -- layout -------------------------------------------------------------------------
    def path_for(self, sha256: str) -> Path:
        if not is_sha256_hex(sha256):
            raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
        return self.objects_dir / sha256[0:2] / sha256[2:4] / sha256

    def create_layout(self) -> None:
        _makedirs_durable(self.objects_dir)
        _makedirs_durable(self.staging_dir)

    # -- writing ------------------------------------------------------------------------
    def _session_dir(self) -> Path:
        with self._session_lock:
            return self._open_session()

    def _open_session(self) -> Path:
        if self._session is None:
            _makedirs_durable(self.staging_dir)
            if self.staging_dir.is_symlink():  # §4.1: never write through a planted link
                raise _link_error(self.staging_dir, "the vault's staging/ folder is a symlink")
            session = self.staging_dir / f"{os.getpid()}-{secrets.token_hex(4)}"
            session.mkdir()
            fd = os.open(session, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._session, self._session_fd = session, fd
        return self._session

    def stage_fd(self, src_fd: int, *, expected_size: int | None = None, second: bool = True,
                 durable: bool = True, extra: Sequence[str] = ()) -> StagedObject:
        """Copy everything readable from ``src_fd`` into staging, hashing as it is written.

        With ``durable=False`` the caller promises to call :meth:`sync` before it records
        the object (ingest does, once per batch: one flush instead of one per file).
        Raises :class:`StorageError` on a write failure (e.g. ENOSPC), after removing the
        partial file; read errors propagate as ``OSError`` for the caller to name the source.
        ``extra`` names further digests computed in the same pass (``Digests.extra``).
        """
        return self._stage(lambda buf: os.readv(src_fd, [buf]), expected_size=expected_size, second=second,
                           durable=durable, extra=extra, cap=None)

    def stage_stream(self, readable: BinaryIO, *, expected_size: int, second: bool = True,
                     durable: bool = True, extra: Sequence[str] = ()) -> StagedObject:
        """:meth:`stage_fd` for a stream (a file or zip member of a received bag, opened by
        ``BagSource.open``): the same copy, hashing and errors.  At most ``expected_size`` + 1
        bytes are read: a member longer than announced raises :class:`SourceChanged` without
        filling the staging area with it.  Decoding errors of the stream (e.g. a zip member's
        CRC) propagate unchanged, after the partial file is removed."""
        def read(buf: bytearray) -> int:
            n = readable.readinto(buf)  # type: ignore[attr-defined]
            return 0 if n is None else int(n)
        return self._stage(read, expected_size=expected_size, second=second, durable=durable, extra=extra,
                           cap=expected_size + 1)

    def _stage(self, read: Callable[[bytearray], int], *, expected_size: int | None, second: bool,
               durable: bool, extra: Sequence[str], cap: int | None) -> StagedObject:
        """The one copy loop (§4 step 1): ``read(buf)`` fills ``buf``, returns 0 at the end."""
        session = self._session_dir()
        token = secrets.token_hex(8)
        tmp = session / f"{token}.partial"
        hasher = MultiHasher(second=second, extra=extra)
        buf = bytearray(CHUNK_SIZE)
        view = memoryview(buf)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                while True:
                    try:
                        n = read(buf)
                    except OSError as exc:
                        raise SourceReadError(exc) from exc
                    if n == 0:
                        break
                    chunk = view[:n]
                    hasher.update(chunk)
                    _write_all(out, chunk)
                    if cap is not None and hasher.size >= cap:
                        break  # longer than announced: refused below, the rest is not copied
                if durable:
                    os.fsync(out)
            finally:
                os.close(out)
            digests = hasher.digests()
            if expected_size is not None and digests.size != expected_size:
                what = f"over {expected_size} bytes read" if cap is not None and digests.size >= cap else \
                    f"{digests.size} bytes read"
                raise SourceChanged(f"size was {expected_size} bytes when opened, {what}")
            final = session / f"{digests.sha256}.{token}.staged"
            os.replace(tmp, final)
            if durable:
                _fsync_dir(session)
            return StagedObject(final, digests)
        except OSError as exc:
            _unlink_quietly(tmp)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise StorageError(
                f"cannot write to the object store: {exc.strerror or exc}",
                subject=str(self.root),
                hint=("nothing was recorded for this file; "
                      + ("free space and " if full else "") + "run the same ingest again"),
            ) from None
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def commit(self, staged: StagedObject) -> Path:
        """Move a staged object to its final, read-only, never-rewritten place."""
        final = self.path_for(staged.digests.sha256)
        try:
            _makedirs_durable(final.parent)
            self._place(staged, final)
            _fsync_dir(final.parent)
            # No fsync needed for the unlink: if it is lost, recovery finds the staged file
            # recorded and already in place, and removes it.
            os.unlink(staged.path)
        except OSError as exc:
            raise StorageError(
                f"cannot move object into place: {exc.strerror}",
                subject=str(final),
                hint="the ledger entry is committed; the next run rolls the object forward",
            ) from None
        return final

    def sync(self) -> None:
        """Make every staged file durable (data and names) before its entry is committed."""
        try:
            if _HAVE_SYNCFS:
                _syncfs(self.staging_dir)
            else:  # pragma: no cover - non-Linux
                os.sync()
        except OSError as exc:
            raise StorageError(f"cannot flush the object store to disk: {exc.strerror}", subject=str(self.root),
                               hint="nothing was recorded for the files in flight; run the same ingest again") from None

    def commit_many(self, staged_list: list[StagedObject]) -> None:
        """``commit`` for a batch, with one file-system sync instead of one per directory."""
        if len(staged_list) <= 1 or not _HAVE_SYNCFS:
            for staged in staged_list:
                self.commit(staged)
            return
        try:
            for staged in staged_list:
                final = self.path_for(staged.digests.sha256)
                final.parent.mkdir(parents=True, exist_ok=True)
                self._place(staged, final)
            _syncfs(self.objects_dir)  # every new directory entry durable at once
            for staged in staged_list:
                os.unlink(staged.path)
        except OSError as exc:
            raise StorageError(
                f"cannot move objects into place: {exc.strerror}",
                subject=str(self.objects_dir),
                hint="the ledger entries are committed; the next run rolls the objects forward",
            ) from None

    @staticmethod
    def _place(staged: StagedObject, final: Path) -> None:
        """Read-only, then linked to its object name: ``link`` never replaces an existing
        object (write-once); an existing one is kept and ``verify`` checks it."""
        os.chmod(staged.path, 0o444)
        try:
            os.link(staged.path, final)
        except FileExistsError:
            pass

    def discard(self, staged: StagedObject) -> None:
        _unlink_quietly(staged.path)

    def close(self) -> None:
        if self._session is not None:
            try:
                self._session.rmdir()
            except OSError:
                pass  # not empty: a recorded object still waits to be rolled forward
            if self._session_fd is not None:
                os.close(self._session_fd)
            self._session = self._session_fd = None

    # -- recovery -----------------------------------------------------------------------
    # docs/vault-layout.md §4.1: cleaning never follows a link and never deletes what is not
    # ours.  Only real folders named like a session (<pid>-<8 hex>) are sessions; only regular
    # files named like our staged or partial files are removed; every step is relative to a
    # descriptor opened with O_NOFOLLOW, so a link planted in staging/ is never entered.
    def check_layout(self) -> None:
        """Refuse a vault whose internal folders, or anything in ``staging/``, are symlinks.

        Raises :class:`InputError` (exit 2) naming the link and where it points: a link there
        was not made by evidencelock, and following it could read, or delete, files outside
        the vault.  Run by ``Vault.open`` before anything else touches the folder.
        """
        for rel in INTERNAL_DIRS:
            path = self.root / rel
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise _link_error(path, f"the vault's {rel}/ folder is a symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise InputError(f"the vault's {rel}/ is not a folder", subject=str(path),
                                 hint="the vault folder was altered outside evidencelock; nothing was changed")
        for rel in INTERNAL_FILES:
            if os.path.islink(self.root / rel):
                raise _link_error(self.root / rel, f"the vault's {rel} is a symlink")
        staging_fd = self._open_staging()
        if staging_fd is None:
            return
        try:
            for ent in _scan(staging_fd):
                if ent.is_symlink():
                    raise _link_error(self.staging_dir / ent.name, "a symlink was planted in staging/")
                if ent.is_dir(follow_symlinks=False) and _SESSION.match(ent.name):
                    try:
                        sfd = os.open(ent.name, _DIR_NOFOLLOW, dir_fd=staging_fd)
                    except OSError:
                        continue
                    try:
                        for sub in _scan(sfd):
                            if sub.is_symlink():
                                raise _link_error(self.staging_dir / ent.name / sub.name,
                                                  "a symlink was planted in staging/")
                    finally:
                        os.close(sfd)
        finally:
            os.close(staging_fd)

    def _open_staging(self) -> int | None:
        try:
            return os.open(self.staging_dir, _DIR_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _link_error(self.staging_dir, "the vault's staging/ folder is a symlink") from None
            raise StorageError(f"cannot open the staging folder: {exc.strerror}", subject=str(self.staging_dir)) from None

    def _dead_session_fds(self) -> Iterator[tuple[str, int, int]]:
        """(name, staging fd, session fd) of each dead session; both fds closed after each step."""
        staging_fd = self._open_staging()
        if staging_fd is None:
            return
        try:
            own = self._session.name if self._session is not None else None
            for ent in _scan(staging_fd):
                # A session is a real folder named like one; links and anything else are not ours.
                if ent.name == own or not _SESSION.match(ent.name) or not ent.is_dir(follow_symlinks=False):
                    continue
                try:
                    fd = os.open(ent.name, _DIR_NOFOLLOW, dir_fd=staging_fd)
                except OSError:
                    continue  # replaced by a link (ELOOP) or gone meanwhile: not ours to touch
                try:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a live writer owns it
                    yield ent.name, staging_fd, fd
                finally:
                    os.close(fd)
        finally:
            os.close(staging_fd)

    def dead_sessions(self) -> Iterator[Path]:
        """Staging session directories whose process is gone (their flock is free)."""
        for name, _, _ in self._dead_session_fds():
            yield self.staging_dir / name

    def leftovers(self) -> Iterator[tuple[Path, str | None]]:
        """(path, sha256 or None) of every file of ours left in staging by a dead session.

        Only regular files named ``<sha256>.<16 hex>.staged`` (sha256 given) or
        ``<16 hex>.partial`` (None); anything else in a session is not ours and is not listed.
        """
        for name, _, fd in self._dead_session_fds():
            for f in _scan(fd):
                if not f.is_file(follow_symlinks=False):
                    continue
                m = _STAGED.match(f.name)
                if m or _PARTIAL.match(f.name):
                    yield self.staging_dir / name / f.name, (m.group(1) if m else None)

    def recover(self, is_recorded) -> tuple[int, int]:
        """Roll forward recorded staged objects, remove unrecorded leftovers.

        ``is_recorded(sha256) -> bool`` asks the ledger.  Returns (rolled_forward, removed).
        A staged file is rehashed before it is rolled forward: its name is not trusted.
        Nothing that is not ours (see :meth:`leftovers`) is removed, and no link is followed.
        """
        rolled = removed = 0
        for name, staging_fd, fd in self._dead_session_fds():
            session = self.staging_dir / name
            for f in _scan(fd):
                if _IMPORT_COPY.match(f.name) and f.is_dir(follow_symlinks=False):
                    # import-bundle's copy of a bundle's tag files (importer.py): never named by an
                    # entry; rmtree(2)-style removal through descriptors never follows a link.
                    shutil.rmtree(f.name, dir_fd=fd, ignore_errors=True)
                    removed += 1
                    continue
                if not f.is_file(follow_symlinks=False):
                    continue
                m = _STAGED.match(f.name)
                if not (m or _PARTIAL.match(f.name)):
                    continue  # not ours: left alone
                sha = m.group(1) if m else None
                if sha is not None and is_recorded(sha):
                    try:
                        obj = open_regular(f.name, dir_fd=fd)
                    except OSError:
                        continue  # replaced meanwhile (link, FIFO, gone): not ours to read or remove
                    try:
                        digests = hash_fd(obj)
                    finally:
                        os.close(obj)
                    if digests.sha256 != sha:
                        raise DigestMismatch(str(session / f.name), "sha256", sha, digests.sha256,
                                             hint="a staged object is damaged; the source must be ingested again")
                    self.commit(StagedObject(session / f.name, digests))
                    rolled += 1
                else:
                    try:
                        os.unlink(f.name, dir_fd=fd)  # unlink(2) removes a name, never a link's target
                    except FileNotFoundError:
                        pass
                    removed += 1
            try:
                os.rmdir(name, dir_fd=staging_fd)  # only if now empty: never rmtree
            except OSError:
                pass  # something not ours is left in it
        return rolled, removed

    # -- reading ------------------------------------------------------------------------
    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        """(name, path) of every file under objects/sha256, including malformed names."""
        if not self.objects_dir.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.objects_dir):
            dirnames.sort()
            # os.walk lists a symlink to a folder among dirnames but never enters it: such a
            # link is yielded as an entry (an invalid address), so verify reports it.
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            dirnames[:] = [d for d in dirnames if d not in links]
            for name in sorted(filenames + links):
                yield name, Path(dirpath) / name

    def open_object(self, sha256: str) -> int:
        """A blocking read descriptor on the object ``sha256``, opened without following any
        link below ``objects/`` and without blocking on a FIFO.  Raises ``OSError`` (e.g.
        :class:`~evidencelock.hashing.NotRegularFile`, ``ELOOP`` for a link) naming nothing:
        the caller names the item."""
        path = self.path_for(sha256)
        fd = os.open(self.objects_dir, _DIR_NOFOLLOW)
        try:
            for part in (sha256[0:2], sha256[2:4]):
                nxt = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            return open_regular(path.name, dir_fd=fd)
        finally:
            os.close(fd)

    def object_is_placed_correctly(self, name: str, path: Path) -> bool:
        return is_sha256_hex(name) and path == self.path_for(name)

    def is_read_only(self, path: Path) -> bool:
        mode = path.lstat().st_mode
        return stat.S_ISREG(mode) and not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _scan(fd: int) -> list[os.DirEntry[str]]:
    """The entries of the folder open on ``fd``, sorted; ``fd`` stays open (scandir lists a dup)."""
    with os.scandir(fd) as it:
        return sorted(it, key=lambda e: e.name)


def _link_error(path: Path, what: str) -> InputError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return InputError(
        f"{what} (pointing to {target}); evidencelock never makes links there, so it neither follows nor removes it",
        subject=str(path),
        hint="nothing was changed; check how the link got there, then remove the link itself "
             "(`rm` on the link leaves its target untouched) and run the command again",
    )


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
