"""Gates as recorded decisions: data checks before training, comparison with the champion only
on the evaluation set it was measured on, and which check failed by how much
(orchestrator/core/gates.py)."""

from __future__ import annotations

import pytest

from events import runs as ev
from events.evaluation import decode_outcomes, encode_outcomes
from events.pipeline import GateSpec, PipelineSpec, TaskSpec
from events.runs import GateCheck
from orchestrator.core.gates import describe_failures, evaluate_gate, exact_mcnemar
from orchestrator.core.state import Champion
from tests.core.support import CheckedHarness

DATA = GateSpec(metrics_from="ingest", minimum={"rows": 1000},
                maximum={"missing_share": 0.01}, equals={"schema_fingerprint": "9f2c"})
COMPARED = GateSpec(metrics_from="evaluate", no_worse_than_current=("accuracy",), model="m")


def test_data_checks_pass_on_data_that_meets_them() -> None:
    passed, checks = evaluate_gate("r", DATA, {"rows": 1797, "missing_share": 0.0}, None,
                                   {"schema_fingerprint": "9f2c"})
    assert passed
    assert [(c.metric, c.op, c.passed) for c in checks] == [
        ("rows", ">=", True), ("missing_share", "<=", True), ("schema_fingerprint", "==", True)]


def test_failed_data_checks_say_which_and_by_how_much() -> None:
    # given too few rows, too many missing values and another schema
    passed, checks = evaluate_gate("r", DATA, {"rows": 640, "missing_share": 0.035}, None,
                                   {"schema_fingerprint": "77aa"})
    # then the gate fails, and says each failure with its size
    assert not passed
    assert describe_failures(checks) == (
        "rows 640 < 1000 (short by 360); missing_share 0.035 > 0.01 (over by 0.025); "
        "schema_fingerprint 77aa != 9f2c")
    (schema,) = [c for c in checks if c.op == "=="]
    assert (schema.expected, schema.found) == ("9f2c", "77aa")


def test_a_missing_fact_fails_its_check_and_says_so() -> None:
    passed, checks = evaluate_gate("r", DATA, {"missing_share": 0.0}, None, {})
    assert not passed
    assert describe_failures(checks) == (
        "rows missing (needs >= 1000); schema_fingerprint missing != 9f2c")


def test_the_champion_is_compared_only_on_the_set_it_was_evaluated_on() -> None:
    champion = Champion("m", 3, {"accuracy": 0.95}, eval_set="holdout-a1")
    # same set, better: passes
    same, _ = evaluate_gate("r", COMPARED, {"accuracy": 0.96}, champion,
                            {"eval_set": "holdout-a1"})
    # another set, even if better: not comparable, fails, saying why
    other, checks = evaluate_gate("r", COMPARED, {"accuracy": 0.99}, champion,
                                  {"eval_set": "holdout-b7"})
    assert same and not other
    assert describe_failures(checks).startswith(
        "evaluated on set holdout-b7, the champion on holdout-a1: not comparable")


def test_a_set_named_on_one_side_only_is_not_comparable_and_none_named_is_as_before() -> None:
    named = Champion("m", 3, {"accuracy": 0.95}, eval_set="holdout-a1")
    unnamed = Champion("m", 3, {"accuracy": 0.95})
    one_side, _ = evaluate_gate("r", COMPARED, {"accuracy": 0.99}, named, {})
    neither, checks = evaluate_gate("r", COMPARED, {"accuracy": 0.99}, unnamed, {})
    assert not one_side
    assert neither and [c.op for c in checks] == [">= current"]


def test_a_data_gate_before_training_stops_the_run_with_the_reason() -> None:
    # given ingest -> data gate -> train
    spec = PipelineSpec(name="p", tasks=(
        TaskSpec(name="ingest", function="tasks:ingest"),
        TaskSpec(name="data_ok", kind="gate", deps=("ingest",), gate=DATA),
        TaskSpec(name="train", function="tasks:train", deps=("data_ok",)),
    ))
    h = CheckedHarness()
    h.agent()
    run_id = h.start(spec)
    # when ingest reports too few rows
    cmd = h.last_execute("ingest")
    h.start_attempt(cmd)
    h.succeed(cmd, metrics={"rows": 10, "missing_share": 0.0},
              metadata={"schema_fingerprint": "9f2c"})
    # then the gate fails the run before training, saying which check and by how much
    (evaluated,) = h.events(run_id, ev.GateEvaluated)
    assert not evaluated.passed
    assert h.run(run_id).tasks["train"].status == "upstream_failed"
    assert "rows 10 < 1000 (short by 990)" in (h.run(run_id).tasks["data_ok"].error or "")
    assert [e.task for e in h.executes()] == ["ingest"]


def test_mcnemars_exact_p_value() -> None:
    assert exact_mcnemar(10, 0) == pytest.approx(2 / 1024)
    assert exact_mcnemar(7, 3) == pytest.approx(352 / 1024)
    assert exact_mcnemar(5, 5) == 1.0 and exact_mcnemar(0, 0) == 1.0
    assert 0 < exact_mcnemar(5_200, 4_800) < 1e-3  # many disagreements: no big integers
    assert exact_mcnemar(60_000, 40_000) < 1e-80


TESTED = GateSpec(metrics_from="evaluate", no_worse_than_current=("accuracy",), model="m",
                  test="mcnemar")


def outcomes(right: int, wrong: int) -> str:
    return encode_outcomes([True] * right + [False] * wrong)


def test_mcnemar_fails_a_version_only_when_it_is_worse_beyond_chance() -> None:
    # given a champion right on the first 90 of 100 rows
    champion = Champion("m", 1, {"accuracy": 0.9}, "set-a", outcomes(90, 10))

    def judged(mine: str) -> tuple[bool, tuple[GateCheck, ...]]:
        return evaluate_gate("r", TESTED, {"accuracy": 0.0}, champion,
                             {"eval_set": "set-a", "eval_outcomes": mine})

    # when one version is wrong on 20 rows the champion got right (and right on none it
    # missed), another on 3 of them, and a third better everywhere
    much_worse, checks = judged(outcomes(70, 30))
    slightly_worse, _ = judged(outcomes(87, 13))
    better, _ = judged(outcomes(100, 0))
    # then only the first fails, the gate saying the test, its p-value and the counts
    assert (much_worse, slightly_worse, better) == (False, True, True)
    (test,) = [c for c in checks if c.op == "mcnemar"]
    assert test.value == pytest.approx(exact_mcnemar(20, 0)) and test.threshold == 0.05
    assert describe_failures(checks) == (
        f"accuracy worse than the champion's on the same rows (McNemar p = {test.value:.3g} "
        "< 0.05): wrong where the champion was right: 20, right where it was wrong: 0")


def test_mcnemar_without_per_row_outcomes_says_what_is_missing() -> None:
    champion = Champion("m", 1, {"accuracy": 0.9}, "set-a")
    passed, checks = evaluate_gate("r", TESTED, {"accuracy": 0.95}, champion,
                                   {"eval_set": "set-a", "eval_outcomes": outcomes(1, 0)})
    assert not passed
    assert "the champion's evaluation recorded no per-row outcomes" in describe_failures(checks)


def test_outcomes_round_trip_and_refuse_what_is_not_theirs() -> None:
    rows = [True, False, True, True, False, False, True, False, True]
    assert decode_outcomes(encode_outcomes(rows)) == rows
    with pytest.raises(ValueError, match="N:BASE64"):
        decode_outcomes("garbage")
    with pytest.raises(ValueError, match="say 20 rows"):
        decode_outcomes("20:" + encode_outcomes(rows).split(":")[1])
