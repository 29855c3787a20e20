"""What agents say about themselves (topic baton.agents, compacted, keyed by agent id)."""

from __future__ import annotations

from pydantic import Field

from events.common import Capabilities
from events.payloads import Payload


class AgentAdvertised(Payload):
    TYPE = "agent_advertised"
    agent_id: str
    capabilities: Capabilities
    lease_s: float = Field(gt=0)
    host: str = ""
    pid: int = 0


class AgentHeartbeat(Payload):
    """Free capacity and running attempts, as the agent itself counts them."""

    TYPE = "agent_heartbeat"
    agent_id: str
    beat: int = Field(ge=0)
    free_cpus: float
    free_memory_mb: int
    free_gpus: tuple[int, ...] = ()
    running: tuple[str, ...] = ()


class AgentDraining(Payload):
    """Takes no new work; running attempts get `grace_s` to finish, the rest are interrupted."""

    TYPE = "agent_draining"
    agent_id: str
    reason: str = "SIGTERM"
    grace_s: float = Field(default=0.0, ge=0)


class AgentStopped(Payload):
    TYPE = "agent_stopped"
    agent_id: str
