"""The worker pool's slots: units of concurrency, each with at most one reusable worker."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from agents.worker_handle import Worker


@dataclass(eq=False)
class Slot:
    """One unit of concurrency; owns at most one reusable worker, replaced after a failure."""

    worker: asyncio.Task[Worker] | None = None


class Slots(asyncio.Queue[Slot]):
    """Free slots, the one freed last taken first while its worker is warm: a chained task
    then runs where its predecessor ran, whose output that worker keeps
    (worker_process.KeptArtifacts) and whose memory is the warmer. A slot whose worker is
    still starting (a replacement) is taken last."""

    _queue: collections.deque[Slot]

    def _init(self, maxsize: int) -> None:
        self._queue = collections.deque()

    def _put(self, item: Slot) -> None:
        if item.worker is not None and item.worker.done() and not is_unusable(item.worker):
            self._queue.appendleft(item)
        else:
            self._queue.append(item)

    def _get(self) -> Slot:
        return self._queue.popleft()


def is_unusable(task: asyncio.Task[Worker]) -> bool:
    if not task.done():
        return False
    return task.cancelled() or task.exception() is not None or not task.result().healthy
