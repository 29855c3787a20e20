"""A condition over two datasets with 100,000 partial matches waiting: memory and decision time.

The pure core as the router runs it (`core/conditions.py`, each step folded before the next):
one pipeline whose trigger waits for `sales` and `fx` of the same `date`, with a timeout.
`sales` arrives for 100,000 dates, so 100,000 partial matches wait; then `fx` arrives for
each of them and each completes a match and fires. Figures: memory per partial match
(tracemalloc over the router state), the decision per event while the partials pile up and
when they complete, and the trigger's next deadline with all of them waiting. Each step is
the shell's whole work on an event: offered, folded, the trigger's clock asked and its
deadline set. The baseline is the same router deciding a plain data-arrived trigger, per
event, in the same run: a condition's step against a plain trigger's.
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime

from bench.common import Figure, Report, task
from events.condition_spec import Condition, Dependency
from events.envelope import Envelope, envelope
from events.payloads import Payload
from events.pipeline import PipelineSpec, TriggerSpec
from events.triggers import DataArrived, PipelineTriggered
from orchestrator.core import conditions
from orchestrator.core.router_steps import Step, decision_envelope
from orchestrator.core.triggers import (
    RouterState,
    evolve_router,
    route,
    trigger_info,
    triggered_envelope,
)
from orchestrator.core.triggers import decision_envelope as routed_envelope

PARTIALS = 100_000
T0 = 1_800_000_000.0
STEP_TARGET_US = 200.0
"""Per event a condition takes (decide and fold): 100,000 in well under a minute."""
MEMORY_TARGET_BYTES = 4096.0
JOIN = PipelineSpec(name="join", tasks=(task("t"),), triggers=(
    TriggerSpec(on="condition", partition_by="date", timeout_s=86_400 * 30,
                condition=Condition(all_of=(Dependency(data="sales"), Dependency(data="fx")))),))
PLAIN = PipelineSpec(name="plain", tasks=(task("t"),), triggers=(
    TriggerSpec(on="data_arrived", dataset="sales"),))


def _copy(pipeline: str, dataset: str, i: int) -> tuple[Envelope[Payload], PipelineTriggered]:
    data = DataArrived(dataset=dataset, version=f"v{i}", uri=f"s3://{dataset}/{i}",
                       partition={"date": f"d{i}"})
    env = envelope(data, id=f"{dataset}-{i}", time=datetime.fromtimestamp(T0 + i, UTC),
                   source="bench", subject=dataset)
    return env, PipelineTriggered(pipeline=pipeline, trigger=trigger_info(env))


def _decide(state: RouterState, env: Envelope[Payload], copy: PipelineTriggered,
            now: float, n: int) -> int:
    """One event through the condition, as the router shell does: offered, folded, the
    trigger's clock asked (nothing due) and its deadline set."""
    offer = conditions.offer_of_copy(env, copy, f"pt@{n}")
    step = conditions.offered(JOIN, 0, state.of("join").pending.get(0), offer, now)
    if step is None:
        return 0
    named = step if step.own_id else Step(step.decision, step.pipeline, step.correlation,
                                          step.intents, f"d-{n}")
    evolve_router(state, decision_envelope(named, now, None, None))
    pending = state.of("join").pending[0]
    assert conditions.next_step(JOIN, 0, pending, now) is None
    conditions.deadline(JOIN, 0, pending)
    return len(step.intents)


async def measure(partials: int = PARTIALS) -> Report:
    report = Report(f"conditions: {partials:,} partial matches of a two-dataset condition")
    state = RouterState()
    sales = [_copy("join", "sales", i) for i in range(partials)]
    fx = [_copy("join", "fx", i) for i in range(partials)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    start = time.perf_counter()
    for i, (env, copy) in enumerate(sales):
        _decide(state, env, copy, T0 + partials, i)
    pile_s = time.perf_counter() - start
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    memory = sum(s.size_diff for s in after.compare_to(before, "filename")) / partials
    pending = state.of("join").pending[0]
    report.ok = len(pending.partials) == partials
    start = time.perf_counter()
    conditions.deadline(JOIN, 0, pending)
    deadline_ms = (time.perf_counter() - start) * 1000
    # pile-up timing without tracemalloc (it slows what it watches): a second state
    state = RouterState()
    start = time.perf_counter()
    for i, (env, copy) in enumerate(sales):
        _decide(state, env, copy, T0 + partials, i)
    pile_s = time.perf_counter() - start
    start = time.perf_counter()
    fired = sum(_decide(state, env, copy, T0 + partials, partials + i)
                for i, (env, copy) in enumerate(fx))
    complete_s = time.perf_counter() - start
    report.ok = report.ok and fired == partials and not state.of("join").pending[0].partials
    baseline_us = _plain_us(min(partials, 20_000))
    add_us, fire_us = pile_s / partials * 1e6, complete_s / partials * 1e6
    report.row(f"{partials:,} sales arrivals, each a new partial match (decide, fold)",
               f"{pile_s:,.2f} s, {add_us:.1f} µs each")
    report.row(f"{partials:,} fx arrivals, each completing one and firing", f"{complete_s:,.2f} s,"
               f" {fire_us:.1f} µs each")
    report.row("baseline: a plain data-arrived trigger routed (decide, fold), per event",
               f"{baseline_us:.1f} µs")
    report.row("the trigger's next deadline with every partial waiting",
               f"{deadline_ms * 1000:.1f} µs for {partials:,}")
    report.figures += [
        Figure("condition step, a partial match added", add_us, "µs", STEP_TARGET_US,
               key="condition_partial_step"),
        Figure("condition step, a match completed and fired", fire_us, "µs", STEP_TARGET_US,
               key="condition_fire_step"),
        Figure("memory per partial match", memory, "bytes", MEMORY_TARGET_BYTES,
               key="memory_per_partial_match"),
        Figure("next deadline with all partial matches waiting", deadline_ms, "ms",
               key="condition_deadline"),
        Figure("plain trigger routed (baseline)", baseline_us, "µs", key="plain_trigger_step"),
    ]
    report.extra["partials"] = partials
    report.extra["partial_to_plain_ratio"] = add_us / baseline_us
    return report


def _plain_us(n: int) -> float:
    state = RouterState()
    copies = [_copy("plain", "sales", i) for i in range(n)]
    specs = {PLAIN.name: PLAIN}
    start = time.perf_counter()
    for i, (env, copy) in enumerate(copies):
        triggered = triggered_envelope(env, copy)
        routed = route(state, specs, triggered, T0 + n)
        evolve_router(state, routed_envelope(routed, triggered, T0 + n, f"pt@{i}"))
    return (time.perf_counter() - start) / n * 1e6
