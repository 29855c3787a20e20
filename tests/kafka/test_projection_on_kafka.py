"""Projections folded from a Kafka run log, where transaction markers take offsets too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus import Outgoing, TopicPartition
from bus.kafka import KafkaBus
from events.codec import decode
from events.topics import RUNS
from orchestrator.store.projections import fold_runs

GOLDEN = Path(__file__).parents[1] / "golden" / "retry_then_success.jsonl"


@pytest.fixture
async def bus(kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
    name = f"t{uuid.uuid4().hex[:12]}"
    opened = await KafkaBus.open(kafka_bootstrap, partitions=1, deployment=name,
                                 namespace=f"{name}.")
    yield opened
    await opened.close()


@pytest.mark.kafka
async def test_folding_up_to_a_position_stops_there_although_markers_sit_between_records(
        bus: KafkaBus) -> None:
    # given: a run's events, each appended in a transaction of its own (record, marker, ...)
    lines = GOLDEN.read_bytes().splitlines()[:6]
    written = [(await bus.publish([Outgoing(RUNS, "run", line, partition=0)]))[0]
               for line in lines]
    assert written[-1].offset > len(lines) - 1, "no markers between the records"
    # when: the log is folded up to just after the third record
    upto = {TopicPartition(RUNS, 0): written[2].offset + 1}
    state = await fold_runs(bus, upto)
    # then: exactly three events were folded, not three offsets' worth counted as records
    run_id = decode(lines[0]).subject
    assert state.runs[run_id].seq == 3
