"""Input positions carried on the last run-log record of a transaction (log_positions.py)."""

from __future__ import annotations

from bus import Outgoing, Record, TopicPartition
from events import topics
from orchestrator.service import log_positions

INTENTS, REPORTS = TopicPartition(topics.INTENTS, 3), TopicPartition(topics.REPORTS, 3)


def logged(headers: tuple[tuple[str, bytes], ...]) -> Record:
    return Record(topics.RUNS, 3, 7, "run", b"{}", headers, 0)


def test_positions_come_back_as_they_were_written() -> None:
    # given positions of two inputs, one with a dotted topic name
    positions = {INTENTS: 12, TopicPartition("ns.baton.reports", 10): 0}
    # when they are written as a header and read back
    # then they are the same
    assert log_positions.decode(log_positions.encode(positions)) == positions


def test_the_positions_ride_on_the_last_log_record_only() -> None:
    # given a transaction's records: two for the run log, a command between them
    first = Outgoing(topics.RUNS, "a", b"1", 3)
    command = Outgoing(topics.COMMANDS, "agent", b"2")
    last = Outgoing(topics.RUNS, "b", b"3", 3, (("other", b"x"),))
    # when the positions are carried
    out, carried = log_positions.carry([first, command, last], topics.RUNS,
                                       {INTENTS: 5, REPORTS: 9})
    # then the last run-log record has them beside its own headers, nothing else changed
    assert carried
    assert out[:2] == [first, command]
    assert out[2].headers[0] == ("other", b"x")
    assert log_positions.carried(logged(out[2].headers)) == {INTENTS: 5, REPORTS: 9}


def test_a_transaction_without_a_log_record_cannot_carry_them() -> None:
    # given only a dead letter to write
    letter = Outgoing(topics.DLQ, "bad", b"x")
    # when the positions are carried
    out, carried = log_positions.carry([letter], topics.RUNS, {INTENTS: 5})
    # then the records are as they were, and the bus must store the positions itself
    assert (out, carried) == ([letter], False)


def test_a_record_without_readable_positions_carries_none() -> None:
    # given records from an older build, and one with a header this code cannot read
    # then neither gives positions: the group's committed offsets stand
    assert log_positions.carried(logged(())) is None
    assert log_positions.carried(logged(((log_positions.HEADER, b"intents=x"),))) is None


def test_the_furthest_position_of_each_partition_wins() -> None:
    # given committed offsets behind the log on one input and ahead on the other
    committed = {INTENTS: 4, REPORTS: 9}
    in_log = {INTENTS: 6, REPORTS: 2}
    # then each input resumes at the furthest
    assert log_positions.later(committed, in_log) == {INTENTS: 6, REPORTS: 9}
