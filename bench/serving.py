"""The serving gateway (issue #14, point 10): what it adds to a prediction, and how soon a new
version answers after its alias moves.

1. Overhead. The digits SVC (the example's model, trained here) behind `baton serve`'s
   gateway (the real Starlette app on uvicorn, loopback), one row per request: latency
   p50/p99 over HTTP against calling `predict` directly in the same process (the baseline of
   the same run); the difference is what the gateway adds (target <= 1 ms p50). Requests/s
   with `clients` concurrent HTTP clients.
2. Switch. The alias moved to another version: time until the gateway answers with it (load
   from the artifact store with its sha256 check, one warm-up prediction, swap).

Not yet measured (not built yet): a 95/5 split, and rollback within one analysis window.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.common import Figure, Report, median, percentile

if TYPE_CHECKING:
    from orchestrator.core.models import ModelRegistry
    from orchestrator.serving.versions import Versions

OVERHEAD_TARGET_MS = 1.0


async def measure(requests: int = 2000, clients: int = 8) -> Report:
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    from agents.artifacts import ArtifactStore
    from events.envelope import envelope
    from events.registry import AliasMoved, Lineage, ModelRegistered
    from events.triggers import TriggerInfo
    from orchestrator.api.server import Listen, bind, serve, url_of
    from orchestrator.core.models import ModelRegistry
    from orchestrator.serving.gateway import gateway
    from orchestrator.serving.versions import Versions

    report = Report("serving: the gateway's overhead per prediction, and an alias switch")
    lineage = Lineage(run_id="bench", pipeline="digits", pipeline_version="bench",
                      trigger=TriggerInfo(type="manual", event_id="bench", subject="digits"))
    digits = load_digits()
    X, y = digits.data / 16, digits.target
    models = [SVC(C=C, gamma="scale").fit(X[:1200], y[:1200]) for C in (10.0, 3.0)]
    row = X[1500:1501].tolist()
    with tempfile.TemporaryDirectory() as root:
        store = ArtifactStore(Path(root))
        refs = [store.put_object(m) for m in models]
        registry = ModelRegistry()

        def move_to(n: int) -> None:
            registry.apply(envelope(ModelRegistered(
                run_id=f"run-{n}", task="register", model="digits", version=n,
                artifact=refs[n - 1], lineage=lineage), id=f"digits/v{n}", time=time.time(),
                source="bench", subject="digits"))
            registry.apply(envelope(AliasMoved(
                model="digits", alias="champion", version=n, previous=n - 1 or None,
                move="promote", reason="bench"), id=f"digits/champion/{n}", time=time.time(),
                source="bench", subject="digits"))

        versions = Versions(store, "digits", "champion", say=lambda _: None)
        move_to(1)
        await versions.follow(registry)
        assert versions.current is not None
        direct = _direct_ms(versions.current.model, row, requests)
        sock = bind(Listen("127.0.0.1", 0))
        stop = asyncio.Event()
        server = asyncio.create_task(serve(gateway(versions), sock, stop))
        try:
            url = f"{url_of(sock)}/v1/models/digits:predict"
            async with httpx.AsyncClient(timeout=30) as http:
                await http.post(url, json={"instances": row})  # the connection, once
                served = await _served_ms(url, row, requests)
                rate = await _rate(url, row, requests, clients)
                switch_ms = await _switch_ms(versions, registry, move_to, http, url, row)
        finally:
            stop.set()
            await server
            sock.close()
    p50, p99 = median(served), percentile(served, 99)
    d50, d99 = median(direct), percentile(direct, 99)
    report.row(f"predict() in process, one row ({requests:,} calls): p50 / p99",
               f"{d50:.3f} / {d99:.3f} ms")
    report.row("through the gateway over HTTP (one lean keep-alive client): p50 / p99",
               f"{p50:.3f} / {p99:.3f} ms")
    report.row(f"requests/s with {clients} concurrent clients", f"{rate:,.0f}")
    report.row("alias moved -> the new version answers (load, sha256, warm-up, swap)",
               f"{switch_ms:.1f} ms")
    report.figures += [
        Figure("gateway p50 added per prediction", p50 - d50, "ms", OVERHEAD_TARGET_MS,
               key="gateway_added_p50"),
        Figure("gateway p99", p99, "ms", key="gateway_p99"),
        Figure(f"requests/s, {clients} clients", rate, "/s", better="higher",
               key="gateway_requests"),
        Figure("alias move to the new version answering", switch_ms, "ms",
               key="alias_switch"),
    ]
    report.notes.append("clients share the machine's cores with the gateway (one process)")
    return report


def _direct_ms(model: Any, row: list[list[float]], n: int) -> list[float]:
    out = []
    predict = model.predict
    for _ in range(n):
        start = time.perf_counter()
        predict(row)
        out.append((time.perf_counter() - start) * 1000)
    return out


class _Lean:
    """One keep-alive connection with its request made once: a lean client, so the figures
    are the gateway's (httpx alone costs about a millisecond a request in Python)."""

    def __init__(self, url: str, row: list[list[float]]) -> None:
        import json
        from urllib.parse import urlsplit

        self.where = urlsplit(url)
        body = json.dumps({"instances": row}).encode()
        self.request = (f"POST {self.where.path} HTTP/1.1\r\nHost: {self.where.netloc}\r\n"
                        "Content-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def __aenter__(self) -> _Lean:
        self.reader, self.writer = await asyncio.open_connection(self.where.hostname,
                                                                 self.where.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.writer.close()

    async def predict(self) -> None:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        answer = await self.reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the gateway answered {head[:12]!r}: {answer[:200]!r}")


async def _served_ms(url: str, row: list[list[float]], n: int) -> list[float]:
    out = []
    async with _Lean(url, row) as lean:
        for _ in range(n):
            start = time.perf_counter()
            await lean.predict()
            out.append((time.perf_counter() - start) * 1000)
    return out


async def _rate(url: str, row: list[list[float]], n: int, clients: int) -> float:
    async def client(count: int) -> None:
        async with _Lean(url, row) as lean:
            for _ in range(count):
                await lean.predict()

    start = time.perf_counter()
    await asyncio.gather(*(client(n // clients) for _ in range(clients)))
    return (n // clients * clients) / (time.perf_counter() - start)


async def _switch_ms(versions: Versions, registry: ModelRegistry,
                     move_to: Callable[[int], None], http: httpx.AsyncClient, url: str,
                     row: list[list[float]]) -> float:
    start = time.perf_counter()
    move_to(2)
    await versions.follow(registry)
    answer = await http.post(url, json={"instances": row})
    if answer.json().get("version") != 2:
        raise RuntimeError("the gateway did not switch to v2")
    return (time.perf_counter() - start) * 1000


def main() -> Report:
    return asyncio.run(measure())


