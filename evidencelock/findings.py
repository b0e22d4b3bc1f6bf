"""One finding shape for ``verify --json``, ``audit --json`` and ``verify-bundle --json``.

docs/findings.md is the specification: the schema version, every field, every code and the
fields each code carries.  A finding is a flat JSON object with ALL of :data:`FIELDS` present;
a field that does not apply is ``null``.  This module does no IO and knows no check: callers
give a code, a subject and a message, and may give the structured values; the entry ``seq``
and the ``expected``/``found`` values are otherwise read from the subject ("entry 12") and the
message ("expected=… found=…", the form every check already writes, STYLE.md §5).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SCHEMA", "FIELDS", "finding", "bundle_finding"]

#: Version of the finding shape and its code vocabulary (docs/findings.md §1).  A consumer
#: MUST check it; a new code or field within version 1 is additive, a change of meaning is not.
SCHEMA = "evidencelock-findings/1"

FIELDS = ("code", "severity", "subject", "path", "sha256", "seq", "expected", "found", "message")

_SEQ = re.compile(r"\Aentry (0|-?[1-9][0-9]{0,18})\Z")
# expected=VALUE … found=VALUE: VALUE runs to the next blank, ';' or ',' (a quoted repr may hold blanks).
_VALUE = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s;,]+)"
_EXPECTED = re.compile(r"\bexpected=" + _VALUE)
_FOUND = re.compile(r"\bfound=" + _VALUE)
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


def _value(pattern: re.Pattern[str], message: str) -> str | None:
    m = pattern.search(message)
    if m is None:
        return None
    v = m.group(1)
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v.rstrip(").")


def finding(code: str, *, severity: str, message: str, subject: str = "", path: str | None = None,
            sha256: str | None = None, seq: int | None = None, expected: str | None = None,
            found: str | None = None) -> dict[str, Any]:
    """The finding as its JSON object (docs/findings.md §2); absent values are read from subject and message."""
    if seq is None:
        m = _SEQ.match(subject)
        seq = int(m.group(1)) if m else None
    if expected is None and found is None:
        expected, found = _value(_EXPECTED, message), _value(_FOUND, message)
    return {"code": code, "severity": severity, "subject": subject, "path": path,
            "sha256": sha256 if sha256 is not None and _SHA256.match(sha256) else None,
            "seq": seq, "expected": expected, "found": found, "message": message}


def bundle_finding(name: str, detail: str, subject: str, sha256_by_path: dict[str, str]) -> dict[str, Any]:
    """A failed verify-bundle check as a finding: its code is the check name (docs/findings.md §4).

    ``path`` is the bag member the check names (not for "entry N" or an option such as
    "--checkpoint"); ``sha256`` the SHA-256 the signed record gives that payload file.
    """
    is_member = bool(subject) and not _SEQ.match(subject) and not subject.startswith("-")
    path = subject if is_member else None
    return finding(name, severity="error", message=detail, subject=subject, path=path,
                   sha256=sha256_by_path.get(path) if path else None)
