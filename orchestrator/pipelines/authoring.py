"""The Python way to declare a pipeline: decorate plain functions, dependencies by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from events.common import Resources
from events.condition_spec import Condition, Dependency, Where
from events.pipeline import (
    DEFAULT_MAX_LOST_ATTEMPTS,
    ApprovalInput,
    ApprovalSpec,
    CanarySpec,
    CanaryStep,
    GateSpec,
    PipelineSpec,
    RegisterSpec,
    RetryPolicy,
    Role,
    TaskSpec,
    TriggerSpec,
)
from events.schedule_spec import ScheduleSpec

F = TypeVar("F", bound=Callable[..., Any])


def on_data_arrived(dataset: str, *, cooldown_s: float = 0.0,
                    dedupe: Literal["version", "event"] = "version",
                    **waiting: Any) -> TriggerSpec:
    """`dedupe="version"` (default): one run per dataset version, however many announce it;
    `"event"`: one run per event id. `waiting`: debounce_s, max_active, consume (the
    matches that wait: per_event, coalesce or latest)."""
    return TriggerSpec(on="data_arrived", dataset=dataset, cooldown_s=cooldown_s, dedupe=dedupe,
                       **waiting)


def on_condition(condition: Condition, *, partition_by: str | None = None,
                 timeout_s: float | None = None, **waiting: Any) -> TriggerSpec:
    """A run when `condition` holds (for each value of `partition_by`); a partial match older
    than `timeout_s` is dropped, recorded. `waiting` as for on_data_arrived."""
    return TriggerSpec(on="condition", condition=condition, partition_by=partition_by,
                       timeout_s=timeout_s, **waiting)


def all_of(*parts: Dependency | Condition) -> Condition:
    return Condition(all_of=parts)


def any_of(*parts: Dependency | Condition) -> Condition:
    return Condition(any_of=parts)


def data(dataset: str, *, window_s: float | None = None, **where: Any) -> Dependency:
    """A dataset's arrival; `where`: min_rows, schema_fingerprint, metadata, metadata_in."""
    return Dependency(data=dataset, window_s=window_s, where=Where(**where) if where else None)


def drift(model: str, *, window_s: float | None = None) -> Dependency:
    return Dependency(drift=model, window_s=window_s)


def run_of(pipeline: str, *, status: Literal["succeeded", "failed", "any"] = "succeeded",
           window_s: float | None = None) -> Dependency:
    return Dependency(run=pipeline, status=status, window_s=window_s)


def on_drift(model: str, *, cooldown_s: float = 3600.0, max_runs: int | None = None,
             window_s: float | None = None) -> TriggerSpec:
    """A retrain on the model's drift: at most one per `cooldown_s`, and (with `max_runs` and
    `window_s`) at most `max_runs` started within `window_s`."""
    return TriggerSpec(on="drift_detected", model=model, cooldown_s=cooldown_s,
                       max_runs=max_runs, window_s=window_s)


def manual() -> TriggerSpec:
    return TriggerSpec(on="manual")


def cron(expression: str, *, timezone: str = "UTC", name: str = "default",
         **policy: Any) -> ScheduleSpec:
    """A slot at each time the five-field cron `expression` names in `timezone` (DST as a
    person expects: see ScheduleSpec). `policy`: overlap, catchup (a CatchUp or its fields as
    a dict), jitter_s, start, end, paused, params, priority."""
    return ScheduleSpec(name=name, cron=expression, timezone=timezone, **policy)


def every(seconds: float, *, offset_s: float = 0.0, name: str = "default",
          **policy: Any) -> ScheduleSpec:
    """A slot every `seconds` from the epoch, shifted by `offset_s`; `policy` as for cron."""
    return ScheduleSpec(name=name, every_s=seconds, offset_s=offset_s, **policy)


class Pipeline:
    """Collects tasks in declaration order; `spec()` compiles and validates them.

    A function's parameters name its upstream tasks (`ctx` excepted), so the data flow
    and the dependency graph are written once.
    """

    def __init__(self, name: str, *, triggers: Sequence[TriggerSpec] = (manual(),),
                 schedules: Sequence[ScheduleSpec] = (),
                 deadline_s: float = 3600.0, max_concurrent_tasks: int | None = None,
                 description: str = "") -> None:
        self.name = name
        self.triggers = tuple(triggers)
        self.schedules = tuple(schedules)
        self.deadline_s = deadline_s
        self.max_concurrent_tasks = max_concurrent_tasks
        self.description = description
        self._tasks: list[TaskSpec] = []

    def task(self, *, name: str | None = None, after: Sequence[str] = (), cpus: float = 1.0,
             memory: int | str = 256, gpus: int = 0, gpu_memory: int | str = 0,
             gpu_model: str | None = None, labels: Mapping[str, str] | None = None,
             retries: int = 0, backoff_s: float = 1.0, timeout_s: float | None = None,
             schedule_to_start_timeout_s: float | None = None,
             max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS,
             params: Mapping[str, Any] | None = None) -> Callable[[F], F]:
        """Declare a task; `retries` is extra attempts after the first (for failures of the
        task itself); `max_lost_attempts` bounds the attempts lost to their agents, which
        spend no retries (RetryPolicy); `gpu_memory` and `gpu_model` narrow which GPUs
        qualify (see docs/SCHEDULING.md)."""
        def decorate(fn: F) -> F:
            deps = [p for p in inspect.signature(fn).parameters if p != "ctx"]
            self._tasks.append(TaskSpec(
                name=name or fn.__name__, function=f"{fn.__module__}:{fn.__qualname__}",
                deps=(*deps, *[a for a in after if a not in deps]),
                resources=Resources(cpus=cpus, memory_mb=_memory(memory), gpus=gpus,
                                    gpu_memory_mb=_memory(gpu_memory) if gpu_memory else 0,
                                    gpu_model=gpu_model, labels=dict(labels or {})),
                retry=RetryPolicy(max_attempts=retries + 1, backoff_s=backoff_s,
                                  max_lost_attempts=max_lost_attempts),
                timeout_s=timeout_s, schedule_to_start_timeout_s=schedule_to_start_timeout_s,
                params=dict(params or {}),
            ))
            return fn
        return decorate

    def gate(self, name: str, *, metrics_from: str, minimum: Mapping[str, float] | None = None,
             maximum: Mapping[str, float] | None = None,
             equals: Mapping[str, str] | None = None,
             no_worse_than_current: Sequence[str] = (), model: str | None = None,
             same_eval_set: bool = True, test: Literal["mcnemar"] | None = None,
             alpha: float = 0.05) -> None:
        """Checks on what `metrics_from` reported: `minimum`/`maximum` bounds on metrics,
        `equals` on metadata (a data gate: rows, missing share, schema fingerprint), and
        `no_worse_than_current` than the model's champion, on the same evaluation set;
        `test="mcnemar"` judges accuracy by McNemar's exact test on the rows both got right
        or wrong (fails only when worse with p < `alpha`)."""
        gate = GateSpec(metrics_from=metrics_from, minimum=dict(minimum or {}),
                        maximum=dict(maximum or {}), equals=dict(equals or {}),
                        no_worse_than_current=tuple(no_worse_than_current), model=model,
                        same_eval_set=same_eval_set, test=test, alpha=alpha)
        self._tasks.append(TaskSpec(name=name, kind="gate", deps=(metrics_from,), gate=gate))

    def register(self, name: str, *, model: str, artifact_from: str, after: Sequence[str],
                 metrics_from: str | None = None, promote_to: str | None = None) -> None:
        """`promote_to`: an alias (e.g. "champion") the new version takes at once, citing
        the run's passing gate; the registry refuses it when the champion moved since the
        gate compared against it."""
        reg = RegisterSpec(model=model, artifact_from=artifact_from, metrics_from=metrics_from,
                           promote_to=promote_to)
        self._tasks.append(TaskSpec(name=name, kind="register", deps=tuple(after),
                                    registration=reg))

    def approval(self, name: str, *, after: Sequence[str], timeout_s: float,
                 on_timeout: Literal["fail", "approve", "reject"], role: Role = "operator",
                 inputs: Mapping[str, ApprovalInput] | None = None) -> None:
        """A step that waits (in the log: no process waits) for a decision from someone with
        `role` or above (`baton approve RUN`, the API, the dashboard), at most `timeout_s`;
        then `on_timeout` decides (required: fail the step, or approve or reject it).
        `inputs`: named values a decision may carry (text, alias, number, boolean)."""
        spec = ApprovalSpec(timeout_s=timeout_s, on_timeout=on_timeout, role=role,
                            inputs=dict(inputs or {}))
        self._tasks.append(TaskSpec(name=name, kind="approval", deps=tuple(after),
                                    approval=spec))

    def canary(self, name: str, *, model: str, version_from: str,
               steps: Sequence[CanaryStep | Mapping[str, Any]], timeout_s: float,
               after: Sequence[str] = (), **analysis: Any) -> None:
        """Serve the version `version_from` registered to a share of the traffic in `steps`
        (e.g. `[{"percent": 5, "hold_s": 60}, {"percent": 50, "requests": 500}]`), each
        window compared with the alias's holder (`analysis`: `alias`, `min_requests`,
        `max_latency_ratio`, `latency_slack_ms`, `max_error_rate_increase`, `max_psi`); a
        failing analysis rolls back at once, the last step's success promotes; no verdict
        within `timeout_s` (required) rolls back."""
        spec = CanarySpec(model=model, version_from=version_from, timeout_s=timeout_s,
                          steps=tuple(s if isinstance(s, CanaryStep) else CanaryStep(**s)
                                      for s in steps), **analysis)
        deps = (*after, *([] if version_from in after else [version_from]))
        self._tasks.append(TaskSpec(name=name, kind="canary", deps=tuple(deps), canary=spec))

    def spec(self) -> PipelineSpec:
        from orchestrator.pipelines.validation import check

        spec = PipelineSpec(name=self.name, tasks=tuple(self._tasks), triggers=self.triggers,
                            schedules=self.schedules, deadline_s=self.deadline_s,
                            max_concurrent_tasks=self.max_concurrent_tasks,
                            description=self.description)
        check(spec)
        return spec


def _memory(value: int | str) -> int:
    if isinstance(value, int):
        return value
    from agents.capabilities import parse_memory

    return parse_memory(value)
