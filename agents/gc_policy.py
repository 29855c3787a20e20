"""How Baton's long-running processes collect garbage and give memory back: set once, at
start-up, in one place.

Every long-running entry calls `apply` after its imports: `baton up`, `baton coordinator` and
`baton agent` (orchestrator/cli/processes.py), each worker process (agents/worker_process.py),
and the benchmarks (bench/__main__.py: their apps run in its process), so the benchmarks
measure what users run.
It lives here, beside the other process-level pieces (parent_death, process_identity), because
the worker process imports nothing of the bus or the orchestrator.

Three settings (the first two measured on the 1 -> 1,000 -> 1 fan-out, the third on
`baton up`'s growth, bench/up_memory.py; docs/BENCHMARKS.md):
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
- In an event-loop process, glibc's malloc keeps its mmap threshold at 128 KB
  (`MMAP_THRESHOLD`) instead of raising it each time a mapped block is freed (up to 32 MB).
  Such a process's large blocks are mostly arrays that grow and are copied (the ended runs'
  packed index at each merge, the metrics' columns, snapshots, batches of records): once the
  threshold had risen past them they came from the heap, each larger copy leaving the last
  one's hole behind, and the heap only grew. In `baton up` over the second 5,000 of 10,000
  runs, glibc's free-but-kept memory grew 8-10 MB (1.6-1.9 KB a run) with the moving
  threshold, under 2 MB with it fixed. Setting it also fixes the heap's trim threshold at
  128 KB (free memory above that at the heap's top goes back to the system). The cost: a
  block over 128 KB is a mapping of its own, an mmap and a munmap and its pages faulted in
  afresh each time (tens of microseconds for a megabyte), where a reused heap block cost
  none; that bench ran no slower. Not in a worker: a task's own arrays (numpy, tensors)
  come and go in large blocks, and there glibc's reuse pays.
"""

from __future__ import annotations

import ctypes
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

MMAP_THRESHOLD = 128 << 10
"""glibc's own starting value, kept (see the module doc)."""
_M_MMAP_THRESHOLD = -3
"""mallopt's parameter number for it (malloc.h)."""

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
    fixed = False
    if role == LOOP:
        gc.set_threshold(*LOOP_THRESHOLDS)
        fixed = fix_mmap_threshold()
    _log.info("garbage collection: %d start-up objects frozen, thresholds %s (%s process)%s",
              gc.get_freeze_count(), gc.get_threshold(), role,
              f"; malloc's mmap threshold fixed at {MMAP_THRESHOLD} bytes" if fixed else "")


def fix_mmap_threshold() -> bool:
    """Whether malloc took the fixed threshold: only glibc's does (elsewhere there is no
    `mallopt`, or it ignores the setting, and nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
