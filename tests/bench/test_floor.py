"""The floor benchmark works at a tiny size: its figures, the real chain beside them, and a
breakdown whose steps add up to the time per task. Never asserts on timings."""

from __future__ import annotations

import math

from bench import floor
from tests.bench.test_bench_smoke import check


async def test_the_floor_prints_each_step_next_to_the_real_chain() -> None:
    # given: a tiny floor chain and a tiny real chain
    # when: measured
    report = await floor.measure(tasks=3, repeat=5)
    # then: every step has its figure, the chain's figure is there, and all are finite
    check(report, "floor: chained task, durable steps only", "chain ms per task (same run)",
          *(f"floor: {step}" for step in floor.STEPS), differences=("gap: chain - floor",))
    values = report.json_figures()
    steps = sum(float(values[f"floor_{key}_ms"] or 0) for key in floor.STEP_KEYS)
    assert math.isclose(steps, float(values["floor_per_task_ms"] or 0), rel_tol=0.5)
    assert values["tasks"] == 3 and values["repeat"] == 5
