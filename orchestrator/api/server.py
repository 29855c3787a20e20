"""Serving the app on uvicorn inside the process's own event loop, as one more component.

The socket is bound before serving, so a port in use is one clear line at start, and port 0
gives a free port whose URL is printed. uvicorn's own signal handling is left out: the process
(`baton up`, `baton api`) owns SIGINT/SIGTERM and stops every component together.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

GRACE_S = 2.0
"""How long open requests (a stream, a long-poll) get to finish when the server stops."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class ListenError(ValueError):
    """`str()` says what is wrong with the address and what one looks like."""


def parse_listen(text: str) -> Listen:
    """HOST:PORT (an IPv6 host in brackets); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ListenError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8765; port 0 picks a "
                          "free one)")
    return Listen(host.removeprefix("[").removesuffix("]"), int(port))


def bind(listen: Listen) -> socket.socket:
    """The listening socket; OSError (in use, no such address) for the caller to say."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.create_server((listen.host, listen.port), family=family, backlog=512)
    # Without it every request on a kept-alive connection waited ~40 ms (Nagle against the
    # client's delayed ACK: asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP,
    # which create_server's is not). Accepted sockets inherit it on Linux.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The process's own handlers stay: `stop` ends the server."""
        yield


async def serve(app: Starlette, sock: socket.socket, stop: asyncio.Event) -> None:
    """Until `stop` is set; then open requests get GRACE_S to end."""
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                            timeout_graceful_shutdown=int(GRACE_S), server_header=False)
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving
