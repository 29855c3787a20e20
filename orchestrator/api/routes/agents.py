"""Agents as this process sees them on baton.agents: what each advertises, what it has free,
what runs on it (from the projection), and whether it drains, stopped or was lost."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from events.agents import AgentHeartbeat
from orchestrator.api.deps import ctx
from orchestrator.api.problems import not_found
from orchestrator.core.state import AgentStatus
from orchestrator.store import queries

router = APIRouter(tags=["agents"])


@router.get("/agents", summary="every agent seen, with capacity, use and running attempts")
async def list_agents(request: Request) -> dict[str, Any]:
    context = ctx(request)
    running = _running_by_agent(await queries.running_docs(await context.db()))
    fleet = context.fleet
    return {"items": [agent_doc(view, fleet.beats.get(agent_id), running.get(agent_id, []),
                                fleet.last_seen.get(agent_id), fleet.monotonic())
                      for agent_id, view in sorted(fleet.agents.items())]}


@router.get("/agents/{agent_id}", summary="one agent")
async def get_agent(request: Request,
                    agent_id: Annotated[str, Path(min_length=1, max_length=200)]
                    ) -> dict[str, Any]:
    for agent in (await list_agents(request))["items"]:
        if agent["agent_id"] == agent_id:
            return dict(agent)
    raise not_found(f"agent {agent_id!r}", "list agents with GET /api/v1/agents")


def state_of(view: AgentStatus) -> str:
    if view.lost_evidence is not None:
        return "lost"
    if view.stopped:
        return "stopped"
    return "draining" if view.draining else "alive"


def agent_doc(view: AgentStatus, beat: AgentHeartbeat | None, running: list[dict[str, Any]],
              seen: float | None, now: float) -> dict[str, Any]:
    """Before its first heartbeat an agent counts as all free."""
    caps = view.capabilities
    cpus, memory, gpus = ((caps.cpus, caps.memory_mb, [g.index for g in caps.gpus])
                          if beat is None else
                          (beat.free_cpus, beat.free_memory_mb, list(beat.free_gpus)))
    return {
        "agent_id": view.agent_id, "state": state_of(view), "lost_evidence": view.lost_evidence,
        "capabilities": caps.model_dump(mode="json"),
        "free": {"cpus": cpus, "memory_mb": memory, "gpus": gpus},
        "used": {"cpus": round(caps.cpus - cpus, 6), "memory_mb": caps.memory_mb - memory,
                 "gpus": [g.index for g in caps.gpus if g.index not in gpus]},
        "running": running,
        "seen_s_ago": None if seen is None else round(max(now - seen, 0.0), 3),
        "at": time.time(),
    }


def _running_by_agent(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Attempts placed and not ended, per agent, from the rows of running runs."""
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        for task in doc["tasks"]:
            if task["status"] not in ("scheduled", "running"):
                continue
            attempt = task["attempt_history"][-1] if task["attempt_history"] else None
            if attempt is None:
                continue
            out.setdefault(attempt["agent_id"], []).append({
                "run_id": doc["run_id"], "pipeline": doc["pipeline"], "task": task["name"],
                "attempt_id": attempt["attempt_id"], "number": attempt["number"],
                "gpus": attempt["gpus"], "status": task["status"]})
    return out
