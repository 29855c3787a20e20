"""`baton schedules list|pause|resume|trigger-now`: where each schedule stands, and commands
to it, which its pipeline's router applies (or refuses, saying why) and records."""

from __future__ import annotations

import argparse
import json
import uuid

from events.schedules import ScheduleCommand, ScheduleCommandKind
from orchestrator.cli.context import open_bus, operator
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.cli.projection import caught_up_projection
from orchestrator.cli.router_answers import ANSWER_WAIT_S, reported
from orchestrator.printable import printable
from orchestrator.service.router_commands import commanded, router_record
from orchestrator.store import queries
from orchestrator.store.projections import connect


def add_schedules(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ls = sub.add_parser("list", help="every schedule: its next slot, last fired slot, policy")
    ls.add_argument("--pipeline")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=schedules_list)
    for name, kind, what in (("pause", "pause", "no slot fires until resumed"),
                             ("resume", "resume", "slots fire again (those passed while "
                              "paused are recorded skipped, never run)"),
                             ("trigger-now", "trigger_now", "start a run now, off the "
                              "schedule's clock (the overlap policy applies)")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("pipeline")
        cmd.add_argument("schedule", nargs="?",
                         help="which of the pipeline's schedules (default: its only one)")
        cmd.add_argument("--reason", default="", help="recorded with the command")
        if kind == "trigger_now":
            cmd.add_argument("--allow-overlap", action="store_true",
                             help="start even while a run of the schedule is going")
        cmd.add_argument("--no-wait", action="store_true",
                         help="publish the command and return, without waiting for the "
                              "router's answer")
        cmd.set_defaults(handler=schedules_command, kind=kind)


async def schedules_list(args: argparse.Namespace) -> int:
    conn = await connect(await caught_up_projection(args))
    try:
        items = await queries.schedules(conn, args.pipeline)
    finally:
        await conn.close()
    for item in items:
        item.pop("paused_by", None)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no schedules yet (declare one on a pipeline: schedules: [{cron: '0 3 * * *', "
              "timezone: Europe/Berlin}], and run it with baton up)")
        return 0
    for s in items:
        state = "paused" if s["paused"] else f"next {s['next_slot'] or 'none (ended)'}"
        running = f", running {', '.join(s['running'])}" if s["running"] else ""
        waiting = f", {len(s['buffered'])} buffered" if s["buffered"] else ""
        print(printable(f"{s['pipeline']}/{s['schedule']:<12} {s['when']:<32} {state}; last "
                        f"fired {s['last_fired'] or 'never'}; overlap {s['overlap']}, catch-up "
                        f"{s['catchup']['policy']}; fired {s['fired']}, skipped "
                        f"{s['skipped']}{running}{waiting}"))
    return 0


async def schedules_command(args: argparse.Namespace) -> int:
    name = args.schedule or await _only_schedule(args)
    kind: ScheduleCommandKind = args.kind
    command = ScheduleCommand(
        pipeline=args.pipeline, schedule=name, command=kind, reason=args.reason,
        allow_overlap=bool(getattr(args, "allow_overlap", False)),
        audit=operator())
    event_id = f"schedule-command-{uuid.uuid4().hex}"
    bus = await open_bus(args)
    try:
        if args.no_wait:
            await bus.append([router_record(command, command.pipeline, event_id)[1]])
            print(f"published {kind} for {args.pipeline}/{name} ({event_id})")
            return 0
        answered = await commanded(bus, command, event_id, ANSWER_WAIT_S)
    finally:
        await bus.close()
    return reported(answered, f"{kind} {args.pipeline}/{name}")


async def _only_schedule(args: argparse.Namespace) -> str:
    conn = await connect(await caught_up_projection(args))
    try:
        items = await queries.schedules(conn, args.pipeline)
    finally:
        await conn.close()
    names = [s["schedule"] for s in items]
    if not names:
        raise NotFound(f"pipeline {args.pipeline!r} has no schedule the router keeps (list "
                       "them with 'baton schedules list')")
    if len(names) > 1:
        raise UsageError(f"pipeline {args.pipeline!r} has several schedules "
                         f"({', '.join(names)}): name one, e.g. 'baton schedules "
                         f"{args.action} {args.pipeline} {names[0]}'")
    return str(names[0])
