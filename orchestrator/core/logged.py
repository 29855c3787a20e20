"""Decoding a record of a log only Baton writes (runs, models, trigger-log).

Such a record that does not decode means the log is damaged or was written by something it
should not have been: it is never an input to dead-letter and skip (that would fold a
different history), so it raises LogCorrupt, which halts whoever reads it, loudly.
"""

from __future__ import annotations

from events.codec import decode
from events.envelope import Envelope
from events.errors import EventParseError
from events.payloads import Payload
from orchestrator.core.errors import LogCorrupt


def decode_logged(value: bytes, where: str) -> Envelope[Payload]:
    """`where` names the record (topic-partition@offset) in the error an operator reads."""
    try:
        return decode(value)
    except EventParseError as exc:
        raise LogCorrupt(f"unreadable record at {where}: {exc}") from exc
