"""The subcommands: each declares its flags next to the coroutine that runs it."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from events.codec import encode
from events.envelope import envelope
from events.intents import RunCancelRequested, RunRequested
from events.schema import export_json_schemas
from events.topics import INTENTS, partition_for
from events.triggers import DataArrived, TriggerInfo
from orchestrator.bus import EmbeddedBus, Outgoing
from orchestrator.cli import demo as demo_cmd
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.cli.options import add_agent_flags, agent_specs, file_facts, key_values
from orchestrator.cli.render import event_line, run_detail, runs_table
from orchestrator.core.ids import run_id_for
from orchestrator.monitor.check import (
    DriftCheck,
    path_of,
    publish_drift,
    run_check,
    training_data_uri,
)
from orchestrator.pipelines.loader import DEFAULT_PIPELINES, load_all
from orchestrator.service.app import EmbeddedApp
from orchestrator.service.follow import follow
from orchestrator.service.home import Home
from orchestrator.service.triggers import publish_trigger
from orchestrator.store.projections import Projector, connect, find_run, list_models, list_runs
from orchestrator.store.verify import verify

Sub = "argparse._SubParsersAction[Any]"


def register(sub: Any) -> None:
    _up(sub.add_parser("up", help="run coordinator, agents and the event log until Ctrl-C"))
    demo_cmd.add_parser(sub)
    _publish(sub.add_parser("publish", help="publish a trigger event"))
    _run(sub.add_parser("run", help="request a manual run of a pipeline"))
    _runs(sub.add_parser("runs", help="list and inspect runs"))
    _models(sub.add_parser("models", help="list registered model versions"))
    _watch(sub.add_parser("watch", help="stream run events live"))
    _replay(sub.add_parser("replay", help="rebuild state from the log"))
    _monitor(sub.add_parser("monitor", help="statistical monitors that publish triggers"))
    _schema(sub.add_parser("schema", help="event schemas"))
    _pipelines(sub.add_parser("pipelines", help="check pipeline definitions"))


def _home(args: argparse.Namespace) -> Home:
    return Home.resolve(args.home)


async def _open_bus(args: argparse.Namespace, *, create: bool = False) -> EmbeddedBus:
    home = _home(args)
    if not home.bus.exists() and not create:
        raise UsageError(f"no Baton state in {home.root} (start it with 'baton up', or pass "
                         "--home / set BATON_HOME to where it runs)")
    home.create()
    return await EmbeddedBus.open(home.bus)


# -- up -------------------------------------------------------------------------------------

def _up(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", action="append", metavar="REF",
                   help="pipeline 'package.module:name' or file.yaml (repeatable; default: the "
                        "digits example)")
    p.add_argument("--agents", type=int, default=1, help="local agents to run (default 1)")
    add_agent_flags(p)
    p.set_defaults(handler=up)


async def up(args: argparse.Namespace) -> int:
    pipelines = load_all(args.pipeline or list(DEFAULT_PIPELINES))
    app = EmbeddedApp(_home(args), pipelines, agent_specs(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stop.set)
    await app.start()
    print(f"baton up: home {app.home.root}, pipelines {', '.join(pipelines)}, "
          f"{len(app.agents)} local agent(s); Ctrl-C to stop", flush=True)
    try:
        await app.wait()
    finally:
        await app.close()
    return 0


# -- publish / run --------------------------------------------------------------------------

def _publish(p: argparse.ArgumentParser) -> None:
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
    bus = await _open_bus(args, create=True)
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
    bus = await _open_bus(args, create=True)
    try:
        env = await publish_trigger(bus, event, event_id=args.event_id)
    finally:
        await bus.close()
    print(f"published drift_detected {env.id} for model {args.model}")
    return 0


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline name")
    p.add_argument("--pipeline-ref", action="append", metavar="REF",
                   help="where the pipeline is declared (default: the digits example)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--uri", help="data for the run (passed to tasks as trigger payload 'uri')")
    p.add_argument("--idempotency-key", help="the same key never starts a second run")
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
                           params=key_values(args.param), idempotency_key=key)
    await _send_intent(args, request, f"{run_id}/requested", correlation=key)
    print(run_id)
    return 0


# -- queries --------------------------------------------------------------------------------

def _runs(p: argparse.ArgumentParser) -> None:
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


async def _caught_up_projection(args: argparse.Namespace) -> Path:
    """Bring the projection up to the log end unless a running `baton up` owns it."""
    bus = await _open_bus(args)
    try:
        projector = Projector(bus, _home(args).projections)
        await projector.catch_up_if_free()
    finally:
        await bus.close()
    return _home(args).projections


async def runs_list(args: argparse.Namespace) -> int:
    conn = await connect(await _caught_up_projection(args))
    try:
        rows = await list_runs(conn, status=args.status, pipeline=args.pipeline, limit=args.limit)
    finally:
        await conn.close()
    print(json.dumps(rows, indent=2) if args.json else runs_table(rows))
    return 0


async def _one_run(args: argparse.Namespace) -> dict[str, Any]:
    """The run a (prefix of a) run id names, or a message saying why there is not one."""
    conn = await connect(await _caught_up_projection(args))
    try:
        rows = await find_run(conn, args.run_id)
    finally:
        await conn.close()
    if not rows:
        raise NotFound(f"no run {args.run_id!r} (list them with 'baton runs list')")
    if len(rows) > 1:
        raise UsageError(f"{args.run_id!r} matches {len(rows)} runs; give more of the id")
    return rows[0]


async def runs_show(args: argparse.Namespace) -> int:
    row = await _one_run(args)
    print(json.dumps(row, indent=2) if args.json else run_detail(row))
    return 0


async def runs_cancel(args: argparse.Namespace) -> int:
    row = await _one_run(args)
    run_id = row["run_id"]
    if row["status"] != "running":
        raise UsageError(f"run {run_id} is already {row['status']}; nothing to cancel")
    request = RunCancelRequested(run_id=run_id, reason=args.reason)
    await _send_intent(args, request, f"{run_id}/cancel/{uuid.uuid4()}", correlation=None)
    print(f"cancel requested for {run_id}")
    return 0


async def _send_intent(args: argparse.Namespace, request: RunRequested | RunCancelRequested,
                       event_id: str, correlation: str | None) -> None:
    """Intents go to the run's partition group, chosen explicitly as every producer must."""
    env = envelope(request, id=event_id, time=time.time(), source="baton.cli",
                   subject=request.run_id, correlation_id=correlation)
    bus = await _open_bus(args, create=True)
    try:
        part = partition_for(request.run_id, bus.partitions(INTENTS))
        await bus.publish([Outgoing(INTENTS, request.run_id, encode(env), partition=part)])
    finally:
        await bus.close()


def _models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=models_list)


async def models_list(args: argparse.Namespace) -> int:
    conn = await connect(await _caught_up_projection(args))
    try:
        models = await list_models(conn)
    finally:
        await conn.close()
    if args.json:
        print(json.dumps(models, indent=2))
    for m in [] if args.json else models:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in m["metrics"].items())
        print(f"{m['model']} v{m['version']}  {metrics}  run {m['run_id']}  "
              f"dataset {m['lineage'].get('dataset')}@{m['lineage'].get('dataset_version')}")
    if not models and not args.json:
        print("no models registered yet")
    return 0


def _watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-start", action="store_true", help="replay history first")
    p.set_defaults(handler=watch)


async def watch(args: argparse.Namespace) -> int:
    bus = await _open_bus(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("watching run events (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        async for env in follow(bus, from_start=args.from_start, stop=stop):
            line = event_line(env)
            if line:
                print(line, flush=True)
    finally:
        await bus.close()
    return 0


def _replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify", action="store_true", required=True,
                   help="compare the state rebuilt from the log with the stored projection")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=replay)


async def replay(args: argparse.Namespace) -> int:
    bus = await _open_bus(args)
    try:
        result = await verify(bus, _home(args).projections)
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


def _monitor(p: argparse.ArgumentParser) -> None:
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
    conn = await connect(await _caught_up_projection(args))
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
    bus = await _open_bus(args)
    try:
        env = await publish_drift(bus, event)
    finally:
        await bus.close()
    print(f"published drift_detected {env.id} for {args.model} v{model['version']}")
    return 0


def _schema(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ex = sub.add_parser("export", help="write one JSON Schema per event type")
    ex.add_argument("directory", type=Path)
    ex.set_defaults(handler=schema_export)


async def schema_export(args: argparse.Namespace) -> int:
    try:
        written = export_json_schemas(args.directory)
    except OSError as exc:
        raise UsageError(f"cannot write to {args.directory}: {exc.strerror}") from None
    print(f"wrote {len(written)} schemas to {args.directory}")
    return 0


def _pipelines(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    v = sub.add_parser("validate", help="check pipeline definitions and print their versions")
    v.add_argument("refs", nargs="+", metavar="REF")
    v.set_defaults(handler=pipelines_validate)


async def pipelines_validate(args: argparse.Namespace) -> int:
    for name, spec in load_all(args.refs).items():
        tasks = " -> ".join(t.name for t in spec.tasks)
        print(f"{name} (version {spec.version()}): {tasks}")
    return 0
