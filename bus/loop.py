"""The one loop of every consumer of the bus: the coordinator's group loops, the trigger stages,
the registry, the agent's command loop, the projector, the fleet and model views and `follow`
are configurations of it, so each reads, waits, stops and fails the same way.

claim the inputs (a transactional consumer fences any earlier owner) -> load the positions,
and whatever the consumer rebuilds from the log -> read what is new on every input, one
request for all of them -> take it: handle it and save what came of it together with the
positions after it (a bus transaction, a SQLite transaction, or memory) -> when that did
nothing, wait, stop-aware, for input, a waker or the consumer's own deadline.

One failure policy: whatever a step raises, the positions and state it had loaded are
forgotten (they may be ahead of what was saved) and the next step loads them again from where
they are kept, so a crash or a failed save neither loses nor doubles an output. What a
transient bus error does is the consumer's `patience`: raise it to whoever supervises the
component (which restarts it: the coordinator's parts), or wait it out in place with a backoff
(an agent, whose running attempts must not stop because a broker is away).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TypeVar

from bus.protocol import Bus
from bus.records import Outgoing, Record, TopicPartition
from bus.waiting import wait_for_input

T = TypeVar("T")


class Loop(ABC):
    """A consumer of `inputs`. Subclasses set `bus` (and may set the class defaults below)
    before the first step; the loop keeps `positions`."""

    bus: Bus
    batch: int = 1000
    """Records per partition one read may bring."""
    wait_s: float = 1.0
    """How long one wait lasts at most (`stop` and the wakers cut it short)."""
    pace_s: float = 0.0
    """After a step that did something, this long before the next read: a consumer that
    saves per step (the projector) then saves a burst once, not record by record."""
    read_again: bool = True
    """After a step that acted, read again at once (True), or wait for input unless a
    partition filled its read (False). A wait returns at once when input is there (on Kafka
    the read after it takes what the wait's long-poll brought), so the empty read between a
    step and its wait is only a Fetch more on Kafka, on the loop and the broker, right after
    each step. The trackers keep it: an empty read is their clock and says they caught up."""
    positions: dict[TopicPartition, int]
    _loaded: bool = False
    _claimed: bool = False

    @property
    @abstractmethod
    def inputs(self) -> Sequence[TopicPartition]:
        """The partitions this loop reads."""

    async def claim(self) -> None:
        """Fence earlier owners of the inputs before reading them (a transactional consumer
        does); nothing by default."""
        return

    @abstractmethod
    async def load(self) -> dict[TopicPartition, int]:
        """Where to read from, and whatever `take` needs rebuilt (from the log, a store):
        at the first step and again after a failed one."""

    @abstractmethod
    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        """Handle `records` (possibly none: a consumer with deadlines acts on time too) and
        save what came of them with `positions`, the positions after them. True if it did
        something, so the next step follows without a wait."""

    def forget(self) -> None:
        """A step failed: drop what may be ahead of what was saved (the next load rebuilds)."""
        return

    def wait_bound_s(self) -> float | None:
        """How long the next wait may last; None: do not wait, step again now."""
        return self.wait_s

    def wakers(self) -> Sequence[asyncio.Event]:
        """Besides new input and `stop`, what ends a wait (e.g. the fleet changed)."""
        return ()

    async def patience(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """How this consumer lives through a bus error on `step` (`what` names it in a log
        line). By default it raises to the supervisor, which restarts the component."""
        return await step()

    # -- the recipe -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set."""
        async for _ in self.turns(stop):
            pass

    async def turns(self, stop: asyncio.Event) -> AsyncGenerator[list[Record], None]:
        """The loop as a stream of what each step read (also when nothing: a turn is a
        tracker's clock too), for consumers that hand records on as they come (`follow`)."""
        await self.claimed()
        while not stop.is_set():
            records, acted = await self._step()
            yield records
            if stop.is_set():
                return
            if acted:
                if self.pace_s:
                    await _within(self.pace_s, stop)
                elif not self.read_again and not _filled(records, self.batch):
                    await self.idle(stop)
            else:
                await self.idle(stop)

    async def claimed(self) -> None:
        """Claims the inputs unless this loop holds them (a failed step lets them go)."""
        if not self._claimed:
            await self.patience("claiming its inputs", self.claim)
            self._claimed = True

    async def step(self) -> bool:
        """Reads and takes one batch; False when there was nothing to do."""
        return (await self._step())[1]

    async def idle(self, stop: asyncio.Event) -> None:
        bound = self.wait_bound_s()
        if bound is None:
            return
        positions = self.positions
        await self.patience("waiting for input", lambda: wait_for_input(
            self.bus, positions, bound, stop, *self.wakers()))

    def loaded(self, positions: dict[TopicPartition, int]) -> None:
        """Positions a consumer loaded itself (e.g. a takeover restoring outside a step)."""
        self.positions, self._loaded = positions, True

    def let_go(self) -> None:
        """Neither the claim nor the positions hold any more (a failed step, the inputs moved
        to another owner, a new store): the next step claims and loads again."""
        self._loaded = self._claimed = False

    async def _step(self) -> tuple[list[Record], bool]:
        try:
            if not self._loaded:
                self.loaded(await self.patience("loading its positions", self.load))
            positions = self.positions
            records = await self.patience("reading its input", lambda: self.bus.read_many(
                positions, self.batch)) if positions else []
            after = {**positions, **{r.tp: r.offset + 1 for r in records}}
            acted = await self.take(records, after)
        except BaseException:
            # Whoever runs the loop again claims and loads again, as at a takeover.
            self.let_go()
            self.forget()
            raise
        self.positions = after
        return records, acted or bool(records)


class Transactional(Loop):
    """Outputs and input positions in one bus commit, as consumer group `group`: the inputs'
    transactional id fences an earlier owner, and a repeat after a crash writes nothing twice.
    Positions come from the group's committed offsets, unless `load` is overridden."""

    group: str
    read_again = False

    async def claim(self) -> None:
        await self.bus.claim(self.group, self.inputs)

    async def load(self) -> dict[TopicPartition, int]:
        positions = await self.committed()
        await self.restore()
        return positions

    async def committed(self) -> dict[TopicPartition, int]:
        """The group's committed position of each input."""
        return {tp: await self.bus.committed(self.group, tp) for tp in self.inputs}

    async def restore(self) -> None:
        """Rebuild what `handle` needs from the log; runs after the positions are read
        (outputs and positions were committed together). Nothing by default."""

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        if not records:
            return False
        return await self.commit_outputs(await self.handle(records), positions)

    async def commit_outputs(self, outputs: list[Outgoing],
                             positions: dict[TopicPartition, int]) -> bool:
        """Commits `outputs` with `positions`; True (something was done)."""
        # Every position, not just the advanced ones: the set of inputs names the
        # transactional id, which must stay the one `claim` fenced with. The same outputs
        # until the commit gets through (for a patient consumer): handling the records again
        # need not give them again.
        outputs, carried = self.carry(outputs, positions)
        written = await self.patience("committing", lambda: self.bus.commit(
            self.group, positions, outputs, carried=carried))
        await self.after_commit(written, positions)
        return True

    def carry(self, outputs: list[Outgoing], positions: dict[TopicPartition, int]
              ) -> tuple[list[Outgoing], bool]:
        """`outputs` with the positions written into one of them, and whether they are (then
        the commit need not send them to the group: Bus.commit's `carried`), for a consumer
        that finds them again in its own outputs when it loads. Not by default."""
        return outputs, False

    @abstractmethod
    async def handle(self, records: list[Record]) -> list[Outgoing]:
        """What to write for these records; may fold state it keeps."""

    async def after_commit(self, written: list[Record], positions: dict[TopicPartition, int]
                           ) -> None:
        """What may only happen once the outputs are on the bus, as they were `written`, with
        the inputs at `positions` (nothing by default)."""


class Tail(Loop):
    """Reads `inputs` from `positions` (kept in memory, shared with the caller) and saves
    nothing: the views, which rebuild from the log at every start, and `follow`."""

    def __init__(self, bus: Bus, inputs: Sequence[TopicPartition],
                 positions: dict[TopicPartition, int], *, wait_s: float,
                 batch: int = 2000) -> None:
        self.bus, self._inputs, self.wait_s, self.batch = bus, list(inputs), wait_s, batch
        self._start = positions
        self.positions = positions

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return self._inputs

    async def load(self) -> dict[TopicPartition, int]:
        return {tp: self._start.get(tp, 0) for tp in self._inputs}

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        self._start.update(positions)
        return False


def _filled(records: list[Record], limit: int) -> bool:
    """Whether some partition brought as many records as a read may: more may be there."""
    counts: dict[TopicPartition, int] = {}
    for record in records:
        counts[record.tp] = counts.get(record.tp, 0) + 1
    return any(count >= limit for count in counts.values())


async def _within(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
