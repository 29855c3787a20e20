"""Subcommands that read: runs, models, watch, replay, pipelines (schema: schema.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid

from events import topics
from events.intents import RunCancelRequested
from events.triggers import Escalated, EscalationAcknowledged
from orchestrator.cli.context import home_of, open_bus, send_intent
from orchestrator.cli.errors import UsageError
from orchestrator.cli.projection import caught_up_projection, one_run
from orchestrator.cli.render import event_line, run_detail, runs_table
from orchestrator.pipelines.loader import load_all
from orchestrator.service.follow import follow
from orchestrator.store.projections import connect, list_runs
from orchestrator.store.verify import verify

# -- queries --------------------------------------------------------------------------------

def add_runs(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ls = sub.add_parser("list", help="recent runs, newest first")
    ls.add_argument("--status", choices=["running", "succeeded", "failed", "cancelled"])
    ls.add_argument("--pipeline")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=runs_list)
    show = sub.add_parser("show", help="one run, task by task")
    show.add_argument("run_id", help="run id or a unique prefix of it")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=runs_show)
    cancel = sub.add_parser("cancel", help="cancel a run; its running tasks are stopped")
    cancel.add_argument("run_id", help="run id or a unique prefix of it")
    cancel.add_argument("--reason", default="cancelled by user")
    cancel.set_defaults(handler=runs_cancel)


async def runs_list(args: argparse.Namespace) -> int:
    conn = await connect(await caught_up_projection(args))
    try:
        rows = await list_runs(conn, status=args.status, pipeline=args.pipeline, limit=args.limit)
    finally:
        await conn.close()
    print(json.dumps(rows, indent=2) if args.json else runs_table(rows))
    return 0


async def runs_show(args: argparse.Namespace) -> int:
    row = await one_run(args)
    print(json.dumps(row, indent=2) if args.json else run_detail(row))
    return 0


async def runs_cancel(args: argparse.Namespace) -> int:
    row = await one_run(args)
    run_id = row["run_id"]
    if row["status"] != "running":
        raise UsageError(f"run {run_id} is already {row['status']}; nothing to cancel")
    request = RunCancelRequested(run_id=run_id, reason=args.reason)
    await send_intent(args, request, f"{run_id}/cancel/{uuid.uuid4()}", correlation=None)
    print(f"cancel requested for {run_id}")
    return 0


def add_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-start", action="store_true", help="replay history first")
    p.set_defaults(handler=watch)


async def watch(args: argparse.Namespace) -> int:
    bus = await open_bus(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("watching run events and escalations (Ctrl-C to stop)", file=sys.stderr, flush=True)
    lines: asyncio.Queue[str] = asyncio.Queue()

    async def pump(topic: str) -> None:
        async for env in follow(bus, from_start=args.from_start, stop=stop, topic=topic):
            if topic == topics.RUNS or isinstance(env.data, Escalated | EscalationAcknowledged):
                line = event_line(env)
                if line:
                    lines.put_nowait(line)

    pumps = [asyncio.create_task(pump(t)) for t in (topics.RUNS, topics.TRIGGER_LOG)]
    stopped = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            got = asyncio.create_task(lines.get())
            await asyncio.wait([got, stopped, *pumps], return_when=asyncio.FIRST_COMPLETED)
            for done in pumps:
                error = done.exception() if done.done() else None
                if error is not None:
                    raise error
            if got.done():
                print(got.result(), flush=True)
            else:
                got.cancel()
    finally:
        stopped.cancel()
        for pumping in pumps:
            pumping.cancel()
        await bus.close()
    return 0


def add_replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify", action="store_true", required=True,
                   help="compare the state rebuilt from the log with the stored projection")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=replay)


async def replay(args: argparse.Namespace) -> int:
    bus = await open_bus(args)
    try:
        result = await verify(bus, home_of(args).projections, time.time())
    finally:
        await bus.close()
    if args.json:
        print(json.dumps({"ok": result.ok, "runs": result.runs, "events": result.events,
                          "differences": result.differences}))
    else:
        print(f"replayed {result.events} events, {result.runs} runs: "
              f"{'no differences' if result.ok else f'{len(result.differences)} difference(s)'}")
        for line in result.differences:
            print(f"  {line}")
    return 0 if result.ok else 1


def add_pipelines(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    v = sub.add_parser("validate", help="check pipeline definitions and print their versions")
    v.add_argument("refs", nargs="+", metavar="REF")
    v.set_defaults(handler=pipelines_validate)


async def pipelines_validate(args: argparse.Namespace) -> int:
    for name, spec in load_all(args.refs).items():
        tasks = " -> ".join(t.name for t in spec.tasks)
        print(f"{name} (version {spec.version()}): {tasks}")
    return 0
