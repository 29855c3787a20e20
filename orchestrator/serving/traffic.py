"""Predictions sent to a gateway at a steady pace, counted by answer: what `baton demo
--lifecycle` plays as a model's callers (a scanner sending rows). Raw keep-alive HTTP/1.1 on
asyncio streams: no client library, and little enough per request to share a loop with the
gateway it calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Traffic:
    """`clients` callers, each sending one row a request (cycling through `rows`) and pausing
    `pause_s` between requests, until stopped or `max_requests` were sent."""

    url: str
    rows: Sequence[Sequence[float]]
    clients: int = 2
    pause_s: float = 0.004
    max_requests: int = 1_000_000
    answers: Counter[tuple[int, int | None]] = field(default_factory=Counter)
    """(HTTP status, the version that answered) -> how many."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.answers.values())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _client(self, first: int) -> None:
        where = urlsplit(self.url)
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        try:
            i = first
            while self.sent < self.max_requests:
                body = json.dumps({"instances": [list(self.rows[i % len(self.rows)])]}).encode()
                writer.write((f"POST {where.path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                              "Content-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                answer = await reader.readexactly(length)
                status = int(head.split(b" ", 2)[1])
                version = json.loads(answer).get("version") if status == 200 else None
                self.answers[(status, version)] += 1
                i += self.clients
                await asyncio.sleep(self.pause_s)
        finally:
            writer.close()
