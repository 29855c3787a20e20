"""The trigger router's takeover after a long history (#16): a real RouterStage on an embedded
bus routes `triggers` data-arrived triggers (one decision on baton.trigger-log and one run
request each, spread over 100 pipelines), writing its snapshots as it goes
(router_snapshots.EVERY_RECORDS); then a new router's restore (the newest snapshot, then the
log after it) against the whole log folded as every restore did before snapshots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.common import temp_home
from bench.schedules import T0, Clock, pipelines, trigger_copies
from bus import open_bus_url
from events.topics import TRIGGER_LOG
from orchestrator.core.logged import decode_logged
from orchestrator.core.triggers import RouterState, evolve_router
from orchestrator.service.reading import partitions_of
from orchestrator.service.router import RouterStage

TRIGGERS = 20_000
PIPELINES = 100
EMBEDDED = "embedded"


@dataclass(frozen=True)
class RouterTakeover:
    decisions: int
    whole_s: float
    """The whole trigger log read and folded (the restore before snapshots)."""
    restore_s: float
    """A new router's `load`: the newest snapshot, then the log after it."""
    replayed: int


async def measure_router(triggers: int = TRIGGERS) -> RouterTakeover:
    specs = {name: spec.model_copy(update={"schedules": ()})
             for name, spec in pipelines(PIPELINES).items()}
    clock = Clock(T0)
    with temp_home() as home:
        bus = await open_bus_url(EMBEDDED, home.root)
        try:
            await bus.publish(list(trigger_copies(specs, triggers)))
            router = RouterStage(bus, specs, clock)
            while await router.step():
                pass
            began = time.perf_counter()
            state, decisions = RouterState(), 0
            for tp in partitions_of(bus, TRIGGER_LOG):
                at = 0
                while records := await bus.read(tp, at, 5000):
                    for record in records:
                        evolve_router(state, decode_logged(record.value, record.where))
                    at, decisions = records[-1].offset + 1, decisions + len(records)
            whole_s = time.perf_counter() - began
            again = RouterStage(bus, specs, clock)
            began = time.perf_counter()
            again.loaded(await again.load())
            restore_s = time.perf_counter() - began
            assert again.state == state == router.state, "restored apart from the whole fold"
            return RouterTakeover(decisions, whole_s, restore_s, again.restore_stats["replayed"])
        finally:
            await bus.close()
