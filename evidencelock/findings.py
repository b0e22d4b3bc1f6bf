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

__all__ = ["SCHEMA", "FIELDS", "PROBLEMS", "problem_of", "finding", "bundle_finding"]

#: Version of the finding shape and its code vocabulary (docs/findings.md §1).  A consumer
#: MUST check it; a new code or field within version 1 is additive, a change of meaning is not.
SCHEMA = "evidencelock-findings/1"

FIELDS = ("code", "severity", "problem", "subject", "path", "sha256", "seq", "expected", "found", "message")

#: The vocabulary `verify`, `audit` and `verify-bundle` share (docs/findings.md §2.1): the same
#: problem gets the same ``problem`` whichever tool found it, while ``code`` names the exact check.
PROBLEMS = ("content-altered", "content-missing", "content-unreadable", "content-unrecorded",
            "record-altered", "signature-invalid", "chain-broken", "tree-mismatch", "key-untrusted",
            "checkpoint", "timestamp", "custody", "hostile-input", "structure", "leftover",
            "protection", "other")

# Exact codes first, then the first matching prefix in this order, the more specific listed first
# (docs/findings.md §2.1 is the same table).
_PROBLEM_OF_CODE = {
    "object-digest-mismatch": "content-altered", "object-size-mismatch": "content-altered",
    "bagit-payload-fixity": "content-altered", "bagit-tag-fixity": "content-altered",
    "bagit-payload-oxum": "content-altered", "evidence-digests": "content-altered",
    "evidence-certification": "content-altered", "evidence-verify-md": "content-altered",
    "evidence-report-content": "content-altered", "evidence-verify-html": "content-altered",
    "object-missing": "content-missing", "object-unreadable": "content-unreadable",
    "object-unrecorded": "content-unrecorded", "object-stray": "content-unrecorded",
    "evidence-payload-covered": "content-unrecorded", "evidence-unexpected-file": "content-unrecorded",
    "item-digest-conflict": "record-altered", "entry-malformed": "record-altered",
    "entry-invalid": "record-altered", "entry-hash-column": "record-altered",
    "evidence-entries": "record-altered", "evidence-entry-files": "record-altered",
    "evidence-record": "record-altered", "evidence-bundle": "record-altered",
    "evidence-case": "record-altered", "evidence-bag-info": "record-altered",
    "evidence-payload-name": "record-altered",
    "signature-invalid": "signature-invalid", "evidence-signature": "signature-invalid",
    "evidence-bundle-signature": "signature-invalid", "checkpoint-signature-invalid": "signature-invalid",
    "evidence-checkpoint-signature": "signature-invalid",
    "chain-broken": "chain-broken", "entry-seq-mismatch": "chain-broken", "entry-seq-gap": "chain-broken",
    "evidence-chain": "chain-broken", "evidence-time-order": "chain-broken",
    "evidence-inclusion": "tree-mismatch", "evidence-consistency": "tree-mismatch",
    "checkpoint-fork": "tree-mismatch", "checkpoint-inconsistent": "tree-mismatch",
    "evidence-trusted-key": "key-untrusted", "evidence-keys": "key-untrusted",
    "evidence-time-after-timestamp": "timestamp",
    "evidence-custody": "custody", "evidence-upstream": "custody",
    "object-writable": "protection", "object-awaiting-rollforward": "leftover", "staging-leftover": "leftover",
}
_PROBLEM_OF_PREFIX = (
    ("index-key-", "key-untrusted"), ("index-", "record-altered"), ("tree-", "tree-mismatch"),
    ("checkpoint-timestamp-", "timestamp"), ("checkpoint-", "checkpoint"),
    ("evidence-timestamp", "timestamp"), ("evidence-checkpoint", "checkpoint"),
    ("evidence-external-checkpoint", "checkpoint"), ("evidence-bundle-checkpoint", "checkpoint"),
    ("custody-", "custody"), ("import-", "custody"),
    ("bagit-path-safety", "hostile-input"), ("bagit-symlink", "hostile-input"),
    ("bagit-hardlink", "hostile-input"), ("bagit-special-file", "hostile-input"),
    ("bagit-duplicate-name", "hostile-input"), ("bagit-zip-", "hostile-input"), ("bagit-limits", "hostile-input"),
    ("bagit-", "structure"), ("evidence-", "structure"),
)


def problem_of(code: str, message: str = "") -> str:
    """The shared ``problem`` of a finding's ``code`` (docs/findings.md §2.1); ``"other"`` if unknown.

    ``bagit-completeness`` and ``evidence-payload-covered`` are each one check for two problems
    (a listed file missing, a file nobody listed); the message the check writes says which.
    """
    if code in ("bagit-completeness", "evidence-payload-covered"):
        counts = _COUNTS.match(message)
        if counts:  # the summary line: "N missing and M unlisted files in total"
            return "content-missing" if int(counts.group(1)) else "content-unrecorded"
        if "missing from the bag" in message or "but not in the bag" in message:
            return "content-missing"
        return "content-unrecorded"
    if code in _PROBLEM_OF_CODE:
        return _PROBLEM_OF_CODE[code]
    for prefix, problem in _PROBLEM_OF_PREFIX:
        if code.startswith(prefix):
            return problem
    return "other"

_SEQ = re.compile(r"\Aentry (0|-?[1-9][0-9]{0,18})\Z")
# expected=VALUE … found=VALUE: VALUE runs to the next blank, ';' or ',' (a quoted repr may hold blanks).
_VALUE = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s;,]+)"
_EXPECTED = re.compile(r"\bexpected=" + _VALUE)
_FOUND = re.compile(r"\bfound=" + _VALUE)
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")
_COUNTS = re.compile(r"\A([0-9]+) missing and ([0-9]+) unlisted")


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
    return {"code": code, "severity": severity, "problem": problem_of(code, message),
            "subject": subject, "path": path,
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
