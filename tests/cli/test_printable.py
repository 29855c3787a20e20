"""User data reaches the terminal escaped: it can never move the cursor or hide text."""

from __future__ import annotations

import pytest

from orchestrator.printable import printable


@pytest.mark.parametrize("raw, shown", [
    ("digits v1", "digits v1"),
    ("café 日本 ✔", "café 日本 ✔"),
    ("\x1b[2Jwiped", "\\x1b[2Jwiped"),
    ("nul\x00", "nul\\x00"),
    ("two\nlines\r", "two\\nlines\\r"),
    ("\x9bC1 CSI", "\\x9bC1 CSI"),
    ("abc\u202edcba", "abc\\u202edcba"),
    ("sep\u2028", "sep\\u2028"),
    ("bytes \udcff", "bytes \\udcff"),
], ids=["plain", "unicode", "escape", "nul", "newlines", "c1", "bidi", "separator", "surrogate"])
def test_control_and_invisible_characters_are_written_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown
