"""Record the golden run logs: `python -m tests.golden.record` from the repository root.

Each scenario is driven through the real decide/evolve by the test harness at a fixed clock
with fixed ids, so re-recording gives byte-identical files. The run ids are the ones these logs
were written with, under the first run-id scheme (`first_scheme_run_id`): they stand for logs
already in the wild, whose ids the fold must take as they are. The checked-in logs are replayed
by tests/core/test_golden_logs.py; re-record only on purpose, when a change of the log is
intended, and say so in review (old logs in the wild must still fold).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from events import codec
from events import reports as rp
from events.envelope import Envelope
from events.payloads import Payload
from events.pipeline import GateSpec, PipelineSpec, RegisterSpec, TaskSpec
from events.registry import ModelRegistered, RegisterModel
from orchestrator.core.state import CoordinatorState
from tests.core.harness import Harness, pipeline, ref, task

HERE = Path(__file__).parent
MODEL = "digits-classifier"


def first_scheme_run_id(pipeline: str, key: str) -> str:
    """hash(pipeline, key): run ids before they had a kind of origin (issue #11), when a
    trigger's event id and a manual idempotency key shared one namespace."""
    digest = hashlib.sha256(f"{pipeline}\x00{key}".encode()).hexdigest()
    return f"run-{digest[:20]}"


def start(h: Harness, spec: PipelineSpec, key: str) -> str:
    """A manual run, named as it was when these logs were recorded."""
    return h.start(spec, key=key, run_id=first_scheme_run_id(spec.name, key))


def digits_spec() -> PipelineSpec:
    gate = GateSpec(metrics_from="evaluate", minimum={"accuracy": 0.9},
                    no_worse_than_current=("accuracy",), model=MODEL)
    register = RegisterSpec(model=MODEL, artifact_from="train", metrics_from="evaluate")
    return pipeline(
        task("ingest", attempts=2, timeout_s=120),
        task("features", "ingest", attempts=2, timeout_s=120),
        task("train", "features", attempts=2, timeout_s=300),
        task("evaluate", "train", "features", attempts=2, timeout_s=120),
        TaskSpec(name="gate", kind="gate", deps=("evaluate",), gate=gate),
        TaskSpec(name="register", kind="register", deps=("gate",), registration=register),
        name="digits", deadline_s=900,
    )


def happy_digits() -> Harness:
    """ingest -> features -> train -> evaluate -> gate (passes) -> register -> succeeded."""
    h = Harness()
    h.agent("a1", cpus=4)
    run_id = start(h, digits_spec(), "data-v1")
    cmd = h.last_execute("ingest")
    h.report(rp.AttemptAccepted, cmd)
    h.report(rp.AttemptStarted, cmd)
    h.report(rp.AttemptSucceeded, cmd, output=ref("ingest"),
             metadata={"dataset": "digits", "dataset_version": "v1"})
    h.now += 5
    h.complete("features")
    h.now += 5
    h.complete("train", metrics={"train_accuracy": 0.99})
    h.now += 5
    h.complete("evaluate", metrics={"accuracy": 0.96})
    (request,) = [c.data for c in h.commands if isinstance(c.data, RegisterModel)]
    h.now += 1
    h.feed(ModelRegistered(run_id=run_id, task="register", model=MODEL, version=1,
                           artifact=request.artifact, metrics=request.metrics,
                           lineage=request.lineage))
    return h


def retry_then_success() -> Harness:
    """The first attempt fails (retryable), the retry after its backoff succeeds."""
    h = Harness()
    h.agent("a1", cpus=2)
    start(h, pipeline(task("fetch", attempts=3, backoff_s=2.0), task("use", "fetch"),
                      name="flaky"), "t1")
    h.fail("fetch")
    h.tick(h.now + 2.0)
    h.complete("fetch")
    h.now += 1
    h.complete("use")
    return h


def cancelled_run() -> Harness:
    """One task running, one scheduled, one pending: the user cancels the run."""
    h = Harness()
    h.agent("a1", cpus=4)
    run_id = start(h, pipeline(task("a"), task("b"), task("c", "a", "b"), name="stopped"),
                   "t1")
    cmd = h.last_execute("a")
    h.report(rp.AttemptAccepted, cmd)
    h.report(rp.AttemptStarted, cmd)
    h.now += 3
    h.cancel(run_id)
    h.now += 1
    h.report(rp.AttemptSucceeded, cmd, output=ref("a"))  # too late: recorded as ignored
    return h


SCENARIOS: dict[str, Callable[[], Harness]] = {
    "happy_digits": happy_digits,
    "retry_then_success": retry_then_success,
    "cancelled_run": cancelled_run,
}


def projection(state: CoordinatorState) -> dict[str, Any]:
    """What a replay must reproduce: per run its outcome, per task status and attempts."""
    return {
        run_id: {
            "pipeline": run.pipeline,
            "status": run.status,
            "reason": run.reason,
            "events": run.seq,
            "ignored": run.ignored,
            "models": [list(m) for m in run.models],
            "tasks": {
                name: {"status": t.status, "attempt": t.attempt, "attempts": len(t.attempts)}
                for name, t in run.tasks.items()
            },
        }
        for run_id, run in sorted(state.runs.items())
    }


def render_log(log: list[Envelope[Payload]]) -> bytes:
    return b"".join(codec.encode(env) + b"\n" for env in log)


def render_projection(state: CoordinatorState) -> str:
    return json.dumps(projection(state), indent=2, sort_keys=True) + "\n"


def record(directory: Path = HERE) -> list[Path]:
    written: list[Path] = []
    for name, scenario in SCENARIOS.items():
        h = scenario()
        log_path = directory / f"{name}.jsonl"
        expected_path = directory / f"{name}.expected.json"
        log_path.write_bytes(render_log(h.log))
        expected_path.write_text(render_projection(h.state))
        written += [log_path, expected_path]
    return written


if __name__ == "__main__":
    for path in record():
        print(path)
