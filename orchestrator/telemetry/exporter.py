"""Exports the spans of one partition group's runs, read from its run log (runs-k), so a trace
is whole whoever wrote the log and whoever exports it: at least once, duplicates identical.

A configuration of the bus's one loop (bus/loop.py), consumer group `baton.traces`, run
beside the group's coordinator loop by whichever process owns the group (`Traces.beside`): a
takeover moves both, and the claim fences an earlier owner's exporter.
Its position moves only once what it read has been exported, and only as far as the oldest
run still open (`OpenRuns.resume_at`): a restart reads that run again from its run_created
and rebuilds its spans, so nothing finished before a crash is lost and everything exported
again is exported exactly as before (ids, times and attributes all come from the log).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bus import Bus, Record, TopicPartition
from bus.backoff import Backoff
from bus.loop import Loop
from events import topics
from events.trace_context import exporting
from orchestrator.core.logged import decode_logged
from orchestrator.service.supervise import supervise
from orchestrator.telemetry.open_runs import OpenRuns
from orchestrator.telemetry.sender import ExportFailed, Sender
from orchestrator.telemetry.spans import DEFAULT_PUBLIC_URL, Span

GROUP = "baton.traces"
Work = Callable[[asyncio.Event], Awaitable[None]]


class TraceExporter(Loop):
    """runs-k -> finished spans -> the sender; then the position (module doc)."""

    group = GROUP
    pace_s = 0.2
    """A burst of the log goes out as one export, not one per commit of the coordinator."""

    def __init__(self, bus: Bus, k: int, sender: Sender, public_url: str) -> None:
        self.bus, self.k, self._sender, self._public_url = bus, k, sender, public_url
        self._open = OpenRuns(public_url)
        self._saved: int | None = None
        self._stop = asyncio.Event()

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return [TopicPartition(topics.RUNS, self.k)]

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        await super().run(stop)

    async def claim(self) -> None:
        """Fences the previous owner's exporter of this group (on Kafka)."""
        await self.bus.claim(self.group, self.inputs)

    async def load(self) -> dict[TopicPartition, int]:
        tp = self.inputs[0]
        self._saved = await self.bus.committed(self.group, tp)
        return {tp: self._saved}

    def forget(self) -> None:
        self._open, self._saved = OpenRuns(self._public_url), None

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        if not records:
            return False
        spans = [span for r in records
                 for span in self._open.add(decode_logged(r.value, f"{r.tp}@{r.offset}"),
                                            r.offset)]
        if spans and not await self._exported(spans):
            self.let_go()  # stopping: nothing saved, whoever runs it next sends them
            self.forget()
            return False
        tp = self.inputs[0]
        resume = self._open.resume_at(positions[tp])
        if resume != self._saved:
            await self.bus.commit(self.group, {tp: resume})
            self._saved = resume
        return True

    async def _exported(self, spans: list[Span]) -> bool:
        """Sends until the collector takes them (a collector away holds the position, never
        the coordinator; the sender says so); False if told to stop first."""
        backoff = Backoff(0.5, 30.0)
        while not self._stop.is_set():
            sending = asyncio.ensure_future(self._sender.send(spans))
            await asyncio.wait({sending, stopped := asyncio.ensure_future(self._stop.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not sending.done():  # a stop (a revoke) never waits for a slow collector
                sending.cancel()
                return False
            if sending.exception() is None:
                return True
            if not isinstance(sending.exception(), ExportFailed):
                sending.result()  # raises it: a bug, not a collector away
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next()):
                    await self._stop.wait()
        return False


class Traces:
    """Trace export for a coordinator's partition groups, when OTLP is configured; one sender
    (one exporter, one connection pool) for all of them."""

    def __init__(self, public_url: str = DEFAULT_PUBLIC_URL) -> None:
        self.public_url = public_url
        self._sender: Sender | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Traces | None:
        """None unless the standard OTLP variables ask for traces: then nothing is built,
        read or sent. `BATON_PUBLIC_URL` is the dashboard's address the spans link to."""
        if not exporting(environ):
            return None
        return cls(environ.get("BATON_PUBLIC_URL") or DEFAULT_PUBLIC_URL)

    def sender(self) -> Sender:
        if self._sender is None:
            from orchestrator.telemetry.otlp import OtlpSender  # the SDK only when traces are on

            self._sender = OtlpSender()
        return self._sender

    def beside(self, bus: Bus, k: int, work: Work) -> Work:
        """`work` (group k's loop) with group k's trace exporter running next to it: they
        start and stop together; an exporter that fails for good fails the unit, loudly."""
        async def both(stop: asyncio.Event) -> None:
            exporter = TraceExporter(bus, k, self.sender(), self.public_url)
            done = asyncio.Event()
            side = asyncio.ensure_future(
                supervise(f"traces of partition group {k}", exporter.run, done))
            main = asyncio.ensure_future(work(stop))
            try:
                await asyncio.wait({main, side}, return_when=asyncio.FIRST_COMPLETED)
                if side.done() and side.exception() is not None and not main.done():
                    main.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await main
                    side.result()
                await main
            finally:
                done.set()
                main.cancel()
                await asyncio.gather(side, return_exceptions=True)

        return both
