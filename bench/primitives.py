"""The bus operations every stage is built from, one at a time on an otherwise idle bus.

What one publish, one commit (a record plus two input positions, as a partition-group loop
commits), one read, one end offset and one wake-up cost: the floor under every figure of the
other benchmarks, and on Kafka the number of round trips behind each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.common import Figure, Report, median, percentile, temp_home
from bus import EMBEDDED, Bus, Outgoing, TopicPartition, open_bus_url
from events import topics

GROUP = "bench-primitives"
KEY = "bench"
VALUE = b'{"type":"bench","payload":"' + b"x" * 400 + b'"}'
"""About the size of a run-log event."""
OPERATIONS = ("publish 1 record (a transaction)", "commit 1 record + 2 input positions",
              "read 1 record", "end offset", "publish -> a waiting reader returns")
OPERATION_KEYS = ("bus_publish", "bus_commit", "bus_read", "bus_end_offset", "bus_wake")
"""Each operation's `--json` key stem, in the order of OPERATIONS."""


async def _timed(repeat: int, op: Callable[[], Awaitable[object]]) -> list[float]:
    """Milliseconds per call, after one untimed call that opens clients and connections."""
    await op()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        await op()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def _wake_ms(bus: Bus, tp: TopicPartition) -> float:
    """From starting a publish to a reader waiting at the end offset returning."""
    position = await bus.end_offset(tp)
    waiter = asyncio.ensure_future(bus.wait({tp: position}, 30.0))
    start = time.perf_counter()
    await bus.publish([Outgoing(tp.topic, KEY, VALUE, partition=tp.partition)])
    woke = await waiter
    if not woke:
        raise RuntimeError(f"a waiter on {tp} did not wake for a published record")
    return (time.perf_counter() - start) * 1000


async def measure(repeat: int = 30, *, bus_url: str = EMBEDDED) -> Report:
    report = Report(f"bus primitives: one operation at a time on an idle bus "
                    f"(median of {repeat})")
    with temp_home() as home:
        bus = await open_bus_url(bus_url, home.root)
        try:
            runs = TopicPartition(topics.RUNS, 0)
            inputs = {TopicPartition(topics.INTENTS, 0): 0, TopicPartition(topics.REPORTS, 0): 0}
            record = Outgoing(topics.RUNS, KEY, VALUE, partition=0)
            publish = await _timed(repeat, lambda: bus.publish([record]))
            commit = await _timed(repeat, lambda: bus.commit(GROUP, inputs, [record]))
            last = await bus.end_offset(runs)
            written = await bus.read(runs, max(last - 2, 0), 1)
            at = written[0].offset if written else 0
            read = await _timed(repeat, lambda: bus.read(runs, at, 1))
            end = await _timed(repeat, lambda: bus.end_offset(runs))
            await _wake_ms(bus, runs)
            wake = [await _wake_ms(bus, runs) for _ in range(repeat)]
        finally:
            await bus.close()
    for name, key, values in zip(OPERATIONS, OPERATION_KEYS, (publish, commit, read, end, wake),
                                 strict=True):
        report.row(name, f"median {median(values):.2f} ms, p90 {percentile(values, 90):.2f} ms, "
                         f"max {max(values):.2f} ms")
        report.figures.append(Figure(f"bus: {name}", median(values), "ms", key=key))
    report.extra["repeat"] = repeat
    return report


def main() -> Report:
    return asyncio.run(measure())
