"""Task bodies the benchmarks run in the agent's worker processes.

Kept in their own light module: worker processes import it, and nothing else from `bench`.
"""

from __future__ import annotations

import time
from typing import Any

from agents.task_api import Result


def noop(**upstream: Any) -> None:
    """Does nothing; takes whatever its upstream tasks produced."""


def stamp(**upstream: Any) -> Result:
    """Records when the task body started, for trigger-to-start latency."""
    return Result(metadata={"started_at": time.time()})
