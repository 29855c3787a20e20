"""Dead letters as an operator sees them, for `baton dlq` and the HTTP API: read from
baton.dlq, re-drive notes folded into the letters they re-drove, and a re-drive itself.

Works the same on both buses: a re-drive publishes the original bytes under their key to the
partition they came from (a partition group's input stays in its group), then records the
re-drive as one more letter (`DeadLetter.redrive_of`). Consumers dedupe by event id, so
re-driving an input that was in fact applied is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bus import Bus, Outgoing, Record
from events import topics
from events.dlq import DeadLetter
from orchestrator.printable import printable
from orchestrator.service.reading import read_all

PREVIEW_CHARS = 240


@dataclass(frozen=True)
class Letter:
    """A dead letter: its place on baton.dlq (`id`, PARTITION@OFFSET), and its re-drives."""

    id: str
    time_ms: int
    letter: DeadLetter
    redriven_to: tuple[str, ...] = ()

    def as_json(self, *, whole: bool) -> dict[str, Any]:
        out = {"id": self.id, "time": iso(self.time_ms), "consumer": self.letter.consumer,
               "from": f"{self.letter.topic}-{self.letter.partition}@{self.letter.offset}",
               "key": self.letter.key, "reason": self.letter.reason,
               "redriven_to": list(self.redriven_to), "preview": preview(self.letter.original())}
        return {**out, "value_b64": self.letter.value_b64} if whole else out


class CannotRedrive(Exception):
    """The letter's origin is not on this bus: `str()` says which."""


async def letters(bus: Bus) -> list[Letter]:
    """Every letter, oldest first."""
    return combined(await read_all(bus, topics.DLQ, {}))


def combined(records: list[Record]) -> list[Letter]:
    """Letters oldest first; re-drive notes folded into the letters they re-drove (a note of a
    letter the topic no longer holds, past its retention, is shown on its own)."""
    ordered = sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    parsed = [(r, DeadLetter.model_validate_json(r.value)) for r in ordered]
    found = {f"{r.partition}@{r.offset}": Letter(f"{r.partition}@{r.offset}", r.timestamp_ms,
                                                  dead)
             for r, dead in parsed}
    for r, dead in parsed:
        of = (dead.redrive_of or "").removeprefix(f"{topics.DLQ}-")
        if of in found:
            del found[f"{r.partition}@{r.offset}"]  # a note is no letter of its own
            before = found[of]
            where = f"{dead.topic}-{dead.partition}@{dead.offset}"
            found[of] = Letter(before.id, before.time_ms, before.letter,
                               (*before.redriven_to, where))
    return list(found.values())


async def redrive(bus: Bus, letter: Letter, *, by: str) -> Record:
    """The bytes first, then the note: a crash between leaves a re-drive unrecorded, never a
    note of a re-drive that did not happen. `by` names who re-drove it, in the note."""
    dead = letter.letter
    if dead.topic not in topics.ALL_TOPICS or not 0 <= dead.partition < bus.partitions(dead.topic):
        raise CannotRedrive(f"letter {letter.id} came from {dead.topic}-{dead.partition}, "
                            "which this bus does not have")
    (sent,) = await bus.publish([Outgoing(dead.topic, dead.key, dead.original(),
                                          partition=dead.partition)])
    note = dead.redriven(to=(sent.topic, sent.partition, sent.offset),
                         of=f"{topics.DLQ}-{letter.id}", by=by)
    await bus.publish([Outgoing(topics.DLQ, dead.key, note.model_dump_json().encode())])
    return sent


def preview(value: bytes) -> str:
    """The start of the bytes as text when they are text, escaped; else as hex."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "hex " + value[:PREVIEW_CHARS // 2].hex() + ("…" if len(value) > 120 else "")
    cut = "…" if len(text) > PREVIEW_CHARS else ""
    return printable(text[:PREVIEW_CHARS]) + cut


def iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="seconds")
