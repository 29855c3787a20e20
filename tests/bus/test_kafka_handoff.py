"""The hand-off rule (bus/kafka_handoff.py) on its own: which records a read from a position
gets from memory, and when it must ask the broker. No broker here: tests/kafka/test_handoff.py
checks the same against what Kafka delivers."""

from __future__ import annotations

from bus.kafka_handoff import Batch, Handoff, Kept, kept_skipping, kept_with, run_at
from bus.records import Record, TopicPartition

TP = TopicPartition("baton.runs", 0)
COORD = "baton.d.coord.0"
ROUTER = "baton.d.router.0"


def records(*offsets: int) -> tuple[Record, ...]:
    return tuple(Record(TP.topic, TP.partition, o, "k", b"%d" % o, (), 0) for o in offsets)


def kept(*batches: Batch) -> Kept:
    out = Kept()
    for batch in batches:
        out = kept_with(out, batch)
    return out


def offsets(got: list[Record]) -> list[int]:
    return [r.offset for r in got]


def test_a_read_exactly_at_a_kept_record_gets_the_contiguous_run_from_there() -> None:
    # given a transaction of ours at 10-12, and an append of ours right after at 13
    state = kept(Batch(COORD, records(10, 11, 12)), Batch(None, records(13)))
    # when / then: from 10 the whole run; from 12 the rest; bounded by the limit
    assert offsets(run_at(state, 10, 100)) == [10, 11, 12, 13]
    assert offsets(run_at(state, 12, 100)) == [12, 13]
    assert offsets(run_at(state, 10, 2)) == [10, 11]


def test_a_read_anywhere_else_is_for_the_broker() -> None:
    # given our records at 10-11 (then our marker, or someone else's record, at 12)
    state = kept(Batch(COORD, records(10, 11)))
    # then a reader before them, on the marker, or past them gets nothing from memory
    assert run_at(state, 9, 100) == []
    assert run_at(state, 12, 100) == []
    assert run_at(state, 13, 100) == []


def test_someone_elses_record_inside_our_transaction_is_for_the_broker() -> None:
    # given our transaction wrote 10 and 12, and another producer wrote 11 in between
    state = kept(Batch(COORD, records(10, 12)))
    # then a read from 10 is the broker's whole (a run would stop short of our 12: the read
    # would bring less than the broker's), one of one record is ours, and from 12 ours too
    assert run_at(state, 10, 100) == []
    assert offsets(run_at(state, 10, 1)) == [10]
    assert offsets(run_at(state, 12, 100)) == [12]


def test_a_read_fed_by_two_of_our_ids_at_once_is_for_the_broker() -> None:
    # given transactions of two of our ids interleaved on a partition (as an agent's commands
    # from two partition groups may be), ours at 10, 11, 13 and 14, and 12 not known to be ours
    state = kept(Batch(ROUTER, records(10, 13)), Batch(COORD, records(11, 14)))
    # then a read from 10 is the broker's (it knows 12), not two records now and two later
    assert run_at(state, 10, 100) == []
    # and a reader on 13 gets the rest from memory
    assert offsets(run_at(state, 13, 100)) == [13, 14]


def test_the_next_transaction_on_the_same_id_two_offsets_on_goes_on_over_our_marker() -> None:
    # given two transactions on one transactional id: 10-11, then 13 (12 can only be the
    # first one's commit marker: the second could not write before it)
    state = kept(Batch(COORD, records(10, 11)), Batch(COORD, records(13, 14)))
    # then a reader on the marker, or before it, goes on over it
    assert offsets(run_at(state, 12, 100)) == [13, 14]
    assert offsets(run_at(state, 10, 100)) == [10, 11, 13, 14]


def test_a_gap_after_another_id_or_an_append_or_of_two_offsets_is_for_the_broker() -> None:
    # given 12 after a transaction on another id, 22 after an append, 33 three offsets on
    # (12, 22 and 32 may be someone else's record, the marker coming later)
    other_id = kept(Batch(ROUTER, records(10)), Batch(COORD, records(12)))
    after_append = kept(Batch(None, records(20)), Batch(None, records(22)))
    too_far = kept(Batch(COORD, records(30)), Batch(COORD, records(33)))
    # then a reader on the offset in between is answered by the broker
    assert run_at(other_id, 11, 100) == []
    assert run_at(after_append, 21, 100) == []
    assert run_at(too_far, 31, 100) == []
    # and so is a read from the record before it, which must not stop there
    assert run_at(other_id, 10, 100) == []


def test_offsets_a_fetch_skipped_join_a_reader_to_our_next_record() -> None:
    # given our transaction at 10, then our append at 12; a fetch found nothing readable at 11
    state = kept_skipping(kept(Batch(ROUTER, records(10)), Batch(None, records(12))), 11, 12)
    # then a reader on 11 (it read 10) gets 12 from memory, and one from 10 both
    assert offsets(run_at(state, 11, 100)) == [12]
    assert offsets(run_at(state, 10, 100)) == [10, 12]


def test_only_the_newest_batches_are_kept_and_a_batch_too_large_not_at_all() -> None:
    # given more batches than are kept, each a transaction of one record on one id
    state = Kept()
    for offset in range(0, 40, 2):
        state = kept_with(state, Batch(COORD, records(offset)), batches=3)
    # then only the three newest are there
    assert sorted(state.records) == [34, 36, 38]
    assert run_at(state, 0, 100) == []
    # and a batch above the record bound keeps nothing at all
    big = kept_with(state, Batch(COORD, records(*range(40, 60))), records=10)
    assert big.records == {}


async def test_a_wait_is_woken_when_the_record_it_waits_for_is_handed_over() -> None:
    # given a wait on position 12 (our marker, after our records at 10-11)
    handoff = Handoff()
    handoff.wrote(COORD, list(records(10, 11)))
    waiting = handoff.listen({TP: 12})
    other = handoff.listen({TopicPartition(TP.topic, 1): 12})
    assert not handoff.ready({TP: 12})
    # when our next transaction on the same id lands at 13 (over our marker at 12)
    handoff.wrote(COORD, list(records(13)))
    # then the wait on that partition is woken, the other one not, and a read gets 13
    assert waiting.done() and not other.done()
    assert offsets(handoff.read(TP, 12, 100)) == [13]
    # and a wait that ends leaves nothing behind
    handoff.unlisten(waiting)
    handoff.unlisten(other)
    assert other.cancelled()
    assert handoff._waits == {}  # white box: no listener left to wake


async def test_a_wait_is_not_woken_early_when_the_read_would_go_to_the_broker() -> None:
    # given a wait on 10, and a transaction of ours writing 10 and 13 (11 and 12 unknown)
    handoff = Handoff()
    waiting = handoff.listen({TP: 10})
    handoff.wrote(ROUTER, list(records(10, 13)))
    # then it is not woken: the read would go to the broker, which has 10 once the markers
    # land, and the waiter's long-poll says so then
    assert not waiting.done()
    assert not handoff.ready({TP: 10})
    # when another transaction of ours fills 11 and 12
    handoff.wrote(COORD, list(records(11, 12)))
    # then it is woken, and a read gets the four from memory
    assert waiting.done()
    assert offsets(handoff.read(TP, 10, 100)) == [10, 11, 12, 13]
    handoff.unlisten(waiting)
