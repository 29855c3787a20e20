"""`baton backfill PIPELINE --from T1 --to T2`: run a pipeline for a stretch of the past, over
a schedule's slots or over the events its triggers would have taken; and `baton backfills
list|show|pause|resume|cancel`: a backfill as the entity it is, with its progress.

The plan is made here, from the log and the projection (what already ran is left out, a dry
run says why each item is in or out); the pipeline's router runs it at most `--max-concurrent`
at a time, below live work's priority.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import datetime
from typing import Any

from events.backfills import BackfillCommand, BackfillCommandKind, BackfillRefused
from events.cloudevents import decode_record
from events.envelope import Envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.topics import TRIGGERS
from orchestrator.cli.context import open_bus, operator
from orchestrator.cli.errors import Failed, NotFound, UsageError
from orchestrator.cli.options import instant, key_values
from orchestrator.cli.projection import caught_up_projection, pipeline_spec
from orchestrator.cli.router_answers import ANSWER_WAIT_S, reported
from orchestrator.core.backfill_plan import (
    Planned,
    event_plan,
    request_envelopes,
    requests,
    slot_plan,
)
from orchestrator.core.backfills import public
from orchestrator.core.schedule_slots import iso
from orchestrator.printable import printable
from orchestrator.service.reading import read_all
from orchestrator.service.router_commands import commanded, plan_taken, router_record, told
from orchestrator.store import queries
from orchestrator.store.projections import connect

SHOWN = 50
"""Items a dry run lists one by one; the rest are counted."""


def add_backfill(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline")
    p.add_argument("--from", dest="start", type=instant, required=True, metavar="T1",
                   help="the first slot or event time (ISO 8601)")
    p.add_argument("--to", dest="end", type=instant, required=True, metavar="T2",
                   help="the last slot or event time (ISO 8601)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--schedule", metavar="NAME",
                        help="over this schedule's slots (default: the pipeline's only one)")
    source.add_argument("--events", action="store_true",
                        help="over the data-arrival and drift events of the log, through the "
                             "pipeline's trigger definition (default when it has no schedule)")
    p.add_argument("--max-concurrent", type=int, default=1, metavar="N",
                   help="runs of the backfill at once (default 1)")
    p.add_argument("--priority", type=int, default=-10,
                   help="its runs' priority (default -10: below live work's 0)")
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="a parameter for every run (repeatable)")
    p.add_argument("--rerun", action="store_true",
                   help="run slots or events that already ran, again")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run and why, and what would not and why; run nothing")
    p.add_argument("--pipeline-ref", metavar="REF",
                   help="the pipeline's definition ('package.module:name' or file.yaml; default: "
                        "its latest version that ran)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backfill)


def add_backfills(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ls = sub.add_parser("list", help="backfills, newest first, with their progress")
    ls.add_argument("--pipeline")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=backfills_list)
    show = sub.add_parser("show", help="one backfill's progress")
    show.add_argument("backfill_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=backfills_show)
    for name, what in (("pause", "start no more of its runs (the running go on)"),
                       ("resume", "start its runs again"),
                       ("cancel", "drop what has not started and cancel what runs")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("backfill_id")
        cmd.add_argument("--reason", default="")
        cmd.set_defaults(handler=backfills_command, kind=name)


# -- planning and starting ---------------------------------------------------------------------

async def backfill(args: argparse.Namespace) -> int:
    if args.end < args.start:
        raise UsageError(f"--to {args.end.isoformat()} is before --from "
                         f"{args.start.isoformat()}: give the earlier time first")
    if args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent {args.max_concurrent}: give 1 or more")
    params = key_values(args.param)
    conn = await connect(await caught_up_projection(args))
    try:
        spec = await pipeline_spec(conn, args)
        ran = await queries.ran_by_trigger(conn, spec.name)
    finally:
        await conn.close()
    backfill_id = f"bf-{uuid.uuid4().hex[:12]}"
    start, end = args.start.timestamp(), args.end.timestamp()
    if args.events or not spec.schedules:
        plan = event_plan(spec, await _events(args), start, end, ran, backfill_id,
                          rerun=args.rerun)
        what = f"the events of {_span(args)} through {spec.name}'s triggers"
    else:
        schedule = _schedule(spec, args.schedule)
        plan = slot_plan(spec, schedule, start, end, ran, backfill_id, rerun=args.rerun)
        what = f"schedule {schedule.name}'s slots of {_span(args)}"
    runs = [p for p in plan if p.runs]
    if args.dry_run or not runs:
        _print_plan(args, what, plan)
        if not runs and not args.dry_run:
            raise Failed(f"nothing to backfill in {what} (see the reasons above)")
        return 0
    audit = operator()
    reqs = requests(spec.name, backfill_id, plan, max_concurrent=args.max_concurrent,
                    priority=args.priority, params=params,
                    description=f"{what}: {len(runs)} runs", audit=audit)
    records = [router_record(env.data, spec.name, env.id)[1]
               for env in request_envelopes(reqs, time.time())]
    bus = await open_bus(args)
    try:
        answered = await told(bus, records, plan_taken(backfill_id, len(reqs)), ANSWER_WAIT_S)
    finally:
        await bus.close()
    if answered is not None and isinstance(answered.answer, BackfillRefused):
        raise Failed(f"backfill refused: {answered.answer.reason}")
    said = {"backfill_id": backfill_id, "pipeline": spec.name, "runs": len(runs),
            "skipped": len(plan) - len(runs), "taken": answered is not None}
    if args.json:
        print(json.dumps(said))
    else:
        print(printable(f"backfill {backfill_id}: {len(runs)} runs of {spec.name} over {what}, "
                        f"{args.max_concurrent} at a time ({len(plan) - len(runs)} left out; "
                        "--dry-run says why)"))
        print(f"follow it: baton backfills show {backfill_id}" if answered is not None else
              f"no router answered within {ANSWER_WAIT_S:g}s (is 'baton up' running?): it "
              "starts when one reads it")
    return 0


def _schedule(spec: PipelineSpec, name: str | None) -> Any:
    if name is not None:
        found = spec.schedule(name)
        if found is None:
            raise UsageError(f"pipeline {spec.name!r} has no schedule {name!r} (its schedules: "
                             f"{', '.join(s.name for s in spec.schedules)})")
        return found
    if len(spec.schedules) > 1:
        raise UsageError(f"pipeline {spec.name!r} has several schedules "
                         f"({', '.join(s.name for s in spec.schedules)}): name one with "
                         "--schedule, or backfill over events with --events")
    return spec.schedules[0]


async def _events(args: argparse.Namespace) -> list[Envelope[Payload]]:
    """Every trigger event on baton.triggers (what the fan-out would decode; what it
    dead-letters is never a trigger)."""
    bus = await open_bus(args)
    try:
        records = await read_all(bus, TRIGGERS, {})
    finally:
        await bus.close()
    events: list[Envelope[Payload]] = []
    for record in records:
        try:
            events.append(decode_record(record.value, record.headers,
                                        timestamp_ms=record.timestamp_ms))
        except EventParseError:
            continue
    return events


def _print_plan(args: argparse.Namespace, what: str, plan: list[Planned]) -> None:
    runs = [p for p in plan if p.runs]
    if args.json:
        print(json.dumps({"what": what, "runs": len(runs), "left_out": len(plan) - len(runs),
                          "plan": [p.doc() for p in plan]}, indent=2))
        return
    print(printable(f"{what}: {len(runs)} would run, {len(plan) - len(runs)} left out"))
    for p in plan[:SHOWN]:
        mark = "run " if p.runs else "skip"
        print(printable(f"  {mark} {iso(p.at)}  {p.key}  {p.why}"))
    if len(plan) > SHOWN:
        print(f"  ... and {len(plan) - SHOWN} more (--json lists them all)")


def _span(args: argparse.Namespace) -> str:
    return f"{_short(args.start)} to {_short(args.end)}"


def _short(at: datetime) -> str:
    return iso(at.timestamp())


# -- the entity ----------------------------------------------------------------------------------

async def backfills_list(args: argparse.Namespace) -> int:
    conn = await connect(await caught_up_projection(args))
    try:
        items = await queries.backfills(conn, args.pipeline)
    finally:
        await conn.close()
    if args.json:
        print(json.dumps([public(b) for b in items], indent=2))
        return 0
    if not items:
        print("no backfills yet (start one: baton backfill PIPELINE --from T1 --to T2)")
        return 0
    for b in items:
        print(printable(_line(b)))
    return 0


async def backfills_show(args: argparse.Namespace) -> int:
    doc = await _one(args)
    if args.json:
        print(json.dumps(public(doc), indent=2))
        return 0
    print(printable(_line(doc)))
    print(printable(f"  {doc['description']}"))
    print(printable(f"  requested by {doc['requested_by'] or '?'}; {doc['max_concurrent']} at a "
                    f"time, priority {doc['priority']}"))
    if doc["running"]:
        print(printable(f"  running: {', '.join(doc['running'])}"))
    return 0


async def backfills_command(args: argparse.Namespace) -> int:
    doc = await _one(args)
    kind: BackfillCommandKind = args.kind
    command = BackfillCommand(backfill_id=args.backfill_id, pipeline=doc["pipeline"],
                              command=kind, reason=args.reason,
                              audit=operator())
    bus = await open_bus(args)
    try:
        answered = await commanded(bus, command, f"backfill-command-{uuid.uuid4().hex}",
                                   ANSWER_WAIT_S)
    finally:
        await bus.close()
    return reported(answered, f"{kind} {args.backfill_id}")


async def _one(args: argparse.Namespace) -> dict[str, Any]:
    conn = await connect(await caught_up_projection(args))
    try:
        found = await queries.backfills(conn, backfill_id=args.backfill_id)
    finally:
        await conn.close()
    if not found:
        raise NotFound(f"no backfill {args.backfill_id!r} (list them with 'baton backfills "
                       "list')")
    return found[0]


def _line(b: dict[str, Any]) -> str:
    total = b["total"] or 1
    filled = round(20 * b["done"] / total)
    bar = "#" * filled + "." * (20 - filled)
    return (f"{b['backfill_id']}  {b['pipeline']:<16} {b['status']:<10} [{bar}] "
            f"{b['done']}/{b['total']} (succeeded {b['succeeded']}, failed {b['failed']}, "
            f"cancelled {b['cancelled']}, running {len(b['running'])})")
