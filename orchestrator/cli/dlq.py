"""`baton dlq list|show|redrive`: what consumers refused, why, and sending it again once fixed.

Works the same on both buses: letters are read from baton.dlq, a re-drive publishes the
original bytes under their key to the partition they came from (a partition group's input
stays in its group), then records the re-drive as one more letter (`DeadLetter.redrive_of`).
Consumers dedupe by event id, so re-driving an input that was in fact applied is harmless.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bus import Bus, Outgoing, Record
from events import topics
from events.dlq import DeadLetter
from orchestrator.cli.context import open_bus
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.cli.printable import printable
from orchestrator.service.reading import read_all

REDRIVER = "baton dlq redrive"
PREVIEW_CHARS = 240


@dataclass(frozen=True)
class Letter:
    """A dead letter as an operator sees it: its place on baton.dlq, and its re-drives."""

    id: str
    time_ms: int
    letter: DeadLetter
    redriven_to: tuple[str, ...] = ()

    def as_json(self, *, whole: bool) -> dict[str, Any]:
        out = {"id": self.id, "time": _iso(self.time_ms), "consumer": self.letter.consumer,
               "from": f"{self.letter.topic}-{self.letter.partition}@{self.letter.offset}",
               "key": self.letter.key, "reason": self.letter.reason,
               "redriven_to": list(self.redriven_to), "preview": preview(self.letter.original())}
        return {**out, "value_b64": self.letter.value_b64} if whole else out


def add_dlq(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ls = sub.add_parser("list", help="dead letters, oldest first")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=dlq_list)
    show = sub.add_parser("show", help="one dead letter: reason, origin, the original bytes")
    show.add_argument("letter", help="its id from 'baton dlq list' (PARTITION@OFFSET)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=dlq_show)
    redrive = sub.add_parser("redrive", help="publish a dead letter's bytes to their topic again")
    redrive.add_argument("letter", help="its id from 'baton dlq list' (PARTITION@OFFSET)")
    redrive.add_argument("--again", action="store_true",
                         help="re-drive a letter that was re-driven before")
    redrive.set_defaults(handler=dlq_redrive)


async def dlq_list(args: argparse.Namespace) -> int:
    found = await _letters(args)
    if args.json:
        print(json.dumps([letter.as_json(whole=False) for letter in found], indent=2))
    elif not found:
        print("no dead letters")
    else:
        for letter in found:
            print(_line(letter))
    return 0


async def dlq_show(args: argparse.Namespace) -> int:
    letter = _one(await _letters(args), args.letter)
    if args.json:
        print(json.dumps(letter.as_json(whole=True), indent=2))
        return 0
    shown = letter.as_json(whole=False)
    for name in ("id", "time", "consumer", "from", "key", "reason"):
        print(f"{name:<9} {printable(str(shown[name]))}")
    print(f"{'redriven':<9} {', '.join(letter.redriven_to) or 'no'}")
    print(f"{'bytes':<9} {len(letter.letter.original())}")
    print(f"{'preview':<9} {shown['preview']}")
    return 0


async def dlq_redrive(args: argparse.Namespace) -> int:
    bus = await open_bus(args)
    try:
        letter = _one(_combined(await _read(bus)), args.letter)
        if letter.redriven_to and not args.again:
            raise UsageError(f"letter {letter.id} was re-driven already (to "
                             f"{', '.join(letter.redriven_to)}); pass --again to send it once more")
        to = await _publish_again(bus, letter)
    finally:
        await bus.close()
    print(f"re-drove letter {letter.id} to {to}")
    return 0


async def _publish_again(bus: Bus, letter: Letter) -> str:
    """The bytes first, then the note: a crash between leaves a re-drive unrecorded, never a
    note of a re-drive that did not happen."""
    dead = letter.letter
    if dead.topic not in topics.ALL_TOPICS or not 0 <= dead.partition < bus.partitions(dead.topic):
        raise UsageError(f"letter {letter.id} came from {dead.topic}-{dead.partition}, "
                         "which this bus does not have")
    (sent,) = await bus.publish([Outgoing(dead.topic, dead.key, dead.original(),
                                          partition=dead.partition)])
    note = dead.redriven(to=(sent.topic, sent.partition, sent.offset),
                         of=f"{topics.DLQ}-{letter.id}", by=REDRIVER)
    await bus.publish([Outgoing(topics.DLQ, dead.key, note.model_dump_json().encode())])
    return sent.where


async def _letters(args: argparse.Namespace) -> list[Letter]:
    bus = await open_bus(args)
    try:
        return _combined(await _read(bus))
    finally:
        await bus.close()


async def _read(bus: Bus) -> list[Record]:
    return await read_all(bus, topics.DLQ, {})


def _combined(records: list[Record]) -> list[Letter]:
    """Letters oldest first; re-drive notes folded into the letters they re-drove (a note of a
    letter the topic no longer holds, past its retention, is shown on its own)."""
    ordered = sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    parsed = [(r, DeadLetter.model_validate_json(r.value)) for r in ordered]
    letters = {f"{r.partition}@{r.offset}": Letter(f"{r.partition}@{r.offset}", r.timestamp_ms,
                                                    dead)
               for r, dead in parsed}
    for r, dead in parsed:
        of = (dead.redrive_of or "").removeprefix(f"{topics.DLQ}-")
        if of in letters:
            del letters[f"{r.partition}@{r.offset}"]  # a note is no letter of its own
            before = letters[of]
            where = f"{dead.topic}-{dead.partition}@{dead.offset}"
            letters[of] = Letter(before.id, before.time_ms, before.letter,
                                 (*before.redriven_to, where))
    return list(letters.values())


def _one(letters: list[Letter], wanted: str) -> Letter:
    for letter in letters:
        if letter.id == wanted:
            return letter
    raise NotFound(f"no dead letter {printable(wanted)!r} (list them with 'baton dlq list'; "
                   "an id is PARTITION@OFFSET)")


def _line(letter: Letter) -> str:
    dead = letter.letter
    redriven = f"  re-driven to {', '.join(letter.redriven_to)}" if letter.redriven_to else ""
    return (f"{letter.id:<8} {_iso(letter.time_ms)}  {dead.consumer:<18} "
            f"{dead.topic}-{dead.partition}@{dead.offset}  {printable(dead.reason)[:120]}"
            f"{redriven}")


def preview(value: bytes) -> str:
    """The start of the bytes as text when they are text, escaped; else as hex."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "hex " + value[:PREVIEW_CHARS // 2].hex() + ("…" if len(value) > 120 else "")
    cut = "…" if len(text) > PREVIEW_CHARS else ""
    return printable(text[:PREVIEW_CHARS]) + cut


def _iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="seconds")
