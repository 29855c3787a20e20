"""The wire form of a pipeline spec: a run carries the spec it pinned, so replay needs no code."""

from __future__ import annotations

import functools
import hashlib
import itertools
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from events.common import ALIAS_PATTERN, Frozen, Resources
from events.condition_spec import Condition
from events.schedule_spec import ScheduleSpec

DEFAULT_MAX_LOST_ATTEMPTS = 5


def _is_default_lost_bound(value: int) -> bool:
    return value == DEFAULT_MAX_LOST_ATTEMPTS


class RetryPolicy(Frozen):
    """How often a task may try again, and how long it waits: attempt n waits
    backoff_s * factor**(n-1), capped, whatever ended it.

    Two budgets, because a machine dying is not the task's fault. `max_attempts` counts the
    attempts the task itself failed (its code raised, its worker crashed, it timed out), the
    first included. `max_lost_attempts` counts the attempts lost to their agents (expired,
    drained, restarted, cut off from the bus: `orchestrator.core.state.AGENT_REASONS`), which
    spend none of `max_attempts`; it is a bound all the same, since a task that kills its agent
    every time (out of memory) would otherwise be retried forever.
    """

    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff_s: float = Field(default=1.0, ge=0)
    factor: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=300.0, ge=0)
    max_lost_attempts: int = Field(default=DEFAULT_MAX_LOST_ATTEMPTS, ge=1, le=100,
                                   exclude_if=_is_default_lost_bound)
    """Left out of the wire form at its default: a spec that does not change it keeps the
    content hash (`PipelineSpec.version`) and the bytes it had before the field existed, so
    older readers read it and pinned versions stay equal. A spec that sets it needs readers
    that know it (readers ship first, ARCHITECTURE.md "Evolution")."""

    def delay(self, failed_attempt: int) -> float:
        return float(min(self.backoff_s * self.factor ** (failed_attempt - 1), self.max_backoff_s))


def _empty(value: object) -> bool:
    return not value


def _true(value: object) -> bool:
    return value is True


class GateSpec(Frozen):
    """A gate, decided by the coordinator from an upstream task's metrics and metadata: an
    evaluation gate (minimums, no worse than the champion on the same evaluation set) or a
    data gate before training (a minimum row count, a maximum share of missing values, the
    expected schema fingerprint). The new fields are left out of the wire form when unset, so
    existing gates keep their pipeline version."""

    metrics_from: str
    minimum: dict[str, float] = Field(default_factory=dict)
    maximum: dict[str, float] = Field(default_factory=dict, exclude_if=_empty)
    """Metrics that must not exceed a value (e.g. `missing_share: 0.01`)."""
    equals: dict[str, str] = Field(default_factory=dict, exclude_if=_empty)
    """Metadata that must equal a value (e.g. `schema_fingerprint: 9f2c...`)."""
    no_worse_than_current: tuple[str, ...] = ()
    model: str | None = None
    same_eval_set: bool = Field(default=True, exclude_if=_true)
    """Compare with the champion only on the evaluation set it was measured on (the
    `eval_set` metadata both report): measured on different sets, the comparison fails."""
    test: Literal["mcnemar"] | None = Field(default=None, exclude_if=lambda v: v is None)
    """Judge `accuracy` against the champion by McNemar's exact test on the rows both were
    evaluated on (their `eval_outcomes`): it fails only when the new version is worse with
    p < `alpha`, not on noise."""
    alpha: float = Field(default=0.05, gt=0, lt=1, exclude_if=lambda v: v == 0.05)


class RegisterSpec(Frozen):
    """Register the output of one task as a new version of a model, with its lineage."""

    model: str
    artifact_from: str
    metrics_from: str | None = None
    promote_to: str | None = Field(default=None, pattern=ALIAS_PATTERN,
                                   exclude_if=lambda value: value is None)
    """An alias the new version takes at once, citing the run's passing gate (the
    registry refuses it without one, or when the champion moved since the gate read it).
    Left out of the spec's wire form (and so of its content hash) when not set."""


ApprovalInput = Literal["text", "alias", "number", "boolean"]
Role = Literal["viewer", "operator", "admin"]
"""Who may do what, in increasing order (the API's token roles)."""
RANK: dict[str, int] = {role: rank for rank, role in enumerate(get_args(Role))}


class ApprovalSpec(Frozen):
    """A step that waits for a person's decision: approve or reject, with the typed inputs
    declared here (a comment, a target alias...). It waits in the log, not in a process: no
    deadline but `timeout_s`, after which `on_timeout` decides (there is no default: fail the
    step, or approve or reject it as if someone had)."""

    timeout_s: float = Field(gt=0)
    on_timeout: Literal["fail", "approve", "reject"]
    role: Role = "operator"
    """The least role that may decide (the CLI on the bus itself counts as admin)."""
    inputs: dict[str, ApprovalInput] = Field(default_factory=dict)
    """Named values a decision may carry, each optional, checked against its type."""


class CanaryStep(Frozen):
    """One step of a canary: `percent` of the requests to the candidate, held until
    `hold_s` has passed since the gateways took the split and the candidate answered
    `requests` requests in it (whichever are given), with at least one analysis in it and
    every analysis passing."""

    percent: int = Field(ge=1, le=100)
    hold_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _held(self) -> CanaryStep:
        if self.hold_s is None and self.requests is None:
            raise ValueError(f"the {self.percent}% step needs hold_s or requests (or both): "
                             "how long to hold it")
        return self


class CanarySpec(Frozen):
    """A canary of the version a register step made: traffic moves to it in `steps` while
    each window of the gateways' traffic is compared with the alias's holder (p95 latency,
    error rate, the distribution of predictions); a failing analysis rolls it back at once
    (traffic 0, alias unchanged), and after the last step the alias moves to it.

    A step without enough traffic for a verdict waits (there is no "inconclusive"): up to
    `timeout_s` for the whole canary (no default), after which it is rolled back."""

    model: str
    version_from: str
    """The register step whose new version is canaried."""
    steps: tuple[CanaryStep, ...] = Field(min_length=1)
    timeout_s: float = Field(gt=0)
    alias: str = Field(default="champion", pattern=ALIAS_PATTERN)
    """What the candidate is compared with (its holder) and, when every step passed, moves."""
    min_requests: int = Field(default=50, ge=1)
    """Requests each version needs in the windows of one analysis: fewer, and the windows
    wait for the next ones to be added to them."""
    max_latency_ratio: float | None = Field(default=1.5, gt=0)
    """Candidate p95 <= this times the holder's p95 + `latency_slack_ms` (None: not checked)."""
    latency_slack_ms: float = Field(default=5.0, ge=0)
    """What a ratio of two sub-millisecond latencies should not fail on."""
    max_error_rate_increase: float | None = Field(default=0.01, ge=0, le=1)
    """Candidate error rate <= the holder's + this, unless the excess could be chance: it
    fails when that many errors at that rate are less likely than `alpha` (exact binomial
    tail), which also rolls back before an analysis has its requests when the errors are
    already beyond doubt (None: not checked)."""
    alpha: float = Field(default=0.01, gt=0, lt=1)
    """How unlikely by chance a failure on errors or on predictions must be."""
    max_psi: float | None = Field(default=0.25, gt=0)
    """The PSI of the candidate's predictions against the holder's over the step so far; it
    fails when above this and beyond chance (Pearson's chi-square test at `alpha`) (None:
    not checked)."""

    @model_validator(mode="after")
    def _rising(self) -> CanarySpec:
        percents = [step.percent for step in self.steps]
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError(f"canary steps must raise the candidate's share each time, not "
                             f"{' → '.join(f'{p}%' for p in percents)}")
        return self


TaskKind = Literal["function", "gate", "register", "approval", "canary"]


class TaskSpec(Frozen):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
    kind: TaskKind = "function"
    function: str | None = None
    deps: tuple[str, ...] = ()
    resources: Resources = Resources()
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float | None = Field(default=None, gt=0)
    schedule_to_start_timeout_s: float | None = Field(default=None, gt=0)
    """Fail the task (with the reason it waited) if no attempt starts this long after ready."""
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    gate: GateSpec | None = None
    registration: RegisterSpec | None = None
    approval: ApprovalSpec | None = Field(default=None, exclude_if=lambda value: value is None)
    """Left out of the wire form when unset, so specs without approvals keep their hash."""
    canary: CanarySpec | None = Field(default=None, exclude_if=lambda value: value is None)
    """Likewise."""

    @model_validator(mode="before")
    @classmethod
    def _coordinator_steps_use_no_agent(cls, data: Any) -> Any:
        """Gates and registrations run inside the coordinator: they reserve no capacity."""
        if isinstance(data, dict) and data.get("kind", "function") != "function":
            return {"resources": Resources(cpus=0, memory_mb=0), **data}
        return data


TriggerOn = Literal["data_arrived", "drift_detected", "manual", "condition"]
ConsumePolicy = Literal["per_event", "coalesce", "latest"]


def _is_default_dedupe(value: str) -> bool:
    return value == "version"


class TriggerSpec(Frozen):
    on: TriggerOn
    dataset: str | None = None
    model: str | None = None
    cooldown_s: float = Field(default=0.0, ge=0)
    dedupe: Literal["version", "event"] = Field(default="version", exclude_if=_is_default_dedupe)
    """For data_arrived: at most one run per dataset version ("version": two producers
    announcing digits@v7, or one retrying without an event id, train it once), or per event id
    ("event"). Left out of the wire form at its default, like `max_lost_attempts`."""
    max_runs: int | None = Field(default=None, ge=1, le=1000, exclude_if=lambda v: v is None)
    """For drift_detected: at most this many retrains started within `window_s` (a monitor
    that keeps finding drift, after each retrain, must not retrain forever); more are
    ignored as `rate_limited`, recorded. Left out of the wire form when unset."""
    window_s: float | None = Field(default=None, gt=0, exclude_if=lambda v: v is None)
    condition: Condition | None = Field(default=None, exclude_if=lambda v: v is None)
    """on: condition: what must have arrived (events/condition_spec.py)."""
    partition_by: str | None = Field(default=None, min_length=1,
                                     exclude_if=lambda v: v is None)
    """on: condition: events match each other only for the same value of this partition key
    (a data arrival's `partition`, a run's param)."""
    timeout_s: float | None = Field(default=None, gt=0, exclude_if=lambda v: v is None)
    """on: condition: a partial match older than this is dropped, recorded with what it had."""
    consume: ConsumePolicy = Field(default="per_event", exclude_if=lambda v: v == "per_event")
    """What the matches waiting (for a quiet period, or for room under max_active) become:
    one run each (per_event), one run for all of them (coalesce, recording what it consumed),
    or one run for the newest (latest, the others recorded superseded)."""
    debounce_s: float | None = Field(default=None, gt=0, exclude_if=lambda v: v is None)
    """A burst becomes one decision: matches wait until none came for this long."""
    escalate_after_failures: int | None = Field(default=None, ge=1, le=100,
                                                exclude_if=lambda v: v is None)
    """on: drift_detected: after this many retrains in a row that failed (a gate said no, a
    task failed), escalate: no more automatic retrains until an operator acknowledges."""
    escalate_if_drifting_within_s: float | None = Field(default=None, gt=0,
                                                        exclude_if=lambda v: v is None)
    """on: drift_detected: drift again this soon after a retrain succeeded means the retrain
    did not help: escalate instead of retraining again."""
    max_active: int | None = Field(default=None, ge=1, exclude_if=lambda v: v is None)
    """At most this many runs of this trigger at once; further matches wait (recorded) and are
    consumed as runs end: never dropped."""

    @property
    def pends(self) -> bool:
        """Whether matches of this trigger may wait (and so take the pending path)."""
        return (self.condition is not None or self.debounce_s is not None
                or self.max_active is not None)

    @model_validator(mode="after")
    def _conditioned(self) -> TriggerSpec:
        if (self.on == "condition") != (self.condition is not None):
            raise ValueError("on: condition goes with a condition: {all_of: [...]} or "
                             "{any_of: [...]}, and a condition with on: condition")
        if self.on != "condition" and (self.partition_by or self.timeout_s):
            raise ValueError("partition_by and timeout_s are for on: condition")
        if self.on != "drift_detected" and (self.escalate_after_failures
                                            or self.escalate_if_drifting_within_s):
            raise ValueError("escalate_after_failures and escalate_if_drifting_within_s are "
                             "for on: drift_detected (retrains)")
        if self.on == "manual" and (self.debounce_s or self.max_active
                                    or self.consume != "per_event"):
            raise ValueError("debounce_s, max_active and consume are for triggers on events")
        return self

    @model_validator(mode="after")
    def _bounded(self) -> TriggerSpec:
        if (self.max_runs is None) != (self.window_s is None):
            raise ValueError("max_runs and window_s go together: at most max_runs runs "
                             "started within window_s seconds")
        if self.max_runs is not None and self.on != "drift_detected":
            raise ValueError("max_runs bounds retrains on drift: it is for drift_detected")
        return self


class PipelineSpec(Frozen):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-.]{0,127}$")
    tasks: tuple[TaskSpec, ...]
    triggers: tuple[TriggerSpec, ...] = (TriggerSpec(on="manual"),)
    schedules: tuple[ScheduleSpec, ...] = Field(default=(), exclude_if=lambda v: not v)
    """When the pipeline runs by the clock (events/schedule_spec.py). Left out of the wire
    form when there are none, so a spec without keeps its content hash."""
    deadline_s: float = Field(default=3600.0, gt=0)
    max_concurrent_tasks: int | None = Field(default=None, ge=1)
    """At most this many of the pipeline's tasks on agents at once, across all its runs."""
    description: str = ""

    @model_validator(mode="after")
    def _schedules_named_once(self) -> PipelineSpec:
        if len(self.schedules) < 2:  # also runs for every spec passed to a model as it is
            return self
        names = [s.name for s in self.schedules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"pipeline {self.name!r}: schedule names must differ; "
                             f"{', '.join(twice)} given more than once (name each: "
                             "name: nightly)")
        return self

    def schedule(self, name: str) -> ScheduleSpec | None:
        return next((s for s in self.schedules if s.name == name), None)

    def version(self) -> str:
        """Content hash of the spec: a run pins the exact definition it started with."""
        return self.content_hash

    @functools.cached_property
    def content_hash(self) -> str:
        """Once per spec (it is frozen): every run row the projector writes names the
        version, and hashing a 1,000-task spec costs ~1.7 ms. A cached_property lives in
        the instance's __dict__, which pydantic leaves out of fields, dumps and equality."""
        canonical = self.model_dump_json(exclude={"description"}).encode()
        return hashlib.sha256(canonical).hexdigest()[:16]

    def task(self, name: str) -> TaskSpec:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, TaskSpec]:
        """decide and next_deadline look tasks up by name, for every task of every run at
        every turn: a scan made a 1,000-task fan-out quadratic. Kept in the instance's
        __dict__ like `content_hash`: a private attribute is read through pydantic's
        __getattr__, which cost ~2.5 µs per lookup, more than the rest of it."""
        return {spec.name: spec for spec in self.tasks}
