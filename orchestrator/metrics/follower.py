"""The metrics' shell: a configuration of the bus's one consumer loop that keeps a tally
current from the log, and the consumer lag, which only the bus can tell (end offsets)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from events import topics
from orchestrator.metrics.figures import Figures, GroupLag, compute
from orchestrator.metrics.tally import Observed, Tally, observe
from orchestrator.service import log_positions
from orchestrator.service.group_loop import GROUP
from orchestrator.service.pipeline_versions import PipelineVersions
from orchestrator.service.reading import partitions_of
from orchestrator.store.bulk import bulk_fold

FOLLOWED = (topics.RUNS, topics.MODELS, topics.DLQ, topics.AGENTS)
LAG_COUNTED_UP_TO = 1000
"""Per partition, a backlog up to this many records is counted record by record (exact on
Kafka too, where transaction markers take offsets); a longer one is end - position."""


class MetricsLoop(Tail):
    """Reads baton.runs, .models, .dlq and .agents from the start, folding each record into
    `tally`; `observed` hears what instruments record as it happens (OTel histograms)."""

    def __init__(self, bus: Bus, *, wait_s: float = 0.5,
                 observed: Callable[[list[Observed]], None] = lambda _: None) -> None:
        self.tally = Tally()
        self.versions = PipelineVersions(bus)
        self.observed = observed
        self.caught_up = asyncio.Event()
        """Set once a read brought nothing: the figures cover the log as it was then."""
        self._observed_upto: dict[TopicPartition, int] = {}
        """Where `observed` heard up to: a fold again after a failed step (load) must not
        record into the histograms twice."""
        inputs = [tp for topic in FOLLOWED for tp in partitions_of(bus, topic)]
        super().__init__(bus, inputs, {}, wait_s=wait_s)

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        if not records:
            self.caught_up.set()
        seen: list[Observed] = []
        runs = iter(await self.versions.decoded([r for r in records if r.topic == topics.RUNS]))
        for record in records:
            observed = observe(self.tally, record,
                               next(runs) if record.topic == topics.RUNS else None)
            if record.offset >= self._observed_upto.get(record.tp, 0):
                seen.extend(observed)
                self._observed_upto[record.tp] = record.offset + 1
        if seen:
            self.observed(seen)
        return await super().take(records, positions)

    async def load(self) -> dict[TopicPartition, int]:
        """A failed step folds everything again (a tally cannot be rewound)."""
        self.tally = Tally()
        self._start.clear()
        return await super().load()

    async def catch_up(self) -> None:
        """Reads until a read brings nothing: what `baton metrics` does once, and the API's
        follower first. The cyclic GC waits meanwhile, as for any whole-log fold (bulk.py)."""
        await self.claimed()
        with bulk_fold():
            while await self.step():
                pass

    async def figures(self, *, now: float, since: float | None = None,
                      until: float | None = None, pipeline: str | None = None) -> Figures:
        """The figures of what was folded so far, with the consumer lag as of now."""
        lag = await consumer_lag(self.bus, self.tally.carried)
        return compute(self.tally, now=now, since=since, until=until, pipeline=pipeline,
                       lag=lag)


async def consumer_lag(bus: Bus, carried: dict[TopicPartition, int]) -> list[GroupLag]:
    """Per partition group, the inputs its coordinator has not consumed: from where it would
    resume (the later of the group's committed offset and the position its run log carries,
    as a takeover reads it: GroupLoop.restore) to the end of intents-k and reports-k."""
    groups = range(bus.partitions(topics.RUNS))
    inputs = [TopicPartition(topic, k) for k in groups for topic in (topics.INTENTS,
                                                                       topics.REPORTS)]
    committed = {tp: await bus.committed(GROUP, tp) for tp in inputs}
    resume = log_positions.resumed(inputs, committed, carried)
    backlog = await _backlog(bus, resume)
    return [GroupLag(k, backlog[TopicPartition(topics.INTENTS, k)],
                     backlog[TopicPartition(topics.REPORTS, k)]) for k in groups]


async def _backlog(bus: Bus, resume: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Records from each position to the end as of now. A read that brings nothing for a
    partition means it is read through (on Kafka only transaction markers may be left)."""
    ends = dict(zip(resume, await asyncio.gather(*(bus.end_offset(tp) for tp in resume)),
                    strict=True))
    counted = dict.fromkeys(resume, 0)
    positions = {tp: at for tp, at in resume.items() if at < ends[tp]}
    while positions:
        brought: set[TopicPartition] = set()
        for record in await bus.read_many(positions, LAG_COUNTED_UP_TO):
            brought.add(record.tp)
            counted[record.tp] += record.offset < ends[record.tp]
            positions[record.tp] = record.offset + 1
        for tp in list(positions):
            if counted[tp] >= LAG_COUNTED_UP_TO:
                counted[tp] = ends[tp] - resume[tp]
            if tp not in brought or counted[tp] >= LAG_COUNTED_UP_TO or \
                    positions[tp] >= ends[tp]:
                del positions[tp]
    return counted
