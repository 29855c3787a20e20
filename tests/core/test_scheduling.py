"""Queueing decisions over the real decide: GPUs by index, queue time, schedule-to-start,
priorities with aging, fair share between pipelines, concurrency limits, reservations."""

from __future__ import annotations

import pytest

from events import reports as rp
from events import runs as ev
from events.commands import CancelTask
from events.common import Capabilities, GpuInfo, Resources
from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.core.decide import next_deadline
from orchestrator.core.flow import queue_of, waiting_for_room
from orchestrator.core.settings import Settings
from orchestrator.core.state import AgentStatus
from tests.core.harness import finish, labelled_agent, pipeline, request, task
from tests.core.support import CheckedHarness

NOW = 1_000.0


def given(*agents: tuple[str, float], settings: Settings | None = None) -> CheckedHarness:
    h = CheckedHarness(now=NOW, settings=settings or Settings())
    for agent_id, cpus in agents:
        h.agent(agent_id, cpus=cpus)
    return h


def placed(h: CheckedHarness) -> list[tuple[str, str]]:
    return [(e.run_id, e.task) for e in h.executes()]


# --- GPUs and queue time -------------------------------------------------------------------

def test_gpu_tasks_get_distinct_reserved_gpu_indices_in_the_command_and_the_log() -> None:
    h = given()
    h.agent("g1", cpus=8, gpus=2)
    rid = h.start(pipeline(task("x", gpus=1), task("y", gpus=1), task("z", gpus=1)))

    x, y = h.executes()
    assert (x.gpus, y.gpus) == ((0,), (1,))
    assert [s.gpus for s in h.events(rid, ev.TaskScheduled)] == [(0,), (1,)]
    (waiting,) = h.events(rid, ev.TaskWaiting)
    assert (waiting.task, waiting.reason) == ("z", "all fitting agents are full")

    finish(h, rid, "x")
    assert h.last_execute("z").gpus == (0,), "the GPU freed by x, not y's"


def test_a_command_is_addressed_to_the_process_that_advertised_the_agent_id_last() -> None:
    # given agent a1 as the process with incarnation "second" (the fleet tracker's view)
    h = given(("a1", 4))
    h.lent.agents["a1"].incarnation = "second"
    # when a task is placed on it
    h.start(pipeline(task("x")))
    # then its command is for that process alone
    assert h.last_execute("x").incarnation == "second"


def test_queue_time_from_ready_to_started_is_recorded_for_every_attempt() -> None:
    h = given()
    rid = h.start(pipeline(task("a", attempts=2, backoff_s=1)))
    h.now += 7  # no agent: it waits
    h.agent("a1")
    h.tick()
    h.now += 0.5
    h.fail("a")
    (retry,) = h.events(rid, ev.TaskRetryScheduled)
    h.tick(retry.retry_at)
    h.now += 2
    h.report(rp.AttemptStarted, h.last_execute("a"))

    assert [s.queued_s for s in h.events(rid, ev.TaskStarted)] == [7.5, 2.0]


# --- schedule-to-start ---------------------------------------------------------------------

def gpu_task(timeout: float) -> TaskSpec:
    return TaskSpec(name="train", function="tests.core.fake:train",
                    resources=Resources(cpus=1, memory_mb=100, gpus=1),
                    schedule_to_start_timeout_s=timeout)


def test_a_task_no_agent_can_start_in_time_fails_with_the_reason_it_waited() -> None:
    h = given(("cpu", 4))
    rid = h.start(pipeline(gpu_task(30)))
    h.tick(NOW + 29.9)
    assert h.run(rid).status == "running"

    h.tick(NOW + 30)

    (failed,) = h.events(rid, ev.TaskFailed)
    assert (failed.reason, failed.final, failed.retryable) == ("not_started", True, False)
    assert failed.message == ("not started within its schedule-to-start timeout of 30s: "
                              "no agent advertises gpus>=1")
    assert h.run(rid).status == "failed"


def test_an_attempt_placed_but_not_started_in_time_is_withdrawn_and_fails() -> None:
    h = given()
    h.agent("g1", gpus=1)
    rid = h.start(pipeline(gpu_task(10)))
    cmd = h.last_execute("train")
    h.report(rp.AttemptAccepted, cmd)

    h.tick(NOW + 10)

    (cancel,) = h.sent(CancelTask)
    assert (cancel.agent_id, cancel.attempt_id) == ("g1", cmd.attempt_id)
    (failed,) = h.events(rid, ev.TaskFailed)
    assert failed.reason == "not_started" and "placed on g1 but not started" in failed.message
    h.report(rp.AttemptStarted, cmd)
    assert h.events(rid, ev.TaskStarted) == [], "a late start is ignored"


def test_a_started_task_is_not_failed_by_its_schedule_to_start_timeout() -> None:
    h = given()
    h.agent("g1", gpus=1)
    rid = h.start(pipeline(gpu_task(10)))
    h.report(rp.AttemptStarted, h.last_execute("train"))

    h.tick(NOW + 60)

    assert h.events(rid, ev.TaskFailed) == []


def test_a_refused_task_then_failed_for_not_starting_leaves_no_deadline_behind() -> None:
    # given a GPU task its agent refused (placed again only after a backoff), beside a long one
    h = given()
    h.agent("g1", cpus=4, gpus=1)
    rid = h.start(pipeline(gpu_task(0.1), task("long")))
    h.report(rp.AttemptStarted, h.last_execute("long"))
    h.report(rp.AttemptRejected, h.last_execute("train"), reason="busy")
    assert h.run(rid).tasks["train"].place_after == pytest.approx(NOW + 0.2)

    # when its schedule-to-start timeout runs out before that backoff does
    h.tick(NOW + 0.1)
    assert h.run(rid).tasks["train"].status == "failed"

    # then the backoff of the failed task is no deadline: only the run's deadline is left
    assert next_deadline(h.state) == NOW + 3600
    assert h.tick(NOW + 0.2) == [], "nothing was due at the failed task's old backoff"


# --- priorities, aging, fair share ---------------------------------------------------------

def one_task(name: str) -> PipelineSpec:
    return PipelineSpec(name=name, tasks=(task("t"),))


def test_a_higher_priority_run_gets_freed_capacity_before_older_runs() -> None:
    h = given(("a1", 1))
    first = request(h, one_task("backfill"), "b0")
    backlog = [request(h, one_task("backfill"), f"b{i}") for i in range(1, 4)]
    urgent = request(h, one_task("retrain"), "drift", priority=10)

    finish(h, first, "t")

    assert placed(h)[-1] == (urgent, "t")
    assert all((rid, "t") not in placed(h) for rid in backlog)


def test_waiting_raises_priority_so_a_low_priority_run_is_not_starved() -> None:
    h = given(("a1", 1), settings=Settings(aging_s=10))
    blocker = request(h, one_task("p"), "blocker")
    old_low = request(h, one_task("backfill"), "low")
    h.now += 25  # low has aged by two levels
    high = request(h, one_task("retrain"), "high", priority=2)

    finish(h, blocker, "t")

    assert placed(h)[-1] == (old_low, "t")
    assert (high, "t") not in placed(h)


def test_pipelines_of_equal_priority_take_turns_instead_of_first_come_first_served() -> None:
    h = given(("a1", 2))
    h.lent.agents.clear()  # no agent yet: everything below becomes ready and waits
    bulk = []
    for i in range(5):
        bulk.append(request(h, one_task("bulk"), f"bulk{i}"))
        h.now += 1
    single = request(h, one_task("single"), "single")
    h.agent("a1", cpus=2)

    h.tick()

    assert placed(h) == [(bulk[0], "t"), (single, "t")]


# --- limits --------------------------------------------------------------------------------

def test_a_pipeline_concurrency_limit_counts_tasks_across_its_runs() -> None:
    h = given(("a1", 8))
    spec = PipelineSpec(name="etl", tasks=(task("t"),), max_concurrent_tasks=2)
    runs = [request(h, spec, f"r{i}") for i in range(3)]

    assert placed(h) == [(runs[0], "t"), (runs[1], "t")]
    (waiting,) = h.events(runs[2], ev.TaskWaiting)
    assert waiting.reason == "pipeline etl is at its limit of 2 running tasks"

    finish(h, runs[0], "t")
    assert placed(h)[-1] == (runs[2], "t")


def test_a_task_held_by_a_limit_is_in_the_queue_that_freed_capacity_wakes() -> None:
    # given a pipeline at its limit of 1 running task, with a second run's task held by it
    h = given(("a1", 8))
    spec = PipelineSpec(name="etl", tasks=(task("t"),), max_concurrent_tasks=1)
    first, _ = request(h, spec, "r0"), request(h, spec, "r1")
    # when the group's queue is read
    queue = queue_of(h.state, h.now, h.settings)
    # then nothing wants room (capacity alone would not start it), but something waits:
    # an attempt ending anywhere may lift the limit
    assert (queue.wants, queue.held, queue.waits) == ((), True, True)
    finish(h, first, "t")
    assert not queue_of(h.state, h.now, h.settings).waits


def test_a_label_pool_limit_holds_tasks_requesting_that_label_but_not_others() -> None:
    h = given(settings=Settings(pool_limits=(("pool=training", 1),)))
    labelled_agent(h, "t1", 8, pool="training")
    pool = Resources(cpus=1, memory_mb=100, labels={"pool": "training"})
    spec = PipelineSpec(name="train", tasks=(
        TaskSpec(name="a", function="m:a", resources=pool),
        TaskSpec(name="b", function="m:b", resources=pool),
        TaskSpec(name="c", function="m:c")))
    rid = request(h, spec, "r")

    assert sorted(t for _, t in placed(h)) == ["a", "c"]
    (waiting,) = h.events(rid, ev.TaskWaiting)
    assert (waiting.task, waiting.reason) == (
        "b", "pool pool=training is at its limit of 1 running tasks")


def test_a_big_task_that_waited_reserves_an_agent_so_small_tasks_cannot_starve_it() -> None:
    h = given(("a1", 4), settings=Settings(aging_s=30))
    small = PipelineSpec(name="small", tasks=tuple(task(f"s{i}") for i in range(12)))
    big = PipelineSpec(name="big", tasks=(task("b", cpus=4),))
    s = request(h, small, "s")
    b = request(h, big, "b")
    assert len(placed(h)) == 4
    h.now += 31  # the big task has waited past one aging interval

    for name in ("s0", "s1", "s2", "s3"):
        finish(h, s, name)

    assert placed(h)[-1] == (b, "b"), "freed slots went to small tasks instead"
    assert len(placed(h)) == 5


def test_an_unknown_placement_strategy_is_refused_instead_of_meaning_pack() -> None:
    # given a misspelt strategy, when settings are made, then they say what to use instead
    with pytest.raises(ValueError, match="unknown placement strategy 'spead': use one of spread"):
        Settings(strategy="spead")  # type: ignore[arg-type]


def test_a_draining_agent_gets_no_new_work() -> None:
    h = given(("a1", 4), ("a2", 4))
    h.lent.agents["a1"].draining = True

    h.start(pipeline(task("x"), task("y")))

    assert {e.agent_id for e in h.executes()} == {"a2"}


def test_gpu_requests_wait_for_a_qualifying_gpu_naming_the_model() -> None:
    h = given()
    gpus = (GpuInfo(index=0, model="Tesla T4", memory_mb=15360),)
    h.lent.agents["t4"] = AgentStatus("t4", Capabilities(cpus=8, memory_mb=8000, gpus=gpus), 5)
    need = Resources(gpus=1, gpu_model="A100")
    rid = request(h, PipelineSpec(name="p", tasks=(TaskSpec(name="big", function="m:f",
                                                         resources=need),)), "k")

    (waiting,) = h.events(rid, ev.TaskWaiting)
    assert waiting.reason == "no agent advertises gpus>=1 of model A100"
    assert h.executes() == []


def test_a_group_holds_freed_capacity_for_a_higher_priority_task_of_another_group() -> None:
    # given two partition groups of one process sharing the fleet, capacity index and board
    low, high = given(("a1", 1)), CheckedHarness(now=NOW)
    high.lent.agents, high.lent.in_flight = low.lent.agents, low.lent.in_flight
    high.lent.demand = low.lent.demand
    low.state.group, high.state.group = 0, 1
    busy = request(low, one_task("backfill"), "b0")
    backlog = request(low, one_task("backfill"), "b1")
    urgent = request(high, one_task("retrain"), "drift", priority=10)
    assert high.executes() == []
    high.lent.demand[1] = waiting_for_room(high.state, high.now, high.settings)

    # when the low group's task ends, freeing the only slot
    finish(low, busy, "t")

    # then the low group leaves it for the urgent task, which its own group then places
    assert (backlog, "t") not in placed(low)
    high.tick()
    assert placed(high) == [(urgent, "t")]
    high.lent.demand[1] = waiting_for_room(high.state, high.now, high.settings)
    assert high.lent.demand[1] == ()
