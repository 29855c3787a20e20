"""How a Kafka transaction's records are cut into batches (bus/kafka_batches.py), on its own:
each partition's records in the commit's order, a partition's batches in rounds, and a record
no request could carry refused before anything is sent. No broker here:
tests/kafka/test_kafka_batches.py sends such batches."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder

from bus.kafka_batches import MAX_RECORD_BYTES, batches
from bus.records import Outgoing, TopicPartition

RUNS = TopicPartition("baton.runs", 0)
COMMANDS = TopicPartition("baton.commands", 3)
TRIGGERS = TopicPartition("baton.triggers", 1)


def builder(batch_bytes: int = 1_000) -> Any:
    return BatchBuilder(batch_bytes, 0, is_transactional=True)


def placed(*tps: TopicPartition, size: int = 100) -> list[tuple[TopicPartition, Outgoing]]:
    return [(tp, Outgoing(tp.topic, f"k{i}", b"x" * size, headers=(("n", b"%d" % i),)))
            for i, tp in enumerate(tps)]


def test_each_partitions_records_go_in_the_commits_order_in_batches_round_after_round() -> None:
    # given 30 records, 20 of them on the run log, in batches that hold 8 of them
    records = placed(*[RUNS, COMMANDS, RUNS] * 10)
    # when they are cut into batches
    rounds = batches(records, lambda topic: f"ns.{topic}", 5, builder)
    # then round r holds the r-th batch of each partition that has one, each partition's
    # batches holding its records in the commit's order, every record once
    assert [[(b.topic, b.partition, len(b.places)) for b in r] for r in rounds] == [
        [("ns.baton.runs", 0, 8), ("ns.baton.commands", 3, 8)],
        [("ns.baton.runs", 0, 8), ("ns.baton.commands", 3, 2)],
        [("ns.baton.runs", 0, 4)]]
    for tp in (RUNS, COMMANDS):
        places = [at for r in rounds for b in r if b.partition == tp.partition for at in b.places]
        assert places == [at for at, (where, _) in enumerate(records) if where == tp]
    assert all(b.builder.record_count() == len(b.places) for r in rounds for b in r)


def test_a_record_larger_than_a_batch_goes_alone_and_one_no_request_carries_is_refused() -> None:
    # given a record larger than a batch holds, between two small ones on its partition
    big = placed(RUNS, size=1_500)[0]
    records = [*placed(RUNS, TRIGGERS), big, *placed(RUNS)]
    # when they are cut into batches, then the large one is a batch of its own
    rounds = batches(records, str, 5, builder)
    assert [[(b.partition, b.places) for b in r] for r in rounds] == [
        [(0, [0]), (1, [1])], [(0, [2])], [(0, [3])]]
    # and a record too large for any request is refused before anything is sent
    huge = Outgoing(RUNS.topic, "k", b"x" * MAX_RECORD_BYTES)
    with pytest.raises(MessageSizeTooLargeError):
        batches([*records, (RUNS, huge)], str, 5, builder)
