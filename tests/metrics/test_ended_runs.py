"""The ended runs' records, packed column by column (metrics/tally.EndedRuns): what goes in
comes out, exactly, in the order it went in."""

from __future__ import annotations

import sys
from array import array

from orchestrator.metrics.tally import EndedRuns, RunRecord

TRAIN = ("fetch", "fit")


def record(pipeline: str, status: str, created: float, finished: float | None,
           first: float | None, queued: list[float], tasks: tuple[str, ...],
           attempts: bytes, gates: tuple[bool, ...] = ()) -> RunRecord:
    return RunRecord(pipeline, status, created, finished, first, array("d", queued), tasks,
                     attempts, gates)


RECORDS = [
    record("train", "succeeded", 10.0, 22.5, 12.0, [2.0, 1.0, 1.0], TRAIN, bytes([1, 2]),
           (True,)),
    record("train", "failed", 100.0, 105.0, 104.0, [4.0], TRAIN, bytes([1, 0]), (False, True)),
    record("etl", "cancelled", 400.0, 401.0, None, [], ("load",), bytes([0])),
    record("etl", "cancelled", 500.0, None, None, [], ("load",), bytes([0])),
    record("train", "succeeded", 600.0, 610.0, 601.0, [0.25] * 300, TRAIN, bytes([255, 1])),
]


def test_every_record_comes_out_as_it_went_in_and_in_order() -> None:
    # given records of two pipelines: times missing, no queue times, many, gates or none
    ended = EndedRuns()
    # when each is put in as its run ends
    for r in RECORDS:
        ended.append(r)
    # then they come out equal, in the same order, however often they are read
    assert len(ended) == len(RECORDS)
    assert list(ended) == RECORDS
    assert list(ended) == RECORDS


def test_runs_of_one_pipeline_version_share_their_names() -> None:
    # given two runs of one pipeline, their tasks named by one tuple each time (as record_of
    # shares them), and a run of another
    ended = EndedRuns()
    for r in RECORDS[:3]:
        ended.append(r)
    # when they are read
    first, second, other = ended
    # then the pipeline and its tasks are kept once, the status by a byte
    assert len(ended.shapes) == 2 and len(ended.statuses) == 3
    assert first.tasks is second.tasks and other.tasks == ("load",)
    assert first.pipeline is second.pipeline


def test_a_run_costs_tens_of_bytes_not_a_record_of_its_own() -> None:
    # given a thousand one-task runs
    ended = EndedRuns()
    for i in range(1000):
        ended.append(record("etl", "succeeded", float(i), i + 0.5, i + 0.1, [0.1], ("load",),
                            bytes([1])))
    # when the columns are measured
    columns = [ended.created, ended.finished, ended.first_started, ended.status, ended.shape,
               ended.queued, ended.queued_end, ended.attempts, ended.gates, ended.gates_end]
    per_run = sum(sys.getsizeof(c) for c in columns) / len(ended)
    # then a run takes well under a hundred bytes (a RunRecord alone took ~300)
    assert per_run < 100
