"""A worker slot taken at admission: the agent records the process that will run the attempt
with the admission itself, so a reservation must name that process, or none."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from agents.process_identity import ProcessIdentity, identity_of
from agents.task_api import ContextData
from agents.workers import Invocation, Succeeded, WorkerPool

TASKS = "tests.agents.sample_tasks"


def invocation(attempt_id: str) -> Invocation:
    context = ContextData(run_id="r", pipeline="p", task="t", attempt=1, attempt_id=attempt_id)
    return Invocation(attempt_id, f"{TASKS}:noop", {}, context)


async def killed(pid: int) -> None:
    """SIGKILL, and return once the process is gone (its pidfd turns readable): its end of
    the pipe is closed by then."""
    pidfd = os.pidfd_open(pid)
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_reader(pidfd, gone.set_result, None)
    try:
        os.kill(pid, signal.SIGKILL)
        await gone
    finally:
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)


class Starts:
    """What `on_start` was told, in order."""

    def __init__(self) -> None:
        self.workers: list[ProcessIdentity | None] = []

    async def __call__(self, worker: ProcessIdentity | None) -> None:
        self.workers.append(worker)


async def test_a_reservation_holds_a_slot_names_its_warm_worker_and_frees_it_once_spent(
        pool: WorkerPool) -> None:
    # given a warm pool of two
    assert pool.idle_slots() == 2
    # when a slot is reserved
    reservation = pool.reserve()
    assert reservation is not None
    # then it is no longer free, and names the live worker that will run the attempt
    assert pool.idle_slots() == 1
    assert reservation.worker is not None and identity_of(reservation.worker.pid) is not None
    # and when the attempt runs on it, that worker is the one started, and the slot is free
    # again afterwards; a give-back after that changes nothing
    starts = Starts()
    outcome = await pool.run(invocation("a"), on_start=starts, reservation=reservation)
    assert isinstance(outcome, Succeeded)
    assert starts.workers == [reservation.worker]
    pool.give_back(reservation)
    assert pool.idle_slots() == 2


async def test_a_reservation_given_back_unspent_frees_its_slot_and_none_is_had_when_full(
        pool: WorkerPool) -> None:
    # given both slots reserved
    first, second = pool.reserve(), pool.reserve()
    assert first is not None and second is not None
    # when a third is asked for, then there is none
    assert pool.reserve() is None
    # and when one is given back (its attempt was dropped), its slot is free again
    pool.give_back(first)
    assert pool.idle_slots() == 1
    with pytest.raises(ValueError, match="spent"):
        await pool.run(invocation("a"), reservation=first)


async def test_an_attempt_given_a_gpu_gets_a_process_of_its_own_so_its_reservation_names_none(
        pool: WorkerPool) -> None:
    # when a slot is reserved for an attempt given a GPU, then no warm worker is named
    reservation = pool.reserve(gpus=(0,))
    assert reservation is not None and reservation.worker is None
    pool.give_back(reservation)


async def test_a_reserved_worker_that_died_before_the_attempt_ran_is_replaced_and_named(
        pool: WorkerPool) -> None:
    # given a reservation naming a warm worker, which then dies
    reservation = pool.reserve()
    assert reservation is not None and reservation.worker is not None
    await killed(reservation.worker.pid)
    await asyncio.sleep(0)  # the loop's next turn reads the hang-up on the worker's pipe
    # when the attempt runs on the reservation
    starts = Starts()
    outcome = await pool.run(invocation("a"), on_start=starts, reservation=reservation)
    # then it ran on a fresh worker, and `on_start` named that one, not the dead one (so the
    # agent records it before the task runs)
    assert isinstance(outcome, Succeeded)
    assert len(starts.workers) == 1 and starts.workers[0] not in (None, reservation.worker)
