"""Subcommands that put events on the bus: publish, run, monitor.

Each builds its event with the contract's models and checks its bytes with the consumers' own
decode (`events.codec.checked`) before opening the bus: what the bus would refuse is a usage
error naming the flag (exit 2), and nothing is published.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from events.codec import payload
from events.intents import RunRequested
from events.pipeline import PipelineSpec
from events.triggers import DataArrived, DriftDetected, TriggerInfo
from orchestrator.bus import Bus, Outgoing
from orchestrator.cli.context import caught_up_projection, intent_value, open_bus, publish_intent
from orchestrator.cli.errors import Failed, NotFound, UsageError
from orchestrator.cli.given import Given, param_flag
from orchestrator.cli.options import file_facts, key_values
from orchestrator.cli.printable import printable
from orchestrator.cli.scheduling import add_priority_flag, positive_seconds
from orchestrator.core.ids import run_id_for
from orchestrator.monitor.check import (
    DriftCheck,
    drift_record,
    path_of,
    run_check,
    training_data_uri,
)
from orchestrator.pipelines.loader import DEFAULT_PIPELINES, load_all
from orchestrator.service.run_requests import (
    Answer,
    Conflicting,
    Refused,
    Sent,
    Taken,
    answer_within,
    ends,
    request_id,
    where_answers_appear,
)
from orchestrator.service.triggers import trigger_record
from orchestrator.store.projections import connect, list_models

# -- publish / run --------------------------------------------------------------------------

def add_publish(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, parser_class=type(p))
    da = sub.add_parser("data-arrived", help="a new version of a dataset is available")
    da.add_argument("--dataset", required=True)
    da.add_argument("--version", required=True, dest="dataset_version")
    da.add_argument("--uri", required=True, help="file path or URI of the data")
    da.add_argument("--event-id", help="idempotency: the same id never starts a second run "
                                       "(never collides with a `baton run --idempotency-key`)")
    da.set_defaults(handler=publish_data_arrived)
    dr = sub.add_parser("drift", help="publish a drift event by hand (or: baton monitor drift)")
    dr.add_argument("--model", required=True)
    dr.add_argument("--dataset", required=True)
    dr.add_argument("--dataset-version", required=True)
    dr.add_argument("--dataset-uri", required=True)
    dr.add_argument("--score", type=float, required=True)
    dr.add_argument("--threshold", type=float, required=True)
    dr.add_argument("--method", choices=["psi", "ks"], default="psi")
    dr.add_argument("--event-id")
    dr.set_defaults(handler=publish_drift_event)


async def publish_data_arrived(args: argparse.Namespace) -> int:
    given = Given("the data_arrived event", {
        "id": "--event-id", "subject": "--dataset", "data.dataset": "--dataset",
        "data.version": "--version", "data.uri": "--uri",
    }, {"--event-id": args.event_id, "--dataset": args.dataset,
        "--version": args.dataset_version, "--uri": args.uri})
    with given.checking():
        uri, sha, size = file_facts(args.uri, "--uri")
        event = payload(DataArrived, dataset=args.dataset, version=args.dataset_version,
                        uri=uri, sha256=sha, size=size)
        env, record = trigger_record(event, event_id=args.event_id)
    await _publish(args, record)
    print(printable(f"published data_arrived {env.id} for {args.dataset} "
                    f"{args.dataset_version}"))
    return 0


async def publish_drift_event(args: argparse.Namespace) -> int:
    given = Given("the drift_detected event", {
        "id": "--event-id", "subject": "--model", "data.model": "--model",
        "data.dataset": "--dataset", "data.dataset_version": "--dataset-version",
        "data.dataset_uri": "--dataset-uri", "data.score": "--score",
        "data.threshold": "--threshold",
    }, {"--event-id": args.event_id, "--model": args.model, "--dataset": args.dataset,
        "--dataset-version": args.dataset_version, "--dataset-uri": args.dataset_uri,
        "--score": args.score, "--threshold": args.threshold})
    with given.checking():
        uri, sha, _ = file_facts(args.dataset_uri, "--dataset-uri")
        event = payload(DriftDetected, model=args.model, dataset=args.dataset,
                        dataset_version=args.dataset_version, dataset_uri=uri,
                        dataset_sha256=sha, method=args.method, threshold=args.threshold,
                        score=args.score)
        env, record = trigger_record(event, event_id=args.event_id)
    await _publish(args, record)
    print(printable(f"published drift_detected {env.id} for model {args.model}"))
    return 0


async def _publish(args: argparse.Namespace, record: Outgoing) -> None:
    bus = await open_bus(args, create=True)
    try:
        await bus.publish([record])
    finally:
        await bus.close()


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
    """Positions are taken before publishing, so the coordinator's answer cannot be missed."""
    positions = await ends(bus, where_answers_appear(bus, run_id))
    record = await publish_intent(bus, run_id, value)
    if not args.no_wait:
        sent = Sent(run_id, event_id, record.partition, record.offset)
        said(await answer_within(bus, sent, positions, args.wait), run_id, args.wait)
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


def add_monitor(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="monitor", required=True, parser_class=type(p))
    d = sub.add_parser("drift", help="compare a batch with a model's training data")
    d.add_argument("--model", required=True)
    d.add_argument("--batch", required=True, help=".npz (array X) or .npy of new data")
    d.add_argument("--reference", help="training data (default: from the model's lineage)")
    d.add_argument("--method", choices=["psi", "ks"], default="psi")
    d.add_argument("--threshold", type=float, default=0.2)
    d.add_argument("--retrain-on", help="dataset the retraining run should use (default: batch)")
    d.add_argument("--retrain-version", help="version name of that dataset")
    d.add_argument("--dry-run", action="store_true", help="report only, publish nothing")
    d.set_defaults(handler=monitor_drift)


async def monitor_drift(args: argparse.Namespace) -> int:
    conn = await connect(await caught_up_projection(args))
    try:
        versions = [m for m in await list_models(conn) if m["model"] == args.model]
    finally:
        await conn.close()
    if not versions:
        raise NotFound(f"no registered model {args.model!r} (see 'baton models')")
    model = versions[-1]
    reference = Path(args.reference) if args.reference else path_of(training_data_uri(model))
    retrain = None if args.retrain_on is None else file_facts(args.retrain_on, "--retrain-on")[0]
    check = DriftCheck(model=model, reference=reference, batch=Path(args.batch),
                       method=args.method, threshold=args.threshold, retrain_uri=retrain,
                       retrain_version=args.retrain_version)
    given = Given("the drift_detected event", {
        "data.dataset_version": "--retrain-version", "data.dataset_uri": "--retrain-on",
        "data.threshold": "--threshold",
    }, {"--retrain-version": args.retrain_version, "--retrain-on": args.retrain_on,
        "--threshold": args.threshold})
    with given.checking():
        report, event = run_check(check)
        record = None if event is None else drift_record(event)
    top = ", ".join(f"{k}={v:.3f}" for k, v in report.top(5))
    print(f"{args.method} drift: {len(report.drifted_features)}/{len(report.scores)} features "
          f"over {args.threshold}; max {report.max_score:.3f} ({top})")
    if record is None or args.dry_run:
        print("no drift event published" + (" (dry run)" if args.dry_run else ""))
        return 0
    env, outgoing = record
    await _publish(args, outgoing)
    print(f"published drift_detected {env.id} for {args.model} v{model['version']}")
    return 0
