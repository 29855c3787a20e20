"""`baton demo --lifecycle`: the model's whole loop in one log, on the digits data.

v1 is trained on data arrival and promoted; a gateway serves it to callers whose scanner
shifted; the drift monitor reads what the gateway was asked and triggers a retraining; v2
passes its gate, is approved (the demo approves, as a person would) and canaried on live
traffic, then promoted; a deliberately broken v3 (its packaging makes it fail 30% of its
predictions) passes the same gate, is canaried and rolled back automatically, the champion
never moving. Every step is an event: `--json` prints what the registry and the run logs say.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from agents.artifacts import ArtifactStore
from bus import Bus
from events import canary as cn
from events import runs as ev
from events import topics
from events.common import Audit
from events.envelope import Envelope
from events.intents import ApprovalDecision, RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TriggerSpec
from events.triggers import DataArrived, TriggerInfo
from orchestrator.api.auth import Tokens
from orchestrator.api.server import Listen, bind, url_of
from orchestrator.cli.agent_flags import agent_specs
from orchestrator.cli.demo import (
    bounded,
    demo_home,
    follow_run,
    projected,
    run_summary,
    say,
    serve_until_stopped,
)
from orchestrator.cli.errors import Failed
from orchestrator.cli.http import api_webhooks
from orchestrator.core.ids import run_id_for
from orchestrator.model_docs import history_docs
from orchestrator.monitor.check import drift_event, publish_drift
from orchestrator.monitor.drift import DriftReport, compare_histograms, histograms
from orchestrator.monitor.serving import served
from orchestrator.pipelines.loader import load_pipeline
from orchestrator.service.approvals import decide
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.model_requests import registry_of
from orchestrator.service.reading import read_all
from orchestrator.service.run_requests import intent_value, published
from orchestrator.service.triggers import publish_trigger
from orchestrator.serving.service import run_gateway
from orchestrator.serving.traffic import Traffic
from orchestrator.serving.versions import Versions
from orchestrator.store.projections import connect, list_runs

MODEL = "digits-classifier"
WINDOW_S = 1.0
"""The demo gateway's window: the canary and the drift monitor see traffic every second."""
DRIFT_ROWS = 600
"""Rows the gateway must have been asked before the drift monitor judges."""


async def lifecycle(args: argparse.Namespace, out: TextIO, sock: socket.socket | None,
                    tokens: Tokens | None) -> int:
    from examples.digits import data

    home = demo_home(args)
    seed = _on_data_only(load_pipeline("examples.digits.pipeline:digits"))
    release = load_pipeline("examples.digits.pipeline:digits_release")
    app = EmbeddedApp(home, {seed.name: seed, release.name: release}, agent_specs(args),
                      http=sock, tokens=tokens, webhooks=api_webhooks(args))
    bus = await app.start()
    base = None if sock is None else url_of(sock)
    changed = asyncio.Event()

    def switched(line: str) -> None:
        say(out, f"      {line}")
        changed.set()

    versions = Versions(ArtifactStore(home.artifacts), MODEL, "champion", say=switched)
    gateway_sock = bind(Listen("127.0.0.1", 0))
    stop = asyncio.Event()
    gateway = asyncio.create_task(run_gateway(bus, versions, gateway_sock, stop, WINDOW_S))
    url = f"{url_of(gateway_sock)}/v1/models/{MODEL}:predict"
    traffic = Traffic(url, (data.new_batch("v2") / 16).tolist())
    limit = args.timeout
    run_ids: list[str] = []
    try:
        say(out, f"Baton lifecycle demo in {home.root}: {MODEL}, served at {url}")
        v1 = data.write_version(home.datasets, "v1")
        say(out, f"\n[1/4] data arrived: digits v1 ({v1.rows} rows) -> {seed.name} trains v1, "
                 "promoted to champion")
        arrived = DataArrived(dataset="digits", version="v1", uri=v1.uri, sha256=v1.sha256,
                              rows=v1.rows)
        trigger = await publish_trigger(bus, arrived, source="baton.demo")
        run_ids.append(await bounded(app, follow_run(bus, trigger.id, out), limit,
                                     "the v1 run did not finish"))
        await bounded(app, _until(changed, lambda: versions.current is not None), limit,
                      "the gateway did not load v1")
        say(out, "\n[2/4] callers with a new scanner send their rows to the gateway; the drift "
                 "monitor reads what it was asked")
        traffic.start()
        v2 = data.write_version(home.datasets, "v2")
        report, rows = await bounded(app, _drift(bus, v1, out), limit,
                                     "the gateway was not asked enough rows")
        event = drift_event(await _model_doc(bus, 1), report, v2.uri, "v2")
        say(out, f"      drift detected in {rows} served rows -> {release.name} retrains on v2")
        trigger = await publish_drift(bus, event)
        run_ids.append(await bounded(app, follow_run(bus, trigger.id, out, _approver(bus, out)),
                                     limit, "the v2 run did not finish"))
        say(out, "\n[3/4] a broken v3 (its packaging fails 30% of its predictions) is released "
                 "the same way")
        third_id = await _request(bus, release, v2, {"flaw": "errors"})
        run_ids.append(await bounded(app, follow_run(bus, None, out, _approver(bus, out),
                                                     run_id=third_id),
                                     limit, "the v3 run did not finish"))
        await bounded(app, projected(app, bus), limit, "the projection did not catch up")
        summary = await _summary(bus, home.projections, run_ids, base, traffic)
        await traffic.stop()
        say(out, "\n[4/4] what the log says")
        _report(args, out, summary)
        if args.serve and base is not None:
            await serve_until_stopped(app, out, base, f" (and {MODEL} at {url})")
    finally:
        await traffic.stop()
        stop.set()
        await gateway
        gateway_sock.close()
        await app.close()
    verdicts = [c["verdict"] for c in summary["canaries"]]
    champion = summary["aliases"].get(MODEL, {}).get("champion")
    return 0 if verdicts == ["promoted", "rolled_back"] and champion == 2 else 1


def _report(args: argparse.Namespace, out: TextIO, summary: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(summary, indent=2), flush=True)
    else:
        _print(out, summary)


def _on_data_only(spec: PipelineSpec) -> PipelineSpec:
    """The digits pipeline trains v1 on data arrival; drift is the release pipeline's."""
    triggers = tuple(t for t in spec.triggers if t.on == "data_arrived")
    return spec.model_copy(update={"triggers": triggers or (TriggerSpec(on="manual"),)})


async def _until(changed: asyncio.Event, holds: Callable[[], bool]) -> None:
    while not holds():
        changed.clear()
        if not holds():
            await changed.wait()


async def _drift(bus: Bus, v1: Any, out: TextIO) -> tuple[DriftReport, int]:
    """Wait for DRIFT_ROWS rows asked of the champion, then compare them with what v1 was
    trained on, as `baton monitor drift --from-serving` does (in the model's input space)."""
    from examples.digits import data

    X, _ = data.load(v1.path)
    reference = histograms(X / 16)
    since = time.time()
    while True:
        seen = await served(bus, MODEL, since)
        if seen.rows >= DRIFT_ROWS:
            break
        await asyncio.sleep(WINDOW_S)  # the gateway publishes a window a second
    report = compare_histograms(reference, [dict(c) for c in seen.columns])
    top = ", ".join(f"{k}={v:.2f}" for k, v in report.top(3))
    say(out, f"      PSI over {report.threshold}: {len(report.drifted_features)}/"
             f"{len(report.scores)} features drifted in what v{seen.version} was asked "
             f"(top: {top})")
    if not report.drifted:
        raise Failed("the drift monitor found no drift in what the gateway was asked")
    return report, seen.rows


async def _model_doc(bus: Bus, version: int) -> dict[str, Any]:
    """A version's document as the monitor's drift event needs it (model, version, lineage)."""
    registry = await registry_of(bus)
    registered = registry.model(MODEL).versions[version].data
    return {"model": MODEL, "version": version,
            "lineage": registered.lineage.model_dump(mode="json")}


def _approver(bus: Bus, out: TextIO) -> Callable[[Envelope[Payload]], Awaitable[None]]:
    """Approves a run's approval step when it asks, as a person would (the gate passed)."""
    async def approve(env: Envelope[Payload]) -> None:
        data = env.data
        if not isinstance(data, ev.ApprovalRequested):
            return
        decision = ApprovalDecision(
            run_id=data.run_id, task=data.task, approve=True,
            reason="the gate passed; the canary decides the rest",
            values={"comment": "approved by the lifecycle demo"}, role="admin",
            audit=Audit(actor="baton demo", request_id=uuid.uuid4().hex, via="cli"))
        answer = await decide(bus, decision, 30.0, "baton.demo")
        say(out, f"      the demo approves {data.task}: {answer.outcome if answer else '?'}")
    return approve


async def _request(bus: Bus, spec: PipelineSpec, dataset: Any, params: dict[str, Any]) -> str:
    """A manual run of `spec` on `dataset`, as `baton run --uri --param` requests it."""
    key = str(uuid.uuid4())
    run_id = run_id_for(spec.name, "idempotency_key", key)
    trigger = TriggerInfo(type="manual", event_id=key, subject=spec.name,
                          payload={"uri": dataset.uri, "dataset": "digits",
                                   "version": dataset.version, "sha256": dataset.sha256})
    request = RunRequested(run_id=run_id, spec=spec, trigger=trigger, params=params,
                           idempotency_key=key)
    event_id = f"{run_id}/requested"
    await published(bus, run_id, event_id, intent_value(request, event_id, key, "baton.demo"),
                    30.0)
    return run_id


async def _summary(bus: Bus, projections: Any, run_ids: list[str], base: str | None,
                   traffic: Traffic) -> dict[str, Any]:
    registry = await registry_of(bus)
    state = registry.model(MODEL)
    ends = dict(_canary_ends(await read_all(bus, topics.RUNS, {})))
    ended = [(run_id, ends[run_id]) for run_id in run_ids if run_id in ends]  # in run order
    conn = await connect(projections)
    try:
        rows = {r["run_id"]: r for r in await list_runs(conn, limit=1000)}
    finally:
        await conn.close()
    by_version: dict[str, int] = {}
    for (status, version), n in sorted(traffic.answers.items(), key=str):
        key = f"v{version}" if status == 200 else f"HTTP {status}"
        by_version[key] = by_version.get(key, 0) + n
    return {
        "home": str(projections.parent),
        "dashboard": base and f"{base}/",
        "runs": [{**run_summary(rows[r]), "url": base and f"{base}/runs/{r}"}
                 for r in run_ids if r in rows],
        "models": [{"name": MODEL, "version": v, "metrics": dict(reg.data.metrics),
                    "run_id": reg.data.run_id, "status": reg.status,
                    "dataset_version": reg.data.lineage.dataset_version}
                   for v, reg in sorted(state.versions.items())],
        "canaries": [{"model": e.report.model, "version": e.report.version, "run_id": run_id,
                      "against": e.report.baseline, "verdict": e.verdict, "reason": e.reason,
                      "steps": [_step(s) for s in e.report.steps]} for run_id, e in ended],
        "aliases": {MODEL: {alias: state.holder(alias) for alias in state.holders}},
        "alias_history": history_docs(state),
        "traffic": {"requests": traffic.sent, "answers": by_version},
    }


def _canary_ends(records: list[Any]) -> list[tuple[str, cn.CanaryEnded]]:
    from orchestrator.core.logged import decode_logged

    out = []
    for record in records:
        data = decode_logged(record.value, record.where).data
        if isinstance(data, cn.CanaryEnded):
            out.append((data.run_id, data))
    return out


def _step(step: cn.StepReport) -> dict[str, Any]:
    def side(f: cn.Figures) -> dict[str, Any]:
        return {"requests": f.requests, "errors": f.errors, "p95_ms": f.p95_ms}
    return {"percent": step.percent, "verdict": step.verdict, "windows": step.windows,
            "analyses": step.analyses, "started_at": step.started_at,
            "ended_at": step.ended_at, "candidate": side(step.candidate),
            "baseline": side(step.baseline)}


def _print(out: TextIO, summary: dict[str, Any]) -> None:
    for m in summary["models"]:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in m["metrics"].items())
        say(out, f"  model {m['name']} v{m['version']} ({m['dataset_version']}): {metrics}")
    for c in summary["canaries"]:
        say(out, f"  canary of v{c['version']} against v{c['against']}: "
                 f"{c['verdict'].replace('_', ' ')}: {c['reason']}")
    for h in summary["alias_history"]:
        if h["move"] != "refused":
            before = f"v{h['previous']}" if h["previous"] else "nothing"
            say(out, f"  {h['alias']}: {before} -> v{h['version']} ({h['move']}, "
                     f"{h['reason']})")
    say(out, f"  champion now: v{summary['aliases'][MODEL].get('champion')}; the gateway "
             f"answered {summary['traffic']['requests']} requests: "
             f"{summary['traffic']['answers']}")
    if summary["dashboard"]:
        say(out, f"\nDashboard: {summary['dashboard']} (runs: "
                 f"{', '.join(r['url'] for r in summary['runs'])})")

