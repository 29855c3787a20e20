"""The pipeline the trace tests run: its tasks make spans of their own with the OTel API, the
first fails its first attempt (a retry), the second may hold at a FIFO gate (a kill mid-run)."""

from __future__ import annotations

from opentelemetry import trace

from agents.task_api import TaskContext
from orchestrator.pipelines import Pipeline, manual, on_data_arrived
from tests import gates

DATASET = "traced-data"
OWN_SPAN = "task's own work"

traced = Pipeline("traced", triggers=[manual(), on_data_arrived(DATASET, dedupe="event")],
                  deadline_s=300)


@traced.task(cpus=0.5, memory="64Mi", retries=1, backoff_s=0.05)
def prepare(ctx: TaskContext) -> str:
    with trace.get_tracer("tests.telemetry").start_as_current_span(OWN_SPAN):
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails, so the run has a retry")
    return "prepared"


@traced.task(cpus=0.5, memory="64Mi")
def train(prepare: str, ctx: TaskContext) -> str:
    with trace.get_tracer("tests.telemetry").start_as_current_span(OWN_SPAN):
        if gate := ctx.params.get("gate"):
            gates.hold(str(gate), ctx)
    return "trained"
