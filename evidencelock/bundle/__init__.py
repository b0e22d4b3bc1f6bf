"""Evidence bundles: ``export_bundle`` writes one, ``verify_bundle`` checks one offline.

``verify_bundle`` and its types need only the verification core (no database): importing
this package does not import SQLAlchemy; ``export_bundle`` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from .source import Limits
from .verify import BUNDLE_FORMAT, BUNDLE_VERSION, BundleReport, Check, verify_bundle

__all__ = ["verify_bundle", "BundleReport", "Check", "Limits", "export_bundle", "ExportResult",
           "BUNDLE_FORMAT", "BUNDLE_VERSION"]


def __getattr__(name: str) -> Any:
    if name in ("export_bundle", "ExportResult"):
        from . import writer

        return getattr(writer, name)
    raise AttributeError(name)
