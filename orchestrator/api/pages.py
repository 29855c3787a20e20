"""Cursors of paged lists: the sort key of a page's last row, opaque on the wire (base64url
of JSON), checked on the way back in so a made-up cursor is a clear 400, never a 500."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from orchestrator.api.problems import Problem
from orchestrator.store.queries import RunKey

MAX_LIMIT = 500
DEFAULT_LIMIT = 50


def encode(key: object) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad() from None


def run_key(cursor: str | None) -> RunKey | None:
    if cursor is None:
        return None
    key = _decode(cursor)
    if (isinstance(key, list) and len(key) == 2 and isinstance(key[0], int | float)
            and not isinstance(key[0], bool) and isinstance(key[1], str)):
        return float(key[0]), key[1]
    raise _bad()


def seq_key(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    key = _decode(cursor)
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    raise _bad()


def _bad() -> Problem:
    return Problem(400, "invalid-cursor", "Invalid cursor",
                   "cursor: not one this API gave; pass the 'next' of the previous page, or "
                   "leave it out for the first page")
