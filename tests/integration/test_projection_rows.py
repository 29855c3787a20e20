"""What a run row (and `baton runs show`) says about scheduling: the run's priority, why a task
waits, and each attempt's agent, GPUs, outcome, queue time and lost evidence.

The runs are driven by the real decide through the pure harness, so the rows are what the
projector would write for those logs.
"""

from __future__ import annotations

import json
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import reports as rp
from events.common import ArtifactRef, Resources
from events.intents import RunRequested
from events.registry import ModelRegistered
from events.triggers import DataArrived, TriggerInfo
from orchestrator.cli.render import event_line, run_detail
from orchestrator.core.ids import run_id_for
from orchestrator.core.state import Attempt, AttemptStatus, TaskState, TaskStatus
from orchestrator.store import rows
from orchestrator.store.rows import RowDocs, run_row
from tests.core.harness import pipeline, ref, task
from tests.core.support import CheckedHarness, register_task

EVIDENCE = "no heartbeat for 15.2s (expiry 10s, coordinator clock)"


def started_on_a_gpu_then_lost() -> tuple[CheckedHarness, str]:
    """A one-task GPU run at priority 7: attempt 1 starts on gpu-a 2.5 s after it was ready,
    gpu-a is lost, attempt 2 waits 3 s for gpu-b to join and succeeds there."""
    h = CheckedHarness()
    spec = pipeline(task("train", gpus=1, attempts=3, backoff_s=0.5), name="trainer")
    run_id = run_id_for(spec.name, "idempotency_key", "k1")
    h.feed(RunRequested(run_id=run_id, spec=spec, priority=7,
                        trigger=TriggerInfo(type="manual", event_id="k1", subject="trainer")))
    h.agent("gpu-a", gpus=2)
    h.now += 2.5
    h.tick()
    first = h.last_execute("train")
    h.report(rp.AttemptAccepted, first, gpus=first.gpus)
    h.report(rp.AttemptStarted, first, gpus=first.gpus)
    h.lose("gpu-a", EVIDENCE)
    h.tick(h.now + 1)  # lost; the retry waits out its backoff
    h.tick(h.now + 1)  # ready again, and nothing live to run it
    h.agent("gpu-b", gpus=1)
    h.tick(h.now + 3)
    second = h.last_execute("train")
    h.report(rp.AttemptAccepted, second, gpus=second.gpus)
    h.report(rp.AttemptStarted, second, gpus=second.gpus)
    h.report(rp.AttemptSucceeded, second, output=ref("train"))
    return h, run_id


def test_a_row_keeps_each_attempt_with_its_agent_gpus_queue_time_and_lost_evidence() -> None:
    # given: a GPU task lost with its agent and retried on another
    h, run_id = started_on_a_gpu_then_lost()

    # when: its row is built
    row = run_row(h.run(run_id))

    # then: the run's priority, and both attempts as they happened
    assert (row["priority"], row["status"]) == (7, "succeeded")
    (train,) = row["tasks"]
    assert train["attempts"] == 2
    history = [(a["number"], a["agent_id"], a["gpus"], a["status"], a["error"])
               for a in train["attempt_history"]]
    assert history == [(1, "gpu-a", [0], "lost", EVIDENCE), (2, "gpu-b", [0], "succeeded", None)]
    assert [a["queued_s"] for a in train["attempt_history"]] == [2.5, 3.0]


def test_a_row_has_each_attempts_times_for_a_timeline() -> None:
    # given: the GPU task lost with its agent and retried on another
    h, run_id = started_on_a_gpu_then_lost()

    # when: its row is built
    (train,) = run_row(h.run(run_id))["tasks"]

    # then: each attempt says when it queued, was placed, started and ended, as the log has
    # them: the lost one ended when the loss was logged, a tick after its agent went silent;
    # the retry queued from when its backoff let it be ready, and waited for gpu-b
    timeline = [(a["status"], a["queued_at"], a["scheduled_at"], a["started_at"], a["ended_at"])
                for a in train["attempt_history"]]
    assert timeline == [("lost", 1000.0, 1002.5, 1002.5, 1003.5),
                        ("succeeded", 1004.5, 1007.5, 1007.5, 1007.5)]


def data_arrival_that_registered_a_model() -> tuple[CheckedHarness, str]:
    """A train -> register run started by digits v3 arriving at 1000, with a param: `train`
    waits for an agent, is placed at 1001.5, starts at 1002 (its agent held `started` 0.25 s),
    succeeds at 1003.5, and the registry registers its model as version 4."""
    h = CheckedHarness(now=1000.0)
    spec = pipeline(task("train"), register_task(model="digits-clf"), name="retrain")
    arrived = DataArrived(dataset="digits", version="v3", uri="file:///data/digits/v3.npz",
                          sha256="a" * 64)
    trigger = TriggerInfo(type="data_arrived", event_id="evt-7", subject="digits",
                          payload=arrived.model_dump(mode="json"))
    run_id = run_id_for(spec.name, "trigger", "evt-7")
    h.feed(RunRequested(run_id=run_id, spec=spec, trigger=trigger, params={"lr": 0.1}))
    h.agent("cpu-a")
    h.tick(1001.5)
    cmd = h.last_execute("train")
    h.now = 1002.25
    h.report(rp.AttemptStarted, cmd, held_s=0.25)
    h.now = 1003.5
    h.succeed(cmd)
    (request,) = h.registrations()
    h.feed(ModelRegistered(run_id=run_id, task="register", model="digits-clf", version=4,
                           artifact=request.artifact, lineage=request.lineage))
    return h, run_id


def test_a_row_has_the_params_the_trigger_payload_and_the_lineage_to_the_model() -> None:
    # given: a run started by a data arrival, which registered a model version
    h, run_id = data_arrival_that_registered_a_model()

    # when: its row is built
    row = run_row(h.run(run_id))

    # then: the params and the trigger's payload as logged, and the lineage from the trigger
    # event and dataset version through the pipeline version to the model version
    assert row["params"] == {"lr": 0.1}
    assert row["trigger_payload"]["uri"] == "file:///data/digits/v3.npz"
    assert row["lineage"] == {
        "trigger_type": "data_arrived", "trigger_event_id": "evt-7",
        "dataset": "digits", "dataset_version": "v3",
        "dataset_uri": "file:///data/digits/v3.npz", "dataset_sha256": "a" * 64,
        "pipeline": "retrain", "pipeline_version": h.run(run_id).spec.version(),
        "models": [{"name": "digits-clf", "version": 4}]}


def test_a_runs_summary_leaves_out_its_params_trigger_payload_and_lineage() -> None:
    # given: the data-arrival run, with params and a trigger payload
    h, run_id = data_arrival_that_registered_a_model()
    run = h.run(run_id)

    # when: its summary (what a list of runs stores) is written
    summary = json.loads(rows.summary_text(run))

    # then: the row's other fields, its tasks counted, and none of what may be large
    row = run_row(run)
    assert {"params", "trigger_payload", "lineage"} <= row.keys()
    assert summary == {**{k: v for k, v in row.items() if k not in (
        "params", "trigger_payload", "lineage", "tasks")},
        "task_count": 2, "task_states": {"succeeded": 2}}


def test_a_manual_runs_lineage_names_no_dataset_the_log_does_not_have() -> None:
    # given: a manual run with no --uri, which registered nothing
    h = CheckedHarness()
    run_id = h.start(pipeline(task("train"), name="adhoc"))

    # when: its row is built
    lineage = run_row(h.run(run_id))["lineage"]

    # then: the trigger and the pipeline, and no dataset or model made up
    assert (lineage["trigger_type"], lineage["trigger_event_id"]) == ("manual", "t1")
    assert [lineage[k] for k in ("dataset", "dataset_version", "dataset_uri")] == [None] * 3
    assert (lineage["pipeline"], lineage["models"]) == ("adhoc", [])


def test_runs_show_prints_the_priority_and_one_line_per_attempt() -> None:
    # given: the row of that run
    h, run_id = started_on_a_gpu_then_lost()

    # when: it is rendered for a terminal
    text = run_detail(run_row(h.run(run_id)))

    # then: the priority, the task line as before, and each attempt under it
    lines = text.splitlines()
    assert "  priority  7" in lines
    task_at = next(i for i, line in enumerate(lines) if " train " in line)
    assert "succeeded" in lines[task_at] and "attempts=2" in lines[task_at]
    first, second = lines[task_at + 1], lines[task_at + 2]
    assert first.split()[:5] == ["#1", "gpu-a", "GPUs", "0", "lost"]
    assert "queued 2.50 s" in first and EVIDENCE in first
    assert second.split()[:5] == ["#2", "gpu-b", "GPUs", "0", "succeeded"]
    assert len(lines) == task_at + 3


def test_a_waiting_task_says_why_on_its_line_and_has_no_attempt_yet() -> None:
    # given: a GPU task and only a CPU agent
    h = CheckedHarness()
    h.agent("cpu-only", gpus=0)
    run_id = h.start(pipeline(task("train", gpus=1)))

    # when: its row is rendered
    row = run_row(h.run(run_id))
    text = run_detail(row)

    # then: the task waits with the reason, on its own line, and nothing ran
    (train,) = row["tasks"]
    assert (train["status"], train["waiting"], train["attempt_history"]) == (
        "ready", "no agent advertises gpus>=1", [])
    line = next(x for x in text.splitlines() if " train " in x)
    assert line.endswith("attempts=0  waiting: no agent advertises gpus>=1")


def test_watch_lines_name_the_gpus_the_queue_time_and_the_lost_evidence() -> None:
    # given: the log of the lost-then-retried run
    h, _ = started_on_a_gpu_then_lost()

    # when: `baton watch` renders it
    lines = [line for env in h.log if (line := event_line(env))]

    # then: placement, start (with queue time) and loss say what an operator asks first
    text = "\n".join(lines)
    assert "train: attempt 1 scheduled on gpu-a, GPUs 0" in text
    assert "train: started (attempt 1, GPUs 0, queued 2.50 s)" in text
    assert f"train: attempt 1 lost on gpu-a: {EVIDENCE}" in text


def test_a_row_from_an_older_baton_without_history_still_renders() -> None:
    # given: a row as an older projector wrote it (no attempt history, no priority)
    h, run_id = started_on_a_gpu_then_lost()
    row = run_row(h.run(run_id))
    del row["priority"]
    for t in row["tasks"]:
        del t["attempt_history"]

    # when / then: it renders with priority 0 and no attempt lines
    text = run_detail(row)
    assert "  priority  0" in text.splitlines()
    assert "#1" not in text


def test_runs_show_gives_a_manual_run_a_lineage_without_a_dataset_and_each_attempt_its_times(
) -> None:
    # given: a manual run whose attempt was lost after 1 s, and its retry
    h, run_id = started_on_a_gpu_then_lost()

    # when: it is rendered for a terminal
    lines = run_detail(run_row(h.run(run_id))).splitlines()

    # then: the lineage names no dataset and no model, and each attempt says how long it ran
    version = h.run(run_id).spec.version()[:8]
    assert f"  lineage   manual event k1 → pipeline trainer@{version}" in lines
    task_at = next(i for i, line in enumerate(lines) if " train " in line)
    assert "queued 2.50 s" in lines[task_at + 1] and "ran 1.00 s" in lines[task_at + 1]
    assert "ran 0.00 s" in lines[task_at + 2]


def test_a_row_from_before_attempt_times_and_lineage_still_renders() -> None:
    # given: a row as the projector of ROW_VERSION 4 wrote it
    h, run_id = started_on_a_gpu_then_lost()
    row = run_row(h.run(run_id))
    for name in ("lineage", "params", "trigger_payload"):
        del row[name]
    for t in row["tasks"]:
        for a in t["attempt_history"]:
            for name in ("queued_at", "scheduled_at", "started_at", "ended_at"):
                del a[name]

    # when / then: it renders with no lineage line and no run times
    text = run_detail(row)
    assert "lineage" not in text and " ran " not in text
    assert "queued 2.50 s" in text


def test_runs_show_prints_the_newest_failures_traceback_under_its_attempt() -> None:
    # given: a task whose two attempts failed, each with the traceback its agent reported
    h = CheckedHarness()
    h.agent("cpu-a")
    run_id = h.start(pipeline(task("parse", attempts=2, backoff_s=0.5)))
    for n in (1, 2):
        cmd = h.last_execute("parse")
        h.report(rp.AttemptStarted, cmd)
        h.report(rp.AttemptFailed, cmd, reason="exception", message=f"bad row {n}",
                 traceback=f"Traceback (most recent call last):\n  in parse_{n}\n"
                           f"ValueError: bad row {n}\n")
        h.tick(h.now + 1)

    # when: its row is built and rendered
    row = run_row(h.run(run_id))
    lines = run_detail(row).splitlines()

    # then: the row has every attempt's traceback; the terminal, the newest one, indented
    (parse,) = row["tasks"]
    assert [a["traceback"].splitlines()[-1] for a in parse["attempt_history"]] == [
        "ValueError: bad row 1", "ValueError: bad row 2"]
    second = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#2"))
    assert lines[second + 1:] == [" " * 12 + "Traceback (most recent call last):",
                                  " " * 12 + "  in parse_2", " " * 12 + "ValueError: bad row 2"]
    assert "in parse_1" not in "\n".join(lines)
    assert "bad row 1" in lines[second - 1]


def lost_failed_interrupted_then_succeeded() -> tuple[CheckedHarness, str]:
    """A task with one retry: its agent expires, then it raises, then a drain interrupts it,
    then it succeeds: 4 attempts, 1 failed, 2 lost to agents."""
    h = CheckedHarness()
    h.agent("cpu-a")
    run_id = h.start(pipeline(task("train", attempts=2, backoff_s=0.5)))
    cmd = h.last_execute("train")
    h.start_attempt(cmd)
    h.lose("cpu-a", EVIDENCE)
    h.tick(h.now + 1)
    h.revive("cpu-a")
    h.tick(h.now + 1)
    h.fail("train")
    h.tick(h.now + 1)
    cmd = h.last_execute("train")
    h.start_attempt(cmd)
    h.give_up(cmd, "drained")
    h.tick(h.now + 2)
    h.complete("train")
    return h, run_id


def test_a_row_counts_failed_attempts_apart_from_those_lost_to_agents() -> None:
    # given: a task that lost two attempts to its agents and failed one itself
    h, run_id = lost_failed_interrupted_then_succeeded()

    # when: its row is built (what `runs show --json` prints)
    (train,) = run_row(h.run(run_id))["tasks"]

    # then: the counts of each budget, and each attempt's status says who ended it
    assert (train["attempts"], train["failed_attempts"], train["lost_attempts"]) == (4, 1, 2)
    assert [a["status"] for a in train["attempt_history"]] == [
        "lost", "failed", "interrupted", "succeeded"]


def test_runs_show_tells_failed_attempts_from_those_lost_to_agents() -> None:
    # given: the row of that run
    h, run_id = lost_failed_interrupted_then_succeeded()

    # when: it is rendered for a terminal
    lines = run_detail(run_row(h.run(run_id))).splitlines()

    # then: the task line counts each kind, and each attempt line names how it ended
    task_at = next(i for i, line in enumerate(lines) if " train " in line)
    assert "attempts=4 (1 failed, 2 lost to agents)" in lines[task_at]
    statuses = [line.split()[4] for line in lines[task_at + 1:task_at + 5]]  # after "no GPU"
    assert statuses == ["lost", "failed", "interrupted", "succeeded"]
    assert "was draining and its grace of 30 s ran out" in lines[task_at + 3]


def test_user_data_reaches_the_terminal_escaped_in_runs_show_and_watch() -> None:
    # given: a task whose progress message, error and traceback carry terminal controls
    h = CheckedHarness()
    h.agent("cpu-a")
    run_id = h.start(pipeline(task("parse")))
    cmd = h.last_execute("parse")
    h.report(rp.AttemptStarted, cmd)
    h.report(rp.AttemptProgress, cmd, fraction=0.5, message="half\x1b]0;pwned\x07")
    h.report(rp.AttemptFailed, cmd, reason="exception", message="bad\x00row\x1b[2J",
             traceback="Traceback (most recent call last):\nValueError: bad\x1b[2J\n")

    # when: `baton runs show` and `baton watch` render it
    shown = run_detail(run_row(h.run(run_id)))
    watched = "\n".join(line for env in h.log if (line := event_line(env)))

    # then: no control character reaches the terminal; each is written as its escape
    for text in (shown, watched):
        assert not any(ch in text for ch in "\x00\x07\x1b")
    assert "bad\\x00row\\x1b[2J" in shown
    assert "ValueError: bad\\x1b[2J" in shown
    assert "half\\x1b]0;pwned\\x07" in watched


def test_a_stored_row_is_the_row_as_json_and_renders_again_only_the_tasks_that_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a three-task chain, its row stored once, and a count of task renders
    h = CheckedHarness()
    spec = pipeline(task("a"), task("b", "a"), task("c", "b"), name="chain")
    run_id = run_id_for(spec.name, "idempotency_key", "k1")
    h.feed(RunRequested(run_id=run_id, spec=spec,
                        trigger=TriggerInfo(type="manual", event_id="k1", subject="chain")))
    h.agent("cpu-a", gpus=0)
    h.tick()
    docs, rendered = RowDocs(), list[str]()
    first = docs.doc(h.run(run_id))
    real_task_text = rows.task_text

    def counted(task: TaskState) -> str:
        rendered.append(task.name)
        return real_task_text(task)

    monkeypatch.setattr(rows, "task_text", counted)

    # when: the first task succeeds, and then the others
    a = h.last_execute("a")
    h.report(rp.AttemptStarted, a)
    h.report(rp.AttemptSucceeded, a, output=ref("a"))
    after_a = docs.doc(h.run(run_id))
    rendered_after_a = sorted(rendered)
    row_after_a = json.dumps(run_row(h.run(run_id)), sort_keys=True)
    for name in ("b", "c"):
        attempt = h.last_execute(name)
        h.report(rp.AttemptStarted, attempt)
        h.report(rp.AttemptSucceeded, attempt, output=ref(name))
    finished = docs.doc(h.run(run_id))

    # then: each stored text is the row as json, and only the tasks that moved (a done, b
    # scheduled) were rendered again
    assert json.loads(first)["tasks"][0]["status"] == "scheduled"
    assert after_a == row_after_a != first
    assert rendered_after_a == ["a", "b"]
    assert finished == json.dumps(run_row(h.run(run_id)), sort_keys=True)
    assert json.loads(finished)["status"] == "succeeded"


TEXTS = st.text(st.characters(codec="utf-8"), max_size=6)
NUMBERS = st.one_of(st.integers(-3, 2**70), st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS)
TIMES = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def tasks(draw: st.DrawFn) -> TaskState:
    """Task states of every shape a row shows: any attempt statuses (rejected ones are not
    counted), GPUs, errors, queue times and times, progress, outputs, metrics and metadata of any
    scalar, text with quotes, control characters and non-ASCII."""
    attempts = tuple(Attempt(
        number=n, attempt_id=draw(TEXTS), agent_id=draw(TEXTS), placement=0,
        resources=Resources(), status=draw(st.sampled_from(get_args(AttemptStatus))),
        gpus=tuple(draw(st.lists(st.integers(0, 7), max_size=3))),
        error=draw(st.none() | TEXTS), traceback=draw(st.none() | TEXTS),
        queued_s=draw(st.none() | st.floats(allow_nan=True, allow_infinity=True)),
        queued_at=draw(TIMES), scheduled_at=draw(TIMES), started_at=draw(TIMES),
        ended_at=draw(TIMES),
    ) for n in range(1, draw(st.integers(0, 3)) + 1))
    output = draw(st.none() | st.builds(
        ArtifactRef, uri=TEXTS, sha256=st.just("0" * 64), size=st.integers(0, 2**40)))
    return TaskState(
        name=draw(TEXTS), status=draw(st.sampled_from(get_args(TaskStatus))), attempts=attempts,
        waiting=draw(st.none() | TEXTS), progress=draw(NUMBERS), progress_message=draw(TEXTS),
        output=output, metrics=draw(st.dictionaries(TEXTS, NUMBERS, max_size=3)),
        metadata=draw(st.dictionaries(TEXTS, SCALARS, max_size=3)),  # type: ignore[arg-type]
        error=draw(st.none() | TEXTS))


@settings(max_examples=300, deadline=None)
@given(tasks())
def test_a_tasks_stored_text_is_its_row_as_json_to_the_byte(task: TaskState) -> None:
    # given: any task state; when: its text is written directly (the projector's renders)
    text = rows.task_text(task)
    # then: it is what json writes of the row, byte for byte
    assert text == json.dumps(rows.task_row(task), sort_keys=True)


def test_a_wide_rows_text_is_the_row_as_json_as_its_tasks_move_and_once_it_ends() -> None:
    # given: a 1 -> 3 -> 1 run with a stored text, on one agent with room for all
    h = CheckedHarness()
    spec = pipeline(task("root"), *(task(f"m{i}", "root") for i in range(3)),
                    task("sink", "m0", "m1", "m2"), name="wide")
    run_id = run_id_for(spec.name, "idempotency_key", "k1")
    h.feed(RunRequested(run_id=run_id, spec=spec,
                        trigger=TriggerInfo(type="manual", event_id="k1", subject="wide")))
    h.agent("cpu-a", gpus=0)
    h.tick()
    docs = RowDocs()
    texts = [docs.doc(h.run(run_id))]
    # when: each task starts and succeeds in turn, the text written again after each report
    for name in ("root", "m0", "m1", "m2", "sink"):
        attempt = h.last_execute(name)
        for succeeded in (False, True):
            if succeeded:
                h.report(rp.AttemptSucceeded, attempt, output=ref(name))
            else:
                h.report(rp.AttemptStarted, attempt)
            texts.append(docs.doc(h.run(run_id)))
            # then: every text is the row as json at that moment
            assert texts[-1] == json.dumps(run_row(h.run(run_id)), sort_keys=True)
    assert json.loads(texts[-1])["status"] == "succeeded"
    assert len(set(texts)) == len(texts)
