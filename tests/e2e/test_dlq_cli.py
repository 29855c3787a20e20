"""`baton dlq list|show|redrive` through the real CLI, on both buses.

A consumer's refusal is written to baton.dlq the way consumers write it; the CLI then lists
it, shows it (escaped: the bytes are hostile), re-drives it to the partition it came from, and
records that it did, so a second re-drive needs --again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from bus import Bus, Outgoing, TopicPartition
from events import topics
from orchestrator.service.dead_letters import dead_letter
from tests.buses import BusOpener
from tests.e2e.support import baton
from tests.e2e.test_cli import assert_one_line_error

pytestmark = pytest.mark.e2e
HOSTILE = b"\x00\x1b[2J{not json"


def dlq(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return baton(home, "dlq", *args, bus=url)


async def refused_input(bus: Bus) -> str:
    """An input on baton.triggers partition 1, refused by the fan-out; its letter's id."""
    (original,) = await bus.publish([Outgoing(topics.TRIGGERS, "digits", HOSTILE, partition=1)])
    (letter,) = await bus.publish([dead_letter(original, "not JSON", consumer="baton.fanout")])
    return f"{letter.partition}@{letter.offset}"


async def test_a_dead_letter_is_listed_shown_escaped_and_re_driven_once(
    open_bus: BusOpener, bus_url: str, tmp_path: Path
) -> None:
    # given an input a consumer refused
    bus = await open_bus()
    letter_id = await refused_input(bus)
    # when an operator lists and shows it
    listed = await asyncio.to_thread(dlq, tmp_path, bus_url, "list", "--json")
    shown = await asyncio.to_thread(dlq, tmp_path, bus_url, "show", letter_id)
    # then it is there, with the reason, who refused it and where it came from, escaped
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["consumer"], row["reason"]) == (letter_id, "baton.fanout", "not JSON")
    assert row["from"] == "baton.triggers-1@0"
    assert row["preview"] == "\\x00\\x1b[2J{not json"
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x00" not in shown.stdout
    assert "redriven  no" in shown.stdout

    # when it is re-driven
    redriven = await asyncio.to_thread(dlq, tmp_path, bus_url, "redrive", letter_id)
    # then its exact bytes are back on the partition they came from, and the topic says so
    assert redriven.returncode == 0, redriven.stderr
    (again,) = await bus.read(TopicPartition(topics.TRIGGERS, 1), 1, 10)
    assert (again.key, again.value) == ("digits", HOSTILE)
    assert redriven.stdout.strip() == f"re-drove letter {letter_id} to {again.where}"
    (row,) = json.loads((await asyncio.to_thread(dlq, tmp_path, bus_url, "list", "--json")).stdout)
    assert row["redriven_to"] == [again.where]

    # and a second re-drive is refused unless asked for with --again
    refused = await asyncio.to_thread(dlq, tmp_path, bus_url, "redrive", letter_id)
    assert_one_line_error(refused, 2, f"letter {letter_id} was re-driven already",
                          "pass --again")
    forced = await asyncio.to_thread(dlq, tmp_path, bus_url, "redrive", letter_id, "--again")
    assert forced.returncode == 0, forced.stderr
    (_, third) = await bus.read(TopicPartition(topics.TRIGGERS, 1), 1, 10)
    assert forced.stdout.strip() == f"re-drove letter {letter_id} to {third.where}"


async def test_an_unknown_letter_is_one_line_and_exit_1(
    open_bus: BusOpener, bus_url: str, tmp_path: Path
) -> None:
    # given a bus with no dead letter
    await open_bus()
    # when one is asked for, then the answer says how to find the right id
    result = await asyncio.to_thread(dlq, tmp_path, bus_url, "show", "3@9")
    assert_one_line_error(result, 1, "no dead letter '3@9'", "baton dlq list")
