"""Issue #11, point 6: `baton up` whose home fills up says "disk full" and waits it out: no
traceback, no exit, and it carries on by itself once space is freed. Its home is on a real
filesystem that runs out of space (a small tmpfs)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from events import runs as ev
from tests.disk import SmallDisk, small_disk
from tests.e2e.support import Service, baton, of_run, wait_for_run_log

PIPELINE = "tests.e2e.pipelines:quick_chain"

pytestmark = pytest.mark.e2e


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with small_disk(tmp_path / "disk", size="64m") as mounted:
        yield mounted


def test_baton_up_on_a_full_disk_says_so_and_carries_on_once_space_is_freed(
    tmp_path: Path, disk: SmallDisk, services: list[Service]
) -> None:
    # given `baton up` with its home on a disk that then fills up
    home, ledger = disk.root / "home", tmp_path / "ledger.txt"
    services.append(Service.start(home, [PIPELINE], tmp_path / "up.log"))
    services[0].until_printed("Ctrl-C to stop")
    disk.fill()

    # when it goes on (heartbeats, ticks) and a run is asked for
    services[0].until_printed("disk full: cannot write")
    refused = baton(home, "run", "quick_chain", "--pipeline-ref", PIPELINE,
                    "--param", f"ledger={ledger}")

    # then the request fails in one line naming the cause, and `baton up` still runs
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "disk full: cannot write" in refused.stderr
    assert services[0].process.poll() is None

    # when space is freed, the same request goes through and its run finishes
    disk.free()
    requested = baton(home, "run", "quick_chain", "--pipeline-ref", PIPELINE,
                      "--param", f"ledger={ledger}")
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    log = wait_for_run_log(home, lambda log: any(
        isinstance(e.data, ev.RunSucceeded) for e in of_run(log, run_id)), timeout=60)
    assert isinstance(of_run(log, run_id)[-1].data, ev.RunSucceeded)

    # and it stops cleanly, having never printed a traceback
    assert services[0].stop(signal.SIGTERM) == 0
    assert "Traceback" not in services[0].output(), services[0].output()
