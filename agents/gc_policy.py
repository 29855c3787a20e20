"""How Baton's long-running processes collect garbage: set once, at start-up, in one place.

Every long-running entry calls `apply` after its imports: `baton up`, `baton coordinator` and
`baton agent` (orchestrator/cli/processes.py), each worker process (agents/worker_process.py),
and the benchmarks (bench/__main__.py: their apps run in its process), so the benchmarks
measure what users run.
It lives here, beside the other process-level pieces (parent_death, process_identity), because
the worker process imports nothing of the bus or the orchestrator.

Two settings (measured on the 1 -> 1,000 -> 1 fan-out, docs/BENCHMARKS.md):
- `gc.freeze()` of what start-up built (modules, classes, pydantic's schemas: ~50,000 objects
  in `baton up`): no later collection of the oldest generation scans them again. An event-loop
  process collects once first (~20 ms of CPU), so no import-time garbage is frozen for good;
  a worker does not: it is forked from the fork server, and a collection would write to every
  inherited object's header and copy the pages it shares with its siblings.
- In a process that runs the event loop (`LOOP`), generation 0 is collected every 10,000 net
  allocations instead of 700. One wide decision allocates tens of thousands of objects that
  live for that decision only (envelopes, records, scratch state); at 700 the collector ran
  ~200 times per 1,000-wide run, found them still alive, and moved them to the older
  generations, where each was scanned again: ~50 ms of the loop's CPU per run, ~10 ms at
  10,000, with the longest pause shorter too. A worker (`WORKER`) keeps Python's thresholds:
  the garbage cycles of a task's own code (arrays or tensors held in cycles) would otherwise
  live longer and raise its peak memory.
"""

from __future__ import annotations

import gc
import logging
from typing import Literal

_log = logging.getLogger(__name__)

Role = Literal["loop", "worker"]
LOOP: Role = "loop"
WORKER: Role = "worker"
LOOP_THRESHOLDS = (10_000, 10, 10)
"""Generation 0 every 10,000 net allocations; the older two as Python has them (each after
ten collections of the one below)."""

_applied: Role | None = None


def apply(role: Role) -> None:
    """The policy for this process's `role`; only the first call in a process acts (a
    benchmark starts several apps in one process), and it logs what it did once."""
    global _applied
    if _applied is not None:
        return
    _applied = role
    if role == LOOP:
        gc.collect()
    gc.freeze()
    if role == LOOP:
        gc.set_threshold(*LOOP_THRESHOLDS)
    _log.info("garbage collection: %d start-up objects frozen, thresholds %s (%s process)",
              gc.get_freeze_count(), gc.get_threshold(), role)
