"""The envelopes this process encoded last, by their bytes, so decoding those bytes again is a
lookup (events.codec, module doc).

Only what `decode` would give back is kept: an envelope whose own fields `envelope()` set
without validation (an empty id, a sequence of 0) or whose type or version is not the
catalog's current one is encoded as ever but not kept, so decoding its bytes still parses and
refuses them. The payload was validated when it was made.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime

from events.catalog import CATALOG
from events.envelope import Envelope
from events.payloads import Payload

KEPT = 8192
KEPT_BYTES = 4 << 20
"""At most this many encodings, and about this many bytes of them: a 1,000-wide fan-out's
decision (3,000 events) and what its agent and projector read of it fit."""


class Recent:
    """Bytes -> the envelope encoded to them, oldest first, bounded by KEPT and KEPT_BYTES.
    Encoders on other threads (rare) share it under a lock."""

    def __init__(self, kept: int = KEPT, kept_bytes: int = KEPT_BYTES) -> None:
        self._kept, self._kept_bytes = kept, kept_bytes
        self._envelopes: dict[bytes, Envelope[Payload]] = {}
        self._order: deque[bytes] = deque()
        """The keys, oldest first: taking a dict's first key gets slower as the entries
        deleted before it pile up."""
        self._bytes = 0
        self._lock = threading.Lock()

    def remember(self, raw: bytes, env: Envelope[Payload]) -> None:
        if not _decodes_to_itself(env):
            return
        with self._lock:
            if raw in self._envelopes:
                return
            self._envelopes[raw] = env
            self._order.append(raw)
            self._bytes += len(raw)
            while len(self._order) > self._kept or self._bytes > self._kept_bytes:
                oldest = self._order.popleft()
                del self._envelopes[oldest]
                self._bytes -= len(oldest)

    def recall(self, raw: bytes | str) -> Envelope[Payload] | None:
        return self._envelopes.get(raw) if isinstance(raw, bytes) else None

    def forget(self) -> None:
        with self._lock:
            self._envelopes.clear()
            self._order.clear()
            self._bytes = 0


def _decodes_to_itself(env: Envelope[Payload]) -> bool:
    """Whether decoding `env`'s bytes gives `env` back rather than an error or an upcast: the
    checks validation would make of the fields `envelope()` sets unchecked. Read from the
    instance's `__dict__` at once (pydantic keeps the fields there): one lookup, not eleven
    attribute reads, per event encoded."""
    fields = env.__dict__
    cls = type(fields["data"])
    version, sequence = fields["version"], fields["sequence"]
    return (CATALOG.types.get(fields["type"]) is cls and version == cls.VERSION
            and type(version) is int
            and isinstance(fields["id"], str) and fields["id"] != ""
            and (sequence is None or (type(sequence) is int and sequence >= 1))
            and isinstance(fields["time"], datetime)
            and isinstance(fields["source"], str) and isinstance(fields["subject"], str)
            and _text_or_none(fields["correlation_id"])
            and _text_or_none(fields["causation_id"])
            and _text_or_none(fields["traceparent"]))


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)
