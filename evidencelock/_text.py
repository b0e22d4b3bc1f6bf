"""Text that is safe to show on a terminal (issue 9 item 17).

Names of custodians, cases, files and TSAs come from people and files we do not control.
Printed raw, an ESC sequence can retitle the window, clear the scrollback or fake output; a
bidi override can make ``gpj.exe`` read as ``exe.jpg``.  :func:`printable` renders every such
character visibly, so what is shown is what is recorded:

* C0 controls (U+0000-U+001F), DEL (U+007F) and C1 controls (U+0080-U+009F) become ``\\xNN``;
* bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the line and
  paragraph separators (U+2028, U+2029), and other invisible format characters
  (Unicode category Cf, e.g. U+200B, U+FEFF) become ``\\uNNNN``;
* a backslash stays a backslash (the rendering is for reading, not for round-tripping).

The JSON output is not touched here: ``json.dumps`` escapes C0 controls itself, and
:func:`json_safe` escapes the rest as ``\\uNNNN`` (the same JSON value, exact).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["printable", "json_safe", "UNSAFE"]

_BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"


def _is_unsafe(ch: str) -> bool:
    o = ord(ch)
    if o < 0x20 or 0x7F <= o <= 0x9F:
        return True
    if ch in _BIDI_AND_SEPARATORS:
        return True
    return unicodedata.category(ch) == "Cf" and o > 0x7F


# Every unsafe character in the Basic Multilingual Plane (Cf characters beyond it, e.g.
# U+E0001 tag characters, are matched by the category test in _one).
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f" + re.escape(_BIDI_AND_SEPARATORS)
    + "".join(re.escape(chr(o)) for o in range(0xA0, 0x10000) if unicodedata.category(chr(o)) == "Cf")
    + "\U000e0001-\U000e007f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a]"
)


# For JSON text: json.dumps already escapes C0 inside strings, and the C0 outside them
# (newlines of the indentation) are layout, so only the rest is matched.
_JSON_UNSAFE = re.compile(UNSAFE.pattern.replace("[\x00-\x1f\x7f-\x9f", "[\x7f-\x9f", 1))
assert _JSON_UNSAFE.pattern != UNSAFE.pattern


def _one(m: re.Match[str]) -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o <= 0xFF else (f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")


def printable(text: str, *, keep_layout: bool = False) -> str:
    """``text`` with every control, bidi and invisible format character shown as an escape.

    ``keep_layout`` keeps ``\\n`` and ``\\t`` (for whole lines we compose ourselves); values
    (names, paths, notes) are shown with ``keep_layout=False`` so a name cannot fake a line.
    """
    if keep_layout:
        return "\n".join("\t".join(UNSAFE.sub(_one, part) for part in line.split("\t"))
                         for line in text.split("\n"))
    return UNSAFE.sub(_one, text)


def json_safe(text: str) -> str:
    """JSON text with the characters json.dumps leaves raw (DEL, C1, bidi, Cf) as ``\\uNNNN``.

    In JSON output these characters can only occur inside strings, so the result decodes to
    the same value.
    """

    def esc(m: re.Match[str]) -> str:
        o = ord(m.group())
        if o <= 0xFFFF:
            return f"\\u{o:04x}"
        o -= 0x10000
        return f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}"

    return _JSON_UNSAFE.sub(esc, text)
