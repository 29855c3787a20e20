"""The pure computation: a log of known runs, models, letters and agents in, exact figures out."""

from __future__ import annotations

import pytest

from bus.records import TopicPartition
from events import topics
from orchestrator.metrics.figures import Figures, compute, series
from orchestrator.metrics.tally import Ended, Started, Tally, observe
from tests.metrics.conftest import NOW, tally_of
from tests.metrics.logs import T0, Log


def test_a_run_that_ends_leaves_the_fold_for_a_small_record(log: Log) -> None:
    # given the log of known runs (two still running)
    # when it is tallied
    tally = tally_of(log)
    # then only the running runs are held whole; each ended one is a record of its figures
    assert sorted(run.status for run in tally.state.runs.values()) == ["running", "running"]
    assert sorted(r.status for r in tally.ended) == ["cancelled", "failed", "failed",
                                                      "succeeded"]
    assert set(tally.facts) == set(tally.state.runs)
    assert len(tally.state.ended) == len(tally.ended)


def test_runs_by_status_and_the_success_rate_leave_cancelled_runs_out(whole: Figures) -> None:
    assert whole.runs == {"running": 2, "succeeded": 1, "failed": 2, "cancelled": 1}
    assert whole.success_rate == pytest.approx(1 / 3)


def test_run_time_p50_p95_are_nearest_ranks_of_the_ended_runs(whole: Figures) -> None:
    # r1 12 s, r2 5 s, r3 6 s, r5 1 s (cancelled, never started)
    assert sorted(whole.run_duration.values) == [1, 5, 6, 12]
    assert (whole.run_duration.quantile(0.5), whole.run_duration.quantile(0.95)) == (5, 12)


def test_queue_time_is_every_attempt_ready_to_started(whole: Figures) -> None:
    assert sorted(whole.queue_time.values) == [1, 1, 1, 1, 2, 3, 4]
    assert whole.queue_time.as_json() == {"count": 7, "p50": 1, "p95": 4}


def test_trigger_latency_is_created_to_the_first_task_started(whole: Figures) -> None:
    assert sorted(whole.trigger_latency.values) == [1, 2, 3, 4]
    assert whole.trigger_latency.as_json() == {"count": 4, "p50": 2, "p95": 4}


def test_retries_are_counted_per_task(whole: Figures) -> None:
    assert [(t.pipeline, t.task, t.runs, t.retries) for t in whole.retries] == [
        ("etl", "load", 1, 0), ("train", "fetch", 3, 0), ("train", "fit", 2, 1)]
    assert whole.retries[2].rate == 0.5
    assert whole.retry_rate == pytest.approx(1 / 6)


def test_gates_count_each_evaluation(whole: Figures) -> None:
    assert (whole.gates_passed, whole.gates_rejected, whole.gate_pass_rate) == (1, 1, 0.5)


def test_lineage_completeness_is_the_share_of_traceable_model_versions(whole: Figures) -> None:
    assert (whole.models, whole.models_traceable) == (3, 2)
    assert whole.lineage_completeness == pytest.approx(2 / 3)


def test_dead_letters_leave_re_drive_notes_out(whole: Figures) -> None:
    assert whole.dead_letters == {"baton.coordinator": 1, "baton.fanout": 1, "unknown": 1}
    assert whole.dead_letters_redriven == 1


def test_agents_by_state_on_the_log_clock(whole: Figures) -> None:
    assert whole.agents == {"alive": 3, "draining": 1, "lost": 1, "stopped": 1}
    assert whole.agents_busy == 1


def test_active_runs_are_pending_until_a_task_starts(whole: Figures) -> None:
    assert whole.active == {("etl", "executing"): 1, ("etl", "pending"): 1}


def test_run_timings_split_pending_and_executing(whole: Figures) -> None:
    assert sorted((t.pipeline, t.status, t.pending_s, t.executing_s) for t in whole.timings) == [
        ("etl", "cancelled", 1, 0), ("train", "failed", 1, 5), ("train", "failed", 4, 1),
        ("train", "succeeded", 2, 10)]


def test_the_lag_is_given_sorted_by_group(whole: Figures) -> None:
    assert whole.as_json()["consumer_lag"] == {
        "group:0": {"intents": 3, "reports": 0, "total": 3},
        "group:1": {"intents": 0, "reports": 2, "total": 2}}


def test_the_positions_the_run_log_carries_are_kept(log: Log) -> None:
    assert tally_of(log).carried == {TopicPartition(topics.INTENTS, 0): 7,
                                     TopicPartition(topics.REPORTS, 0): 40}


def test_a_window_counts_runs_created_in_it_and_models_and_letters_written_in_it(
        log: Log) -> None:
    figures = compute(tally_of(log), now=NOW, since=T0 + 150)
    assert figures.runs == {"running": 2, "succeeded": 0, "failed": 1, "cancelled": 1}
    assert sorted(figures.run_duration.values) == [1, 6]
    assert (figures.gates_passed, figures.gates_rejected) == (0, 1)
    assert (figures.models, figures.models_traceable) == (2, 1)
    assert figures.dead_letters == {"baton.coordinator": 1, "unknown": 1}
    assert figures.agents == {"alive": 3, "draining": 1, "lost": 1, "stopped": 1}


def test_a_pipeline_filter_narrows_runs_tasks_gates_and_models(log: Log) -> None:
    figures = compute(tally_of(log), now=NOW, pipeline="train")
    assert figures.runs == {"running": 0, "succeeded": 1, "failed": 2, "cancelled": 0}
    assert figures.success_rate == pytest.approx(1 / 3)
    assert {t.pipeline for t in figures.retries} == {"train"}
    assert (figures.models, figures.models_traceable) == (2, 2)
    assert figures.as_json()["window"]["pipeline"] == "train"


def test_an_empty_log_has_no_rates_rather_than_zero() -> None:
    figures = compute(Tally(), now=NOW)
    assert (figures.success_rate, figures.retry_rate, figures.gate_pass_rate,
            figures.lineage_completeness) == (None, None, None, None)
    assert figures.as_json()["run_duration_s"] == {"count": 0, "p50": None, "p95": None}


def test_observe_tells_what_instruments_record_as_it_happens(log: Log) -> None:
    tally, seen = Tally(), []
    for record in log.records:
        seen.extend(observe(tally, record))
    assert next(s for s in seen if isinstance(s, Ended)) == Ended("train", "succeeded", 2, 10)
    started = [s for s in seen if isinstance(s, Started)]
    assert [s.queued_s for s in started] == [2, 1, 1, 4, 1, 1, 3]
    assert [s.trigger_latency_s for s in started if s.trigger_latency_s is not None] == [
        2, 4, 1, 3]


def test_a_series_cuts_the_span_into_windows_that_add_up(log: Log) -> None:
    # given the known log, cut into windows of 250 s from its start
    tally = tally_of(log)
    points = series(tally, now=NOW, start=T0, step=250)
    # then each window counts the runs created in it, and together they count every run
    assert [(p.since, p.until) for p in points] == [
        (T0, T0 + 250), (T0 + 250, T0 + 500), (T0 + 500, T0 + 750), (T0 + 750, NOW)]
    assert [sum(p.runs.values()) for p in points] == [3, 2, 1, 0]
    assert [p.runs["failed"] for p in points] == [2, 0, 0, 0]
    assert sum(p.models for p in points) == 3
    whole = compute(tally, now=NOW)
    assert sum(p.run_duration.count for p in points) == whole.run_duration.count
