"""`baton dlq list|show|redrive`: what consumers refused, why, and sending it again once fixed
(orchestrator/service/letters.py reads and re-drives them, for the API too)."""

from __future__ import annotations

import argparse
import json

from orchestrator.cli.context import open_bus
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.printable import printable
from orchestrator.service.letters import CannotRedrive, Letter, iso, letters, redrive

REDRIVER = "baton dlq redrive"


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
        letter = _one(await letters(bus), args.letter)
        if letter.redriven_to and not args.again:
            raise UsageError(f"letter {letter.id} was re-driven already (to "
                             f"{', '.join(letter.redriven_to)}); pass --again to send it once more")
        try:
            sent = await redrive(bus, letter, by=REDRIVER)
        except CannotRedrive as exc:
            raise UsageError(str(exc)) from None
    finally:
        await bus.close()
    print(f"re-drove letter {letter.id} to {sent.where}")
    return 0


async def _letters(args: argparse.Namespace) -> list[Letter]:
    bus = await open_bus(args)
    try:
        return await letters(bus)
    finally:
        await bus.close()


def _one(letters: list[Letter], wanted: str) -> Letter:
    for letter in letters:
        if letter.id == wanted:
            return letter
    raise NotFound(f"no dead letter {printable(wanted)!r} (list them with 'baton dlq list'; "
                   "an id is PARTITION@OFFSET)")


def _line(letter: Letter) -> str:
    dead = letter.letter
    redriven = f"  re-driven to {', '.join(letter.redriven_to)}" if letter.redriven_to else ""
    return (f"{letter.id:<8} {iso(letter.time_ms)}  {dead.consumer:<18} "
            f"{dead.topic}-{dead.partition}@{dead.offset}  {printable(dead.reason)[:120]}"
            f"{redriven}")
