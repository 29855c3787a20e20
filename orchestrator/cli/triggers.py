"""`baton triggers list|explain|ack`: what the trigger router decided, why a run started, and
acknowledging an escalation (automatic retraining stopped) so retraining goes on."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from events.triggers import AcknowledgeEscalation
from orchestrator import explain
from orchestrator.cli.context import open_bus, operator
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.cli.projection import caught_up_projection, pipeline_spec
from orchestrator.cli.router_answers import ANSWER_WAIT_S, reported
from orchestrator.printable import printable
from orchestrator.service.router import restore_router
from orchestrator.service.router_commands import commanded
from orchestrator.store import queries
from orchestrator.store.projections import connect, find_run


def add_triggers(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ls = sub.add_parser("list", help="the router's decisions, newest first")
    ls.add_argument("--pipeline")
    ls.add_argument("--outcome", choices=["accepted", "ignored", "waiting", "buffered",
                                          "passed", "escalated", "command"])
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=triggers_list)
    ex = sub.add_parser("explain", help="why a run started, or what a trigger event did")
    ex.add_argument("id", metavar="RUN_OR_EVENT",
                    help="a run id (or a unique prefix of it), or a trigger event id")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(handler=triggers_explain)
    show = sub.add_parser("show", help="where each of a pipeline's triggers stands: partial "
                                       "and waiting matches, cooldowns, escalations")
    show.add_argument("pipeline")
    show.add_argument("--pipeline-ref", metavar="REF",
                      help="its definition ('package.module:name' or file.yaml; default: its "
                           "latest version that ran)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=triggers_show)
    ack = sub.add_parser("ack", help="acknowledge an escalation: automatic retraining of the "
                                     "model goes on")
    ack.add_argument("pipeline")
    ack.add_argument("--model", required=True)
    ack.add_argument("--reason", default="")
    ack.set_defaults(handler=triggers_ack)


async def triggers_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give how many decisions to list, above 0")
    conn = await connect(await caught_up_projection(args))
    try:
        items, _ = await queries.triggers_page(conn, args.pipeline, args.outcome, None,
                                               args.limit)
    finally:
        await conn.close()
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no trigger decisions yet (publish one: baton publish data-arrived --help)")
        return 0
    for d in items:
        at = datetime.fromtimestamp(float(d["time"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        said = _said(d)
        print(printable(f"{at}  {d['pipeline']:<16} {d['trigger_type']:<15} "
                        f"{d['trigger_event_id']}  {said}"))
    return 0


def _said(d: dict[str, Any]) -> str:
    """One decision of the feed in a few words."""
    detail = f" ({d['detail']})" if d.get("detail") else ""
    if d["outcome"] == "accepted":
        return f"started {d['run_id']}"
    if d["outcome"] == "ignored":
        return f"ignored: {explain.REASONS.get(d['reason'], d['reason'])}{detail}"
    return f"{d['outcome']}: {d.get('reason', '')}{detail}"


async def triggers_explain(args: argparse.Namespace) -> int:
    conn = await connect(await caught_up_projection(args))
    try:
        runs = await find_run(conn, args.id)
        if len(runs) > 1:
            raise UsageError(f"{args.id!r} matches {len(runs)} runs; give more of the id")
        if runs:
            run = runs[0]
            found = explain.of_run(run, await queries.trigger_decisions(
                conn, run["trigger_event_id"]))
        else:
            decisions = await queries.trigger_decisions(conn, args.id)
            if not decisions:
                raise NotFound(f"no run and no trigger decision {args.id!r} (list them with "
                               "'baton runs list' and 'baton triggers list')")
            found = explain.of_event(args.id, decisions)
    finally:
        await conn.close()
    lines = [json.dumps(found, indent=2)] if args.json else [
        printable(line) for line in str(found["text"]).splitlines()]
    print("\n".join(lines))
    return 0


async def triggers_ack(args: argparse.Namespace) -> int:
    command = AcknowledgeEscalation(pipeline=args.pipeline, model=args.model,
                                    reason=args.reason, audit=operator())
    bus = await open_bus(args)
    try:
        answered = await commanded(bus, command, f"ack-{uuid.uuid4().hex}", ANSWER_WAIT_S)
    finally:
        await bus.close()
    return reported(answered, f"acknowledge {args.pipeline} --model {args.model}")


async def triggers_show(args: argparse.Namespace) -> int:
    conn = await connect(await caught_up_projection(args))
    try:
        spec = await pipeline_spec(conn, args)
    finally:
        await conn.close()
    bus = await open_bus(args)
    try:
        state = await restore_router(bus)
    finally:
        await bus.close()
    doc = explain.of_pipeline(spec, state.of(spec.name), time.time())
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(printable(doc["text"]))
    return 0
