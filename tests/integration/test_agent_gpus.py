"""GPU pinning on an agent with simulated GPUs, on both buses, with real worker processes.

The agent is the authority on its GPUs: it gives a command the GPUs the coordinator reserved
when they are free and qualify, else others that do, never one GPU to two running attempts,
and the task process sees exactly its GPUs through CUDA_VISIBLE_DEVICES (none when it has none).
"""

from __future__ import annotations

from bus import Bus
from events import topics
from events.agents import AgentHeartbeat
from events.commands import CancelTask, ExecuteTask
from events.common import Capabilities, GpuInfo, Resources
from events.reports import (
    AttemptFailed,
    AttemptProgress,
    AttemptRejected,
    AttemptStarted,
    AttemptSucceeded,
)
from tests.integration import agent_tasks, tasks
from tests.integration.agent_support import AGENT, RUN, Agents, kinds, report, run_sentinel
from tests.integration.support import Tail, command_record, execute_task, tp_for

A100 = GpuInfo(index=0, model="A100", memory_mb=40960)
T4 = GpuInfo(index=1, model="T4", memory_mb=16384)
GPU_AGENT = Capabilities(cpus=4, memory_mb=4096, gpus=(A100, T4))


def gpu_task(function: str, task: str, *, reserved: tuple[int, ...] = (), gpus: int = 1,
             gpu_memory_mb: int = 0, gpu_model: str | None = None) -> ExecuteTask:
    """A command asking for GPUs, with the indices the coordinator reserved."""
    cmd = execute_task(AGENT, function, run_id=RUN, task=task)
    resources = Resources(cpus=1, memory_mb=64, gpus=gpus, gpu_memory_mb=gpu_memory_mb,
                          gpu_model=gpu_model)
    return cmd.model_copy(update={"resources": resources, "gpus": reserved})


async def visible(reports: Tail, attempt_id: str) -> object:
    done = await report(reports, AttemptSucceeded, attempt_id)
    assert isinstance(done, AttemptSucceeded)
    return done.metadata["cuda_visible_devices"]


async def test_a_request_for_a_model_gets_that_gpu_even_if_another_was_reserved_and_sees_only_it(
    bus: Bus, agents: Agents, reports: Tail
) -> None:
    # given an agent with an A100 (index 0) and a T4 (index 1)
    await agents.start(GPU_AGENT)

    # when a command asks for an A100 but the coordinator reserved the T4
    cmd = gpu_task(agent_tasks.ref("visible_gpus"), "a100", reserved=(1,), gpu_model="A100")
    await bus.publish([command_record(cmd)])

    # then the agent gives it the A100, and CUDA shows the task that GPU alone
    started = await report(reports, AttemptStarted, cmd.attempt_id)
    assert isinstance(started, AttemptStarted)
    assert started.gpus == (0,)
    assert await visible(reports, cmd.attempt_id) == "0"


async def test_a_reservation_that_qualifies_is_honoured(
    bus: Bus, agents: Agents, reports: Tail
) -> None:
    # given an agent with two GPUs
    await agents.start(GPU_AGENT)

    # when a command for any one GPU comes with the T4 reserved
    cmd = gpu_task(agent_tasks.ref("visible_gpus"), "any", reserved=(1,))
    await bus.publish([command_record(cmd)])

    # then it gets the T4
    started = await report(reports, AttemptStarted, cmd.attempt_id)
    assert isinstance(started, AttemptStarted)
    assert started.gpus == (1,)
    assert await visible(reports, cmd.attempt_id) == "1"


async def test_two_attempts_running_at_once_never_share_a_gpu_and_a_third_is_rejected(
    bus: Bus, agents: Agents, reports: Tail
) -> None:
    # given an agent with two GPUs, heartbeating often
    await agents.start(GPU_AGENT, heartbeat_s=0.05)
    beats = Tail(bus, [tp_for(bus, topics.AGENTS, AGENT)])

    # when two 1-GPU attempts that both had GPU 0 reserved run at once, and a third arrives
    holders = [gpu_task(tasks.ref("hang"), f"hold-{i}", reserved=(0,)) for i in range(2)]
    await bus.publish([command_record(cmd) for cmd in holders])
    for cmd in holders:
        await report(reports, AttemptProgress, cmd.attempt_id)
    third = gpu_task(tasks.ref("noop"), "third")
    await bus.publish([command_record(third)])
    rejected = await report(reports, AttemptRejected, third.attempt_id)

    # then each holds its own GPU, the agent counts both taken, and the third is refused
    given = [(await report(reports, AttemptStarted, cmd.attempt_id)) for cmd in holders]
    assert sorted(g.gpus for g in given if isinstance(g, AttemptStarted)) == [(0,), (1,)]
    full = await beats.first(AgentHeartbeat, lambda b: len(b.running) == 2)
    assert full.free_gpus == ()
    assert isinstance(rejected, AttemptRejected)
    assert "needs cpus=1 memory=64MB and 1 GPU" in rejected.reason
    assert "free qualifying gpus 0 (free gpus 0)" in rejected.reason

    # and once one holder is cancelled, its GPU is free again
    cancel = CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=holders[0].attempt_id,
                        reason="test")
    await bus.publish([command_record(cancel)])
    await report(reports, AttemptFailed, holders[0].attempt_id)
    again = gpu_task(agent_tasks.ref("visible_gpus"), "again")
    await bus.publish([command_record(again)])
    freed = given[0]
    assert isinstance(freed, AttemptStarted)
    assert await visible(reports, again.attempt_id) == ",".join(map(str, freed.gpus))


async def test_a_request_no_free_gpu_qualifies_for_is_rejected_naming_what_is_missing(
    bus: Bus, agents: Agents, reports: Tail
) -> None:
    # given an agent whose biggest GPU has 40960 MB
    await agents.start(GPU_AGENT)

    # when a command asks for a GPU with 80000 MB, and another for two A100s
    big = gpu_task(tasks.ref("noop"), "big", gpu_memory_mb=80000)
    pair = gpu_task(tasks.ref("noop"), "pair", gpus=2, gpu_model="A100")
    await bus.publish([command_record(big), command_record(pair)])
    rejections = [await report(reports, AttemptRejected, c.attempt_id) for c in (big, pair)]
    await run_sentinel(bus, reports)

    # then both are rejected, each reason naming the GPUs it lacks, and neither ran
    reasons = [r.reason for r in rejections if isinstance(r, AttemptRejected)]
    assert reasons == [
        "no capacity: needs cpus=1 memory=64MB and 1 GPU with >=80000MB, free cpus=4 "
        "memory=4096MB, free qualifying gpus 0 (free gpus 2)",
        "no capacity: needs cpus=1 memory=64MB and 2 GPUs with model A100, free cpus=4 "
        "memory=4096MB, free qualifying gpus 1 (free gpus 2)"]
    assert kinds(reports, big.attempt_id) == kinds(reports, pair.attempt_id) == [
        "attempt_rejected"]


async def test_a_task_given_no_gpu_sees_none_on_an_agent_with_gpus(
    bus: Bus, agents: Agents, reports: Tail
) -> None:
    # given an agent with two GPUs
    await agents.start(GPU_AGENT)

    # when a task that asks for no GPU runs (in a pooled worker)
    cmd = execute_task(AGENT, agent_tasks.ref("visible_gpus"), run_id=RUN, task="cpu-only")
    await bus.publish([command_record(cmd)])

    # then CUDA shows it no GPU at all: an empty list, not "unset" (which means every GPU)
    started = await report(reports, AttemptStarted, cmd.attempt_id)
    assert isinstance(started, AttemptStarted)
    assert started.gpus == ()
    assert await visible(reports, cmd.attempt_id) == ""
