"""The browser verifier (docs/browser-verifier.md): ``verify.html``, shipped in this package and
written into every bundle, pinned by ``bundle.json`` ``files``.

A bundle holder could ship a ``verify.html`` that always says VERIFIED, so ``verify-bundle``
accepts the file only when it is byte-equal to the one this package ships or to an earlier
published version (``PUBLISHED_SHA256``), else ``evidence-verify-html``.
"""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["VERIFY_HTML", "PUBLISHED_SHA256", "verify_html_bytes", "verify_html_sha256", "accepted_sha256"]

VERIFY_HTML = "verify.html"
# SHA-256 of verify.html as shipped by earlier released versions of evidencelock, which bundles
# exported then carry.  Append (never remove) the digest of each released file when it changes.
PUBLISHED_SHA256: frozenset[str] = frozenset()


def verify_html_bytes() -> bytes:
    """The exact bytes of the verify.html this package ships."""
    return resources.files(__package__).joinpath(VERIFY_HTML).read_bytes()


def verify_html_sha256() -> str:
    return hashlib.sha256(verify_html_bytes()).hexdigest()


def accepted_sha256() -> frozenset[str]:
    """Digests of verify.html that ``verify-bundle`` accepts in a bundle."""
    return PUBLISHED_SHA256 | {verify_html_sha256()}
