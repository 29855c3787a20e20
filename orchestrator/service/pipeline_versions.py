"""Pipeline versions by content hash: the spec is written to the log once, runs name it.

A `run_created` as the coordinator writes it carries its pipeline's version and no spec; the
spec goes to baton.pipelines (keyed by the version, compacted) in the transaction of the first
run of that version this process decides, so no reader ever sees a run whose version is not
there yet. Whoever folds the run log reads records through `PipelineVersions.decoded`, which
fills the spec back in ("upcast on read") before the pure fold sees the event: `evolve` and
every reader after it are as they were, and logs written before (the spec inline) read as
they did.

Specs are cached for the whole process in `KNOWN` (they are content-addressed: a version
names one spec for ever), so in `baton up` the projector, the metrics and the API find the
spec the coordinator declared without a read; a process that did not declare it (`baton api`
on Kafka, a coordinator taking over, `replay --verify`) reads the version's partition of
baton.pipelines to its end on the first miss.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from bus import Bus, Outgoing, Record, TopicPartition
from bus.ranges import between
from events import topics
from events.codec import encode
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.runs import PipelineDeclared, RunCreated
from events.topics import partition_for
from orchestrator.core.errors import LogCorrupt
from orchestrator.core.logged import decode_logged

KNOWN: dict[str, PipelineSpec] = {}
"""Version -> spec, for the whole process: filled by what it declares and what it reads, and
by the specs requests carry (`interned`)."""
_AS_JSON: dict[str, dict[str, Any]] = {}
"""Version -> the spec as JSON (what the HTTP API's event documents carry)."""
SOURCE = "baton/coordinator"
INLINE_VARIABLE = "BATON_SPECS_INLINE"


def specs_inline() -> bool:
    """Whether the coordinator writes each run's spec in its `run_created`, as builds before
    this one did (BATON_SPECS_INLINE=1): while a reader of such a build (a `baton api`, a
    coordinator not upgraded yet) still reads the log. Readers ship before writers."""
    value = os.environ.get(INLINE_VARIABLE, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{INLINE_VARIABLE}={value!r} is neither on nor off: set it to 1 to write "
                     "each run's spec in its run_created, or unset it (the default: by version)")


def with_known_spec(env: Envelope[Payload]) -> Envelope[Payload]:
    """`env`, a `run_created` naming its version, with the spec filled in when this process
    knows it (else as it is): the whole cost of reading a run by reference once the version
    is known, a lookup and two shallow copies."""
    data = env.data
    if isinstance(data, RunCreated) and data.spec is None:
        spec = KNOWN.get(data.pipeline_version)
        if spec is not None:
            return env.model_copy(update={"data": data.model_copy(update={"spec": spec})})
    return env


def interned(env: Envelope[Payload]) -> Envelope[Payload]:
    """`env`, a `run_requested` (or a `run_created` of a log that carries specs inline), with
    its spec the one object this process holds for that version. Each such record decodes to
    a spec of its own, and a run keeps its spec while it lives: 5,000 runs of one pipeline
    requested at once held 5,000 copies (a few KB each for one task, a thousand times that for
    a thousand), and the memory of such a burst's peak stays with the process. The version is
    the spec's content hash, which deciding the request computes anyway (it is cached); it
    leaves the description out, so a run may hold its version's first description, as every
    reader of a `run_created` by version already shows it."""
    data = env.data
    spec = data.spec if isinstance(data, RunRequested | RunCreated) else None
    if spec is None:
        return env
    known = KNOWN.setdefault(spec.version(), spec)
    if known is spec:
        return env
    return env.model_copy(update={"data": data.model_copy(update={"spec": known})})


@dataclass
class PipelineVersions:
    """One reader's (or writer's) view of baton.pipelines, over the process's `KNOWN`."""

    bus: Bus
    declared: set[str] = field(default_factory=set)
    """Versions known to be on baton.pipelines: read there, or committed by this process."""
    _read_to: dict[int, int] = field(default_factory=dict)
    """Partition -> the next offset of baton.pipelines this instance has not read."""

    # --------------------------------------------------------------------------- writing

    def written(self, env: Envelope[Payload]) -> list[Outgoing]:
        """What goes to the bus for a decided `run_created` (before its run-log record): its
        version's declaration, unless it is known to be on baton.pipelines already. A
        declaration that goes twice (two groups' first runs of a version at once, or a
        commit that failed) is harmless: the same key and value, compacted."""
        data = env.data
        if not isinstance(data, RunCreated) or data.spec is None:
            return []
        version = data.pipeline_version
        KNOWN.setdefault(version, data.spec)
        if version in self.declared:
            return []
        declared = envelope(PipelineDeclared(pipeline=data.pipeline, version=version,
                                             spec=data.spec),
                            id=f"pipeline-{version}", source=SOURCE, subject=data.pipeline,
                            time=env.time)
        return [Outgoing(topics.PIPELINES, version, encode(declared),
                         partition=self._partition(version))]

    def committed(self, written: list[Record]) -> None:
        """The declarations a commit carried are on the topic now."""
        self.declared.update(r.key for r in written if r.topic == topics.PIPELINES)

    # --------------------------------------------------------------------------- reading

    async def decoded(self, records: list[Record]) -> list[Envelope[Payload]]:
        """Records of a log Baton writes, decoded (LogCorrupt for one that is not), each
        `run_created` with its spec filled in."""
        envs = [decode_logged(record.value, record.where) for record in records]
        for i, env in enumerate(envs):
            if isinstance(env.data, RunCreated):
                envs[i] = (interned(env) if env.data.spec is not None
                           else await self.resolved(env, records[i].where))
        return envs

    async def resolved(self, env: Envelope[Payload], where: str) -> Envelope[Payload]:
        """`env` with its spec, when it is a `run_created` that names it by version."""
        data = env.data
        if not isinstance(data, RunCreated) or data.spec is not None:
            return env
        await self.spec(data.pipeline_version, where)  # a lookup, once the version is known
        return with_known_spec(env)

    async def spec(self, version: str, where: str) -> PipelineSpec:
        """The spec of `version`; LogCorrupt, naming the record at `where` that asked, when
        baton.pipelines does not hold it (its declaration is committed before or with the
        first run of it, so this is a damaged or foreign log)."""
        found = KNOWN.get(version)
        if found is None:
            await self._read(self._partition(version))
            found = KNOWN.get(version)
        if found is None:
            raise LogCorrupt(f"{where} names pipeline version {version}, which "
                             f"{topics.PIPELINES} does not hold: the log is incomplete")
        return found

    async def filled(self, env: dict[str, Any], where: str) -> None:
        """A `run_created` as JSON (the HTTP API's events), its spec filled in in place."""
        data = env.get("data")
        if env.get("type") != "run_created" or not isinstance(data, dict):
            return
        version = data.get("pipeline_version")
        if data.get("spec") is not None or not isinstance(version, str):
            return
        if version not in _AS_JSON:
            spec = await self.spec(version, where)
            _AS_JSON[version] = json.loads(spec.model_dump_json())
        data["spec"] = _AS_JSON[version]

    def _partition(self, version: str) -> int:
        return partition_for(version, self.bus.partitions(topics.PIPELINES))

    async def _read(self, partition: int) -> None:
        tp = TopicPartition(topics.PIPELINES, partition)
        async for batch in between(self.bus, tp, self._read_to.get(partition, 0)):
            for record in batch:
                data = decode_logged(record.value, record.where).data
                if isinstance(data, PipelineDeclared):
                    KNOWN.setdefault(data.version, data.spec)
                    self.declared.add(data.version)
            self._read_to[partition] = batch[-1].offset + 1
