"""The agent's worker hop: what crosses the pipe, which worker a chained task gets, and what a
worker keeps between tasks (bench/floor.py measures the hop; these keep its behaviour)."""

from __future__ import annotations

import pickle
import pickletools
from collections.abc import Callable
from typing import Any

import pytest

from agents import worker_process
from agents import worker_wire as wire
from agents.artifacts import ArtifactError, ArtifactStore
from agents.worker_process import KeptArtifacts
from agents.workers import Failed, Succeeded, WorkerPool
from tests.agents.test_workers import invocation, succeeded

CLASS_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD"}
"""Pickle opcodes that name or build an instance of a class."""


def test_an_invocation_and_its_outcomes_cross_the_pipe_as_builtins_and_come_back_equal(
    store: ArtifactStore,
) -> None:
    # given an invocation with an input, and each kind of outcome
    inv = invocation("add", inputs={"left": store.put_object(2)})
    done = Succeeded(store.put_object([1, 2]), {"loss": 0.5}, {"rows": 3}, 0.0)
    failure = Failed("exception", "boom", "ValueError", "Traceback ...", retryable=False)
    crossings: list[tuple[object, tuple[object, ...], Callable[[Any], object]]] = [
        (inv, wire.invocation(inv), wire.invocation_of),
        (done, wire.outcome(done), wire.outcome_of),
        (failure, wire.outcome(failure), wire.outcome_of)]
    for sent, message, rebuilt in crossings:
        # when it is pickled for the pipe
        data = pickle.dumps(message)
        # then it names no class (nothing to reduce or look up), and comes back as it was
        assert not {op.name for op, _, _ in pickletools.genops(data)} & CLASS_OPS
        assert rebuilt(pickle.loads(data)) == sent


async def test_a_chained_task_runs_on_the_worker_its_predecessor_freed(pool: WorkerPool,
                                                                        store: ArtifactStore
                                                                        ) -> None:
    # given a pool of two warm workers, and a task that ran on one of them
    first = store.get_object(succeeded(await pool.run(invocation("pid", "a-1"))).output)
    # when the next tasks run one after the other
    later = [store.get_object(succeeded(await pool.run(invocation("pid", f"a-{n}"))).output)
             for n in range(2, 5)]
    # then each runs where the one before it ran
    assert later == [first] * 3


async def test_a_chained_task_reads_its_predecessors_output_from_the_workers_memory(
    pool: WorkerPool, store: ArtifactStore
) -> None:
    # given a task whose output was stored by a worker, and then its file removed
    output = succeeded(await pool.run(invocation("add", "a-1", inputs={
        "left": store.put_object(2), "right": store.put_object(40)}))).output
    store.path_for(output).unlink()
    # when the next task takes that output as its input
    outcome = await pool.run(invocation("add", "a-2", inputs={
        "left": output, "right": store.put_object(0)}))
    # then it gets the output all the same (the worker kept the bytes it hashed)
    assert store.get_object(succeeded(outcome).output) == 42


def test_a_kept_object_is_a_fresh_copy_for_each_task(store: ArtifactStore) -> None:
    # given an object the worker stored
    kept = KeptArtifacts(store)
    ref = kept.put_object([1, 2])
    # when one task changes its copy in place
    kept.get_object(ref).append(3)
    # then the next task gets the object as it was stored
    assert kept.get_object(ref) == [1, 2]


def test_a_big_object_is_not_kept_and_its_file_is_read_and_verified(
    store: ArtifactStore,
) -> None:
    # given an object over the size kept, stored by the worker
    kept = KeptArtifacts(store)
    ref = kept.put_object(b"x" * (KeptArtifacts.MAX_OBJECT_BYTES + 1))
    # when its file is gone
    store.path_for(ref).unlink()
    # then reading it fails as a read from the store does
    with pytest.raises(ArtifactError):
        kept.get_object(ref)


def test_only_the_latest_objects_are_kept(store: ArtifactStore) -> None:
    # given more small objects stored than are kept, the first of them read again lately
    kept = KeptArtifacts(store)
    refs = [kept.put_object(n) for n in range(KeptArtifacts.MAX_OBJECTS + 1)]
    # when every file is gone
    for ref in refs:
        store.path_for(ref).unlink()
    # then the oldest one is no longer kept, and the rest are
    with pytest.raises(ArtifactError):
        kept.get_object(refs[0])
    assert [kept.get_object(ref) for ref in refs[1:]] == list(range(1, len(refs)))


def test_a_task_function_is_looked_up_once_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a worker that has not run the task yet
    looked_up: list[str] = []

    def find(path: str) -> Callable[..., Any]:
        looked_up.append(path)
        return len

    monkeypatch.setattr(worker_process, "_RESOLVED", {})
    monkeypatch.setattr(worker_process, "_find", find)
    # when it runs it three times
    functions = [worker_process._resolve("builtins:len") for _ in range(3)]
    # then the function was found once
    assert functions == [len] * 3 and looked_up == ["builtins:len"]
