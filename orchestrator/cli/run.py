"""`baton run PIPELINE`: request a manual run, and wait for a coordinator to create it.

The request is checked as the coordinator will decode it (`events.codec.checked`) before the
bus is opened: what the bus would refuse is a usage error naming the flag (exit 2), and nothing
is published.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from bus import Bus
from events.codec import payload
from events.intents import RunRequested
from events.pipeline import PipelineSpec
from events.triggers import TriggerInfo
from orchestrator.cli.context import open_bus
from orchestrator.cli.errors import Failed, UsageError
from orchestrator.cli.given import Given, param_flag
from orchestrator.cli.options import file_facts, key_values
from orchestrator.cli.scheduling import add_priority_flag, positive_seconds
from orchestrator.core.ids import run_id_for
from orchestrator.pipelines.loader import DEFAULT_PIPELINES, load_all
from orchestrator.printable import printable
from orchestrator.service.run_requests import (
    Answer,
    Conflicting,
    Refused,
    Taken,
    intent_value,
    published,
    request_id,
)

DEFAULT_WAIT_S = 30.0


def add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline name")
    p.add_argument("--pipeline-ref", action="append", metavar="REF",
                   help="where the pipeline is declared (default: the digits example)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--uri", help="data for the run (passed to tasks as trigger payload 'uri')")
    p.add_argument("--idempotency-key",
                   help="the same key never starts a second run; reused for a different "
                        "request it is refused (exit 2). Never collides with trigger event ids")
    add_priority_flag(p)
    waiting = p.add_mutually_exclusive_group()
    waiting.add_argument("--wait", type=positive_seconds, default=DEFAULT_WAIT_S,
                         metavar="SECONDS",
                         help="how long to wait for a coordinator to create the run before "
                              f"giving up with exit 1 (default {DEFAULT_WAIT_S:g})")
    waiting.add_argument("--no-wait", action="store_true",
                         help="print the run id once the request is on the bus, without "
                              "waiting for the run to exist")
    p.set_defaults(handler=run_manual)


async def run_manual(args: argparse.Namespace) -> int:
    """Checks the request as the coordinator will, publishes it, then (unless --no-wait) waits
    for the coordinator's answer on the bus: the run id is printed once the run exists."""
    specs = load_all(args.pipeline_ref or list(DEFAULT_PIPELINES))
    if args.pipeline not in specs:
        raise UsageError(f"unknown pipeline {args.pipeline!r}; known: {', '.join(specs)}")
    params = key_values(args.param)
    given = Given("the run request", {
        "correlation_id": "--idempotency-key", "data.trigger.event_id": "--idempotency-key",
        "data.idempotency_key": "--idempotency-key", "data.trigger.payload.uri": "--uri",
        "data.priority": "--priority",
        **{f"data.params.{key}": param_flag(key) for key in params},
    }, {"--idempotency-key": args.idempotency_key, "--uri": args.uri,
        **{param_flag(key): value for key, value in params.items()}})
    with given.checking():
        request = _run_request(args, specs[args.pipeline], params)
        event_id = request_id(request.run_id)
        value = intent_value(request, event_id, correlation=request.idempotency_key)
    bus = await open_bus(args, create=True)
    try:
        return await _requested(args, bus, request.run_id, event_id, value)
    finally:
        await bus.close()


def _run_request(args: argparse.Namespace, spec: PipelineSpec,
                 params: dict[str, Any]) -> RunRequested:
    """The key is validated (as the trigger's event id) before the run id is derived from it,
    in the idempotency-key namespace: a trigger with the same event id is another run.

    Only an absent --idempotency-key means "make one up"; an empty one is refused.
    """
    key = str(uuid.uuid4()) if args.idempotency_key is None else args.idempotency_key
    data = {} if args.uri is None else {"uri": file_facts(args.uri, "--uri")[0]}
    trigger = payload(TriggerInfo, "data.trigger", type="manual", event_id=key,
                      subject=args.pipeline, payload=data)
    run_id = run_id_for(args.pipeline, "idempotency_key", trigger.event_id)
    return payload(RunRequested, run_id=run_id, spec=spec, trigger=trigger, params=params,
                   priority=args.priority, idempotency_key=key)


async def _requested(args: argparse.Namespace, bus: Bus, run_id: str, event_id: str,
                     value: bytes) -> int:
    answer = await published(bus, run_id, event_id, value, None if args.no_wait else args.wait)
    if not args.no_wait:
        said(answer, run_id, args.wait)
    print(run_id)
    return 0


def said(answer: Answer | None, run_id: str, wait_s: float) -> None:
    """Nothing when the run exists; otherwise the one line saying what happened: exit 2 for a
    key reused for a different request (the flags are wrong), exit 1 for the rest."""
    if isinstance(answer, Taken):
        if answer.existed:
            sys.stderr.write(f"baton run: {run_id} already existed (same --idempotency-key); "
                             "nothing new was started\n")
        return
    if isinstance(answer, Conflicting):
        raise UsageError(f"{printable(answer.reason)}; nothing new was started (a different "
                         "request needs its own --idempotency-key)")
    if isinstance(answer, Refused):
        raise Failed(f"the run request for {run_id} was refused and dead-lettered by "
                     f"{answer.consumer}: {printable(answer.reason)} (see 'baton dlq list')")
    raise Failed(f"the request for {run_id} is on the bus, but no coordinator has taken it "
                 f"within {wait_s:g} s (is `baton up` running?); the run starts when one reads "
                 "it, or pass --wait SECONDS to wait longer")
