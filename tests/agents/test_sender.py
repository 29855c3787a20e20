"""Where an agent's reports go."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents import sender as sender_module
from agents.sender import Sender
from events import topics


class TwelvePartitions:
    def partitions(self, topic: str) -> int:
        return 12


async def test_a_runs_reports_go_to_its_partition_whether_remembered_or_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given a sender that remembers two runs' partitions at most
    monkeypatch.setattr(sender_module, "KEPT_PARTITIONS", 2)
    sender = Sender(TwelvePartitions(), "a", "i", time.time, asyncio.Event())  # type: ignore[arg-type]
    runs = [f"run-{i}" for i in range(5)]
    # when each run reports twice, the memory filling up and starting again meanwhile
    placed = [sender.report(run, b"r").partition for run in runs + runs]
    # then every report is on its run's partition, as the coordinator reads them
    assert placed == [topics.partition_for(run, 12) for run in runs + runs]
