"""`baton demo`: the digits pipeline end to end, triggered by data, retrained on real drift."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO, TypeVar

from bus import Bus
from events import runs as ev
from events import topics
from events.envelope import Envelope
from events.payloads import Payload
from events.triggers import DataArrived, TriggerAccepted, TriggerIgnored
from orchestrator.api.auth import Tokens
from orchestrator.api.server import url_of
from orchestrator.cli.agent_flags import add_agent_flags, agent_specs
from orchestrator.cli.errors import Failed, UsageError
from orchestrator.cli.http import add_http_flag, api_tokens, api_webhooks, http_socket
from orchestrator.cli.render import event_line
from orchestrator.cli.signals import stop_on_signals
from orchestrator.monitor.check import DriftCheck, publish_drift, run_check
from orchestrator.pipelines.loader import load_pipeline
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.follow import follow
from orchestrator.service.home import Home
from orchestrator.service.triggers import publish_trigger
from orchestrator.store.projections import connect, list_models, list_runs

MARKER = ".baton-demo"
T = TypeVar("T")


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--lifecycle", action="store_true",
                   help="the model's whole loop instead: serving, drift from what the gateway "
                        "was asked, retraining, approval, a canary that promotes, and a "
                        "broken version's canary rolled back")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds each run may take, from its trigger to its end (default 600)")
    p.add_argument("--agents", type=int, default=1)
    p.add_argument("--serve", action="store_true",
                   help="keep serving the dashboard and API after the runs, until Ctrl-C")
    add_http_flag(p, off=True)
    add_agent_flags(p)
    p.set_defaults(handler=demo)


def demo_home(args: argparse.Namespace) -> Home:
    """A fresh home each time (the gate compares with the current model, so old state matters).

    Defaults to <home>/demo; a directory is only wiped if a previous demo created it.
    """
    home = Home.resolve(args.home)
    target = home.root / "demo" if args.home is None else home.root
    if target.exists() and any(target.iterdir()):
        if not (target / MARKER).exists():
            raise UsageError(f"{target} is not empty and was not made by 'baton demo'; "
                             "pass --home with a new directory")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / MARKER).write_text("created by baton demo; safe to delete\n")
    return Home(target).create()


async def demo(args: argparse.Namespace) -> int:
    out: TextIO = sys.stderr if args.json else sys.stdout
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout:g}: give the seconds each run may take, "
                         "more than 0")
    tokens = api_tokens(args)
    with http_socket(args, or_any_port=True) as sock:
        if args.lifecycle:
            from orchestrator.cli.lifecycle import lifecycle

            return await lifecycle(args, out, sock, tokens)
        return await _demo(args, out, sock, tokens)


async def _demo(args: argparse.Namespace, out: TextIO, sock: socket.socket | None,
                tokens: Tokens | None) -> int:
    from examples.digits import data

    home = demo_home(args)
    spec = load_pipeline("examples.digits.pipeline:digits")
    app = EmbeddedApp(home, {spec.name: spec}, agent_specs(args), http=sock, tokens=tokens,
                      webhooks=api_webhooks(args))
    bus = await app.start()
    base = None if sock is None else url_of(sock)
    try:
        say(out, f"Baton demo in {home.root}: pipeline {spec.name} "
                 f"({' -> '.join(t.name for t in spec.tasks)})")
        v1 = data.write_version(home.datasets, "v1")
        event = DataArrived(dataset="digits", version="v1", uri=v1.uri, sha256=v1.sha256,
                            rows=v1.rows)
        say(out, f"\n[1/2] data arrived: digits v1 ({v1.rows} rows) -> training run")
        first = await _run_for(app, bus, await publish_trigger(bus, event, source="baton.demo"),
                               out, args.timeout)
        say(out, "\n[2/2] new batch arrives; drift monitor compares it with the training data")
        v2 = data.write_version(home.datasets, "v2")
        batch = home.datasets / "digits" / "v2-batch.npz"
        _save_batch(batch, data.new_batch("v2"))
        second = await _drift_run(app, bus, home, v1.path, batch, v2, out, args.timeout)
        await bounded(app, projected(app, bus), args.timeout, "the projection did not catch up")
        summary = await _summary(home, [first, second], base)
        if args.json:
            print(json.dumps(summary, indent=2), flush=True)
        else:
            _print_summary(out, summary)
        if args.serve and base is not None:
            await serve_until_stopped(app, out, base)
    finally:
        await app.close()
    ok = all(r["status"] == "succeeded" for r in summary["runs"])
    return 0 if ok and len(summary["runs"]) == 2 else 1


async def serve_until_stopped(app: EmbeddedApp, out: TextIO, base: str, also: str = "") -> None:
    """`--serve`: keep the dashboard (and what else the demo serves) up until Ctrl-C."""
    say(out, f"\nServing the dashboard at {base}/{also} until Ctrl-C")
    app.stop = stop_on_signals()
    await app.wait()


def say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _save_batch(path: Path, features: Any) -> None:
    import numpy as np

    with path.open("wb") as handle:
        np.savez(handle, X=features)


async def _drift_run(app: EmbeddedApp, bus: Bus, home: Home, reference: Path, batch: Path,
                     v2: Any, out: TextIO, limit_s: float) -> str:
    await bounded(app, projected(app, bus), limit_s, "the projection did not catch up")
    conn = await connect(home.projections)
    try:
        models = await list_models(conn)
    finally:
        await conn.close()
    if not models:
        raise UsageError("the first run registered no model, so there is nothing to monitor")
    model = models[-1]
    check = DriftCheck(model=model, reference=reference, batch=batch, retrain_uri=v2.uri,
                       retrain_version="v2")
    report, event = run_check(check)
    top = ", ".join(f"{k}={v:.2f}" for k, v in report.top(3))
    say(out, f"      PSI over {report.threshold}: {len(report.drifted_features)}/"
             f"{len(report.scores)} features drifted (top: {top})")
    if event is None:
        raise UsageError("the drift monitor found no drift in the demo batch")
    say(out, f"      drift detected for {model['model']} v{model['version']} -> retraining on v2")
    return await _run_for(app, bus, await publish_drift(bus, event), out, limit_s)


async def _run_for(app: EmbeddedApp, bus: Bus, trigger: Any, out: TextIO, limit_s: float
                   ) -> str:
    """Follow the logs until the run this trigger caused has finished; print its progress."""
    return await bounded(app, follow_run(bus, trigger.id, out), limit_s,
                          f"the run for trigger {trigger.id} did not finish")


async def bounded(app: EmbeddedApp, work: Coroutine[Any, Any, T], limit_s: float, what: str
                   ) -> T:
    """`work`, within the limit whether events keep coming or not (a run waiting for an agent
    that never comes says nothing), and ended at once if Baton itself stopped."""
    try:
        async with asyncio.timeout(limit_s):
            return await _unless_stopped(app, work)
    except TimeoutError:
        raise Failed(f"{what} within {limit_s:g} s (--timeout); see where it waits with "
                     "'baton runs show'") from None


async def _unless_stopped(app: EmbeddedApp, work: Coroutine[Any, Any, T]) -> T:
    following = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(app.stop.wait())
    try:
        await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in (following, stopped):
            future.cancel()
        await asyncio.wait({following, stopped})
    if not following.cancelled():
        return following.result()
    raise Failed("Baton stopped before the demo finished")  # closing the app says why


async def follow_run(bus: Bus, trigger_id: str | None, out: TextIO,
                     on_event: Callable[[Envelope[Payload]], Awaitable[None]] | None = None,
                     run_id: str | None = None) -> str:
    """Print the progress of the run `trigger_id` caused (or of `run_id`) until it ends;
    `on_event` sees each of its events (the lifecycle demo approves what waits for it)."""
    if run_id is None:
        assert trigger_id is not None
        run_id = await _accepted_run(bus, trigger_id)
    async for env in follow(bus):
        if getattr(env.data, "run_id", None) != run_id:
            continue
        line = event_line(env)
        if line:
            say(out, "      " + line)
        if on_event is not None:
            await on_event(env)
        if isinstance(env.data, ev.RunSucceeded | ev.RunFailed | ev.RunCancelled):
            break
    return run_id


async def _accepted_run(bus: Bus, trigger_id: str) -> str:
    async for env in follow(bus, topic=topics.TRIGGER_LOG):
        data = env.data
        if isinstance(data, TriggerAccepted) and data.trigger_event_id == trigger_id:
            return data.run_id
        if isinstance(data, TriggerIgnored) and data.trigger_event_id == trigger_id:
            raise Failed(f"the trigger was ignored: {data.reason} {data.detail}")
    raise AssertionError("follow() ends only when told to stop")


async def projected(app: EmbeddedApp, bus: Bus) -> None:
    """Wait until the projection has every event of the log (so queries see the runs)."""
    from bus import TopicPartition

    assert app.projector is not None
    for topic in (topics.RUNS, topics.MODELS):
        for p in range(bus.partitions(topic)):
            tp = TopicPartition(topic, p)
            end = await bus.end_offset(tp)
            while app.projector.positions.get(tp, 0) < end:
                await bus.wait({tp: end}, timeout=0.05)


async def _summary(home: Home, run_ids: list[str], base: str | None) -> dict[str, Any]:
    conn = await connect(home.projections)
    try:
        rows = {r["run_id"]: r for r in await list_runs(conn, limit=1000)}
        models = await list_models(conn)
    finally:
        await conn.close()
    runs = [{**run_summary(rows[rid]), "url": None if base is None else f"{base}/runs/{rid}"}
            for rid in run_ids if rid in rows]
    return {"home": str(home.root), "runs": runs, "dashboard": base and f"{base}/",
            "models": [{"name": m["model"], "version": m["version"], "metrics": m["metrics"],
                        "run_id": m["run_id"],
                        "dataset_version": m["lineage"].get("dataset_version")}
                       for m in models]}


def run_summary(row: dict[str, Any]) -> dict[str, Any]:
    duration = (row["finished_at"] or row["created_at"]) - row["created_at"]
    return {"run_id": row["run_id"], "pipeline": row["pipeline"],
            "trigger_type": row["trigger_type"], "status": row["status"],
            "duration_s": round(duration, 3),
            "tasks": [{"name": t["name"], "status": t["status"], "attempts": t["attempts"]}
                      for t in row["tasks"]]}


def _print_summary(out: TextIO, summary: dict[str, Any]) -> None:
    say(out, "\nSummary")
    for r in summary["runs"]:
        tasks = " ".join(f"{t['name']}:{t['status']}" for t in r["tasks"])
        say(out, f"  {r['run_id']}  {r['trigger_type']:<15} {r['status']:<10} "
                 f"{r['duration_s']:>6.2f}s  {tasks}")
    for m in summary["models"]:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in m["metrics"].items())
        say(out, f"  model {m['name']} v{m['version']} ({m['dataset_version']}): {metrics}")
    if summary["dashboard"]:
        say(out, f"\nDashboard: {summary['dashboard']} (this process serves it while it runs; "
                 "'baton demo --serve' keeps it up)")
        for r in summary["runs"]:
            say(out, f"  {r['url']}")
    say(out, f"\nState is in {summary['home']}. Look around with "
             f"'baton --home {summary['home']} runs list' (baton is in .venv/bin).")
