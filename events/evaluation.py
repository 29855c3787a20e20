"""How an evaluation says, row by row, which predictions were right: a bitset as base64 text,
small enough for a task's metadata (a 100,000-row set is ~17 KB), so a gate compares two
versions on the same rows (McNemar's test) without reading any artifact."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence

OUTCOMES = "eval_outcomes"
"""The metadata key of an evaluation's per-row outcomes (`encode_outcomes`)."""
EVAL_SET = "eval_set"
"""The metadata key of the evaluation set's fingerprint (`fingerprint`)."""


def encode_outcomes(correct: Iterable[bool]) -> str:
    """`n:` + the rows' right/wrong bits, packed 8 to a byte, base64."""
    bits = [bool(c) for c in correct]
    packed = bytearray((len(bits) + 7) // 8)
    for i, right in enumerate(bits):
        if right:
            packed[i // 8] |= 1 << (i % 8)
    return f"{len(bits)}:{base64.b64encode(bytes(packed)).decode()}"


def decode_outcomes(text: str) -> list[bool]:
    """The rows' outcomes; ValueError for text `encode_outcomes` did not make."""
    count, sep, body = text.partition(":")
    if not sep or not count.isdigit():
        raise ValueError("per-row outcomes must look like 'N:BASE64' (encode_outcomes)")
    n = int(count)
    packed = base64.b64decode(body, validate=True)
    if len(packed) != (n + 7) // 8:
        raise ValueError(f"per-row outcomes say {n} rows but carry {len(packed) * 8} bits")
    return [bool(packed[i // 8] >> (i % 8) & 1) for i in range(n)]


def fingerprint(*columns: Sequence[object] | bytes) -> str:
    """A short, stable name for an evaluation set: the sha256 of its rows as given."""
    digest = hashlib.sha256()
    for column in columns:
        digest.update(column if isinstance(column, bytes) else repr(list(column)).encode())
    return digest.hexdigest()[:16]
