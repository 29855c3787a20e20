"""Where a task may run: a pure choice among live agents, or the reason it must wait.

`place` answers for one request. `Fleet` answers for a whole placement pass (thousands of
ready tasks against thousands of agents): usage only grows during a pass, so what a request
could not get once it cannot get later in the same pass, and each kind of request keeps a
heap of its fitting agents ordered by the strategy, so placing a task costs a heap pop, not a
scan of the fleet.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from events.common import Capabilities, Resources
from events.pipeline import PipelineSpec
from orchestrator.core import dag
from orchestrator.core.state import AgentStatus

Strategy = Literal["spread", "pack"]
FULL = "all fitting agents are full"


@dataclass(frozen=True, slots=True)
class Usage:
    """What an agent's active attempts hold; GPUs by index, since they are never shared."""

    cpus: float = 0.0
    memory_mb: int = 0
    gpus: int = 0
    gpu_ids: frozenset[int] = frozenset()

    def plus(self, r: Resources, gpu_ids: Iterable[int] = ()) -> Usage:
        ids = self.gpu_ids | frozenset(gpu_ids)
        return Usage(self.cpus + r.cpus, self.memory_mb + r.memory_mb, self.gpus + r.gpus, ids)


@dataclass(frozen=True, slots=True)
class Placed:
    agent_id: str
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str
    full: bool = False
    """Some live agent could run it, but none has room now (it may reserve one)."""


def satisfies(caps: Capabilities, req: Resources) -> str | None:
    """None if the agent could ever run the request, else what it lacks (for the reason)."""
    if req.cpus > caps.cpus:
        return f"cpus>={req.cpus:g}"
    if req.memory_mb > caps.memory_mb:
        return f"memory>={req.memory_mb}MB"
    if req.gpus > sum(1 for g in caps.gpus if req.takes_gpu(g)):
        return _gpu_need(req)
    for key, value in sorted(req.labels.items()):
        if caps.labels.get(key) != value:
            return f"label {key}={value}"
    return None


def _gpu_need(req: Resources) -> str:
    extra = f" with >={req.gpu_memory_mb}MB" if req.gpu_memory_mb else ""
    model = f" of model {req.gpu_model}" if req.gpu_model else ""
    return f"gpus>={req.gpus}{extra}{model}"


def room(caps: Capabilities, used: Usage, req: Resources) -> tuple[int, ...] | None:
    """The GPU indices the request would get if it fits now, else None."""
    if used.cpus + req.cpus > caps.cpus + 1e-9 or used.memory_mb + req.memory_mb > caps.memory_mb:
        return None
    if not req.gpus:
        return ()
    if used.gpus + req.gpus > len(caps.gpus):
        return None
    free = [g.index for g in caps.gpus if g.index not in used.gpu_ids and req.takes_gpu(g)]
    return tuple(free[: req.gpus]) if len(free) >= req.gpus else None


def load(caps: Capabilities, used: Usage) -> float:
    """Dominant share: the fullest of the agent's resources decides how busy it is."""
    shares = [used.cpus / caps.cpus, used.memory_mb / caps.memory_mb]
    if caps.gpus:
        shares.append(used.gpus / len(caps.gpus))
    return max(shares)


def place(
    req: Resources,
    agents: Iterable[AgentStatus],
    used: Mapping[str, Usage],
    strategy: Strategy = "spread",
) -> Placed | Waiting:
    """One request: spread picks the least loaded fitting agent; pack the most loaded that
    still fits. Either way a task needing no GPU goes to a GPU agent only if nothing else fits."""
    return Fleet(agents, used, strategy).place(req)


def request_key(req: Resources) -> Hashable:
    return (req.cpus, req.memory_mb, req.gpus, req.gpu_memory_mb, req.gpu_model,
            tuple(sorted(req.labels.items())))


@dataclass(frozen=True, slots=True)
class RequestKinds:
    """A spec's tasks by kind of request: tasks asking alike share a kind."""

    of_task: tuple[int, ...]
    """Task (by its place in the spec's declaration) -> its kind."""
    keys: tuple[Hashable, ...]
    """Kind -> its `request_key`."""
    requests: tuple[Resources, ...]
    """Kind -> a request of it."""


def request_kinds(spec: PipelineSpec) -> RequestKinds:
    """The spec's kinds of request, once per spec object (`dag.facts`): a decoded spec holds
    a request object per task, and a key computed per task at every placement pass cost
    as much as the rest of queueing it."""
    return dag.facts("request kinds", spec, _request_kinds)


def _request_kinds(spec: PipelineSpec) -> RequestKinds:
    numbers: dict[Hashable, int] = {}
    requests: list[Resources] = []
    of_task = []
    for task in spec.tasks:
        key = request_key(task.resources)
        if key not in numbers:
            numbers[key] = len(numbers)
            requests.append(task.resources)
        of_task.append(numbers[key])
    return RequestKinds(tuple(of_task), tuple(numbers), tuple(requests))


@dataclass
class _Kind:
    """One kind of request in a pass: its fitting agents as a heap, or why there are none."""

    heap: list[tuple[bool, float, str, int]]
    never: str | None = None
    reserved: bool = False


@dataclass
class Fleet:
    """Placement for one pass. It records what it places, so later requests see that usage."""

    agents: Iterable[AgentStatus]
    used: Mapping[str, Usage]
    strategy: Strategy = "spread"
    live: dict[str, AgentStatus] = field(init=False)
    usage: dict[str, Usage] = field(init=False)
    reserved: set[str] = field(default_factory=set)
    _version: dict[str, int] = field(default_factory=dict)
    _kinds: dict[Hashable, _Kind] = field(default_factory=dict)
    _not_live: str = "no live agent"

    def __post_init__(self) -> None:
        every = list(self.agents)
        self.live = {a.agent_id: a for a in every if a.live}
        self.usage = {a: self.used.get(a, Usage()) for a in self.live}
        gone = Counter("draining" if a.draining else "stopped" if a.stopped else "lost"
                       for a in every if not a.live)
        if gone:
            self._not_live += " (" + ", ".join(f"{n} {s}" for s, n in sorted(gone.items())) + ")"

    def place(self, req: Resources) -> Placed | Waiting:
        kind = self._kind(req)
        if kind.never is not None:
            return Waiting(kind.never)
        while kind.heap:
            entry = heapq.heappop(kind.heap)
            agent_id, version = entry[2], entry[3]
            if agent_id in self.reserved:
                continue
            if version != self._version.get(agent_id, 0):
                heapq.heappush(kind.heap, self._entry(self.live[agent_id], req))
                continue
            gpus = room(self.live[agent_id].capabilities, self.usage[agent_id], req)
            if gpus is None:
                continue  # usage only grows in a pass: it will not fit here later either
            self.take(agent_id, req, gpus)
            heapq.heappush(kind.heap, self._entry(self.live[agent_id], req))
            return Placed(agent_id, gpus)
        return Waiting(FULL, full=True)

    def take(self, agent_id: str, req: Resources, gpus: tuple[int, ...]) -> None:
        self.usage[agent_id] = self.usage[agent_id].plus(req, gpus)
        self._version[agent_id] = self._version.get(agent_id, 0) + 1

    def reserve(self, req: Resources) -> str | None:
        """Hold back the least loaded fitting agent for a request that has waited too long:
        later (lower-ranked) requests of this pass may not take it, so its capacity builds up
        until the big request fits, instead of small ones taking every freed slot forever."""
        kind = self._kind(req)
        if kind.never is not None or kind.reserved:
            return None
        kind.reserved = True
        options = [a for a in self.live.values()
                   if a.agent_id not in self.reserved and satisfies(a.capabilities, req) is None]
        if not options:
            return None
        pick = min(options, key=lambda a: (load(a.capabilities, self.usage[a.agent_id]),
                                           a.agent_id))
        self.reserved.add(pick.agent_id)
        return pick.agent_id

    def _kind(self, req: Resources) -> _Kind:
        key = request_key(req)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = self._new_kind(req)
        return kind

    def _new_kind(self, req: Resources) -> _Kind:
        if not self.live:
            return _Kind([], never=self._not_live)
        lacks = {a.agent_id: satisfies(a.capabilities, req) for a in self.live.values()}
        fitting = [self.live[a] for a, lack in lacks.items() if lack is None]
        if not fitting:
            common = Counter(lack for lack in lacks.values() if lack).most_common()
            top = min(lack for lack, n in common if n == common[0][1])
            return _Kind([], never=f"no agent advertises {top}")
        heap = [self._entry(a, req) for a in fitting]
        heapq.heapify(heap)
        return _Kind(heap)

    def _entry(self, agent: AgentStatus, req: Resources) -> tuple[bool, float, str, int]:
        busy = load(agent.capabilities, self.usage[agent.agent_id])
        wastes_gpu = not req.gpus and bool(agent.capabilities.gpus)
        rank = -busy if self.strategy == "pack" else busy
        return (wastes_gpu, rank, agent.agent_id, self._version.get(agent.agent_id, 0))
