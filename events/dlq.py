"""Dead letters: an input no reader could accept, kept whole with the reason (I5)."""

from __future__ import annotations

import base64

from events.common import Frozen


class DeadLetter(Frozen):
    """Where the input was, why it was refused, by whom, and its bytes.

    A re-drive (`baton dlq redrive`) writes one more letter: the same bytes, where they were
    published again (topic, partition, offset), and `redrive_of`, the letter it re-drove as
    `baton.dlq-<partition>@<offset>`; so the topic itself records what was done about what.
    """

    topic: str
    partition: int
    offset: int
    key: str
    reason: str
    consumer: str
    value_b64: str
    redrive_of: str | None = None

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

    def redriven(self, *, to: tuple[str, int, int], of: str, by: str) -> DeadLetter:
        """The note a re-drive leaves: these bytes went to `to` (topic, partition, offset)."""
        topic, partition, offset = to
        return self.model_copy(update={
            "topic": topic, "partition": partition, "offset": offset, "consumer": by,
            "reason": f"re-driven from {of} to {topic}-{partition}@{offset}", "redrive_of": of})

    def original(self) -> bytes:
        return base64.b64decode(self.value_b64)
