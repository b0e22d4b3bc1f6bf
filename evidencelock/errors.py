"""The error vocabulary.

Three families map onto the command-line exit codes (DESIGN.md, "Command-line contract"):

* :class:`VerificationError` -- the evidence, the ledger or a proof does not check out
  (exit code 1).  Raised by the verification core, which raises and never returns booleans.
* :class:`InputError` -- bad usage or bad input: a path that does not exist, a malformed
  bundle, a wrong passphrase (exit code 2).  Nothing is recorded for the bad input.
* :class:`StorageError` -- the environment failed us: a full disk, a locked or corrupt
  ledger database (exit code 2).  The operation was rolled back; a rerun finishes it.

Every error names the file or entry it is about and, where there is one, the rule that was
broken and both the expected and the found value, so that a person reading a terminal or a
court report knows what happened and what to do next.
"""

from __future__ import annotations

__all__ = [
    "EvidenceLockError",
    "VerificationError",
    "DigestMismatch",
    "SignatureError",
    "ChainError",
    "ProofError",
    "InputError",
    "FormatError",
    "CustodianKeyError",
    "StorageError",
    "exit_code_for",
]


class EvidenceLockError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, subject: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.subject = subject
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.subject}: {self.message}" if self.subject else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class VerificationError(EvidenceLockError):
    """Something that must verify did not.  Exit code 1."""

    exit_code = 1


class DigestMismatch(VerificationError):
    """Bytes do not hash to the recorded digest."""

    def __init__(self, subject: str, algorithm: str, expected: str, found: str, *, hint: str | None = None):
        super().__init__(
            f"{algorithm} mismatch: expected={expected} found={found}",
            subject=subject,
            hint=hint or "the bytes may have been modified",
        )
        self.algorithm = algorithm
        self.expected = expected
        self.found = found


class SignatureError(VerificationError):
    """A signature does not verify under the stated key."""


class ChainError(VerificationError):
    """The hash chain of the ledger is broken (prev, seq, order)."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof, a checkpoint or a timestamp does not verify."""


class InputError(EvidenceLockError):
    """Bad usage or bad input.  Exit code 2."""

    exit_code = 2


class FormatError(InputError):
    """Bytes that claim to be one of our formats are not well formed."""


class CustodianKeyError(InputError):
    """A custodian key is missing, locked with another passphrase, or unusable."""


class StorageError(EvidenceLockError):
    """The environment failed (disk full, database locked or corrupt).  Exit code 2."""

    exit_code = 2


def exit_code_for(error: BaseException) -> int:
    """The DESIGN.md exit code for an exception: 1 for verification failures, else 2."""
    if isinstance(error, EvidenceLockError):
        return error.exit_code
    return 2
