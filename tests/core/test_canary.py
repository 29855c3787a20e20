"""Canary steps in the decider: traffic moves in declared steps while the gateways' windows
are compared with the alias's holder; a failing analysis rolls back at once; the last step's
success promotes; every move is an event, so a rebuilt state resumes where it was
(orchestrator/core/canary.py)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Literal, TypeVar

import pytest

from events import canary as cn
from events import runs as ev
from events.canary import CanaryCheck, Figures, ServingObserved
from events.envelope import Envelope, envelope
from events.payloads import Payload
from events.pipeline import CanarySpec, CanaryStep, PipelineSpec, TaskSpec
from events.registry import (
    AliasMoved,
    GateRef,
    ModelRegistered,
    ModelRequestRefused,
    PromoteModel,
    SetTraffic,
    TrafficSet,
)
from events.serving import ServingWindow, latency_bucket
from orchestrator.core import dag
from orchestrator.core.canary import checks
from orchestrator.core.errors import SpecError
from orchestrator.core.evolve import evolve, initial_state
from orchestrator.core.gates import lineage
from orchestrator.core.shift import category_psi, homogeneity, pooled
from orchestrator.core.state import CANARY_AGENT, Champion
from orchestrator.service import snapshot_codec
from tests.core.harness import ref
from tests.core.support import CheckedHarness, gate_task, register_task

T = TypeVar("T", bound=Payload)
STEPS = (CanaryStep(percent=5, hold_s=60), CanaryStep(percent=50, requests=100))


def canaried(steps: tuple[CanaryStep, ...] = STEPS, **settings: object) -> PipelineSpec:
    """train -> gate -> register -> canary of model m, v2 against the champion v1."""
    canary = CanarySpec(model="m", version_from="register", steps=steps, timeout_s=1800,
                        min_requests=50, **settings)
    return PipelineSpec(name="p", deadline_s=7200, tasks=(
        TaskSpec(name="train", function="tasks:train"),
        gate_task(minimum={"accuracy": 0.5}),
        register_task("register", "gate"),
        TaskSpec(name="canary", kind="canary", deps=("register",), canary=canary),
    ))


class Canary:
    """A run whose canary is under way, and the gateway and registry played by hand."""

    def __init__(self, spec: PipelineSpec | None = None, champion: int | None = 1) -> None:
        self.h = h = CheckedHarness()
        h.agent()
        h.lent.champions["m"] = Champion("m", 1, {"accuracy": 0.9}, aliases=(
            {"champion": champion} if champion is not None else {}))
        self.run_id = h.start(spec or canaried())
        h.complete("train", metrics={"accuracy": 0.95})
        (request,) = h.registrations()
        gate_id = next(e.id for e in h.log if isinstance(e.data, ev.GateEvaluated))
        self.gate_id = gate_id
        registered = ModelRegistered(
            run_id=self.run_id, task="register", model="m", version=2, artifact=ref("train"),
            metrics=request.metrics, lineage=lineage(h.run(self.run_id)),
            gate=GateRef(event_id=gate_id, passed=True, baseline_version=1))
        h.feed(registered, id="m/v2")
        self.windows = 0

    def answer(self, data: Payload, request: Envelope[Payload]) -> None:
        """The registry's answer to `request`, delivered to the run as an intent."""
        self.h.counter += 1
        self.h.deliver(envelope(data, id=f"answer-{self.h.counter}", time=self.h.now,
                                source="baton.registry", subject="m", causation_id=request.id))

    def last(self, kind: type[Payload]) -> Envelope[Payload]:
        return [c for c in self.h.commands if isinstance(c.data, kind)][-1]

    def traffic_set(self) -> None:
        request = self.last(SetTraffic)
        data = request.data
        assert isinstance(data, SetTraffic)
        self.answer(TrafficSet(model="m", candidate=data.candidate, percent=data.percent,
                               mirror=None, reason=data.reason, run_id=self.run_id), request)

    def window(self, candidate: int = 20, baseline: int = 380, *, errors: int = 0,
               latency_ms: float = 0.3, candidate_ms: float | None = None,
               predicts: str = "3", gateway: str = "g1", after_s: float = 10,
               id: str | None = None) -> None:
        """One gateway window: `candidate` requests to v2, `baseline` to v1."""
        self.h.now += after_s
        self.windows += 1
        start, end = self.h.now - after_s, self.h.now

        def side(version: int, role: Literal["primary", "candidate"], n: int, failed: int,
                 ms: float) -> ServingWindow:
            return ServingWindow(
                model="m", version=version, role=role, gateway=gateway,
                start=start, end=end, requests=n, errors=failed, rows=n,
                latency_hist={latency_bucket(ms): n - failed} if n > failed else {},
                predictions={predicts if version == 2 else "3": n - failed})
        observed = ServingObserved(run_id=self.run_id, windows=(
            side(1, "primary", baseline, 0, latency_ms),
            side(2, "candidate", candidate, errors, candidate_ms or latency_ms)))
        self.h.feed(observed, id=id or f"{gateway}/{start:.3f}>{self.run_id}")

    def events(self, kind: type[T]) -> list[T]:
        return self.h.events(self.run_id, kind)

    def sent_traffic(self) -> list[tuple[int | None, int]]:
        return [(c.candidate, c.percent) for c in self.h.sent(SetTraffic)]


def test_a_ready_canary_compares_with_the_champion_and_asks_for_its_first_split() -> None:
    # given a run whose register step made v2 while v1 is the champion
    c = Canary()
    # then the canary runs on no agent, until its timeout, and asks for 5% to v2
    attempt = c.h.attempt(c.run_id, "canary")
    assert attempt.agent_id == CANARY_AGENT and attempt.timeout_at == c.h.now + 1800
    (started,) = c.events(cn.CanaryStarted)
    assert (started.version, started.baseline, started.alias, started.percents) == (
        2, 1, "champion", (5, 50))
    assert c.sent_traffic() == [(2, 5)]
    request = c.last(SetTraffic).data
    assert isinstance(request, SetTraffic) and request.run_id == c.run_id
    # and windows before the registry set the split are not the step's
    c.window()
    assert c.events(cn.CanaryWindowObserved) == []
    assert "no canary step of m is under way" in c.h.events(c.run_id, ev.InputIgnored)[-1].reason


def test_a_canary_that_passes_every_step_promotes_citing_the_gate_then_clears_the_split(
) -> None:
    c = Canary()
    c.traffic_set()
    # when windows of healthy traffic come in over the 5% step's hold of 60 s
    for _ in range(6):
        c.window()
    # then the step passed its analyses and the 50% step was asked for
    assert c.sent_traffic() == [(2, 5), (2, 50)]
    analyses = c.events(cn.CanaryAnalysed)
    assert analyses and all(a.passed for a in analyses)
    c.traffic_set()
    # when the 50% step has served its 100 requests to v2
    c.window(candidate=60, baseline=60)
    c.window(candidate=60, baseline=60)
    # then the canary asks to move the champion to v2, citing the gate, expecting v1
    promote = c.last(PromoteModel).data
    assert isinstance(promote, PromoteModel)
    assert (promote.alias, promote.version, promote.expected, promote.cites) == (
        "champion", 2, 1, c.gate_id)
    assert c.h.run(c.run_id).tasks["canary"].status == "running"
    # when the registry moves it
    c.answer(AliasMoved(model="m", alias="champion", version=2, previous=1, move="promote",
                        reason=promote.reason, cites=promote.cites, run_id=c.run_id),
             c.last(PromoteModel))
    # then the canary is promoted with its release report, the split cleared, the run done
    (ended,) = c.events(cn.CanaryEnded)
    assert ended.verdict == "promoted"
    report = ended.report
    assert [(s.percent, s.verdict) for s in report.steps] == [(5, "passed"), (50, "passed")]
    assert report.steps[1].candidate.requests == 120
    assert c.sent_traffic()[-1] == (None, 0)
    run = c.h.run(c.run_id)
    assert run.tasks["canary"].status == "succeeded" and run.status == "succeeded"
    assert run.tasks["canary"].metadata["canary"] == "promoted"
    assert str(run.tasks["canary"].metadata["canary.step1"]).startswith("5% passed over 60s")


def test_a_failing_window_rolls_back_at_once_and_says_which_check_failed_by_how_much() -> None:
    c = Canary()
    c.traffic_set()
    # when v2 fails a third of its requests in a window with enough traffic to judge
    c.window(candidate=60, baseline=300, errors=20)
    # then in the same decision the split goes back to 0, the alias untouched, the step failed
    assert c.sent_traffic() == [(2, 5), (None, 0)]
    assert c.h.sent(PromoteModel) == []
    (ended,) = c.events(cn.CanaryEnded)
    assert ended.verdict == "rolled_back"
    assert "error rate 33.3% against 1.0% allowed" in ended.reason
    assert [ch.check for ch in ended.report.checks] == ["error rate"]
    task = c.h.run(c.run_id).tasks["canary"]
    assert task.status == "failed" and task.metadata["canary"] == "rolled back"
    (failed,) = [f for f in c.events(ev.TaskFailed) if f.task == "canary"]
    assert (failed.reason, failed.final) == ("canary_rolled_back", True)
    assert c.h.run(c.run_id).status == "failed"


def test_errors_beyond_chance_roll_back_before_the_analysis_has_its_requests() -> None:
    c = Canary()
    c.traffic_set()
    # when v2 fails 5 of its first 10 requests (the analysis wants 50 of each)
    c.window(candidate=10, baseline=300, errors=5)
    # then waiting would only serve more errors: it rolls back now, on errors alone
    (ended,) = c.events(cn.CanaryEnded)
    assert ended.verdict == "rolled_back"
    assert [ch.check for ch in ended.report.checks] == ["error rate"]


def test_one_unlucky_error_is_chance_not_a_rollback() -> None:
    c = Canary()
    c.traffic_set()
    # when v2 fails 1 of 60 requests (1.7%, over the 1% allowed, but likely by chance)
    c.window(candidate=60, baseline=300, errors=1)
    # then the analysis passes, saying how likely that was
    (analysed,) = c.events(cn.CanaryAnalysed)
    (errors,) = [ch for ch in analysed.checks if ch.check == "error rate"]
    assert analysed.passed and errors.p_value is not None and errors.p_value > 0.1


def test_a_slow_candidate_fails_on_p95_latency_against_the_holders() -> None:
    c = Canary()
    c.traffic_set()
    c.window(candidate=60, baseline=300, latency_ms=2.0, candidate_ms=20.0)
    (ended,) = c.events(cn.CanaryEnded)
    assert "p95 latency" in ended.reason
    # 2 ms times 1.5 + 5 ms of slack, to within a latency bucket
    (check,) = ended.report.checks
    assert 7.5 < check.limit < 8.8 and check.candidate > 19


def test_predictions_that_shift_fail_on_psi() -> None:
    c = Canary()
    c.traffic_set()
    c.window(candidate=60, baseline=300, predicts="7")
    (ended,) = c.events(cn.CanaryEnded)
    assert "prediction PSI" in ended.reason


def test_a_step_with_too_little_traffic_waits_adding_windows_up_never_inconclusive() -> None:
    c = Canary()
    c.traffic_set()
    # when four windows bring 10 requests each to v2 (an analysis needs 50)
    for _ in range(4):
        c.window(candidate=10)
    # then nothing is judged, each window is kept
    assert c.events(cn.CanaryAnalysed) == []
    assert len(c.events(cn.CanaryWindowObserved)) == 4
    # when the fifth brings the sum to 50
    c.window(candidate=10)
    # then the five are judged together
    (analysed,) = c.events(cn.CanaryAnalysed)
    assert analysed.candidate.requests == 50 and analysed.passed


def test_no_verdict_by_the_timeout_rolls_back_saying_how_much_traffic_came() -> None:
    c = Canary()
    c.traffic_set()
    c.window(candidate=3)
    due = c.h.attempt(c.run_id, "canary").timeout_at
    assert due is not None
    c.h.tick(due)
    (ended,) = c.events(cn.CanaryEnded)
    assert ended.verdict == "rolled_back"
    assert "no verdict within the canary's timeout of 1800s" in ended.reason
    assert "saw 3 requests to v2" in ended.reason
    assert c.sent_traffic()[-1] == (None, 0)


def test_a_promotion_the_registry_refuses_rolls_back_with_its_reason() -> None:
    c = Canary(spec=canaried(steps=(CanaryStep(percent=10, requests=50),)))
    c.traffic_set()
    c.window(candidate=60, baseline=60)
    # when an operator moved the champion meanwhile, and the registry refuses
    c.answer(ModelRequestRefused(model="m", alias="champion", request="promote_model",
                                 reason="champion points at v3, not v1", run_id=c.run_id),
             c.last(PromoteModel))
    (ended,) = c.events(cn.CanaryEnded)
    assert ended.verdict == "rolled_back"
    assert "refused the canary's promote_model: champion points at v3" in ended.reason
    assert c.sent_traffic()[-1] == (None, 0)


def test_each_window_is_taken_once_and_stray_answers_are_recorded_not_applied() -> None:
    c = Canary()
    c.traffic_set()
    c.window(candidate=10, id="g1/w1")
    c.h.now -= 10
    c.window(candidate=10, id="g1/w1")  # the same window delivered again
    assert len(c.events(cn.CanaryWindowObserved)) == 1
    assert "duplicate" in c.h.events(c.run_id, ev.InputIgnored)[-1].reason
    # an answer to nothing the canary asked
    c.answer(TrafficSet(model="m", candidate=2, percent=5, mirror=None, reason="x",
                        run_id=c.run_id), c.h.log[0])
    assert "no canary of this run waits" in c.h.events(c.run_id, ev.InputIgnored)[-1].reason


def test_a_state_rebuilt_from_the_log_mid_canary_decides_the_same_from_there() -> None:
    # given a canary in its first step, with windows added up but not judged
    c = Canary()
    c.traffic_set()
    c.window(candidate=20)
    c.window(candidate=20)
    # when a coordinator rebuilds the state from the run log alone (a takeover)
    rebuilt = initial_state()
    for env in c.h.log:
        evolve(rebuilt, env)
    live = c.h.run(c.run_id)
    assert rebuilt.runs[c.run_id].canaries == live.canaries
    assert rebuilt.runs[c.run_id].tasks == live.tasks
    # and a snapshot of it carries the canary's state whole
    header = snapshot_codec.Header(format=snapshot_codec.FORMAT_VERSION, schema=1, fold="f",
                                   group=0, offset=1)
    restored = snapshot_codec.decode(snapshot_codec.encode(
        snapshot_codec.Document(header=header, runs=dict(rebuilt.runs))))
    assert restored.runs[c.run_id].canaries == live.canaries
    # then the next window is judged the same on either
    c.h.state = rebuilt
    c.window(candidate=20)
    (analysed,) = c.events(cn.CanaryAnalysed)
    assert analysed.candidate.requests == 60


def test_a_run_cancelled_mid_canary_gives_the_traffic_back() -> None:
    c = Canary()
    c.traffic_set()
    c.h.cancel(c.run_id)
    assert c.sent_traffic()[-1] == (None, 0)
    assert c.events(cn.CanaryEnded)[0].verdict == "rolled_back"
    assert c.h.run(c.run_id).tasks["canary"].status == "cancelled"


@pytest.mark.parametrize(("champion", "why"), [
    (None, "m has no champion to compare v2 with"),
    (2, "v2 already is m's champion"),
])
def test_a_canary_with_nothing_to_compare_against_fails_at_once(champion: int | None,
                                                                why: str) -> None:
    c = Canary(champion=champion)
    task = c.h.run(c.run_id).tasks["canary"]
    assert task.status == "failed" and why in (task.error or "")
    assert c.h.sent(SetTraffic) == []


def test_canary_specs_that_cannot_work_are_refused_with_what_to_change() -> None:
    with pytest.raises(ValueError, match="needs hold_s or requests"):
        CanaryStep(percent=5)
    with pytest.raises(ValueError, match="raise the candidate's share each time"):
        CanarySpec(model="m", version_from="register", timeout_s=60,
                   steps=(CanaryStep(percent=50, hold_s=1), CanaryStep(percent=5, hold_s=1)))
    bad = CanarySpec(model="m", version_from="train", timeout_s=60, steps=STEPS)
    spec = PipelineSpec(name="p", tasks=(
        TaskSpec(name="train", function="tasks:train"),
        TaskSpec(name="canary", kind="canary", deps=("train",), canary=bad)))
    with pytest.raises(SpecError, match="version_from must name a register step"):
        dag.validate(spec)
    with pytest.raises(SpecError, match="the run's deadline_s of 60s ends it first"):
        dag.validate(canaried().model_copy(update={"deadline_s": 60}))


def test_prediction_psi_is_near_zero_for_the_same_shares_and_large_for_a_moved_class() -> None:
    assert category_psi({"a": 100, "b": 300}, {"a": 200, "b": 600}) < 1e-3
    assert category_psi({"a": 50, "b": 50}, {"a": 50, "c": 50}) > 2


def test_small_healthy_samples_of_ten_classes_pass_the_psi_check() -> None:
    # given 200 draws of 20 candidate predictions against 380 of the holder, as a 5% step
    # sees them, all from one distribution of ten classes (a seeded generator)
    rng = random.Random(7)
    spec = CanarySpec(model="m", version_from="r", timeout_s=60, steps=STEPS)

    def drawn(n: int) -> Figures:
        counts = Counter(str(rng.randrange(10)) for _ in range(n))
        return Figures(requests=n, predictions=dict(counts))

    def shift(n_candidate: int, n_baseline: int) -> CanaryCheck:
        return next(c for c in checks(spec, drawn(n_candidate), drawn(n_baseline))
                    if c.check == "prediction psi")

    samples = [(drawn(20), drawn(380)) for _ in range(200)]
    found = [next(c for c in checks(spec, cand, base) if c.check == "prediction psi")
             for cand, base in samples]
    # then their raw PSI would often fail a 0.25 bound, but with classes too rare to judge
    # pooled and the change tested against chance (alpha 0.01), they pass
    assert sum(category_psi(base.predictions, cand.predictions) > 0.25
               for cand, base in samples) > 100
    assert sum(not c.passed for c in found) <= 4
    # and over a step's worth of requests (200 against 800) it does not fail at all
    assert all(shift(200, 800).passed for _ in range(200))


def test_the_homogeneity_test_agrees_with_scipys_chi_square_of_the_two_counts() -> None:
    from scipy.stats import chi2_contingency

    a = {"0": 10, "1": 11, "3": 16, "5": 3, "8": 0}
    b = {"0": 42, "1": 46, "3": 45, "5": 37, "8": 34}
    keys = sorted(a)
    expected = chi2_contingency([[a[k] for k in keys], [b[k] for k in keys]])
    assert homogeneity(a, b) == pytest.approx(float(expected.pvalue))


def test_a_split_the_registry_refuses_another_canary_holding_it_rolls_back() -> None:
    c = Canary()
    c.answer(ModelRequestRefused(model="m", alias="", request="set_traffic",
                                 reason="run run-x's canary holds m's split", run_id=c.run_id),
             c.last(SetTraffic))
    (ended,) = c.events(cn.CanaryEnded)
    assert ended.verdict == "rolled_back" and "run run-x's canary holds" in ended.reason
    give_back = c.h.sent(SetTraffic)[-1]
    assert (give_back.candidate, give_back.held_by) == (None, c.run_id)


def test_a_few_rare_predictions_on_one_side_are_not_a_shift() -> None:
    # given one class nearly always predicted, and a few rare ones on one side or the other
    # (misclassified rows, routed at random): 60 to the candidate, 240 to the holder
    candidate = {"3": 55, "8": 3, "5": 2}
    baseline = {"3": 236, "9": 3, "1": 1}
    spec = CanarySpec(model="m", version_from="r", timeout_s=60, steps=STEPS)
    (shift,) = [c for c in checks(spec, Figures(requests=60, predictions=candidate),
                                  Figures(requests=240, predictions=baseline))
                if c.check == "prediction psi"]
    # then the rare ones are pooled and the check passes; unpooled, PSI would be over 0.25
    assert category_psi(baseline, candidate) > 0.25
    assert shift.passed and shift.candidate < 0.25
    assert pooled(baseline, candidate) == ({"3": 236, "(rare)": 4}, {"3": 55, "(rare)": 5})
