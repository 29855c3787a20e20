"""What a query sees of a run: one pure function of the folded state, used live and in verify,
and the stored text of it, rendered again per task only where the task changed."""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any, cast

from orchestrator.core.state import Attempt, RunState, TaskState

ROW_VERSION = 6
"""The shape of `run_row`. Bump it whenever that shape changes: a projector that finds rows of
another version rebuilds them from the log (rows are derived; the log is the truth).
2: per-task `attempt_history` (agent, GPUs, status, queue time, error or lost evidence).
3: each attempt's `traceback` (a failed attempt's, None otherwise).
4: per-task `failed_attempts` and `lost_attempts` (the two retry budgets), and attempt status
   `interrupted` (given up by its agent: drained, restarted, cut off) where it was `failed`.
5: the run's `audit`: who requested and who cancelled it (actor, request id, way in, when).
6: each attempt's `queued_at`, `scheduled_at`, `started_at`, `ended_at` (a timeline of
   attempts); the run's `params`, `trigger_payload` and `lineage` (trigger event, dataset
   version where the trigger names it, pipeline version, registered models), in the row, not
   its summary."""

DATASET_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dataset", ("dataset",)),
    ("dataset_version", ("dataset_version", "version")),
    ("dataset_uri", ("dataset_uri", "uri")),
    ("dataset_sha256", ("dataset_sha256", "sha256")),
)
"""Lineage fact -> the trigger payload keys that name it, first found wins: a data arrival
says `version`, `uri`, `sha256`; a drift event `dataset_version`, `dataset_uri`,
`dataset_sha256`; a manual run `uri` where `baton run --uri` gave one."""


def run_row(run: RunState) -> dict[str, Any]:
    return {**_run_fields(run), **_detail_fields(run),
            "tasks": [task_row(t) for t in run.tasks.values()]}


def summary_text(run: RunState) -> str:
    """What a list of runs shows of one: the run's fields and its tasks counted by status,
    without the tasks (a 1,000-task run's row is ~750 KB; its summary stays small)."""
    counts: dict[str, int] = {}
    for task in run.tasks.values():
        counts[task.status] = counts.get(task.status, 0) + 1
    return _ENCODE({**_run_fields(run), "task_count": len(run.tasks), "task_states": counts})


def _run_fields(run: RunState) -> dict[str, Any]:
    """The row's fields that its summary has too: all but its tasks and `_detail_fields`."""
    return {
        "run_id": run.run_id, "pipeline": run.pipeline, "pipeline_version": run.spec.version(),
        "trigger_type": run.trigger.type, "trigger_event_id": run.trigger.event_id,
        "trigger_subject": run.trigger.subject, "status": run.status, "reason": run.reason,
        "priority": run.priority, "created_at": run.created_at, "finished_at": run.finished_at,
        "sequence": run.seq, "ignored_inputs": run.ignored,
        "models": [{"name": m, "version": v} for m, v in run.models],
        "audit": [{"action": a.action, "actor": a.actor, "request_id": a.request_id,
                   "via": a.via, "at": a.at} for a in run.audit],
    }


def _detail_fields(run: RunState) -> dict[str, Any]:
    """What the row has and its summary leaves out, as a list of runs does not show it: free-
    form values a request or trigger may make large (params up to the 1 MB event limit), and
    the lineage (the summary has its trigger, pipeline version and models already)."""
    return {"params": run.params, "trigger_payload": run.trigger.payload,
            "lineage": lineage(run)}


def lineage(run: RunState) -> dict[str, Any]:
    """Where the run's models came from, as far as the run's own log says: the trigger event,
    the dataset version its payload names (None where it names none: a manual run without
    `--uri`), the pinned pipeline version, and the model versions the run registered. The
    facts a task reported (its metadata) are in the registered models' own lineage."""
    trigger = run.trigger
    facts: dict[str, Any] = {"trigger_type": trigger.type, "trigger_event_id": trigger.event_id}
    for fact, keys in DATASET_KEYS:
        facts[fact] = _named(trigger.payload, keys)
    facts.update(pipeline=run.pipeline, pipeline_version=run.spec.version(),
                 models=[{"name": m, "version": v} for m, v in run.models])
    return facts


def _named(payload: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` the payload gives a string for (a lineage fact), else None."""
    for key in keys:
        value = payload.get(key)
        if type(value) is str:
            return value
    return None


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
        "queued_at": attempt.queued_at, "scheduled_at": attempt.scheduled_at,
        "started_at": attempt.started_at, "ended_at": attempt.ended_at,
    }


_ENCODE = json.JSONEncoder(sort_keys=True).encode
"""`json.dumps(value, sort_keys=True)`, without building the encoder again at each call."""


def task_text(task: TaskState) -> str:
    """`json.dumps(task_row(task), sort_keys=True)` to the byte, written directly: no row dict
    and no walk of it by the encoder, which took ~20 µs a task, most of the projector's
    rendering (a 1,000-wide run renders ~2,400 task states). Keys are written in sorted
    order; a field the state types as `str` is written as one. A test holds the two equal."""
    current = task.current
    ids = [_STR(a.attempt_id) for a in task.attempts if a.status != "rejected"]
    history = ", ".join([_attempt_text(a) for a in task.attempts])
    output = "null" if task.output is None else _object(task.output.model_dump(mode="json"))
    return (f'{{"agent_id": {_STR(current.agent_id) if current else "null"}, '
            f'"attempt_history": [{history}], "attempt_ids": [{", ".join(ids)}], '
            f'"attempts": {len(ids)}, "error": {_text(task.error)}, '
            f'"failed_attempts": {_text(task.failed_attempts)}, '
            f'"lost_attempts": {_text(task.lost_attempts)}, '
            f'"metadata": {_object(task.metadata)}, "metrics": {_object(task.metrics)}, '
            f'"name": {_STR(task.name)}, "output": {output}, '
            f'"progress": {_text(task.progress)}, '
            f'"progress_message": {_STR(task.progress_message)}, '
            f'"status": {_STR(task.status)}, "waiting": {_text(task.waiting)}}}')


def _attempt_text(attempt: Attempt) -> str:
    """`json.dumps(attempt_row(attempt), sort_keys=True)`, written directly (`task_text`)."""
    gpus = ", ".join([_text(g) for g in attempt.gpus]) if attempt.gpus else ""
    return (f'{{"agent_id": {_STR(attempt.agent_id)}, '
            f'"attempt_id": {_STR(attempt.attempt_id)}, '
            f'"ended_at": {_text(attempt.ended_at)}, "error": {_text(attempt.error)}, '
            f'"gpus": [{gpus}], "number": {_text(attempt.number)}, '
            f'"queued_at": {_text(attempt.queued_at)}, '
            f'"queued_s": {_text(attempt.queued_s)}, '
            f'"scheduled_at": {_text(attempt.scheduled_at)}, '
            f'"started_at": {_text(attempt.started_at)}, "status": {_STR(attempt.status)}, '
            f'"traceback": {_text(attempt.traceback)}}}')


_STR = encode_basestring_ascii
"""A `str` as `json.dumps` writes it (the encoder's own function)."""


def _object(values: dict[str, Any]) -> str:
    """A dict of string keys as `json.dumps(values, sort_keys=True)` writes it."""
    if not all(type(key) is str for key in values):
        return _ENCODE(values)
    return "{" + ", ".join([f"{_STR(key)}: {_text(value)}"
                            for key, value in sorted(values.items())]) + "}"


def _text(value: object) -> str:
    """A value as `json.dumps` writes it: scalars here (the encoder costs a few µs a call,
    whatever the value), anything else through the encoder itself."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return _STR(cast(str, value))
    if kind is int:
        return int.__repr__(cast(int, value))
    if kind is float:
        number = cast(float, value)
        if number != number:
            return "NaN"
        return _FLOATS.get(number) or float.__repr__(number)
    if kind is bool:
        return "true" if value else "false"
    return _ENCODE(value)


_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}
"""What json writes for the infinities, which it does not write by `repr` (nor NaN)."""


class RowDocs:
    """Run rows as stored text, `json.dumps(run_row(run), sort_keys=True)` to the byte, where
    a task's part is rendered again only when its state changed (task states are frozen and
    replaced, so the same object is the same content). Rendering every task of a run per
    batch cost the projector ~1 ms per task at 1,000 wide, and a tenth of the event loop's
    CPU in a chain of 100. A run's parts are dropped once it has finished: rows of finished
    runs rarely change again, and are then rendered whole.

    Each run keeps its tasks' states and texts in two lists in the run's task order, compared
    position by position: a lookup by name per task and per batch cost a 1,000-wide run as
    much again as its renders (~1 ms a batch, every 50 ms)."""

    def __init__(self) -> None:
        self._runs: dict[str, tuple[list[TaskState | None], list[str]]] = {}

    def doc(self, run: RunState) -> str:
        tasks = list(run.tasks.values())
        kept = self._runs.get(run.run_id)
        if kept is None or len(kept[0]) != len(tasks):
            kept = self._runs[run.run_id] = ([None] * len(tasks), [""] * len(tasks))
        states, texts = kept
        pairs = enumerate(zip(states, tasks, strict=True))
        for at in [at for at, (was, now) in pairs if was is not now]:
            states[at] = task = tasks[at]
            texts[at] = task_text(task)
        if run.finished_at is not None:
            del self._runs[run.run_id]
        return _joined(run, texts)


def _joined(run: RunState, tasks: list[str]) -> str:
    """The row's text around its tasks' texts, in one join: the text is ~750 KB at 1,000 tasks,
    and each further copy of it (a `+`, a join of the joined) cost ~0.5 ms, as much as all the
    rest of an unchanged row. Its fields are written as `task_text` writes values: a
    `json.dumps(value, sort_keys=True)` per field built an encoder each time: ~20 of the
    ~125 µs of a 6-task run's whole text (measured)."""
    fields = {key: _text(value)
              for key, value in {**_run_fields(run), **_detail_fields(run)}.items()}
    keys = sorted([*fields, "tasks"])
    at = keys.index("tasks")
    head = "{" + "".join(f"{_STR(key)}: {fields[key]}, " for key in keys[:at]) + '"tasks": ['
    tail = "]" + "".join(f", {_STR(key)}: {fields[key]}" for key in keys[at + 1:]) + "}"
    if not tasks:
        return head + tail
    parts = list(tasks)  # the kept texts stay as they are
    parts[0] = head + parts[0]
    parts[-1] += tail
    return ", ".join(parts)
