"""Data-arrived triggers -> task body started: the whole trigger path, end to end.

trigger (baton.triggers) -> fan-out -> router (trigger log + run request) -> coordinator
(run created, task scheduled, command) -> agent (accepted, started) -> worker process.
The no-op task stamps `time.time()` when its body starts; the trigger envelope carries the
time it was published, so latency needs no observer in the loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bench.common import (
    STAMP,
    Figure,
    Report,
    RunWatcher,
    median,
    percentile,
    run_watcher,
    running_app,
    task,
    temp_home,
)
from bus import EMBEDDED, Bus
from events.codec import decode
from events.envelope import Envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TriggerSpec
from events.topics import INTENTS
from events.triggers import DataArrived
from orchestrator.core.ids import run_id_for
from orchestrator.service.reading import read_all
from orchestrator.service.triggers import publish_trigger
from orchestrator.store.projections import fold_runs

TARGET_P50_MS = 2.0
"""Issue #12's embedded target, for a trigger on an otherwise idle pipeline (one at a time);
a burst's percentiles are mostly how long its triggers queue (reported without a target)."""
DATASET = "bench-data"
WORKERS = 4
SPEC = PipelineSpec(name="bench-trigger", tasks=(task("t", function=STAMP),),
                    triggers=(TriggerSpec(on="data_arrived", dataset=DATASET),))


def _event(i: int) -> DataArrived:
    return DataArrived(dataset=DATASET, version=f"v{i}", uri=f"file:///bench/{DATASET}/v{i}")


async def _fire(watcher: RunWatcher, indices: range, timeout_s: float, *,
                burst: bool) -> tuple[dict[str, Envelope[Payload]], float, bool]:
    """Publish one trigger per index; in a burst all go out back to back, otherwise each
    waits for its run to finish first. Returns run id -> trigger, publish seconds, all ok."""
    ids = {i: str(uuid.uuid4()) for i in indices}
    futures = {i: await watcher.expect(run_id_for(SPEC.name, "trigger", ids[i])) for i in indices}
    sent: dict[str, Envelope[Payload]] = {}
    start = time.perf_counter()
    for i in indices:
        env = await publish_trigger(watcher.bus, _event(i), event_id=ids[i],
                                    source="baton.bench")
        sent[run_id_for(SPEC.name, "trigger", ids[i])] = env
        if not burst:
            await asyncio.wait_for(futures[i], timeout_s)
    published_s = time.perf_counter() - start
    done = await asyncio.wait_for(asyncio.gather(*futures.values()), timeout_s)
    return sent, published_s, all(end.type == "run_succeeded" for _, end in done)


async def _requested(bus: Bus, sent: dict[str, Envelope[Payload]]) -> list[float]:
    """Trigger publish time -> the router's run request (its envelope time is when the router
    decided), in ms, read back from baton.intents: the router's own part of the path."""
    at: dict[str, float] = {}
    for record in await read_all(bus, INTENTS, {}):
        env = decode(record.value)
        if isinstance(env.data, RunRequested) and env.data.run_id in sent:
            at[env.data.run_id] = env.time.timestamp()
    return [(at[run_id] - trigger.time.timestamp()) * 1000 for run_id, trigger in sent.items()]


async def _latencies(bus: Bus, sent: dict[str, Envelope[Payload]]) -> list[float]:
    """Trigger publish time -> task body start, in ms, read back from the run log."""
    state = await fold_runs(bus)
    out = []
    for run_id, trigger in sent.items():
        started = state.runs[run_id].tasks["t"].metadata["started_at"]
        out.append((float(started) - trigger.time.timestamp()) * 1000)
    return out


async def measure(burst: int = 200, *, isolated: int = 20, timeout_s: float = 120.0,
                  bus_url: str = EMBEDDED) -> Report:
    report = Report(f"triggers: {burst} data-arrived triggers in a burst -> task body started")
    with temp_home() as home:
        async with running_app(home, {SPEC.name: SPEC}, workers=WORKERS,
                               bus_url=bus_url) as (_, app_bus), \
                run_watcher(app_bus, bus_url, home) as watcher:
            bus = watcher.bus
            _, _, warm_ok = await _fire(watcher, range(1), timeout_s, burst=False)
            alone, _, alone_ok = await _fire(watcher, range(1, 1 + isolated), timeout_s,
                                             burst=False)
            first = 1 + isolated
            sent, publish_s, ok = await _fire(watcher, range(first, first + burst),
                                              timeout_s, burst=True)
            isolated_ms = await _latencies(bus, alone) if alone else []
            burst_ms = await _latencies(bus, sent)
            requested_alone = await _requested(bus, alone) if alone else []
            requested_burst = await _requested(bus, sent)
    report.ok = warm_ok and alone_ok and ok
    p50, p99 = percentile(burst_ms, 50), percentile(burst_ms, 99)
    report.row(f"burst: publishing {burst} triggers took", f"{publish_s * 1000:.1f} ms")
    report.row("burst: trigger -> task started p50", f"{p50:.1f} ms")
    report.row("burst: trigger -> task started p99", f"{p99:.1f} ms")
    report.row("burst: last task started after first trigger",
               f"{_span_ms(sent, burst_ms):.1f} ms")
    if isolated_ms:
        report.row(f"one at a time ({isolated} triggers): p50 / max",
                   f"{median(isolated_ms):.1f} ms / {max(isolated_ms):.1f} ms")
    routed_per_s = burst / (max(requested_burst) / 1000) if requested_burst else 0.0
    report.row("burst: trigger -> run requested (the router's decision) p50 / p99",
               f"{percentile(requested_burst, 50):.1f} / {percentile(requested_burst, 99):.1f} ms")
    report.row("burst: router throughput (triggers decided per second, first published -> "
               "last requested)", f"{routed_per_s:,.0f}/s")
    report.figures.append(Figure("burst: router throughput", routed_per_s, "/s",
                                 better="higher", key="router_throughput"))
    if requested_alone:
        report.figures.append(Figure("trigger -> run requested p50 (one at a time)",
                                     percentile(requested_alone, 50), "ms",
                                     key="trigger_to_requested_p50_isolated"))
    report.figures.append(Figure("trigger -> start p50 (burst)", p50, "ms",
                                 key="trigger_to_start_p50_burst"))
    report.figures.append(Figure("trigger -> start p99 (burst)", p99, "ms",
                                 key="trigger_to_start_p99_burst"))
    report.figures.append(Figure("burst: publishing every trigger", publish_s * 1000, "ms",
                                 key="trigger_burst_publish"))
    report.figures.append(Figure("burst: first trigger -> last task started",
                                 _span_ms(sent, burst_ms), "ms", key="trigger_burst_span"))
    if isolated_ms:
        report.figures.append(Figure("trigger -> start p50 (one at a time)",
                                     percentile(isolated_ms, 50), "ms", TARGET_P50_MS,
                                     key="trigger_to_start_p50_isolated"))
        report.figures.append(Figure("trigger -> start p99 (one at a time)",
                                     percentile(isolated_ms, 99), "ms",
                                     key="trigger_to_start_p99_isolated"))
    report.extra.update(burst=burst, isolated=isolated)
    return report


def _span_ms(sent: dict[str, Envelope[Payload]], latencies_ms: list[float]) -> float:
    """From the first trigger's publish time to the last task body start."""
    times = [env.time.timestamp() for env in sent.values()]
    starts = [t + ms / 1000 for t, ms in zip(times, latencies_ms, strict=True)]
    return (max(starts) - min(times)) * 1000


def main() -> Report:
    return asyncio.run(measure())
