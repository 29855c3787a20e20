"""Sending what the log says to a system outside Baton (an OpenLineage consumer, an MLflow
tracking server): follow some topics from where the last relay got to, hand each turn's
records to the sender, save the positions after it succeeded.

At least once: a turn interrupted before its positions were saved is sent again, so senders
are idempotent (ids derived from Baton's, lookups before creating). A sender that fails ends
the relay with its exception: nothing is skipped. On start, what earlier relays sent is
folded again without sending (`fold`), so a sender that keeps state (the runs still going)
knows it as if it had never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from bus.ranges import between


async def relay(bus: Bus, inputs: list[TopicPartition], positions_file: Path,
                stop: asyncio.Event, send: Callable[[list[Record]], Awaitable[int]], *,
                fold: Callable[[list[Record]], Awaitable[None]] | None = None,
                once: bool = False) -> int:
    """Relay until stopped (or, with `once`, until caught up); how many the sender sent."""
    positions = _load(positions_file, inputs)
    if fold is not None:
        await _folded(bus, positions, fold)
    total = 0
    tail = Tail(bus, inputs, positions, wait_s=0.5)
    async with contextlib.aclosing(tail.turns(stop)) as turns:
        async for records in turns:
            total += await send(records)
            _save(positions_file, positions)
            if once and not records:
                break
    return total


async def _folded(bus: Bus, positions: dict[TopicPartition, int],
                  fold: Callable[[list[Record]], Awaitable[None]]) -> None:
    for tp, until in positions.items():
        async for batch in between(bus, tp, 0, until):
            await fold(batch)


def _load(path: Path, inputs: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where the last relay got to; with no file, every partition from its beginning."""
    saved: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    return {tp: int(saved.get(f"{tp.topic}:{tp.partition}", 0)) for tp in inputs}


def _save(path: Path, positions: dict[TopicPartition, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({f"{tp.topic}:{tp.partition}": at
                                     for tp, at in positions.items()}))
    temporary.replace(path)  # never half-written
