"""Long-running processes set their garbage collection once at start-up (agents/gc_policy.py):
start-up's objects frozen, and an event loop's generation 0 collected less often."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from agents import gc_policy
from agents.artifacts import ArtifactStore
from agents.workers import WorkerPool
from tests.agents.test_workers import invocation, output_of

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHONS_THRESHOLDS = (700, 10, 10)
_SETTINGS = ("import gc, json; from agents import gc_policy; gc_policy.apply({first!r}); "
             "gc_policy.apply({second!r}); "
             "print(json.dumps([gc.get_freeze_count(), gc.get_threshold()]))")


def _settings_in_a_fresh_process(first: str, second: str) -> tuple[int, tuple[int, ...]]:
    """In a process of its own: the policy changes the whole interpreter's collector."""
    code = _SETTINGS.format(first=first, second=second)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout
    frozen, thresholds = json.loads(out)
    return frozen, tuple(thresholds)


def test_an_event_loop_process_freezes_start_up_and_collects_generation_0_less_often() -> None:
    # given a fresh process
    # when it applies the event loop's policy, and then (by mistake) the worker's
    frozen, thresholds = _settings_in_a_fresh_process(gc_policy.LOOP, gc_policy.WORKER)
    # then what start-up built is frozen and the loop's thresholds hold: the first call won
    assert frozen > 1000
    assert thresholds == gc_policy.LOOP_THRESHOLDS


async def test_a_worker_runs_its_task_with_start_up_frozen_and_pythons_thresholds(
        tmp_path: Path) -> None:
    # given a worker pool, as an agent runs one
    store = ArtifactStore(tmp_path / "artifacts")
    pool = WorkerPool(store.root, size=1)
    await pool.start()
    try:
        # when a task reads its worker's collector settings
        frozen, thresholds = await output_of(pool, store, invocation("gc_settings"))
    finally:
        await pool.close()
    # then the worker froze what it started with, and kept Python's own thresholds (a task's
    # garbage cycles, arrays held in them included, are freed as soon as Python frees them)
    assert frozen > 1000
    assert tuple(thresholds) == PYTHONS_THRESHOLDS


_MAPPED = ("import ctypes, json; from agents import gc_policy; gc_policy.apply({role!r})\n"
           "class Info(ctypes.Structure):\n"
           "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks',\n"
           "                'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
           "info = ctypes.CDLL(None).mallinfo2\n"
           "info.restype = Info\n"
           "big = bytes(1 << 20)\n"
           "del big\n"
           "before = info().hblks\n"
           "block = bytearray(200_000)\n"
           "print(json.dumps(info().hblks - before))")


def _mapped_after_a_larger_block_was_freed(role: str) -> int:
    """In a process of its own: whether a 200 KB block gets a mapping of its own once a 1 MB
    mapped block was freed (glibc raises its threshold past it then, unless it is fixed)."""
    out = subprocess.run([sys.executable, "-c", _MAPPED.format(role=role)], cwd=REPO_ROOT,
                         check=True, capture_output=True, text=True).stdout
    return int(json.loads(out))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_an_event_loop_process_keeps_mallocs_mmap_threshold_where_it_started() -> None:
    # given a fresh event-loop process, and a fresh worker
    # when each frees a 1 MB block and then takes a 200 KB one
    # then the loop's 200 KB block is mapped on its own (given back whole when freed), while
    # the worker's comes from the heap, as glibc does by default
    assert _mapped_after_a_larger_block_was_freed(gc_policy.LOOP) == 1
    assert _mapped_after_a_larger_block_was_freed(gc_policy.WORKER) == 0
