"""Bag paths: making original names safe on export, and refusing hostile names on verify.

Two directions, two rules (docs/bundle-format.md §3):

* ``safe_component`` / ``NameAllocator`` turn an original file name (anything a camera, a
  phone or a file system produced) into a portable bag path: NFC, no control characters, no
  ``/ \\ : * ? " < > | %``, no Windows reserved names, bounded length, and unique under case
  folding + NFC so that extracting on any file system never merges two files.
* ``check_bag_path`` is the verifier's gate for every path named by a manifest or found in a
  zip: relative, ``/``-separated, no ``..``/``.``/empty components, no drive letter, no NUL
  or control characters, no backslash, bounded length.  It raises :class:`UnsafePath`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["UnsafePath", "safe_component", "NameAllocator", "check_bag_path", "fold_key", "base_parts",
           "derivable_from"]

MAX_COMPONENT_BYTES = 150
MAX_PATH_BYTES = 1024
MAX_DEPTH = 32
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|%]')
_RESERVED = re.compile(r"\A(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?\Z", re.IGNORECASE)
_DRIVE = re.compile(r"\A[A-Za-z]:")


class UnsafePath(ValueError):
    """A path in a bag that could escape the bag or be ambiguous; ``str()`` names the rule."""


def fold_key(path: str) -> str:
    """The identity of a path on a case-insensitive, normalising file system."""
    return unicodedata.normalize("NFC", path).casefold()


def safe_component(name: str) -> str:
    """One portable path component for an original name (never empty, never ``.``/``..``)."""
    name = unicodedata.normalize("NFC", name)
    name = _FORBIDDEN.sub("_", name).strip(" .")
    if not name:
        name = "unnamed"
    if _RESERVED.match(name):
        name = "_" + name
    while len(name.encode("utf-8")) > MAX_COMPONENT_BYTES:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10 and stem:
            name = stem[:-1] + "." + ext
        else:
            name = name[:-1]
    return name


def base_parts(original: str) -> list[str]:
    """docs/bundle-format.md §3: the safe components of a signed source path (last 8, ``/`` only).

    A backslash is a character of a POSIX file name, not a separator: it becomes ``_``.
    """
    parts = [p for p in original.split("/") if p not in ("", ".", "..")]
    return [safe_component(p) for p in parts[-8:]] or ["unnamed"]


def _split_ext(leaf: str) -> tuple[str, str]:
    stem, dot, ext = leaf.rpartition(".")
    if not dot or not stem:
        return leaf, ""
    return stem, "." + ext


def _suffixes(sha256: str) -> list[str]:
    return [f"~{sha256[:8]}"] + [f"~{sha256[:8]}-{n}" for n in range(2, 10_000)]


_SUFFIX = re.compile(r"~([0-9a-f]{8})(?:-([2-9]|[1-9][0-9]{1,3}))?\Z")


def _matches(found: str, base: str, sha256: str, *, leaf: bool) -> bool:
    """``found`` is ``base``, or ``base`` with the §3 collision suffix of this item."""
    if found == base:
        return True
    stem, ext = _split_ext(base) if leaf else (base, "")
    if ext and not found.endswith(ext):
        return False
    core = found[: len(found) - len(ext)] if ext else found
    if not core.startswith(stem):
        return False
    m = _SUFFIX.match(core[len(stem):])
    return bool(m) and m.group(1) == sha256[:8]


def derivable_from(payload_path: str, source_path: str, sha256: str) -> bool:
    """True if ``payload_path`` is what §3 makes of the signed ``source_path`` for item ``sha256``:
    the same safe components, any of them carrying this item's collision suffix."""
    parts = payload_path.split("/")
    if parts[0] != "data":
        return False
    found, base = parts[1:], base_parts(source_path)
    if len(found) != len(base):
        return False
    return all(_matches(f, b, sha256, leaf=(i == len(base) - 1)) for i, (f, b) in enumerate(zip(found, base)))


class NameAllocator:
    """Unique bag paths under ``data/`` (docs/bundle-format.md §3).

    A collision (after case folding and NFC) gets ``~<first 8 hex of the sha256>`` and then a
    counter (before the extension of a file name; at the end of a folder name); no file is lost.
    A folder may not take a file's name nor a file a folder's: the folder component (or the
    file name) that would collide gets the suffix.
    """

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._dirs: set[str] = set()

    def allocate(self, original: str, sha256: str) -> str:
        parts = base_parts(original)
        dirs, leaf = parts[:-1], parts[-1]
        # Folders first: a folder component that is already a file's name takes the suffix.
        chosen: list[str] = []
        for d in dirs:
            for cand in [d] + [d + s for s in _suffixes(sha256)]:
                if fold_key("/".join(["data", *chosen, cand])) not in self._taken:
                    chosen.append(cand)
                    break
            else:  # pragma: no cover - 10 000 files of one item with one name
                raise ValueError(f"cannot allocate a unique folder name for {original!r}")
        stem, ext = _split_ext(leaf)
        for cand in [leaf] + [stem + s + ext for s in _suffixes(sha256)]:
            path = "/".join(["data", *chosen, cand])
            key = fold_key(path)
            if key in self._taken or key in self._dirs:
                continue
            self._taken.add(key)
            for i in range(len(chosen)):
                self._dirs.add(fold_key("/".join(["data", *chosen[: i + 1]])))
            return path
        raise ValueError(f"cannot allocate a unique name for {original!r}")  # pragma: no cover


def check_bag_path(path: str) -> None:
    """Raise :class:`UnsafePath` unless ``path`` is a safe relative bag path."""
    if not path:
        raise UnsafePath("empty path")
    if "\x00" in path:
        raise UnsafePath("NUL byte in path")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise UnsafePath("control character in path")
    if "\\" in path:
        raise UnsafePath("backslash in path (a Windows separator could escape the bag)")
    if path.startswith("/"):
        raise UnsafePath("absolute path")
    if _DRIVE.match(path):
        raise UnsafePath("drive letter in path")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafePath(f"path longer than {MAX_PATH_BYTES} bytes")
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        raise UnsafePath(f"path deeper than {MAX_DEPTH} folders")
    for part in parts:
        if part == "..":
            raise UnsafePath("'..' component (path traversal)")
        if part in ("", "."):
            raise UnsafePath("empty or '.' component")
