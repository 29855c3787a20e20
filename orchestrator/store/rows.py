"""What a query sees of a run: one pure function of the folded state, used live and in verify,
and the stored text of it, rendered again per task only where the task changed."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.core.state import Attempt, RunState, TaskState

ROW_VERSION = 4
"""The shape of `run_row`. Bump it whenever that shape changes: a projector that finds rows of
another version rebuilds them from the log (rows are derived; the log is the truth).
2: per-task `attempt_history` (agent, GPUs, status, queue time, error or lost evidence).
3: each attempt's `traceback` (a failed attempt's, None otherwise).
4: per-task `failed_attempts` and `lost_attempts` (the two retry budgets), and attempt status
   `interrupted` (given up by its agent: drained, restarted, cut off) where it was `failed`."""


def run_row(run: RunState) -> dict[str, Any]:
    return {**_run_fields(run), "tasks": [task_row(t) for t in run.tasks.values()]}


def _run_fields(run: RunState) -> dict[str, Any]:
    """Everything of the row but its tasks."""
    return {
        "run_id": run.run_id, "pipeline": run.pipeline, "pipeline_version": run.spec.version(),
        "trigger_type": run.trigger.type, "trigger_event_id": run.trigger.event_id,
        "trigger_subject": run.trigger.subject, "status": run.status, "reason": run.reason,
        "priority": run.priority, "created_at": run.created_at, "finished_at": run.finished_at,
        "sequence": run.seq, "ignored_inputs": run.ignored,
        "models": [{"name": m, "version": v} for m, v in run.models],
    }


def task_row(task: TaskState) -> dict[str, Any]:
    current = task.current
    counted = [a for a in task.attempts if a.status != "rejected"]
    return {
        "name": task.name, "status": task.status,
        "attempts": len(counted),
        "failed_attempts": task.failed_attempts, "lost_attempts": task.lost_attempts,
        "attempt_ids": [a.attempt_id for a in counted],
        "agent_id": current.agent_id if current else None,
        "progress": task.progress, "progress_message": task.progress_message,
        "waiting": task.waiting, "error": task.error,
        "output": task.output.model_dump(mode="json") if task.output else None,
        "metrics": dict(task.metrics), "metadata": dict(task.metadata),
        "attempt_history": [attempt_row(a) for a in task.attempts],
    }


def attempt_row(attempt: Attempt) -> dict[str, Any]:
    """One placement of a task, refused ones included: an agent's refusal is why it waited."""
    return {
        "number": attempt.number, "attempt_id": attempt.attempt_id,
        "agent_id": attempt.agent_id, "gpus": list(attempt.gpus), "status": attempt.status,
        "queued_s": attempt.queued_s, "error": attempt.error, "traceback": attempt.traceback,
    }


class RowDocs:
    """Run rows as stored text, `json.dumps(run_row(run), sort_keys=True)` to the byte, where
    a task's part is rendered again only when its state changed (task states are frozen and
    replaced, so the same object is the same content). Rendering every task of a run per
    batch cost the projector ~1 ms per task at 1,000 wide, and a tenth of the event loop's
    CPU in a chain of 100. A run's parts are dropped once it has finished: rows of finished
    runs rarely change again, and are then rendered whole."""

    def __init__(self) -> None:
        self._tasks: dict[str, dict[str, tuple[TaskState, str]]] = {}

    def doc(self, run: RunState) -> str:
        kept = self._tasks.setdefault(run.run_id, {})
        parts = [self._task_doc(kept, task) for task in run.tasks.values()]
        if run.finished_at is not None:
            del self._tasks[run.run_id]
        fields = {key: json.dumps(value, sort_keys=True)
                  for key, value in _run_fields(run).items()}
        fields["tasks"] = "[" + ", ".join(parts) + "]"
        return "{" + ", ".join(f"{json.dumps(key)}: {fields[key]}" for key in sorted(fields)) + "}"

    @staticmethod
    def _task_doc(kept: dict[str, tuple[TaskState, str]], task: TaskState) -> str:
        hit = kept.get(task.name)
        if hit is None or hit[0] is not task:
            hit = kept[task.name] = (task, json.dumps(task_row(task), sort_keys=True))
        return hit[1]
