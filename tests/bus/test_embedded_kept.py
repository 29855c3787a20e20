"""What an embedded bus instance keeps of its own commits for its readers: per partition the
latest records, gapless; all partitions together within a byte budget."""

import pytest

from bus import embedded_kept
from bus.embedded_kept import Kept
from bus.records import Record, TopicPartition

ONE, TWO, THREE = (TopicPartition("baton.runs", p) for p in range(3))


def records(tp: TopicPartition, start: int, count: int, size: int = 100) -> list[Record]:
    return [Record(tp.topic, tp.partition, offset, "k", bytes(size), (), 0)
            for offset in range(start, start + count)]


def test_a_whole_fan_out_decision_on_one_partition_is_kept_for_the_readers_behind_it() -> None:
    # given a commit of 2,000 records of ~800 bytes to one partition (a 1,000-wide fan-out's
    # decision on its run's partition) after 100 earlier ones
    kept = Kept()
    kept.add({ONE: records(ONE, 0, 100, 800)})
    kept.add({ONE: records(ONE, 100, 2000, 800)})
    # when a reader still at the start of that commit reads
    read = kept.slice(ONE, 100, 5000, head=2100)
    # then it is answered from memory, whole
    assert read is not None
    assert [r.offset for r in read] == list(range(100, 2100))


def test_past_the_budget_the_partitions_committed_to_least_recently_go_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a budget of about three partitions' records
    size = 1000
    per_partition = 10 * (size + embedded_kept.RECORD_BYTES)
    monkeypatch.setattr(embedded_kept, "KEPT_TOTAL_BYTES", 3 * per_partition)
    kept = Kept()
    kept.add({ONE: records(ONE, 0, 10, size)})
    kept.add({TWO: records(TWO, 0, 10, size)})
    kept.add({THREE: records(THREE, 0, 10, size)})
    # when the first partition is committed to again, then the second, past the budget
    kept.add({ONE: records(ONE, 10, 10, size)})
    # then the partition committed to least recently (the second) was let go, not the first
    assert kept.slice(TWO, 0, 100, head=10) is None
    assert kept.slice(ONE, 0, 100, head=20) is not None
    assert kept.slice(THREE, 0, 100, head=10) is not None
    # and what is kept stays within the budget
    assert kept.bytes <= 3 * per_partition
