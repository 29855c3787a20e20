"""Issue #12, point 5: an in-process hand-off followed by a crash never makes a decision twice,
with real processes.

In one `baton up` on Kafka every hop (router -> coordinator -> agent -> coordinator) is handed
over in memory (bus/kafka_handoff.py). The process is SIGKILLed while runs are in flight and
started again on the same home and bus: every run must still succeed once, with no decision
twice, no successful attempt run twice (the tasks' own ledger) and a projection equal to the
log's replay. The checks are the broker fault tests' (test_broker_faults.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bus import open_bus_url
from events import runs as ev
from tests.e2e.support import Service
from tests.kafka.test_broker_faults import (
    PARTITIONS,
    RUNS,
    UP_ARGS,
    Follower,
    check_runs,
    check_service,
    ended,
    in_flight,
    request_runs,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]


async def test_baton_up_killed_mid_run_and_started_again_decides_nothing_twice(
    tmp_path: Path, kafka_bootstrap: str,
) -> None:
    bus_url = f"kafka://{kafka_bootstrap}?partitions={PARTITIONS}&namespace=k{uuid.uuid4().hex[:8]}"
    home, ledger = tmp_path / "home", tmp_path / "ledger.txt"
    home.mkdir()
    first = Service.spawn(home, UP_ARGS, tmp_path / "up.log", bus_url)
    again: Service | None = None
    try:
        bus = await open_bus_url(bus_url, home)
        try:
            # given runs in flight in one `baton up`, attempts running, some tasks done
            follower = Follower(bus)
            run_ids = await request_runs(bus, ledger, RUNS)
            await follower.until(lambda log: len(in_flight(log)) >= 2 and sum(
                isinstance(e.data, ev.TaskSucceeded) for e in log) >= RUNS // 2)
            # when it is killed (no shutdown of any kind) and started again
            first.kill()
            again = Service.spawn(home, UP_ARGS, tmp_path / "up-again.log", bus_url)
            log = await follower.until(lambda log: set(run_ids) <= ended(log))
        finally:
            await bus.close()
        # then every run succeeded once, nothing was decided twice, no successful attempt ran
        # twice, and the projection is the log's replay
        counts = check_runs(log, run_ids, ledger)
        check_service(again, home, bus_url)
        print(f"\n[baton up killed and started again] {counts}")
    finally:
        first.reap()
        if again is not None:
            again.reap()
