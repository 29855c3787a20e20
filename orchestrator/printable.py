"""User data on a terminal: escaped, so a name or message can never drive the terminal.

Dataset names, versions, task messages and dead-lettered bytes come from outside; printed raw,
an ESC sequence in one rewrites the screen (or the title, or the clipboard) of whoever reads it.
"""

from __future__ import annotations

import unicodedata

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Controls (ESC, NUL, newline...), invisible formatting (bidi overrides), surrogates, private
and unassigned code points, and line/paragraph separators."""


def printable(text: str) -> str:
    """`text` with every unsafe character written as its Python-style escape."""
    return "".join(_escaped(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
