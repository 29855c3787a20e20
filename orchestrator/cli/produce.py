"""Subcommands that put events on the bus: publish, run, monitor."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from events.intents import RunRequested
from events.triggers import DataArrived, TriggerInfo
from orchestrator.cli.context import caught_up_projection, open_bus, send_intent
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.cli.options import file_facts, key_values
from orchestrator.cli.scheduling import add_priority_flag
from orchestrator.core.ids import run_id_for
from orchestrator.monitor.check import (
    DriftCheck,
    path_of,
    publish_drift,
    run_check,
    training_data_uri,
)
from orchestrator.pipelines.loader import DEFAULT_PIPELINES, load_all
from orchestrator.service.triggers import publish_trigger
from orchestrator.store.projections import connect, list_models

# -- publish / run --------------------------------------------------------------------------

def add_publish(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, parser_class=type(p))
    da = sub.add_parser("data-arrived", help="a new version of a dataset is available")
    da.add_argument("--dataset", required=True)
    da.add_argument("--version", required=True, dest="dataset_version")
    da.add_argument("--uri", required=True, help="file path or URI of the data")
    da.add_argument("--event-id", help="idempotency: the same id never starts a second run")
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
    uri, sha, size = file_facts(args.uri)
    event = DataArrived(dataset=args.dataset, version=args.dataset_version, uri=uri,
                        sha256=sha, size=size)
    bus = await open_bus(args, create=True)
    try:
        env = await publish_trigger(bus, event, event_id=args.event_id)
    finally:
        await bus.close()
    print(f"published data_arrived {env.id} for {args.dataset} {args.dataset_version}")
    return 0


async def publish_drift_event(args: argparse.Namespace) -> int:
    from events.triggers import DriftDetected

    uri, sha, _ = file_facts(args.dataset_uri)
    event = DriftDetected(model=args.model, dataset=args.dataset,
                          dataset_version=args.dataset_version, dataset_uri=uri,
                          dataset_sha256=sha, method=args.method, threshold=args.threshold,
                          score=args.score)
    bus = await open_bus(args, create=True)
    try:
        env = await publish_trigger(bus, event, event_id=args.event_id)
    finally:
        await bus.close()
    print(f"published drift_detected {env.id} for model {args.model}")
    return 0


def add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline name")
    p.add_argument("--pipeline-ref", action="append", metavar="REF",
                   help="where the pipeline is declared (default: the digits example)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--uri", help="data for the run (passed to tasks as trigger payload 'uri')")
    p.add_argument("--idempotency-key", help="the same key never starts a second run")
    add_priority_flag(p)
    p.set_defaults(handler=run_manual)


async def run_manual(args: argparse.Namespace) -> int:
    specs = load_all(args.pipeline_ref or list(DEFAULT_PIPELINES))
    if args.pipeline not in specs:
        raise UsageError(f"unknown pipeline {args.pipeline!r}; known: {', '.join(specs)}")
    key = args.idempotency_key or str(uuid.uuid4())
    run_id = run_id_for(args.pipeline, key)
    payload = {"uri": file_facts(args.uri)[0]} if args.uri else {}
    trigger = TriggerInfo(type="manual", event_id=key, subject=args.pipeline, payload=payload)
    request = RunRequested(run_id=run_id, spec=specs[args.pipeline], trigger=trigger,
                           params=key_values(args.param), priority=args.priority,
                           idempotency_key=key)
    await send_intent(args, request, f"{run_id}/requested", correlation=key)
    print(run_id)
    return 0


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
    retrain = file_facts(args.retrain_on)[0] if args.retrain_on else None
    check = DriftCheck(model=model, reference=reference, batch=Path(args.batch),
                       method=args.method, threshold=args.threshold, retrain_uri=retrain,
                       retrain_version=args.retrain_version)
    report, event = run_check(check)
    top = ", ".join(f"{k}={v:.3f}" for k, v in report.top(5))
    print(f"{args.method} drift: {len(report.drifted_features)}/{len(report.scores)} features "
          f"over {args.threshold}; max {report.max_score:.3f} ({top})")
    if event is None or args.dry_run:
        print("no drift event published" + (" (dry run)" if args.dry_run else ""))
        return 0
    bus = await open_bus(args)
    try:
        env = await publish_drift(bus, event)
    finally:
        await bus.close()
    print(f"published drift_detected {env.id} for {args.model} v{model['version']}")
    return 0
