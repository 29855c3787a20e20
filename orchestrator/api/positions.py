"""Log positions on the wire: what a write answers with and what `?min_position=` waits for.

A position names a partition of a topic the projection reads and the offset just after the
record a write produced there (`runs.3.1235`): a read given it answers only once the
projection has taken every record before that offset, so a client always sees its own write.
Several positions are comma-separated; each must be reached.
"""

from __future__ import annotations

import re

from bus import TopicPartition
from events import topics
from orchestrator.api.problems import Problem

ALIASES = {"runs": topics.RUNS, "models": topics.MODELS, "triggers": topics.TRIGGER_LOG}
_NAMES = {topic: alias for alias, topic in ALIASES.items()}
_TOKEN = re.compile(r"(runs|models|triggers)\.(\d{1,9})\.(\d{1,18})")


def token(tp: TopicPartition, next_offset: int) -> str:
    return f"{_NAMES[tp.topic]}.{tp.partition}.{next_offset}"


def parse(text: str, partitions: dict[str, int]) -> dict[TopicPartition, int]:
    """`min_position`'s value as positions to reach; a Problem (400) saying what a position
    looks like for anything else, or for a partition this deployment does not have."""
    wanted: dict[TopicPartition, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _TOKEN.fullmatch(part)
        if match is None:
            raise _bad(f"{part!r} is not a log position")
        topic, partition = ALIASES[match[1]], int(match[2])
        if partition >= partitions[topic]:
            raise _bad(f"{part!r} names partition {partition} of {match[1]}, which has "
                       f"{partitions[topic]}")
        tp = TopicPartition(topic, partition)
        wanted[tp] = max(wanted.get(tp, 0), int(match[3]))
    if not wanted:
        raise _bad("it is empty")
    return wanted


def _bad(why: str) -> Problem:
    return Problem(400, "invalid-position", "Invalid min_position",
                   f"min_position: {why}; give the 'position' a write answered with (e.g. "
                   "runs.0.17), several separated by commas")


def reached(have: dict[TopicPartition, int], wanted: dict[TopicPartition, int]) -> bool:
    return all(have.get(tp, 0) >= offset for tp, offset in wanted.items())
