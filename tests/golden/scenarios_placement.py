"""Golden history scenarios of placement: waits, rejections, GPUs, schedule-to-start,
priorities, aging, fair share, reservations and limits."""

from __future__ import annotations

from collections.abc import Callable

from events import reports as rp
from events.common import Resources
from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.core.decide import next_deadline
from orchestrator.core.settings import Settings
from tests.core.harness import finish, gpu_agent, labelled_agent, pipeline, request, task
from tests.core.support import CheckedHarness


def one_task(name: str) -> PipelineSpec:
    return PipelineSpec(name=name, tasks=(task("t"),))


def gpu_task(name: str, *, model: str | None = None, start_within: float | None = None
             ) -> TaskSpec:
    need = Resources(cpus=1, memory_mb=100, gpus=1, gpu_model=model)
    return TaskSpec(name=name, function=f"tests.core.fake:{name}", resources=need,
                    schedule_to_start_timeout_s=start_within)


# --- waits --------------------------------------------------------------------------------


def waits_for_an_agent(h: CheckedHarness) -> None:
    """No live agent: the task waits saying so (a tick changes nothing); an agent joins, the
    next tick places it, and its queue time counts the wait."""
    h.start(pipeline(task("a"), name="early"))
    h.tick()
    h.now += 7
    h.agent("a1")
    h.tick()
    h.now += 0.5
    h.complete("a")


def waits_for_room(h: CheckedHarness) -> None:
    """Every fitting agent is full (the draining one gets nothing): the third task waits
    until one of the first two ends."""
    h.agent("a1", cpus=2)
    h.agent("a2", cpus=4)
    h.lent.agents["a2"].draining = True
    h.start(pipeline(task("x"), task("y"), task("z"), name="busy"))
    for name in ("x", "y", "z"):
        h.now += 1
        h.complete(name)


def waits_for_a_gpu_model(h: CheckedHarness) -> None:
    """GPU tasks wait for a qualifying GPU, naming the model; an agent with two joins, they
    get distinct GPU indices, and the third gets the index the first one freed."""
    gpu_agent(h, "t4", "Tesla T4")
    rid = h.start(PipelineSpec(name="vision", tasks=tuple(
        gpu_task(n, model="A100") for n in ("x", "y", "z"))))
    h.now += 1
    gpu_agent(h, "a100", "NVIDIA A100-SXM4-40GB", gpus=2)
    h.tick()
    for name in ("x", "y", "z"):
        h.now += 1
        finish(h, rid, name)


def schedule_to_start_timeout(h: CheckedHarness) -> None:
    """Schedule-to-start timeouts: a GPU task no agent can run fails saying why it waited; one
    placed but not started in time is withdrawn, and its late start ignored."""
    h.agent("cpu", cpus=4)
    t0 = h.now
    h.start(pipeline(gpu_task("train", start_within=30), name="stuck"), key="t1")
    h.tick(t0 + 29.9)
    h.tick(t0 + 30)
    gpu_agent(h, "g1", "Tesla T4")
    h.start(pipeline(gpu_task("train", start_within=10), name="slow-start"), key="t2")
    cmd = h.last_execute("train")
    h.report(rp.AttemptAccepted, cmd)
    h.tick(h.now + 10)
    h.report(rp.AttemptStarted, cmd)


# --- rejections ---------------------------------------------------------------------------


def rejected_then_placed(h: CheckedHarness) -> None:
    """An agent rejects the command: placed again after the backoff without spending the
    retry budget; a command not accepted before its not_after is placed again too."""
    h.agent("a1")
    t0 = h.now
    h.start(pipeline(task("a"), name="picky"))
    h.report(rp.AttemptRejected, h.last_execute("a"), reason="draining")
    h.tick(t0 + 0.1)
    h.tick(t0 + 0.2)
    h.tick(h.last_execute("a").not_after + 1)
    h.complete("a")


def rejected_while_full(h: CheckedHarness) -> None:
    """A rejected task whose slot another task took waits for room, leaving no stale
    deadline, and is placed when that task ends."""
    h.agent("a1", cpus=1)
    h.start(pipeline(task("a"), task("b"), name="crowded"))
    h.report(rp.AttemptRejected, h.last_execute("a"), reason="busy")
    due = next_deadline(h.state)
    assert due is not None
    h.tick(due)
    h.tick()
    h.complete("b")
    h.complete("a")


# --- queue order --------------------------------------------------------------------------


def priority_first(h: CheckedHarness) -> None:
    """A higher-priority run gets freed capacity before older runs of lower priority."""
    h.agent("a1", cpus=1)
    first = request(h, one_task("backfill"), "b0")
    for i in range(1, 4):
        request(h, one_task("backfill"), f"b{i}")
    urgent = request(h, one_task("retrain"), "drift", priority=10)
    finish(h, first, "t")
    finish(h, urgent, "t")


def fair_share(h: CheckedHarness) -> None:
    """Pipelines of equal priority take turns: five queued bulk runs and one single run
    share two slots one each, not first come first served."""
    for i in range(5):
        request(h, one_task("bulk"), f"bulk{i}")
        h.now += 1
    request(h, one_task("single"), "single")
    h.agent("a1", cpus=2)
    h.tick()


def aging(h: CheckedHarness) -> None:
    """Waiting raises priority (aging_s=10): a run that waited 25s at priority 0 goes before
    a newer run at priority 2."""
    h.settings = Settings(aging_s=10)
    h.agent("a1", cpus=1)
    blocker = request(h, one_task("p"), "blocker")
    request(h, one_task("backfill"), "low")
    h.now += 25
    request(h, one_task("retrain"), "high", priority=2)
    finish(h, blocker, "t")


def reservation(h: CheckedHarness) -> None:
    """A big task that waited past an aging interval reserves the agent, so small tasks
    cannot take every freed slot."""
    h.settings = Settings(aging_s=30)
    h.agent("a1", cpus=4)
    small = request(h, PipelineSpec(name="small", tasks=tuple(task(f"s{i}") for i in range(6))),
                    "s")
    request(h, PipelineSpec(name="big", tasks=(task("b", cpus=4),)), "b")
    h.now += 31
    for name in ("s0", "s1", "s2", "s3"):
        finish(h, small, name)


def limits(h: CheckedHarness) -> None:
    """A label pool limit holds only tasks requesting that label; a pipeline concurrency
    limit counts tasks across its runs."""
    h.settings = Settings(pool_limits=(("pool=training", 1),))
    labelled_agent(h, "t1", 8, pool="training")
    pool = Resources(cpus=1, memory_mb=100, labels={"pool": "training"})
    train = request(h, PipelineSpec(name="train", tasks=(
        TaskSpec(name="a", function="m:a", resources=pool),
        TaskSpec(name="b", function="m:b", resources=pool),
        TaskSpec(name="c", function="m:c"))), "r")
    etl = PipelineSpec(name="etl", tasks=(task("t"),), max_concurrent_tasks=2)
    runs = [request(h, etl, f"e{i}") for i in range(3)]
    finish(h, train, "a")
    finish(h, runs[0], "t")


SCENARIOS: dict[str, Callable[[CheckedHarness], None]] = {
    f.__name__: f for f in (
        waits_for_an_agent, waits_for_room, waits_for_a_gpu_model, schedule_to_start_timeout,
        rejected_then_placed, rejected_while_full, priority_first, fair_share, aging,
        reservation, limits,
    )
}
