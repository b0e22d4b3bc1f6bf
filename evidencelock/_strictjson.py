"""Strict parsing of untrusted JSON (docs/bundle-format.md §4, "Strict JSON").

Two conforming parsers must read the same bytes the same way, so what the JSON RFC leaves open
is refused: a repeated member name (parsers disagree on which one wins), and NaN / Infinity
(not JSON at all). The text must be UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member {k!r} in one JSON object")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes) -> Any:
    """Parse untrusted JSON: UTF-8, no duplicate member names, no NaN/Infinity; ValueError otherwise
    (UnicodeDecodeError is a ValueError)."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constant)
