"""The serving gateway (issue #14, point 10): what it adds to a prediction, and how soon a new
version answers after its alias moves.

1. Overhead. The digits SVC (the example's model, trained here) behind `baton serve`'s
   gateway (the real Starlette app on uvicorn, loopback), one row per request: latency
   p50/p99 over HTTP against calling `predict` directly in the same process (the baseline of
   the same run); the difference is what the gateway adds (target <= 1 ms p50). Requests/s
   with `clients` concurrent HTTP clients.
2. Split. The same with 5% of the requests to a second version (95/5): what choosing a
   side per request adds.
3. Switch. The alias moved to another version: time until the gateway answers with it (load
   from the artifact store with its sha256 check, one warm-up prediction, swap).
4. Rollback. A canary at 5% (a real `baton up`-like app: coordinator, registry, agent, and a
   real gateway following the registry in this process) is shown a window in which the
   candidate fails half its requests: time from that window being published, as a gateway
   publishes it, to the gateway sending nothing more to the candidate (the decision, the
   registry's split at 0, the gateway following it). Target: within one analysis window
   (the gateway's default 10 s).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.common import Figure, Report, manual_request, median, percentile, publish_request

if TYPE_CHECKING:
    from orchestrator.core.models import ModelRegistry
    from orchestrator.serving.versions import Versions

OVERHEAD_TARGET_MS = 1.0
WINDOW_MS = 10_000.0
"""`baton serve`'s default window: a rollback must come within one."""
MODEL = "bench-canaried"


async def measure(requests: int = 2000, clients: int = 8, rounds: int = 3) -> Report:
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
                split = await _split_ms(versions, registry, url, row, requests)
        finally:
            stop.set()
            await server
            sock.close()
    rollbacks = await _rollbacks_ms(rounds)
    p50, p99 = median(served), percentile(served, 99)
    s50, s99 = median(split), percentile(split, 99)
    d50, d99 = median(direct), percentile(direct, 99)
    report.row(f"predict() in process, one row ({requests:,} calls): p50 / p99",
               f"{d50:.3f} / {d99:.3f} ms")
    report.row("through the gateway over HTTP (one lean keep-alive client): p50 / p99",
               f"{p50:.3f} / {p99:.3f} ms")
    report.row("the same with a 95/5 split between two versions: p50 / p99",
               f"{s50:.3f} / {s99:.3f} ms")
    report.row(f"requests/s with {clients} concurrent clients", f"{rate:,.0f}")
    report.row("alias moved -> the new version answers (load, sha256, warm-up, swap)",
               f"{switch_ms:.1f} ms")
    report.row(f"failing canary window -> the candidate at 0% in the gateway ({rounds} "
               "canaries): median / max", f"{median(rollbacks):.1f} / {max(rollbacks):.1f} ms")
    report.figures += [
        Figure("gateway p50 added per prediction", p50 - d50, "ms", OVERHEAD_TARGET_MS,
               key="gateway_added_p50"),
        Figure("gateway p99", p99, "ms", key="gateway_p99"),
        Figure(f"requests/s, {clients} clients", rate, "/s", better="higher",
               key="gateway_requests"),
        Figure("alias move to the new version answering", switch_ms, "ms",
               key="alias_switch"),
        Figure("gateway p50 added per prediction, 95/5 split", s50 - d50, "ms",
               OVERHEAD_TARGET_MS, key="gateway_split_added_p50"),
        Figure("failing canary window to the candidate at 0%", median(rollbacks), "ms",
               WINDOW_MS, key="canary_rollback"),
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


async def _split_ms(versions: Versions, registry: ModelRegistry, url: str,
                    row: list[list[float]], n: int) -> list[float]:
    """Latencies with 5% of the requests to v1 (loaded, warmed up) beside v2, the champion
    after the switch; then the split undone."""
    from events.envelope import envelope
    from events.registry import TrafficSet

    def traffic(candidate: int | None, percent: int) -> None:
        registry.apply(envelope(TrafficSet(model="digits", candidate=candidate,
                                           percent=percent, mirror=None, reason="bench"),
                                id=f"digits/traffic/{percent}", time=time.time(),
                                source="bench", subject="digits"))

    traffic(1, 5)
    await versions.follow(registry)
    if versions.plan.candidate != 1:
        raise RuntimeError(f"the gateway did not split: {versions.plan}")
    try:
        return await _served_ms(url, row, n)
    finally:
        traffic(None, 0)
        await versions.follow(registry)


def _serves(versions: Versions, candidate: int | None) -> Callable[[], bool]:
    """Whether the gateway's plan has `candidate` as its candidate now."""
    return lambda: versions.plan.candidate == candidate


def fit(ctx: Any) -> Any:
    """The rollback rounds' model (run by the app's worker processes)."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    from agents.task_api import Result

    digits = load_digits()
    X, y = digits.data / 16, digits.target
    model = SVC(C=10.0, gamma="scale").fit(X[:1200], y[:1200])
    return Result(value=model, metrics={"accuracy": float(model.score(X[1200:], y[1200:]))})


async def _rollbacks_ms(rounds: int) -> list[float]:
    from agents.artifacts import ArtifactStore
    from events import topics
    from events.canary import CanaryEnded, CanaryStarted, CanaryStepStarted
    from events.codec import decode
    from events.common import Capabilities
    from events.pipeline import (
        CanarySpec,
        CanaryStep,
        GateSpec,
        PipelineSpec,
        RegisterSpec,
        TaskSpec,
    )
    from events.registry import TrafficSet
    from events.runs import RunSucceeded
    from events.serving import ServingWindow, latency_bucket
    from orchestrator.api.server import Listen, bind
    from orchestrator.service.embedded_app import AgentSpec, EmbeddedApp
    from orchestrator.service.home import Home
    from orchestrator.service.reading import read_all
    from orchestrator.serving.service import forwarded, run_gateway
    from orchestrator.serving.versions import Versions

    async def submit(spec: PipelineSpec, key: str) -> str:
        run_id, env = manual_request(spec, key)
        await publish_request(bus, run_id, env)
        return run_id

    def pipeline(name: str, canary: bool) -> PipelineSpec:
        tasks = [TaskSpec(name="fit", function="bench.serving:fit"),
                 TaskSpec(name="gate", kind="gate", deps=("fit",),
                          gate=GateSpec(metrics_from="fit", minimum={"accuracy": 0.9})),
                 TaskSpec(name="register", kind="register", deps=("gate",),
                          registration=RegisterSpec(model=MODEL, artifact_from="fit",
                                                    promote_to=None if canary else "champion"))]
        if canary:
            tasks.append(TaskSpec(name="canary", kind="canary", deps=("register",),
                                  canary=CanarySpec(model=MODEL, version_from="register",
                                                    steps=(CanaryStep(percent=5, hold_s=3600),),
                                                    timeout_s=3000, min_requests=10)))
        return PipelineSpec(name=name, tasks=tuple(tasks))

    first, release = pipeline("first", False), pipeline("release", True)
    out: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        home = Home(Path(root) / "home")
        app = EmbeddedApp(home, {"first": first, "release": release},
                          [AgentSpec(Capabilities(cpus=2, memory_mb=2048))])
        bus = await app.start()
        stop = asyncio.Event()
        switched = asyncio.Event()  # the gateway says every change of what answers
        versions = Versions(ArtifactStore(home.artifacts), MODEL, "champion",
                            say=lambda _: switched.set())

        async def until_plan(holds: Callable[[], bool]) -> None:
            while not holds():
                switched.clear()
                if not holds():
                    await switched.wait()
        sock = bind(Listen("127.0.0.1", 0))
        gateway = asyncio.create_task(run_gateway(bus, versions, sock, stop, window_s=3600))

        async def run_log(run_id: str, done: Callable[[list[Any]], bool]) -> list[Any]:
            positions: dict[Any, int] = {}
            found: list[Any] = []
            while True:
                found += [decode(r.value).data for r in await read_all(bus, topics.RUNS,
                                                                        positions)]
                mine = [d for d in found if getattr(d, "run_id", None) == run_id]
                if done(mine):
                    return mine
                await bus.wait(positions, timeout=1.0)

        try:
            await run_log(await submit(first, "first"),
                          lambda ds: any(isinstance(d, RunSucceeded) for d in ds))
            for n in range(rounds):
                run_id = await submit(release, f"release-{n}")
                seen = await run_log(run_id, lambda ds: any(
                    isinstance(d, CanaryStepStarted) for d in ds))
                (began,) = [d for d in seen if isinstance(d, CanaryStarted)]
                candidate = began.version
                await until_plan(_serves(versions, candidate))
                now = time.time()
                bad = [ServingWindow(model=MODEL, version=v, role=role, gateway="bench",
                                     start=now - 1, end=now, requests=100, errors=failed,
                                     rows=100, latency_hist={latency_bucket(0.3): 100 - failed})
                       for v, role, failed in ((began.baseline, "primary", 0),
                                               (began.version, "candidate", 50))]
                traffic = TrafficSet(model=MODEL, candidate=began.version, percent=5,
                                     mirror=None, reason="bench", run_id=run_id)
                start = time.perf_counter()
                await bus.publish(forwarded(bus, traffic, bad))
                await until_plan(_serves(versions, None))
                out.append((time.perf_counter() - start) * 1000)
                await run_log(run_id, lambda ds: any(isinstance(d, CanaryEnded) for d in ds))
        finally:
            stop.set()
            await gateway
            sock.close()
            await app.close()
    return out


def main() -> Report:
    return asyncio.run(measure())


