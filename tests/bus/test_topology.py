"""The bus's pure topology (bus/topology.py), which both adapters place and check with."""

from __future__ import annotations

import pytest

from bus import BusUnusable, Outgoing, TopicPartition
from bus.topology import PLACES_KEPT, Topology, wanted_counts
from events.topics import ALL_TOPICS, INTENTS, REPORTS, RUNS, TRIGGERS, partition_for


def test_a_key_lives_where_partition_for_puts_it_and_an_explicit_partition_wins() -> None:
    # given a topology of the default topics at 4 partitions
    topology = Topology(wanted_counts(4, None))
    # when records are placed by key, and by an explicit partition
    by_key = topology.place(Outgoing(TRIGGERS, "sales/2026-12-05", b"v"))
    explicit = topology.place(Outgoing(TRIGGERS, "sales/2026-12-05", b"v", partition=3))
    # then the key's partition is partition_for's, and the explicit one is kept
    assert by_key == TopicPartition(TRIGGERS, partition_for("sales/2026-12-05", 4))
    assert explicit == TopicPartition(TRIGGERS, 3)


def test_places_are_the_same_again_and_past_what_is_remembered() -> None:
    # given a topology that placed more keys than it remembers places
    topology = Topology(wanted_counts(4, None))
    keys = [f"run-{i}" for i in range(PLACES_KEPT + 10)]
    first = [topology.place(Outgoing(TRIGGERS, key, b"v")) for key in keys]
    # when the same keys, and explicit partitions, are placed again
    again = [topology.place(Outgoing(TRIGGERS, key, b"v")) for key in keys]
    # then each lands where its key lives, every time, and a bad partition is still refused
    assert first == again == [TopicPartition(TRIGGERS, partition_for(k, 4)) for k in keys]
    assert topology.place(Outgoing(TRIGGERS, "k", b"v", partition=2)) == TopicPartition(TRIGGERS, 2)
    with pytest.raises(BusUnusable, match=f"'{TRIGGERS}' has no partition 4"):
        topology.place(Outgoing(TRIGGERS, "k", b"v", partition=4))


def test_partitions_and_topics_that_do_not_exist_are_refused_by_name() -> None:
    # given a topology of 4 partitions per topic
    topology = Topology(wanted_counts(4, None))
    # when / then a partition past the count, a negative one and an unknown topic
    with pytest.raises(BusUnusable, match=f"'{TRIGGERS}' has no partition 4"):
        topology.place(Outgoing(TRIGGERS, "k", b"v", partition=4))
    with pytest.raises(BusUnusable, match="has no partition -1"):
        topology.check(TopicPartition(TRIGGERS, -1))
    with pytest.raises(BusUnusable, match="unknown topic 'nope'"):
        topology.partitions("nope")


def test_grouped_topics_must_share_a_count_and_counts_must_be_positive() -> None:
    # given counts every topic gets, overridden per topic
    assert set(wanted_counts(2, {"x.custom": 3})) == {*ALL_TOPICS, "x.custom"}
    # when / then the joined topics disagree, or a count is not positive
    with pytest.raises(BusUnusable, match="must share one partition count"):
        wanted_counts(4, {RUNS: 8})
    with pytest.raises(BusUnusable, match="must be positive"):
        wanted_counts(0, None)
    with pytest.raises(BusUnusable, match="must be positive"):
        wanted_counts(4, {TRIGGERS: 0})
    assert wanted_counts(4, {INTENTS: 6, REPORTS: 6, RUNS: 6})[RUNS] == 6
