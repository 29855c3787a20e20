"""What an agent process is told: its id, capacity, home and timing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from events.common import Capabilities


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str
    capabilities: Capabilities
    home: Path
    artifact_root: Path
    workers: int = 2
    heartbeat_s: float = 1.0
    lease_s: float = 12.0
    """How long the agent keeps running its attempts while no heartbeat gets through. Longer
    than a broker failover (a lost broker's partitions move in ~5-8 s, a single broker restarts
    in 4-11 s on a busy 2-core machine), so bus trouble alone never stops work; the coordinator
    expires an agent only after its lease (FleetTracker.expiry_for)."""
    drain_grace_s: float = 30.0
    """How long a draining agent lets its running attempts finish before it interrupts them."""

    def __post_init__(self) -> None:
        if self.heartbeat_s <= 0:
            raise ValueError(f"heartbeat interval {self.heartbeat_s:g} s: must be above 0")
        if self.lease_s <= self.heartbeat_s:
            raise ValueError(f"lease {self.lease_s:g} s: must be longer than the heartbeat "
                             f"interval ({self.heartbeat_s:g} s)")
        if self.drain_grace_s < 0:
            raise ValueError(f"drain grace {self.drain_grace_s:g} s: must be 0 or more")
