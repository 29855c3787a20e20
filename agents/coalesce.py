"""Work asked for in one turn of the event loop, done once for all of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalesced(Generic[T, R]):
    """Items added in one turn of the loop are handed to `flush` together, in the order they
    were added, in the loop's next turn; those added while a flush is under way go in the
    next one, after it. Each `add` gets a future of its item's flush: its result, its
    exception, or cancelled.

    Why: on the agent's side of a fan-out, several workers finish in one turn, and one
    attempt's outcome and the next one's start come in the same turn; a ledger write or a
    bus append of its own for each cost a SQLite transaction apiece on the loop's thread (and
    an append wakes every reader of its partition). The price is one turn of the loop."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[R]]) -> None:
        self._flush = flush
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing: asyncio.Task[None] | None = None

    def add(self, item: T) -> asyncio.Future[R]:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._run())
        return done

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._pending:
                batch = [(item, done) for item, done in self._pending if not done.done()]
                self._pending = []
                if batch:
                    result = await self._flush([item for item, _ in batch])
                    for _, done in batch:
                        if not done.done():
                            done.set_result(result)
                batch = []
        except BaseException as exc:
            _fail(batch + self._pending, exc)
            self._pending = []
            if isinstance(exc, asyncio.CancelledError):
                raise
            # otherwise handed to every waiter: not raised a second time, unretrieved
        finally:
            self._flushing = None

    def close(self) -> None:
        """What is not flushed yet never will be: its futures are cancelled (a flush under
        way is cancelled too)."""
        if self._flushing is not None:
            self._flushing.cancel()
        _fail(self._pending, asyncio.CancelledError())
        self._pending = []


def _fail(batch: list[tuple[T, asyncio.Future[R]]], error: BaseException) -> None:
    for _, done in batch:
        if done.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(error)
