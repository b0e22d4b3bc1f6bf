"""Read-only access to an untrusted bag, as a folder or a zip, without extracting anything.

Both sources list their regular files once, refusing (as named problems, never exceptions)
anything that could escape or confuse: symlinks, hard links, special files, unsafe names,
names that collide after case folding / NFC, too many files, zip members that escape the
root (zip-slip), encrypted members, and zip bombs (declared total size and per-member
expansion ratio are bounded; ``zipfile`` stops each member at its declared size and checks
its CRC).  Nothing is ever written: a zip is read member by member in place.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InputError
from ._paths import UnsafePath, check_bag_path, fold_key

__all__ = ["Limits", "Problem", "BagSource", "DirSource", "ZipSource", "ZipMemberError", "open_source"]

# docs/bundle-format.md §2: a zipped bundle's members are stored (0) or deflated (8), nothing else.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# Everything zipfile / zlib raise on a damaged member (bad CRC-32, bad deflate stream,
# truncated data, a local header that disagrees with the central directory).
_ZIP_DECODE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, struct.error)


@dataclass(frozen=True)
class Limits:
    """Bounds applied to an untrusted bundle (docs/bundle-format.md §5.1)."""

    max_files: int = 1_000_000
    max_total_bytes: int = 1 << 42  # 4 TiB of payload
    max_zip_ratio: int = 200  # uncompressed / compressed, per member and for the whole zip (deflate tops out near 1032)
    zip_ratio_allowance: int = 64 << 10  # a compressed member may expand this many bytes beyond the ratio
    max_tag_file_bytes: int = 256 << 20  # a manifest or tag file read into memory
    max_line_bytes: int = 4096


@dataclass(frozen=True)
class Problem:
    name: str  # check name, e.g. "bagit-symlink"
    subject: str
    detail: str


@dataclass
class BagSource:
    label: str
    limits: Limits
    sizes: dict[str, int] = field(default_factory=dict)  # bag path -> size, regular files only
    problems: list[Problem] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # paths seen but refused (not readable)
    damaged: dict[str, Problem] = field(default_factory=dict)  # zip members that failed to decode when read

    def open(self, path: str) -> BinaryIO:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_small(self, path: str, limit: int | None = None) -> bytes:
        """The whole file, refusing more than ``limit`` bytes (a manifest, an entry file)."""
        limit = self.limits.max_tag_file_bytes if limit is None else limit
        size = self.sizes.get(path)
        if size is None:
            raise KeyError(path)
        if size > limit:
            raise InputError(f"file is {size} bytes, over the {limit}-byte limit for this kind of file", subject=path)
        with self.open(path) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InputError(f"file grew over the {limit}-byte limit while being read", subject=path)
        return data

    def close(self) -> None:
        pass

    def _admit(self, path: str, size: int, seen: dict[str, str]) -> bool:
        try:
            check_bag_path(path)
        except UnsafePath as exc:
            self.problems.append(Problem("bagit-path-safety", repr(path), f"refused: {exc}"))
            self.refused.add(path)
            return False
        key = fold_key(path)
        if key in seen:
            self.problems.append(Problem("bagit-duplicate-name", path,
                                         f"same name as {seen[key]!r} after case folding / Unicode normalisation; "
                                         "one would overwrite the other on extraction"))
            self.refused.add(path)
            return False
        seen[key] = path
        if len(self.sizes) >= self.limits.max_files:
            self.problems.append(Problem("bagit-limits", path, f"more than {self.limits.max_files} files; rest not read"))
            return False
        self.sizes[path] = size
        return True


class ZipMemberError(InputError):
    """A zip member whose bytes do not decode (bad CRC-32, damaged deflate data, truncated):
    raised from ``read``, recorded in ``BagSource.damaged`` and reported as ``check``."""

    def __init__(self, check: str, member: str, message: str) -> None:
        super().__init__(message, subject=member)
        self.check = check
        self.member = member


class _ZipMember(io.RawIOBase):
    """A member being read: every decoding error becomes a :class:`ZipMemberError` naming it."""

    def __init__(self, source: "ZipSource", path: str, raw: BinaryIO) -> None:
        super().__init__()
        self._source, self._path, self._raw = source, path, raw

    def readable(self) -> bool:
        return True

    def _failed(self, exc: BaseException) -> ZipMemberError:
        text = str(exc) or type(exc).__name__
        if "CRC" in text:
            err = ZipMemberError("bagit-zip-crc", self._path, f"CRC-32 mismatch: the member's bytes differ from the "
                                 f"CRC-32 recorded in the zip ({text}); the file is damaged or was modified")
        else:
            err = ZipMemberError("bagit-zip-crc", self._path, f"the member's data cannot be decoded ({type(exc).__name__}: "
                                 f"{text}); the file is damaged or was modified")
        self._source.damaged.setdefault(self._path, Problem(err.check, self._path, err.message))
        return err

    def readinto(self, b: Any) -> int:
        try:
            return self._raw.readinto(b)  # type: ignore[attr-defined,no-any-return]
        except _ZIP_DECODE_ERRORS as exc:
            raise self._failed(exc) from None

    def read(self, n: int | None = -1) -> bytes:
        try:
            return self._raw.read(-1 if n is None else n)
        except _ZIP_DECODE_ERRORS as exc:
            raise self._failed(exc) from None

    def close(self) -> None:
        try:
            if self._raw is not None:
                self._raw.close()
        finally:
            super().close()


class DirSource(BagSource):
    def __init__(self, root: Path, limits: Limits) -> None:
        super().__init__(str(root), limits)
        self.root = root
        self._ids: dict[str, tuple[int, int]] = {}
        self._walk()

    def _walk(self) -> None:
        seen: dict[str, str] = {}
        stack = [""]
        total = 0
        while stack:
            rel_dir = stack.pop()
            try:
                with os.scandir(os.path.join(self.root, rel_dir) if rel_dir else self.root) as it:
                    ents = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                self.problems.append(Problem("bagit-structure", rel_dir or ".", f"cannot list folder: {exc.strerror}"))
                continue
            for ent in ents:
                name = ent.name
                if any("\udc80" <= ch <= "\udcff" for ch in name):
                    self.problems.append(Problem("bagit-path-safety", repr(os.fsencode(name)),
                                                 "file name is not UTF-8 (RFC 8493 §2.1.3 requires UTF-8 paths)"))
                    continue
                rel = f"{rel_dir}/{name}" if rel_dir else name
                st = ent.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    self.problems.append(Problem("bagit-symlink", rel, f"symbolic link to {os.readlink(ent.path)!r}: "
                                                 "not followed (a bag must hold regular files only)"))
                    self.refused.add(rel)
                elif stat.S_ISDIR(st.st_mode):
                    stack.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    if st.st_nlink > 1:
                        self.problems.append(Problem("bagit-hardlink", rel, f"hard link ({st.st_nlink} names share "
                                                     "these bytes; another name, possibly outside the bag, can change them)"))
                        self.refused.add(rel)
                        continue
                    total += st.st_size
                    if self._admit(rel, st.st_size, seen):
                        self._ids[rel] = (st.st_dev, st.st_ino)
                else:
                    self.problems.append(Problem("bagit-special-file", rel, "not a regular file; not opened"))
                    self.refused.add(rel)
        if total > self.limits.max_total_bytes:
            self.problems.append(Problem("bagit-limits", self.label, f"{total} bytes, over the {self.limits.max_total_bytes}-byte limit"))

    def open(self, path: str) -> BinaryIO:
        if path not in self.sizes:
            raise KeyError(path)
        fd = os.open(os.path.join(self.root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != self._ids[path]:
            os.close(fd)
            raise OSError(f"{path}: file was replaced while the bundle was being verified")
        return os.fdopen(fd, "rb", buffering=0)

    def path_of(self, path: str) -> Path:
        return self.root / path


def _require_end_record_at_end(path: Path, comment: bytes) -> None:
    """APPNOTE 4.3.16: the end-of-central-directory record (and its comment) ends the file.
    zipfile accepts the last EOCD signature it finds in the final 64 KiB, so a truncated bundle
    whose last tag file is itself a zip (certification.docx/.odt, stored verbatim by deflate)
    would be read as that inner archive; refuse it as unreadable instead."""
    n = 22 + len(comment)
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < n:
            raise zipfile.BadZipFile("file too short for an end-of-central-directory record")
        f.seek(size - n)
        tail = f.read(n)
    if tail[:4] != b"PK\x05\x06" or tail[22:] != comment:
        raise zipfile.BadZipFile("the end-of-central-directory record is not at the end of the file (truncated?)")


class ZipSource(BagSource):
    def __init__(self, path: Path, limits: Limits) -> None:
        super().__init__(str(path), limits)
        try:
            self._zip = zipfile.ZipFile(path)
            _require_end_record_at_end(path, self._zip.comment)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            raise InputError(f"not a readable zip file: {exc}", subject=str(path)) from None
        self._lock = threading.Lock()
        self._info: dict[str, zipfile.ZipInfo] = {}
        try:
            self._size = os.stat(path).st_size
            overlapping = self._overlapping(path, infos)
        except OSError as exc:
            raise InputError(f"cannot read the zip file: {exc.strerror or exc}", subject=str(path)) from None
        self._scan([i for i in infos if id(i) not in overlapping])

    def _overlapping(self, path: Path, infos: list[zipfile.ZipInfo]) -> set[int]:
        """docs/bundle-format.md §5 step 1: members whose bytes (local header + compressed data)
        share bytes with another member's, or run into the central directory.  Such entries let
        a small zip expand to gigabytes (each member read again from the same bytes); they never
        occur in a zip written by an archiver, so every member involved is refused, named."""
        spans: list[tuple[int, int, zipfile.ZipInfo]] = []
        bad: set[int] = set()
        cd_start = getattr(self._zip, "start_dir", self._size)
        with open(path, "rb") as f:
            for info in infos:
                f.seek(info.header_offset)
                hdr = f.read(30)
                if len(hdr) != 30 or hdr[:4] != b"PK\x03\x04":
                    self.problems.append(Problem("bagit-zip-overlap", repr(info.filename),
                                                 f"no local header at offset {info.header_offset}: refused"))
                    bad.add(id(info))
                    continue
                name_len, extra_len = struct.unpack("<HH", hdr[26:30])
                end = info.header_offset + 30 + name_len + extra_len + info.compress_size
                if end > cd_start:
                    self.problems.append(Problem("bagit-zip-overlap", repr(info.filename),
                                                 f"member data (bytes {info.header_offset}-{end}) runs into the central "
                                                 f"directory at {cd_start}: refused"))
                    bad.add(id(info))
                    continue
                spans.append((info.header_offset, end, info))
        spans.sort(key=lambda t: (t[0], t[1]))
        reach_end, reach = -1, None
        for start, end, info in spans:
            if reach is not None and start < reach_end:
                self.problems.append(Problem("bagit-zip-overlap", repr(info.filename),
                                             f"member bytes {start}-{end} overlap member {reach.filename!r} "
                                             f"(bytes up to {reach_end}): both refused, not decompressed"))
                bad.add(id(info))
                bad.add(id(reach))
            if end > reach_end:
                reach_end, reach = end, info
        return bad

    def _scan(self, infos: list[zipfile.ZipInfo]) -> None:
        names = [i.filename for i in infos]
        # A zipped bag usually has one top folder ("bundle/bagit.txt"); strip it.
        prefix = ""
        if "bagit.txt" not in names:
            tops = sorted({n.split("/", 1)[0] for n in names if f"{n.split('/', 1)[0]}/bagit.txt" in names})
            if len(tops) == 1:
                prefix = tops[0] + "/"
        seen: dict[str, str] = {}
        total = inflated = 0
        for info in infos:
            raw = info.filename
            if raw.endswith("/") and info.file_size == 0:
                try:
                    check_bag_path(raw.rstrip("/"))
                except UnsafePath as exc:
                    self.problems.append(Problem("bagit-zip-slip", repr(raw), f"folder entry refused: {exc}"))
                continue
            mode = (info.external_attr >> 16) & 0xFFFF
            if stat.S_ISLNK(mode):
                self.problems.append(Problem("bagit-symlink", repr(raw), "symbolic link stored in the zip: refused"))
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                self.problems.append(Problem("bagit-special-file", repr(raw), "not a regular file: refused"))
                continue
            if info.flag_bits & 0x1:
                self.problems.append(Problem("bagit-zip-encrypted", repr(raw), "encrypted member: refused"))
                continue
            if not raw.startswith(prefix):
                self.problems.append(Problem("bagit-zip-slip", repr(raw), "outside the bag's top folder"))
                continue
            rel = raw[len(prefix):]
            try:
                check_bag_path(rel)
            except UnsafePath as exc:
                self.problems.append(Problem("bagit-zip-slip", repr(raw), f"refused: {exc}"))
                self.refused.add(rel)
                continue
            if info.compress_type not in ZIP_METHODS:
                # §2: only stored and deflate; anything else is refused before any byte is decoded.
                self.problems.append(Problem("bagit-zip-unsupported", rel,
                                             f"compression method {info.compress_type} (only 0 stored and 8 deflate "
                                             "are allowed in a bundle): not read"))
                self.refused.add(rel)
                continue
            # Every compressed member (not only large ones): at most ratio x its compressed size
            # plus a small allowance; and all of them together at most ratio x the zip's size.
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > \
                    self.limits.max_zip_ratio * info.compress_size + self.limits.zip_ratio_allowance:
                self.problems.append(Problem("bagit-zip-bomb", rel,
                                             f"expands {info.compress_size} bytes to {info.file_size} "
                                             f"(ratio over {self.limits.max_zip_ratio}): not decompressed"))
                self.refused.add(rel)
                continue
            if info.compress_type != zipfile.ZIP_STORED:
                inflated += info.file_size
                if inflated > self.limits.max_zip_ratio * self._size:
                    self.problems.append(Problem("bagit-zip-bomb", rel,
                                                 f"compressed members expand to over {inflated} bytes in total, more "
                                                 f"than {self.limits.max_zip_ratio} x the zip's {self._size} bytes: "
                                                 "not decompressed"))
                    self.refused.add(rel)
                    continue
            elif info.file_size != info.compress_size:
                self.problems.append(Problem("bagit-zip-bomb", rel,
                                             f"stored (uncompressed) member declares {info.file_size} bytes but holds "
                                             f"{info.compress_size}: not read"))
                self.refused.add(rel)
                continue
            total += info.file_size
            if total > self.limits.max_total_bytes:
                self.problems.append(Problem("bagit-zip-bomb", rel, f"declared sizes exceed {self.limits.max_total_bytes} "
                                             "bytes in total: rest not decompressed"))
                self.refused.add(rel)
                break
            if self._admit(rel, info.file_size, seen):
                self._info[rel] = info

    def open(self, path: str) -> BinaryIO:
        info = self._info[path]
        member = _ZipMember(self, path, None)  # type: ignore[arg-type]
        with self._lock:
            try:
                member._raw = self._zip.open(info)  # type: ignore[assignment]
            except _ZIP_DECODE_ERRORS as exc:
                raise member._failed(exc) from None
        return member  # type: ignore[return-value]

    def close(self) -> None:
        self._zip.close()


def open_source(path: Path, limits: Limits) -> BagSource:
    """A folder or a zip; raise InputError (exit 2) if it is neither."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot open the bundle: {exc.strerror}", subject=str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        return DirSource(Path(path), limits)
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic[:2] == b"PK":
            return ZipSource(Path(path), limits)
        raise InputError("not a bundle: neither a folder nor a zip file", subject=str(path))
    raise InputError("not a bundle: not a folder or a regular file", subject=str(path))

