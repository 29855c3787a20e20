"""Dead letters: an input no reader could accept, kept whole with the reason (I5)."""

from __future__ import annotations

import base64

from events.common import Frozen


class DeadLetter(Frozen):
    topic: str
    partition: int
    offset: int
    key: str
    reason: str
    consumer: str
    value_b64: str

    @classmethod
    def of(
        cls, *, topic: str, partition: int, offset: int, key: str, reason: str, consumer: str,
        value: bytes,
    ) -> DeadLetter:
        encoded = base64.b64encode(value).decode()
        return cls(
            topic=topic, partition=partition, offset=offset, key=key, reason=reason,
            consumer=consumer, value_b64=encoded,
        )

    def original(self) -> bytes:
        return base64.b64decode(self.value_b64)
