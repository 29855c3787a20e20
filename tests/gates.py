"""FIFO gates: a task holds at one until its test releases it, and says when it is there.

A task must report that it is *at* the gate (holding the FIFO open) before the test acts:
a test that opened the FIFO before the task did would race it (ENXIO, or a writer waiting
on a reader that never comes). So the task opens its end without blocking (O_RDWR: it is a
reader at once, and its own write end keeps a read from seeing EOF), reports progress, then
blocks in read until the test writes. The test waits for that progress, then opens its end
without blocking: ENXIO then means nobody holds the gate (the task died), never a race.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from agents.task_api import TaskContext

AT_GATE = "at the gate"


def make(path: Path) -> Path:
    os.mkfifo(path)
    return path


def hold(gate: str | Path, ctx: TaskContext, message: str = AT_GATE) -> str:
    """In the task: report `message` once at the gate, then wait for the test's word."""
    fd = os.open(gate, os.O_RDWR)
    try:
        ctx.progress(0.0, message)
        return os.read(fd, 64).decode()
    finally:
        os.close(fd)


def release(gate: Path, word: str = "go") -> None:
    """In the test, after the task said it is at the gate; fails loudly if nobody holds it."""
    try:
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise AssertionError(f"nobody holds the gate {gate}: its task is not running") from exc
        raise
    try:
        os.write(fd, word.encode())
    finally:
        os.close(fd)


def held(gate: Path) -> bool:
    """Whether a task holds the gate now (a stopped task's worker no longer does)."""
    try:
        os.close(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return False
        raise
    return True
