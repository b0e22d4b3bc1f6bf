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

__all__ = ["UnsafePath", "safe_component", "NameAllocator", "check_bag_path", "fold_key"]

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


class NameAllocator:
    """Unique bag paths under ``data/``: a collision (after case folding and NFC) gets
    ``~<first 8 hex of the sha256>`` and then a counter before the extension; no file is lost."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._dirs: set[str] = set()

    def allocate(self, original: str, sha256: str) -> str:
        parts = [p for p in original.replace("\\", "/").split("/") if p not in ("", ".", "..")]
        parts = [safe_component(p) for p in parts[-8:]] or ["unnamed"]
        dirs, leaf = parts[:-1], parts[-1]
        stem, dot, ext = leaf.rpartition(".")
        if not dot or not stem:
            stem, ext, dot = leaf, "", ""
        candidates = [leaf, f"{stem}~{sha256[:8]}{dot}{ext}"]
        candidates += [f"{stem}~{sha256[:8]}-{n}{dot}{ext}" for n in range(2, 10_000)]
        for cand in candidates:
            path = "/".join(["data", *dirs, cand])
            key = fold_key(path)
            # A file may not take the name of a folder, nor a folder of a file.
            if key in self._taken or key in self._dirs or any(fold_key("/".join(["data", *dirs[: i + 1]])) in self._taken
                                                              for i in range(len(dirs))):
                continue
            self._taken.add(key)
            for i in range(len(dirs)):
                self._dirs.add(fold_key("/".join(["data", *dirs[: i + 1]])))
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
