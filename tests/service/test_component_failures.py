"""What restarting cannot cure stops the process loudly; bus trouble is restarted, quietly.

A component (a partition group, a stage, a tracker) that meets a permanent error — an
unreadable record in a log only Baton writes, a topic that does not exist, a bug — must never
stay silently dead holding its partition group: the coordinator says so in one line and stops,
with every other task stopped too, so its units can move to a coordinator that can run them.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from bus import Bus, BusError, BusUnusable, Outgoing
from events import topics
from orchestrator.core.errors import LogCorrupt
from orchestrator.service.coordinator import Coordinator
from orchestrator.service.supervise import ComponentFailed, supervise
from tests.integration.support import WAIT_S

GARBAGE = b"\x00 not an event"


class Work:
    """A component that fails with the given errors, one per start, then ends normally."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.starts = 0

    async def __call__(self, stop: asyncio.Event) -> None:
        self.starts += 1
        if self.errors:
            raise self.errors.pop(0)


async def test_transient_bus_trouble_restarts_the_component() -> None:
    # given a component whose first start meets bus trouble
    work = Work(BusError("no broker answers"))
    # when supervised, then it is started again and ends normally
    assert await supervise("unit", work, asyncio.Event()) is True
    assert work.starts == 2


@pytest.mark.parametrize("error", [
    BusUnusable("unknown topic 'baton.nope'"),
    BusUnusable("a partition head row is missing; the bus file is damaged"),
    LogCorrupt("unreadable record at baton.runs-0@3: not JSON"),
    AssertionError("a bug in decide"),
], ids=["unknown-topic", "damaged-file", "log-corrupt", "bug"])
async def test_what_restarting_cannot_cure_fails_the_component_once_naming_it(
    error: Exception,
) -> None:
    # given a component meeting an error that will never heal
    work = Work(error)
    # when supervised, then it is not restarted and the failure names it and the cause
    with pytest.raises(ComponentFailed) as failed:
        await supervise("group:3", work, asyncio.Event())
    assert work.starts == 1
    assert str(failed.value) == f"group:3 failed: {type(error).__name__}: {error}"
    assert failed.value.cause is error


async def test_a_closed_bus_under_a_component_told_to_stop_is_no_failure() -> None:
    # given a component told to stop, whose bus is closed under it
    stop = asyncio.Event()
    stop.set()
    work = Work(BusUnusable("bus is closed"))
    # when supervised, then it ends quietly
    assert await supervise("unit", work, stop) is True


async def corrupt(bus: Bus, topic: str) -> None:
    await bus.publish([Outgoing(topic, "k", GARBAGE, partition=0)])


def service_tasks() -> set[asyncio.Task[object]]:
    """Tasks running Baton's service code (not the bus client's own machinery)."""
    codes = {t: getattr(t.get_coro(), "cr_code", None) for t in asyncio.all_tasks()}
    return {t for t, code in codes.items()
            if code is not None and "orchestrator/service/" in code.co_filename}


@pytest.mark.parametrize("topic, readers", [
    (topics.RUNS, {"group:0"}), (topics.MODELS, {"champion tracker", "stage:registry"}),
], ids=["run-log", "models"])
async def test_an_unreadable_log_record_stops_the_coordinator_loudly_with_every_task_stopped(
    bus: Bus, topic: str, readers: set[str], caplog: pytest.LogCaptureFixture,
) -> None:
    # given a log only Baton writes holding a record that does not decode
    await corrupt(bus, topic)
    coordinator = Coordinator(bus, {})
    before = service_tasks()
    # when the coordinator runs
    with caplog.at_level(logging.ERROR), pytest.raises(ComponentFailed) as failed:
        await asyncio.wait_for(coordinator.run(asyncio.Event()), WAIT_S)
    # then it stopped by itself, naming the unit that read it, the record and the cause
    assert failed.value.name in readers
    assert isinstance(failed.value.cause, LogCorrupt)
    assert f"unreadable record at {topic}-0@0" in str(failed.value)
    # in one line per reader that met it
    errors = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.ERROR and r.name.startswith("orchestrator.")]
    assert {e.split(" failed: ")[0] for e in errors} <= readers
    assert all(f"failed: LogCorrupt: unreadable record at {topic}-0@0" in e for e in errors)
    # and nothing it started is left running
    assert coordinator.running == {}
    assert service_tasks() <= before
