"""The API as a component of a process (`baton up`, `baton api`): served until `stop`."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from orchestrator.api.app import create_app
from orchestrator.api.context import ApiContext
from orchestrator.api.server import serve


@dataclass
class ApiServer:
    context: ApiContext
    sock: socket.socket

    async def run(self, stop: asyncio.Event) -> None:
        self.context.stopping = stop
        try:
            await serve(create_app(self.context), self.sock, stop)
        finally:
            await self.context.close()
