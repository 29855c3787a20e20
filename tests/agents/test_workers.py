"""Worker processes run task code so that a task that fails, crashes or hangs fails alone."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from agents import worker_wire as wire
from agents.artifacts import ArtifactStore
from agents.task_api import ContextData
from agents.worker_process import worker_main
from agents.workers import Failed, Invocation, Outcome, Succeeded, WorkerPool
from events.reports import MAX_TRACEBACK_CHARS, AttemptFailed
from tests import gates

TASKS = "tests.agents.sample_tasks"
REPO_ROOT = Path(__file__).resolve().parents[2]


def invocation(function: str, attempt_id: str = "a-1", **kwargs: Any) -> Invocation:
    context = ContextData(
        run_id="run-1", pipeline="demo", task=function, attempt=1, attempt_id=attempt_id
    )
    inputs = kwargs.pop("inputs", {})
    return Invocation(attempt_id, f"{TASKS}:{function}", inputs, context, **kwargs)


def succeeded(outcome: Outcome) -> Succeeded:
    assert isinstance(outcome, Succeeded), outcome
    return outcome


def failed(outcome: Outcome) -> Failed:
    assert isinstance(outcome, Failed), outcome
    return outcome


async def output_of(pool: WorkerPool, store: ArtifactStore, inv: Invocation) -> Any:
    return store.get_object(succeeded(await pool.run(inv)).output)


async def started_pid(pool: WorkerPool, inv: Invocation) -> tuple[asyncio.Task[Outcome], int]:
    """Starts `hangs`, which reports its pid as its first progress message."""
    pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_progress(_: float, message: str) -> None:
        if not pid.done():
            pid.set_result(int(message))

    return asyncio.create_task(pool.run(inv, on_progress)), await pid


def watch(pids: Iterable[int]) -> list[int]:
    """pidfds opened while the processes live; each turns readable when its process ends."""
    return [os.pidfd_open(pid) for pid in pids]


async def exits(pidfds: list[int]) -> None:
    loop = asyncio.get_running_loop()
    waits = []
    for fd in pidfds:
        exited = loop.create_future()
        loop.add_reader(fd, _exited, loop, fd, exited)
        waits.append(exited)
    await asyncio.gather(*waits)


def _exited(loop: asyncio.AbstractEventLoop, fd: int, done: asyncio.Future[None]) -> None:
    loop.remove_reader(fd)
    os.close(fd)
    done.set_result(None)


async def test_a_task_receives_its_inputs_and_its_output_is_stored(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given
    inputs = {"left": store.put_object(2), "right": store.put_object(40)}
    # when
    outcome = succeeded(await pool.run(invocation("add", inputs=inputs)))
    # then
    assert store.get_object(outcome.output) == 42
    assert outcome.metrics == {}
    assert outcome.duration_s > 0


async def test_a_result_carries_its_metrics_and_metadata(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given
    inv = invocation("scored", inputs={"values": store.put_object([3.0, 1.0])})
    # when
    outcome = succeeded(await pool.run(inv))
    # then
    assert store.get_object(outcome.output) == [1.0, 3.0]
    assert outcome.metrics == {"mean": 2.0}
    assert outcome.metadata == {"count": 2, "source": "test"}


async def test_a_metric_that_is_not_finite_fails_the_attempt_naming_it(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given a task whose mean comes out as NaN (JSON, and so the contract, has no NaN)
    inv = invocation("scored", inputs={"values": store.put_object([float("nan")])})
    # when it runs, then it fails saying which metric, rather than reporting what the bus
    # would refuse
    outcome = failed(await pool.run(inv))
    assert outcome.reason == "exception"
    assert outcome.message.startswith("metric 'mean' is nan: metrics must be finite numbers")


async def test_an_exception_fails_the_attempt_as_retryable(pool: WorkerPool) -> None:
    # when
    outcome = failed(await pool.run(invocation("fails")))
    # then
    assert (outcome.reason, outcome.error_type, outcome.retryable) == (
        "exception",
        "ValueError",
        True,
    )
    assert outcome.message == "bad input row 7"
    assert "in fails" in outcome.traceback


async def test_a_task_error_can_forbid_retries(pool: WorkerPool) -> None:
    # when
    outcome = failed(await pool.run(invocation("fails_for_good")))
    # then
    assert (outcome.reason, outcome.error_type, outcome.retryable) == (
        "exception",
        "TaskError",
        False,
    )
    assert outcome.message == "schema is wrong"


async def test_a_worker_that_exits_is_reported_crashed_and_the_pool_carries_on(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # when
    outcome = failed(await pool.run(invocation("exits_hard")))
    # then
    assert outcome.reason == "crashed"
    assert "exited with code 3" in outcome.message
    assert await output_of(pool, store, invocation("noop", "a-2")) is None


async def test_a_segfault_is_reported_with_its_signal(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # when
    outcome = failed(await pool.run(invocation("segfaults")))
    # then
    assert outcome.reason == "crashed"
    assert "killed by signal SIGSEGV" in outcome.message
    assert await output_of(pool, store, invocation("noop", "a-2")) is None


async def test_a_hanging_task_is_killed_at_its_timeout_and_the_pool_carries_on(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given
    run, pid = await started_pid(pool, invocation("hangs", timeout_s=0.3))
    pidfds = watch([pid])
    # when
    outcome = failed(await run)
    # then
    assert outcome.reason == "timed_out"
    assert "exceeded its timeout of 0.3 s" in outcome.message
    assert 0.3 <= outcome.duration_s < 5
    await asyncio.wait_for(exits(pidfds), 5)
    assert await output_of(pool, store, invocation("noop", "a-2")) is None


async def test_a_cancelled_attempt_is_killed_and_reported_cancelled(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given
    run, pid = await started_pid(pool, invocation("hangs", "slow"))
    pidfds = watch([pid])
    # when
    found = await pool.cancel("slow")
    # then
    assert found
    assert failed(await run).reason == "cancelled"
    await asyncio.wait_for(exits(pidfds), 5)
    assert await pool.cancel("slow") is False
    assert await output_of(pool, store, invocation("noop", "a-2")) is None


async def test_abandoning_a_run_kills_its_worker_and_the_pool_carries_on(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given
    run, pid = await started_pid(pool, invocation("hangs"))
    pidfds = watch([pid])
    # when
    run.cancel()
    # then
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.wait_for(exits(pidfds), 5)
    assert await output_of(pool, store, invocation("noop", "a-2")) is None


async def test_an_invocation_that_cannot_be_pickled_is_invalid(pool: WorkerPool) -> None:
    # given
    inv = invocation("noop")
    context = ContextData("r", "p", "t", 1, "a-1", trigger={"callback": lambda: None})
    # when
    outcome = failed(await pool.run(Invocation("a-1", inv.function, {}, context)))
    # then
    assert (outcome.reason, outcome.retryable) == ("invalid_task", False)
    assert "cannot be sent to a worker" in outcome.message


async def test_progress_reports_reach_the_callback(pool: WorkerPool, store: ArtifactStore) -> None:
    # given
    reports: list[tuple[float, str]] = []
    # when
    outcome = succeeded(
        await pool.run(invocation("reports_progress"), lambda f, m: reports.append((f, m)))
    )
    # then
    assert reports == [(0.5, "half way"), (1.0, "done")]
    assert store.get_object(outcome.output) == "run-1"


async def test_a_gpu_invocation_sees_only_its_gpus_by_pci_bus_order_in_a_process_of_its_own(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given
    inv = invocation("environment", gpus=(1, 3), env={"BATON_FLAVOUR": "vanilla"})
    # when
    seen = await output_of(pool, store, inv)
    # then
    assert seen == {"CUDA_VISIBLE_DEVICES": "1,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                    "BATON_FLAVOUR": "vanilla"}
    pooled = await output_of(pool, store, invocation("environment", "a-2"))
    assert pooled["BATON_FLAVOUR"] is None


async def test_an_invocation_given_no_gpu_sees_none_pooled_or_in_a_process_of_its_own(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given invocations without GPUs: one for a pooled worker, one with env of its own (and a
    # CUDA_VISIBLE_DEVICES there that must not win)
    pooled = invocation("environment")
    dedicated = invocation("environment", "a-2", env={"CUDA_VISIBLE_DEVICES": "0",
                                                      "BATON_FLAVOUR": "plain"})
    # when they run
    seen = [await output_of(pool, store, inv) for inv in (pooled, dedicated)]
    # then CUDA shows each of them no GPU (an empty list, not "unset", which means all)
    assert seen == [
        {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "BATON_FLAVOUR": None},
        {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "BATON_FLAVOUR": "plain"}]


async def test_a_dedicated_process_exits_after_its_invocation(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # when
    pid = await output_of(pool, store, invocation("pid", gpus=(0,)))
    # then
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    ("function", "complaint"),
    [
        ("tests.agents.no_such_module:run", "'tests.agents.no_such_module' cannot be imported"),
        (f"{TASKS}:no_such_function", "has no attribute 'no_such_function'"),
        (f"{TASKS}:NOT_CALLABLE", "is not callable"),
        (f"{TASKS}:add", "cannot take its inputs"),
        ("no_colon", "write it as 'package.module:function'"),
    ],
)
async def test_a_task_that_cannot_be_called_is_invalid_and_not_retried(
    pool: WorkerPool, function: str, complaint: str
) -> None:
    # given
    inv = invocation("noop")
    # when
    outcome = failed(await pool.run(Invocation("a-1", function, {}, inv.context)))
    # then
    assert (outcome.reason, outcome.retryable) == ("invalid_task", False)
    assert complaint in outcome.message


async def test_no_more_attempts_than_the_pool_size_run_at_once(
    pool: WorkerPool, store: ArtifactStore, tmp_path: Path
) -> None:
    # given three attempts held at gates, and a log of what happens when
    fifos = [gates.make(tmp_path / f"gate-{i}") for i in range(3)]
    log: list[str] = []
    started: asyncio.Queue[int] = asyncio.Queue()

    def on_start(i: int) -> Callable[[float, str], None]:
        def record(_: float, __: str) -> None:
            log.append(f"start {i}")
            started.put_nowait(i)

        return record

    invs = [
        invocation("waits_at_gate", f"g{i}", inputs={"gate": store.put_object(str(g))})
        for i, g in enumerate(fifos)
    ]
    runs = [asyncio.create_task(pool.run(inv, on_start(i))) for i, inv in enumerate(invs)]
    first, second = await started.get(), await started.get()
    # when the first attempt is released
    log.append("release")
    gates.release(fifos[first])
    third = await started.get()
    # then the third started only after a slot was freed
    assert {first, second, third} == {0, 1, 2}
    assert log.index(f"start {third}") > log.index("release")
    for i in (second, third):
        gates.release(fifos[i])
    pids = {store.get_object(succeeded(await run).output) for run in runs}
    assert len(pids) <= 2


async def test_workers_are_reused_between_invocations(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # when
    pids = {await output_of(pool, store, invocation("pid", f"a-{i}")) for i in range(6)}
    # then
    assert len(pids) <= 2
    assert os.getpid() not in pids


async def test_a_no_op_round_trip_on_a_warm_pool_is_fast(pool: WorkerPool) -> None:
    # given
    inv = invocation("noop")
    succeeded(await pool.run(inv))
    # when
    began = time.perf_counter()
    for _ in range(200):
        succeeded(await pool.run(inv))
    mean_s = (time.perf_counter() - began) / 200
    # then (loose bound: a spawned process per call would cost tens of milliseconds)
    assert mean_s < 0.005


async def test_closing_the_pool_leaves_no_worker_processes(store: ArtifactStore) -> None:
    # given
    pool = WorkerPool(store.root, size=2)
    run, hanging = await started_pid(pool, invocation("hangs", "h"))
    idle = await output_of(pool, store, invocation("pid", "p"))
    fds = watch([hanging, idle])
    # when
    await pool.close()
    # then
    assert failed(await run).reason == "cancelled"
    assert select.select(fds, [], [], 0)[0] == fds
    for fd in fds:
        os.close(fd)


PARENT_SCRIPT = """
import asyncio, sys
from pathlib import Path
from agents.task_api import ContextData
from agents.workers import Invocation, WorkerPool

async def main():
    pool = WorkerPool(Path(sys.argv[1]), size=2)
    ctx = ContextData(run_id="r", pipeline="p", task="t", attempt=1, attempt_id="x")
    show = lambda _, pid: print(pid, flush=True)
    task = f"tests.agents.sample_tasks:{sys.argv[2]}"
    pooled = Invocation("a", task, {}, ctx)
    dedicated = Invocation("b", task, {}, ctx, gpus=(0,))
    await asyncio.gather(pool.run(pooled, show), pool.run(dedicated, show))

asyncio.run(main())
"""


@pytest.mark.parametrize(("task", "fork_server_stopped"), [
    ("hangs", False), ("holds_the_gil", False), ("holds_the_gil", True)])
async def test_workers_and_their_fork_server_die_when_their_parent_is_killed(
    tmp_path: Path, task: str, fork_server_stopped: bool
) -> None:
    # given a parent running a pooled and a dedicated task that never finish. One that holds
    # the GIL never reads its pipe, so only the kernel can stop it; a stopped fork server
    # (SIGSTOP) stands for one too slow to run its own exit: both must die all the same
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PARENT_SCRIPT,
        str(tmp_path),
        task,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert parent.stdout is not None
    workers = [int(await parent.stdout.readline()) for _ in range(2)]
    fork_server = parent_of(workers[0])
    assert parent_of(workers[1]) == fork_server != parent.pid
    pidfds = watch([*workers, fork_server])
    if fork_server_stopped:
        os.kill(fork_server, signal.SIGSTOP)
    try:
        # when
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
        # then
        await asyncio.wait_for(exits(pidfds), 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(fork_server, signal.SIGKILL)


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


async def test_a_worker_whose_parent_hangs_up_while_its_task_runs_exits_at_once(
    store: ArtifactStore
) -> None:
    # given a worker process running a task that never returns (its main thread is busy in
    # the task, not reading the pipe)
    mp = multiprocessing.get_context("spawn")
    ours, theirs = mp.Pipe()
    worker = mp.Process(target=worker_main, args=(theirs, str(store.root), {}, False),
                        daemon=True)
    worker.start()
    theirs.close()
    try:
        assert ours.recv() == ("ready",)
        wire.send(ours, wire.invocation(invocation("hangs")))
        assert ours.recv()[:2] == ("progress", "a-1")
        assert worker.pid is not None
        pidfds = watch([worker.pid])
        # when the parent closes its end of the pipe
        ours.close()
        # then the worker exits without waiting for the task
        await asyncio.wait_for(exits(pidfds), 10)
    finally:
        worker.kill()
        worker.join()


async def test_a_sigterm_to_the_agents_process_group_does_not_kill_a_running_task(
    pool: WorkerPool, store: ArtifactStore, tmp_path: Path
) -> None:
    # given a task running in a worker (systemd and `kill -TERM -PGID` signal the whole group;
    # the agent drains on SIGTERM, so its workers must keep running their tasks)
    gate = gates.make(tmp_path / "gate")
    inv = invocation("pid_then_gate", inputs={"gate": store.put_object(str(gate))})
    run, pid = await started_pid(pool, inv)  # the pid comes once the task holds the gate
    # when the worker gets SIGTERM, and the task is released afterwards
    os.kill(pid, signal.SIGTERM)
    gates.release(gate)  # fails at once (ENXIO) if the signal killed the task
    # then the task finished normally
    assert store.get_object(succeeded(await run).output) == "released"


# -- tracebacks: where the task raised, within what a report may carry --------------------


async def test_a_failure_carries_the_traceback_of_the_function_that_raised(
    pool: WorkerPool,
) -> None:
    # when a task fails in a helper it calls
    outcome = failed(await pool.run(invocation("fails_deep_inside")))
    # then the traceback names the task, the helper, and ends with the exception line
    assert "in fails_deep_inside" in outcome.traceback
    assert "in parse_row" in outcome.traceback
    assert outcome.traceback.rstrip().endswith(
        "ValueError: invalid literal for int() with base 10: 'seven'")
    # and neither is it cut, nor does it show the worker's own frame
    assert "(truncated)" not in outcome.traceback and "_execute" not in outcome.traceback


HUGE_FAILURES = {
    "deep recursion": ("recurses_then_fails", 'raise RecursionError("gave up at the bottom")',
                       "RecursionError: gave up at the bottom"),
    "huge message": ("fails_with_a_huge_message",
                     'raise ValueError("row " + "x" * 100_000 + " is wrong")', " is wrong"),
}


@pytest.mark.parametrize(("function", "raising_line", "exception_end"), HUGE_FAILURES.values(),
                         ids=HUGE_FAILURES.keys())
async def test_a_huge_traceback_is_cut_to_its_end_within_what_a_report_carries(
    pool: WorkerPool, function: str, raising_line: str, exception_end: str
) -> None:
    # when a task fails with a traceback far over the bound (deep frames, a huge message)
    text = failed(await pool.run(invocation(function))).traceback
    # then it is cut to what a report may carry, marked where it was cut
    assert len(text) <= MAX_TRACEBACK_CHARS
    assert "(truncated)" in text
    assert AttemptFailed(run_id="r", task="t", attempt=1, attempt_id="r/t/1", agent_id="a",
                         reason="exception", message="m", traceback=text).traceback == text
    # and it still ends with the raising line and the exception
    *_, raising, exception = text.rstrip().splitlines()
    assert raising.strip() == raising_line
    assert exception.endswith(exception_end)
