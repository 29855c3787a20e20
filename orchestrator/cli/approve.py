"""`baton approve RUN [--reject] --reason R`: decide a run's waiting approval step.

The decision goes to the run's coordinator, which checks it against the step (its inputs) and
records it with who made it (the OS user; the command counts as an admin: it speaks to the bus
itself); this command prints what the log says came of it.
"""

from __future__ import annotations

import argparse
import json

from events.errors import EventParseError
from events.intents import ApprovalDecision, ApprovalValue
from orchestrator.cli.context import open_bus, operator
from orchestrator.cli.errors import UsageError
from orchestrator.cli.projection import one_run
from orchestrator.printable import printable
from orchestrator.service.approvals import decide

WAIT_S = 30.0


def add_approve(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", help="run id or a unique prefix of it")
    p.add_argument("--reject", action="store_true", help="reject instead of approving")
    p.add_argument("--reason", required=True, help="why: recorded with the decision")
    p.add_argument("--task", help="which approval step (when the run waits on several)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                   type=_input, help="a value the step takes (repeatable): text, an alias, "
                   "a number or true/false, as the step declares")
    p.add_argument("--wait", type=float, default=WAIT_S, metavar="S",
                   help=f"how long to wait for the coordinator's answer (default {WAIT_S:g})")
    p.set_defaults(handler=approve)


async def approve(args: argparse.Namespace) -> int:
    row = await one_run(args)
    run_id = row["run_id"]
    if row["status"] != "running":
        raise UsageError(f"run {run_id} is already {row['status']}: nothing waits for a "
                         "decision")
    try:
        decision = ApprovalDecision(
            run_id=run_id, task=args.task, approve=not args.reject, reason=args.reason,
            values=dict(args.input), role="admin",
            audit=operator())
        bus = await open_bus(args)
    except (ValueError, EventParseError) as exc:
        raise UsageError(f"invalid decision: {exc}") from None
    try:
        answer = await decide(bus, decision, args.wait, "baton.cli")
    finally:
        await bus.close()
    if answer is None:
        raise UsageError(f"no coordinator answered within {args.wait:g} s (is `baton up` "
                         "running?); the decision is on the bus and is taken when one reads it")
    if answer.outcome in ("approved", "rejected"):
        print(printable(f"{run_id}: {answer.task} {answer.outcome}"))
        return 0
    raise UsageError(f"the decision was {answer.outcome}: {printable(answer.reason)}")


def _input(text: str) -> tuple[str, ApprovalValue]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. alias=champion)")
    try:
        value = json.loads(raw)
    except ValueError:
        return name, raw
    if isinstance(value, bool | int | float | str):
        return name, value
    return name, raw
