"""The stream's cursor: a `v2.` cursor gives back the positions it was made of, a `v1.` one
(from before) still reads, and anything else is a 400 problem, never a position guessed."""

from __future__ import annotations

import base64
import json

import pytest

from bus import TopicPartition
from orchestrator.api import cursors
from orchestrator.api.problems import Problem

PARTITIONS = dict(zip(cursors.STREAMED, (12, 12, 12, 12), strict=True))
POSITIONS = {TopicPartition(topic, p): (p * 7919 + t * 131) ** 2 % 3_000_000
             for t, topic in enumerate(cursors.STREAMED) for p in range(PARTITIONS[topic])}


def v1(positions: dict[TopicPartition, int], partitions: dict[str, int]) -> str:
    """A cursor as builds before v2 wrote them."""
    offsets = [[positions.get(TopicPartition(topic, p), 0) for p in range(partitions[topic])]
               for topic in cursors.STREAMED]
    raw = json.dumps(offsets, separators=(",", ":")).encode()
    return "v1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_cursor_gives_back_its_positions_and_a_moved_one_the_move() -> None:
    # given the positions of every streamed partition, as a cursor
    cursor = cursors.Cursor(POSITIONS, PARTITIONS)
    # then it reads back as them
    assert cursors.decode(cursor.text(), PARTITIONS) == POSITIONS
    # and moved on one partition, as them with that move
    tp = TopicPartition(cursors.STREAMED[2], 5)
    cursor.move(tp, 2**40)
    assert cursors.decode(cursor.text(), PARTITIONS) == {**POSITIONS, tp: 2**40}


def test_a_cursor_from_before_still_resumes_where_it_was() -> None:
    assert cursors.decode(v1(POSITIONS, PARTITIONS), PARTITIONS) == POSITIONS


def test_a_v2_cursor_is_much_shorter_than_a_v1_one() -> None:
    # every event carries one: it was a third of what a subscriber read
    assert len(cursors.encode(POSITIONS, PARTITIONS)) < 0.6 * len(v1(POSITIONS, PARTITIONS))


@pytest.mark.parametrize("cursor", [
    "v2.", "v2.!!", "v3.AAAA", "nonsense",
    cursors.PREFIX + base64.urlsafe_b64encode(bytes([0x80])).decode(),  # truncated varint
    cursors.PREFIX + base64.urlsafe_b64encode(bytes([0xFF] * 11 + [1])).decode(),  # overlong
    cursors.encode(POSITIONS, PARTITIONS) + "AA",  # trailing offsets
    cursors.encode(POSITIONS, {**PARTITIONS, cursors.STREAMED[0]: 6}),  # another deployment
], ids=["empty", "not-base64", "unknown-version", "no-version", "truncated", "overlong",
        "trailing", "other-shape"])
def test_what_this_api_did_not_give_is_a_400_saying_what_to_do(cursor: str) -> None:
    with pytest.raises(Problem) as refused:
        cursors.decode(cursor, PARTITIONS)
    assert refused.value.status == 400
    assert "leave it out" in refused.value.detail
