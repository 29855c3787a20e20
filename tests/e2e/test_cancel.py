"""`baton runs cancel`: the run ends cancelled and its running task process is stopped."""

from __future__ import annotations

import os
import select
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from events import runs as ev
from tests.e2e.support import RunLog, Service, baton, of_run, wait_for_run_log

pytestmark = pytest.mark.e2e

HANGS = "tests.e2e.pipelines:hangs"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    started = Service.start(tmp_path / "home", [HANGS], tmp_path / "up.log")
    yield started
    started.reap()


def has(kind: type, run_id: str) -> Callable[[RunLog], bool]:
    return lambda log: any(isinstance(e.data, kind) for e in of_run(log, run_id))


def exits_within(pid: int, seconds: float) -> bool:
    """A pidfd turns readable when its process exits: awaited, not polled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(fd)


def test_cancelling_a_run_stops_its_running_task_process(tmp_path: Path, service: Service
                                                         ) -> None:
    home, pidfile = tmp_path / "home", tmp_path / "stuck.pid"
    # given a run whose only task hangs
    requested = baton(home, "run", "hangs", "--pipeline-ref", HANGS,
                      "--param", f"pidfile={pidfile}")
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    wait_for_run_log(home, has(ev.TaskProgress, run_id), timeout=60)  # the pid is written
    pid = int(pidfile.read_text())
    # when
    cancelled = baton(home, "runs", "cancel", run_id[:12], "--reason", "test says stop")
    # then
    assert cancelled.returncode == 0, cancelled.stderr
    log = wait_for_run_log(home, has(ev.RunCancelled, run_id), timeout=60)
    ends = [e.data for e in of_run(log, run_id) if isinstance(e.data, ev.RunCancelled)]
    assert ends[0].reason == "test says stop"
    assert exits_within(pid, 10), f"task process {pid} still runs after the cancel"
    again = baton(home, "runs", "cancel", run_id)
    assert again.returncode == 2 and "already cancelled" in again.stderr
