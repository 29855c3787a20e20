"""Where a task may run: a pure choice among live agents, or the reason it must wait."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from events.common import Capabilities, Resources
from orchestrator.core.state import AgentView

Strategy = Literal["spread", "pack"]


@dataclass(frozen=True, slots=True)
class Usage:
    cpus: float = 0.0
    memory_mb: int = 0
    gpus: int = 0

    def plus(self, r: Resources) -> Usage:
        return Usage(self.cpus + r.cpus, self.memory_mb + r.memory_mb, self.gpus + r.gpus)


@dataclass(frozen=True, slots=True)
class Placed:
    agent_id: str


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str


def satisfies(caps: Capabilities, req: Resources) -> str | None:
    """None if the agent could ever run the request, else what it lacks (for the reason)."""
    if req.cpus > caps.cpus:
        return f"cpus>={req.cpus:g}"
    if req.memory_mb > caps.memory_mb:
        return f"memory>={req.memory_mb}MB"
    gpus = [g for g in caps.gpus if g.memory_mb >= req.gpu_memory_mb
            and (req.gpu_model is None or req.gpu_model.lower() in g.model.lower())]
    if req.gpus > len(gpus):
        return _gpu_need(req)
    for key, value in req.labels.items():
        if caps.labels.get(key) != value:
            return f"label {key}={value}"
    return None


def _gpu_need(req: Resources) -> str:
    extra = f" with >={req.gpu_memory_mb}MB" if req.gpu_memory_mb else ""
    model = f" of model {req.gpu_model}" if req.gpu_model else ""
    return f"gpus>={req.gpus}{extra}{model}"


def has_room(caps: Capabilities, used: Usage, req: Resources) -> bool:
    return (
        used.cpus + req.cpus <= caps.cpus + 1e-9
        and used.memory_mb + req.memory_mb <= caps.memory_mb
        and used.gpus + req.gpus <= len(caps.gpus)
    )


def place(
    req: Resources,
    agents: Iterable[AgentView],
    used: Mapping[str, Usage],
    strategy: Strategy = "spread",
) -> Placed | Waiting:
    """Spread picks the least loaded fitting agent; pack the most loaded that still fits."""
    live = [a for a in agents if a.live]
    if not live:
        return Waiting("no live agent")
    capable = [a for a in live if satisfies(a.capabilities, req) is None]
    if not capable:
        return Waiting(f"no agent advertises {satisfies(live[0].capabilities, req)}")
    room = [a for a in capable if has_room(a.capabilities, used.get(a.agent_id, Usage()), req)]
    if not room:
        return Waiting("all fitting agents are full")
    key = {a.agent_id: _load(a, used.get(a.agent_id, Usage())) for a in room}
    pick = (min if strategy == "spread" else max)(room, key=lambda a: (key[a.agent_id], a.agent_id))
    return Placed(pick.agent_id)


def _load(agent: AgentView, used: Usage) -> float:
    return used.cpus / agent.capabilities.cpus
