"""A canary step's records: the gateways' windows forwarded to the run whose canary split the
traffic (an intent), and the run log's account of the canary (each step's traffic, every
window it was shown, every analysis, the verdict with its release report)."""

from __future__ import annotations

from collections import Counter
from typing import Literal, TypeVar

from pydantic import Field

from events.common import Frozen
from events.payloads import RunPayload
from events.serving import ServingWindow, hist_quantile


class Figures(Frozen):
    """One version's traffic added up over some windows: what an analysis compares."""

    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    latency_hist: dict[int, int] = Field(default_factory=dict)
    """Answered requests per latency bucket (`events.serving.latency_bucket`)."""
    predictions: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def of(cls, window: ServingWindow) -> Figures:
        return cls(requests=window.requests, errors=window.errors,
                   latency_hist=dict(window.latency_hist), predictions=dict(window.predictions))

    def plus(self, other: Figures) -> Figures:
        return Figures(requests=self.requests + other.requests,
                       errors=self.errors + other.errors,
                       latency_hist=_added(self.latency_hist, other.latency_hist),
                       predictions=_added(self.predictions, other.predictions))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_ms(self) -> float | None:
        return hist_quantile(self.latency_hist, 0.95)


K = TypeVar("K", int, str)


def _added(a: dict[K, int], b: dict[K, int]) -> dict[K, int]:
    total: Counter[K] = Counter(a)
    total.update(b)
    return dict(sorted(total.items()))


class ServingObserved(RunPayload):
    """A gateway's window of a model whose traffic split a run's canary set (baton.intents,
    sent by the gateway with the window itself): the windows of the versions it served, for
    the run's canary to analyse. Its id names the gateway's window and the run, so a window
    is taken once."""

    TYPE = "serving_observed"
    windows: tuple[ServingWindow, ...] = Field(min_length=1)


Check = Literal["p95 latency", "error rate", "prediction psi"]


class CanaryCheck(Frozen):
    """One comparison of the candidate with the alias's holder, and whether it held."""

    check: Check
    candidate: float
    baseline: float
    limit: float
    """The candidate figure the check holds it to (derived from the baseline's)."""
    passed: bool
    p_value: float | None = Field(default=None, exclude_if=lambda v: v is None)
    """How likely the candidate's figure would be by chance (the error rate at the limit's
    rate; the predictions' PSI with no shift at all): the check fails only when it is below
    the canary's `alpha`, not on a single unlucky error or a small window's noise."""


class CanaryTrafficRequested(RunPayload):
    """The canary asked the registry for its step's split (`step` counts from 0)."""

    TYPE = "canary_traffic_requested"
    task: str
    step: int = Field(ge=0)
    percent: int = Field(ge=1, le=100)
    request_id: str
    """The `set_traffic` request's envelope id: the registry's answer names it as cause."""


class CanaryStarted(RunPayload):
    """A canary step began: `version` of `model` against the holder of `alias`."""

    TYPE = "canary_started"
    task: str
    model: str
    version: int
    alias: str
    baseline: int
    """The alias's holder when it began: what is compared, and what a promotion expects."""
    percents: tuple[int, ...]
    timeout_at: float


class CanaryStepStarted(RunPayload):
    """The registry set the step's split: windows from here on count for the step."""

    TYPE = "canary_step_started"
    task: str
    step: int = Field(ge=0)
    percent: int


class CanaryWindowObserved(RunPayload):
    """A window of the step's traffic: both versions' figures as the gateway counted them."""

    TYPE = "canary_window_observed"
    task: str
    step: int
    gateway: str
    start: float
    end: float
    candidate: Figures
    baseline: Figures


class CanaryAnalysed(RunPayload):
    """The windows since the last analysis, once both versions had enough requests in them:
    the checks and the verdict. A failed one rolls the canary back at once."""

    TYPE = "canary_analysed"
    task: str
    step: int
    passed: bool
    checks: tuple[CanaryCheck, ...]
    candidate: Figures
    baseline: Figures


class CanaryPromotionRequested(RunPayload):
    """Every step passed: the canary asked the registry to move the alias to the version."""

    TYPE = "canary_promotion_requested"
    task: str
    alias: str
    version: int
    expected: int
    cites: str
    request_id: str


class StepReport(Frozen):
    """One step of a release report: its split, how long it ran, what it saw."""

    percent: int
    started_at: float | None
    ended_at: float | None
    windows: int
    analyses: int
    candidate: Figures
    baseline: Figures
    verdict: Literal["passed", "failed", "not reached", "unfinished"]


class ReleaseReport(Frozen):
    """What was compared, the figures per step, the verdict."""

    model: str
    version: int
    alias: str
    baseline: int
    steps: tuple[StepReport, ...]
    checks: tuple[CanaryCheck, ...] = ()
    """The last analysis's checks (the failing ones, for a rollback on a failed analysis)."""


Verdict = Literal["promoted", "rolled_back"]


class CanaryEnded(RunPayload):
    """The canary's verdict: promoted (the alias moved) or rolled back (its traffic at 0,
    the alias unchanged), why, and its release report."""

    TYPE = "canary_ended"
    task: str
    verdict: Verdict
    reason: str
    report: ReleaseReport
