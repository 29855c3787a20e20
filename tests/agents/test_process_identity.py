"""Process identities: a pid plus its start, so a reused pid is never taken for the worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from agents.process_identity import ProcessIdentity, end, identity_of, is_running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process start times come from Linux's /proc")


def test_a_process_keeps_its_identity_and_another_process_has_another(
    sleeper: subprocess.Popen[bytes],
) -> None:
    # given / when
    mine, its = identity_of(os.getpid()), identity_of(sleeper.pid)
    # then
    assert mine is not None and its is not None
    assert identity_of(os.getpid()) == mine != its
    assert is_running(mine) and is_running(its)


def test_a_process_that_exited_is_not_running_even_before_it_is_reaped(
    sleeper: subprocess.Popen[bytes],
) -> None:
    # given a child, killed but not yet waited for (a zombie keeps its pid and start)
    identity = identity_of(sleeper.pid)
    assert identity is not None
    pidfd = os.pidfd_open(sleeper.pid)
    try:
        sleeper.send_signal(signal.SIGKILL)
        # when it has exited (its pidfd turns readable then)
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
        # then
        assert not is_running(identity)
    finally:
        os.close(pidfd)


async def test_ending_a_process_kills_it_and_returns_once_it_is_gone(
    sleeper: subprocess.Popen[bytes],
) -> None:
    # given
    identity = identity_of(sleeper.pid)
    assert identity is not None
    # when
    await asyncio.wait_for(end(identity), 10)
    # then
    assert not is_running(identity)
    assert sleeper.wait(10) == -signal.SIGKILL


async def test_ending_leaves_a_process_alone_that_only_has_the_same_pid(
    sleeper: subprocess.Popen[bytes],
) -> None:
    # given the identity a process had before its pid was reused
    now = identity_of(sleeper.pid)
    assert now is not None
    before = ProcessIdentity(sleeper.pid, now.start + "0")
    # when
    await asyncio.wait_for(end(before), 10)
    # then
    assert is_running(now) and sleeper.poll() is None


async def test_ending_a_process_that_is_gone_returns_at_once() -> None:
    # given a process that exited and was reaped
    done = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await done.wait()
    gone = ProcessIdentity(done.pid, "unknown/0")
    # when / then: nothing to wait for (a wait that never ended would time out here)
    await asyncio.wait_for(end(gone), 10)
