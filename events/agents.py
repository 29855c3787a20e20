"""What agents say about themselves (topic baton.agents, compacted, keyed by agent id).

Every event names the agent's `incarnation`, a new one each time an agent process starts: two
processes under one agent id (a restart, or a second home by mistake) say different things,
and the coordinator believes only the one that advertised last, so a late `AgentStopped` of
the old process cannot mark its live successor stopped. Empty in logs written before it
existed, where it matches any.
"""

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
    incarnation: str = ""


class AgentHeartbeat(Payload):
    """Free capacity and running attempts, as the agent itself counts them."""

    TYPE = "agent_heartbeat"
    agent_id: str
    beat: int = Field(ge=0)
    free_cpus: float
    free_memory_mb: int
    free_gpus: tuple[int, ...] = ()
    running: tuple[str, ...] = ()
    incarnation: str = ""


class AgentDraining(Payload):
    """Takes no new work; running attempts get `grace_s` to finish, the rest are interrupted."""

    TYPE = "agent_draining"
    agent_id: str
    reason: str = "SIGTERM"
    grace_s: float = Field(default=0.0, ge=0)
    incarnation: str = ""


class AgentStopped(Payload):
    TYPE = "agent_stopped"
    agent_id: str
    incarnation: str = ""
