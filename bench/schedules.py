"""10,000 schedules on one router: what keeping them costs.

The router stage itself (`RouterStage`, on the embedded bus in a temp home), with a clock the
benchmark moves: 10,000 pipelines, one schedule each, half cron (`* * * * *` in one of eight
time zones), half `every_s: 60` with offsets spread over the minute, so every schedule has
exactly one slot a minute. Figures:

- tracking them all (the router's first turn: one `schedule_tracked` each, committed);
- an idle turn (nothing due: the deadline queue's look and the wait bound), in µs;
- a minute's slots: every schedule fires once (decide and fold, then the commit of the
  trigger-log records and run requests), per slot in µs; the pure part beside the commit;
- memory per schedule (the router's state folded from its log, and the deadline queue),
  measured with tracemalloc, and the router's restore (takeover) from the log;
- the baseline, in the same run: the same router deciding data-arrived triggers (route,
  fold, encode, commit), per trigger in µs; the slot's figure is given as a ratio to it.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

from bench.common import Figure, Report, median, task, temp_home
from bus import EMBEDDED, Bus, Outgoing, open_bus_url
from events.codec import encode
from events.envelope import envelope
from events.pipeline import PipelineSpec, TriggerSpec
from events.schedule_spec import ScheduleSpec
from events.topics import PIPELINE_TRIGGERS
from events.triggers import DataArrived, PipelineTriggered
from orchestrator.core.schedules import Deadlines, deadline
from orchestrator.core.triggers import trigger_info, triggered_envelope
from orchestrator.service.router import RouterStage, restore_router

SCHEDULES = 10_000
PERIOD_S = 60.0
T0 = 1_800_000_000.0  # a whole minute
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney",
         "America/Sao_Paulo", "Asia/Kolkata", "Africa/Cairo")
MINUTES = 3
TRIGGERS = 2_000
TICK_TARGET_US = 200.0
"""Per slot fired (decide, fold and commit): the slots of 10,000 schedules due in the same
minute all asked for within 2 s."""
IDLE_TARGET_US = 50.0
"""An idle turn's look at the deadlines must not grow with the number of schedules."""
MEMORY_TARGET_BYTES = 4096.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def schedule_of(i: int, n: int) -> ScheduleSpec:
    """allow_all: no coordinator ends the runs here, and every slot is to fire."""
    if i % 2:
        return ScheduleSpec(name="s", cron="* * * * *", timezone=ZONES[i % len(ZONES)],
                            overlap="allow_all")
    return ScheduleSpec(name="s", every_s=PERIOD_S, offset_s=(i * PERIOD_S / n) % PERIOD_S,
                        overlap="allow_all")


def pipelines(n: int) -> dict[str, PipelineSpec]:
    return {f"p{i}": PipelineSpec(
        name=f"p{i}", tasks=(task("t"),), schedules=(schedule_of(i, n),),
        triggers=(TriggerSpec(on="data_arrived", dataset=f"d{i}"),)) for i in range(n)}


async def measure(schedules: int = SCHEDULES, *, triggers: int = TRIGGERS) -> Report:
    report = Report(f"schedules: {schedules:,} on one router (tick, memory, restore)")
    specs = pipelines(schedules)
    clock = Clock(T0 + 0.5)
    with temp_home() as home:
        bus = await open_bus_url(EMBEDDED, home.root)
        try:
            router = RouterStage(bus, specs, clock)
            start = time.perf_counter()
            await router.step()
            track_s = time.perf_counter() - start
            report.row("first turn: every schedule tracked (decide, commit)",
                       f"{track_s * 1000:,.0f} ms, {track_s / schedules * 1e6:.1f} µs each")

            idle_us = _idle_us(router, clock)
            decide_us, commit_us, fired = await _minutes(router, clock, schedules)
            report.ok = fired == schedules * MINUTES
            per_slot = [d + c for d, c in zip(decide_us, commit_us, strict=True)]
            report.row(f"a minute's {schedules:,} slots, per slot: decide + fold / commit "
                       f"(median of {MINUTES} minutes)",
                       f"{median(decide_us):.1f} / {median(commit_us):.1f} µs")

            memory, restore_s = await _memory(bus, specs, schedules)
            report.row("restoring the router from its log (a takeover)",
                       f"{restore_s * 1000:,.0f} ms for {schedules:,} schedules and "
                       f"{schedules * MINUTES:,} slots")

            baseline_us = await _trigger_baseline(bus, specs, clock, triggers)
            report.row(f"baseline: {triggers:,} data-arrived triggers routed by the same router, "
                       "per trigger (decide, fold, commit)", f"{baseline_us:.1f} µs")
        finally:
            await bus.close()
    ratio = median(per_slot) / baseline_us
    report.row("a slot / a routed trigger", f"{ratio:.2f}x")
    report.figures += [
        Figure("per slot fired (decide, fold, commit)", median(per_slot), "µs", TICK_TARGET_US,
               key="schedule_slot"),
        Figure("idle turn (nothing due)", idle_us, "µs", IDLE_TARGET_US, key="schedule_idle_turn"),
        Figure("memory per schedule", memory, "bytes", MEMORY_TARGET_BYTES,
               key="memory_per_schedule"),
        Figure("router restore", restore_s * 1000, "ms", key="schedule_router_restore"),
        Figure("per data-arrived trigger routed (baseline)", baseline_us, "µs",
               key="routed_trigger"),
    ]
    report.extra["schedules"] = schedules
    report.extra["slot_to_trigger_ratio"] = ratio
    return report


def _idle_us(router: RouterStage, clock: Clock, turns: int = 2000) -> float:
    """What a turn with nothing due costs the router beyond reading its input."""
    clock.now = T0 + 0.5  # when they were tracked: no slot is due
    start = time.perf_counter()
    for _ in range(turns):
        router._on_the_clock(clock.now)
        router.wait_bound_s()
    return (time.perf_counter() - start) / turns * 1e6


async def _minutes(router: RouterStage, clock: Clock, schedules: int
                   ) -> tuple[list[float], list[float], int]:
    """Each minute every schedule has one slot due: decided, then committed."""
    decide_us: list[float] = []
    commit_us: list[float] = []
    fired = 0
    for minute in range(1, MINUTES + 1):
        clock.now = T0 + minute * PERIOD_S + 0.5
        start = time.perf_counter()
        outputs = router._on_the_clock(clock.now)
        decided = time.perf_counter()
        await router.commit_outputs(outputs, router.positions)
        committed = time.perf_counter()
        fired += sum(1 for o in outputs if o.topic.endswith("intents"))
        decide_us.append((decided - start) / schedules * 1e6)
        commit_us.append((committed - decided) / schedules * 1e6)
    return decide_us, commit_us, fired


async def _memory(bus: Bus, specs: dict[str, PipelineSpec], schedules: int
                  ) -> tuple[float, float]:
    """Bytes per schedule of the router's state and deadline queue (a second restore, under
    tracemalloc, which slows what it watches), and the restore's time."""
    start = time.perf_counter()
    await restore_router(bus)
    restore_s = time.perf_counter() - start
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    state = await restore_router(bus)
    queue = Deadlines()
    for spec in specs.values():
        for s in spec.schedules:
            queue.set(spec.name, s.name, deadline(spec, s, state.of(spec.name).schedules.get(
                s.name)))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del state, queue
    return grown / schedules, restore_s


async def _trigger_baseline(bus: Bus, specs: dict[str, PipelineSpec], clock: Clock,
                            n: int) -> float:
    """The same router routing data-arrived triggers (each to its own pipeline), per trigger."""
    await bus.publish(list(trigger_copies(specs, n)))
    router = RouterStage(bus, specs, clock)
    router.loaded(await router.load())
    start = time.perf_counter()
    while await router.step():
        pass
    return (time.perf_counter() - start) / n * 1e6


def trigger_copies(specs: dict[str, PipelineSpec], n: int) -> Iterator[Outgoing]:
    names = list(specs)
    for i in range(n):
        pipeline = names[i % len(names)]
        data = DataArrived(dataset=f"d{pipeline[1:]}", version=f"v{i}", uri=f"file:///b/{i}")
        source = envelope(data, id=f"bench-{i}", time=T0, source="bench",
                          subject=data.dataset)
        copy = PipelineTriggered(pipeline=pipeline, trigger=trigger_info(source))
        yield Outgoing(PIPELINE_TRIGGERS, pipeline, encode(triggered_envelope(source, copy)))


def main() -> Report:
    import asyncio

    return asyncio.run(measure())
