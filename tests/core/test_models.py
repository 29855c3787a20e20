"""The registry's aggregate: versions, aliases moved only by cited, compare-and-set decisions,
their history at any past time, and one-step rollbacks (orchestrator/core/models.py)."""

from __future__ import annotations

import pytest

from events.common import Audit
from events.envelope import envelope
from events.payloads import Payload
from events.registry import (
    AliasMoved,
    ApprovalRef,
    ArchiveVersion,
    GateRef,
    ModelRegistered,
    ModelRequestRefused,
    PromoteModel,
    RegisterModel,
    RollbackAlias,
    SetTraffic,
    TrafficSet,
)
from orchestrator.core.models import (
    ModelRegistry,
    archive,
    promote,
    promote_registered,
    register,
    rollback,
    set_traffic,
)
from tests.events.samples import ARTIFACT, LINEAGE

MODEL = "digits"
WHO = Audit(actor="alice", request_id="req-1", via="cli")


class Log:
    """baton.models as the registry writes it: each event folded, with its time."""

    def __init__(self) -> None:
        self.registry = ModelRegistry()
        self.now = 1000.0
        self.n = 0

    def fold(self, data: Payload, cause: str | None = None) -> Payload:
        self.n += 1
        self.now += 10
        self.registry.apply(envelope(data, id=f"e-{self.n}", time=self.now, source="test",
                                     subject=MODEL, causation_id=cause))
        return data

    def version(self, gate: GateRef | None = None, run: str = "") -> ModelRegistered:
        run = run or f"run-{self.n}"
        request = RegisterModel(run_id=run, task="register", model=MODEL, artifact=ARTIFACT,
                                lineage=LINEAGE, metrics={"accuracy": 0.9}, gate=gate)
        registered = register(self.registry, request)
        self.fold(registered)
        return registered


def passed(n: int, baseline: int | None = None) -> GateRef:
    return GateRef(event_id=f"run-{n}/gate", passed=True, baseline_version=baseline)


def promotion(version: int, expected: int | None, cites: str, alias: str = "champion"
              ) -> PromoteModel:
    return PromoteModel(model=MODEL, alias=alias, version=version, expected=expected,
                        cites=cites, reason="better", audit=WHO)


def test_a_promotion_citing_the_versions_passing_gate_moves_the_alias_and_records_who() -> None:
    # given a version admitted by a passing gate
    log = Log()
    v1 = log.version(passed(1))
    # when an operator promotes it, expecting the alias to hold nothing yet
    moved = promote(log.registry, promotion(1, None, "run-1/gate"))
    log.fold(moved)
    # then the alias points at it, and the move says who, why and what it cites
    assert isinstance(moved, AliasMoved)
    assert (moved.version, moved.previous, moved.move) == (v1.version, None, "promote")
    assert (moved.audit, moved.cites, moved.reason) == (WHO, "run-1/gate", "better")
    assert log.registry.model(MODEL).holder("champion") == 1


@pytest.mark.parametrize(("gate", "cites", "why"), [
    (None, "run-1/gate", "admitted by neither a passing gate"),
    (GateRef(event_id="run-1/gate", passed=False), "run-1/gate",
     "admitted by neither a passing gate"),
    (passed(1), "run-9/gate", "is not the gate decision or approval that admitted"),
])
def test_a_promotion_without_a_passing_gate_it_cites_is_refused(
    gate: GateRef | None, cites: str, why: str,
) -> None:
    # given a version whose gate did not pass, or a request citing another gate
    log = Log()
    log.version(gate)
    # when it is promoted
    answer = promote(log.registry, promotion(1, None, cites))
    # then the registry refuses, saying why, and nothing moves
    assert isinstance(answer, ModelRequestRefused) and why in answer.reason
    log.fold(answer)
    assert log.registry.model(MODEL).holder("champion") is None


def test_unknown_models_and_versions_are_refused_with_what_there_is() -> None:
    log = Log()
    log.version(passed(1))
    unknown_model = promote(log.registry, PromoteModel(
        model="nope", alias="champion", version=1, expected=None, cites="x", reason="r",
        audit=WHO))
    unknown_version = promote(log.registry, promotion(7, None, "run-1/gate"))
    assert isinstance(unknown_model, ModelRequestRefused)
    assert "no model 'nope'" in unknown_model.reason
    assert isinstance(unknown_version, ModelRequestRefused)
    assert "has no v7 (its versions: v1)" in unknown_version.reason


def test_a_promotion_expecting_a_holder_that_moved_since_is_refused() -> None:
    # given champion at v1, then moved to v2 by someone else
    log = Log()
    log.version(passed(1))
    log.version(passed(2))
    log.fold(promote(log.registry, promotion(1, None, "run-1/gate")))
    log.fold(promote(log.registry, promotion(2, 1, "run-2/gate")))
    # when an operator who still saw v1 promotes v1 again... or anything
    answer = promote(log.registry, promotion(1, 1, "run-1/gate"))
    # then it is refused: the alias moved since they looked
    assert isinstance(answer, ModelRequestRefused)
    assert "champion points at v2, not v1" in answer.reason
    assert log.registry.model(MODEL).holder("champion") == 2


def test_a_rollback_goes_back_one_promotion_at_a_time_and_not_past_the_first() -> None:
    # given champion promoted v1 -> v2 -> v3
    log = Log()
    for n in (1, 2, 3):
        log.version(passed(n))
    for n, expected in ((1, None), (2, 1), (3, 2)):
        log.fold(promote(log.registry, promotion(n, expected, f"run-{n}/gate")))
    state = log.registry.model(MODEL)
    # when it is rolled back twice
    first = rollback(log.registry, RollbackAlias(model=MODEL, alias="champion", expected=3,
                                                 reason="errors", audit=WHO))
    log.fold(first)
    second = rollback(log.registry, RollbackAlias(model=MODEL, alias="champion", expected=2,
                                                  reason="still errors", audit=WHO))
    log.fold(second)
    # then it is back at v1, each rollback saying what it undid
    assert isinstance(first, AliasMoved) and (first.version, first.previous) == (2, 3)
    assert isinstance(second, AliasMoved) and (second.version, second.previous) == (1, 2)
    assert state.holder("champion") == 1
    # and one more has nowhere to go
    third = rollback(log.registry, RollbackAlias(model=MODEL, alias="champion", expected=1,
                                                 reason="r", audit=WHO))
    assert isinstance(third, ModelRequestRefused)
    assert "no earlier holder" in third.reason


def test_which_version_an_alias_held_at_any_past_time_and_its_history() -> None:
    # given champion at v1 from t1, v2 from t2, and back at v1 from t3
    log = Log()
    log.version(passed(1))
    log.version(passed(2))
    log.fold(promote(log.registry, promotion(1, None, "run-1/gate")))
    t1 = log.now
    log.fold(promote(log.registry, promotion(2, 1, "run-2/gate")))
    t2 = log.now
    log.fold(rollback(log.registry, RollbackAlias(model=MODEL, alias="champion", expected=2,
                                                  reason="errors", audit=WHO)))
    t3 = log.now
    state = log.registry.model(MODEL)
    # then each time is answered from the history
    assert [state.holder("champion", at) for at in (t1 - 1, t1, t2 - 1, t2, t3)] == \
        [None, 1, 1, 2, 1]
    assert [(m.data.move, m.data.version, m.at) for m in state.history("champion")] == \
        [("promote", 1, t1), ("promote", 2, t2), ("rollback", 1, t3)]
    assert state.history("staging") == []


def test_a_registration_takes_the_alias_it_asks_for_only_when_its_gate_saw_the_champion() -> None:
    # given champion at v1
    log = Log()
    log.version(passed(1))
    log.fold(promote(log.registry, promotion(1, None, "run-1/gate")))

    def registration(baseline: int | None) -> tuple[RegisterModel, ModelRegistered]:
        request = RegisterModel(run_id=f"run-{log.n}", task="register", model=MODEL,
                                artifact=ARTIFACT, lineage=LINEAGE,
                                gate=passed(log.n, baseline), promote_to="champion")
        return request, register(log.registry, request)

    # when a run whose gate compared against v1 registers v2
    request, v2 = registration(1)
    moved = promote_registered(log.registry, request, v2)
    log.fold(v2)
    # then v2 is the champion, the move citing its gate
    assert isinstance(moved, AliasMoved) and (moved.version, moved.previous) == (2, 1)
    assert moved.cites == v2.gate.event_id if v2.gate else False
    log.fold(moved)
    # and when a run that compared against v1 (stale now) registers v3, it is refused
    request, v3 = registration(1)
    stale = promote_registered(log.registry, request, v3)
    assert isinstance(stale, ModelRequestRefused)
    assert "compared v3 against v1, but the champion is v2 now" in stale.reason


def test_the_gate_baseline_is_the_champion_once_there_is_one_else_the_newest_version() -> None:
    log = Log()
    assert log.registry.baseline(MODEL) is None
    log.version(passed(1))
    log.version(passed(2))
    assert log.registry.baseline(MODEL).version == 2  # type: ignore[union-attr]
    log.fold(promote(log.registry, promotion(1, None, "run-1/gate")))
    assert log.registry.baseline(MODEL).version == 1  # type: ignore[union-attr]


def test_the_same_request_is_answered_once() -> None:
    # given a promotion the registry answered
    log = Log()
    log.version(passed(1))
    log.fold(promote(log.registry, promotion(1, None, "run-1/gate")), cause="req-env-1")
    # then its answer is known by the request's id
    answer = log.registry.answers["req-env-1"]
    assert isinstance(answer, AliasMoved) and answer.version == 1


def test_a_first_version_that_asks_for_the_champion_alias_takes_it() -> None:
    # given a model with no version yet, and a run whose gate had no baseline to compare to
    log = Log()
    request = RegisterModel(run_id="run-1", task="register", model=MODEL, artifact=ARTIFACT,
                            lineage=LINEAGE, gate=passed(1, None), promote_to="champion")
    v1 = register(log.registry, request)
    # when it registers
    moved = promote_registered(log.registry, request, v1)
    # then it is the champion, moved by its run
    assert isinstance(moved, AliasMoved)
    assert (moved.version, moved.previous, moved.run_id) == (1, None, "run-1")


def approved(n: int, by: str | None = "alice") -> ApprovalRef:
    return ApprovalRef(event_id=f"run-{n}/approval", approved=True, by=by)


def test_a_version_no_gate_passed_is_promoted_on_a_persons_approval_of_its_run() -> None:
    # given a version whose gate failed, but whose run a person approved (an override), and
    # one approved only by its step's timeout policy
    log = Log()
    for approval in (approved(1), approved(2, by=None)):
        request = RegisterModel(run_id=f"run-{log.n}", task="register", model=MODEL,
                                artifact=ARTIFACT, lineage=LINEAGE, approval=approval,
                                gate=GateRef(event_id="g", passed=False))
        log.fold(register(log.registry, request))
    # when each is promoted citing its approval
    override = promote(log.registry, promotion(1, None, "run-1/approval"))
    log.fold(override)
    by_policy = promote(log.registry, promotion(2, 1, "run-2/approval"))
    # then the person's approval admits the first; a timeout policy overrides nothing
    assert isinstance(override, AliasMoved) and override.cites == "run-1/approval"
    assert isinstance(by_policy, ModelRequestRefused)
    assert "admitted by neither a passing gate nor a person's approval" in by_policy.reason


def test_an_archived_version_keeps_its_history_but_cannot_be_promoted() -> None:
    # given v1 (the champion) and v2
    log = Log()
    log.version(passed(1))
    log.version(passed(2))
    log.fold(promote(log.registry, promotion(1, None, "run-1/gate")))

    def archiving(version: int) -> ArchiveVersion:
        return ArchiveVersion(model=MODEL, version=version, reason="superseded", audit=WHO)

    # when the champion is archived: refused, an alias points at it
    held = archive(log.registry, archiving(1))
    assert isinstance(held, ModelRequestRefused) and "champion points at v1" in held.reason
    # and when v2 is archived, then promoted
    log.fold(archive(log.registry, archiving(2)))
    promoted = promote(log.registry, promotion(2, 1, "run-2/gate"))
    # then it is archived, and its promotion refused
    assert log.registry.model(MODEL).versions[2].status == "archived"
    assert isinstance(promoted, ModelRequestRefused) and "is archived" in promoted.reason


def test_a_traffic_split_names_versions_that_exist_and_are_not_archived() -> None:
    log = Log()
    log.version(passed(1))
    log.version(passed(2))
    log.fold(archive(log.registry, ArchiveVersion(model=MODEL, version=1, reason="old",
                                                  audit=WHO)))

    def split(candidate: int | None, percent: int, mirror: int | None = None) -> object:
        return set_traffic(log.registry, SetTraffic(
            model=MODEL, candidate=candidate, percent=percent, mirror=mirror, reason="r",
            audit=WHO))

    ok = split(2, 5)
    assert isinstance(ok, TrafficSet) and (ok.candidate, ok.percent) == (2, 5)
    for refused, why in ((split(9, 5), "the candidate v9 does not exist"),
                         (split(1, 5), "the candidate v1 is archived"),
                         (split(None, 5), "to no candidate"),
                         (split(2, 5, mirror=7), "the mirror v7 does not exist")):
        assert isinstance(refused, ModelRequestRefused) and why in refused.reason
    log.fold(ok)
    assert log.registry.model(MODEL).traffic == ok


def test_one_canary_holds_a_split_at_a_time_and_gives_back_only_its_own() -> None:
    # given run A's canary holding 5% to v2
    log = Log()
    log.version(passed(1))
    log.version(passed(2))
    log.version(passed(3))

    def split(candidate: int | None, percent: int, run: str | None = None,
              held_by: str | None = None) -> object:
        return set_traffic(log.registry, SetTraffic(
            model=MODEL, candidate=candidate, percent=percent, reason="r", run_id=run,
            held_by=held_by))

    held = split(2, 5, run="run-a")
    assert isinstance(held, TrafficSet)
    log.fold(held)
    # when run B's canary asks for the split, it is refused saying whose it is
    second = split(3, 5, run="run-b")
    assert isinstance(second, ModelRequestRefused)
    assert "run run-a's canary holds" in second.reason and second.run_id == "run-b"
    # and run A moves on to its next step
    assert isinstance(split(2, 25, run="run-a"), TrafficSet)
    # when an operator takes the split over, run A's giving back leaves it as it is
    operator = split(3, 10)
    assert isinstance(operator, TrafficSet)
    log.fold(operator)
    stale = split(None, 0, held_by="run-a")
    assert isinstance(stale, ModelRequestRefused) and "not run run-a's any more" in stale.reason
