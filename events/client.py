"""Publishing triggers to Baton from a data system: the publisher SDK.

```python
from events.client import Publisher

with Publisher("kafka://broker:9092") as baton:          # or "http://baton:8765", token=...
    baton.data_arrived("sales", "2026-12-01", "s3://lake/sales/2026-12-01.parquet",
                       event_id="sales-2026-12-01")        # a retry of this is a duplicate
```

Targets: a bus (`kafka://HOST:PORT[/NAMESPACE]`, or `embedded` with the home it lives in),
Baton's HTTP API (`http(s)://HOST:PORT`, `POST /api/v1/triggers`, with a bearer `token`), or
one of its signed webhook endpoints (`http(s)://HOST:PORT/api/v1/webhooks/SOURCE` with the
source's `webhook_secret`). `AsyncPublisher` is the same for asyncio code.

Safe to retry: a trigger gets its event id once (yours, or a new one) and keeps it through
every retry, so a trigger sent twice is recorded as a duplicate, never a second run. Failures
that may pass (the bus or the server unreachable, 429, 5xx) are retried with backoff (a
`Retry-After` is honoured), `attempts` times in all; a refusal (the trigger is invalid, the
token may not publish) is raised at once as `PublishRefused`, with the server's reason. A
trigger the consumers would not read is refused before anything is sent (`EventParseError`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from events.codec import checked, payload
from events.envelope import Envelope, envelope
from events.payloads import Payload
from events.topics import TRIGGERS
from events.triggers import DataArrived, DriftDetected
from events.webhooks import secret_key, sign

T = TypeVar("T")
Trigger = DataArrived | DriftDetected


class PublishRefused(Exception):
    """Baton refused the trigger (retrying the same would be refused again): why, and the
    HTTP status when it came over HTTP."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class PublishFailed(Exception):
    """Every attempt failed for a reason that might have passed (the last one is said)."""


@dataclass(frozen=True)
class Published:
    event_id: str
    attempts: int
    answer: dict[str, Any] | None = None
    """The API's answer over HTTP (the router's outcomes, within its wait); None on a bus."""


def trigger_envelope(trigger: Trigger, *, event_id: str | None = None,
                     source: str = "baton.client") -> Envelope[Payload]:
    """A trigger's envelope, keyed (subject) by its dataset or model. Only an absent
    `event_id` means "make one up": an empty one is refused, not replaced, or a retried
    publish would silently stop being idempotent."""
    subject = trigger.dataset if isinstance(trigger, DataArrived) else trigger.model
    return envelope(trigger, id=str(uuid.uuid4()) if event_id is None else event_id,
                    time=time.time(), source=source, subject=subject)


@dataclass
class AsyncPublisher:
    target: str
    home: Path | None = None
    """Where the embedded bus lives (target `embedded`)."""
    token: str | None = None
    webhook_secret: str | None = None
    source: str = "baton.client"
    attempts: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 10.0
    _bus: Any = field(default=None, repr=False)

    async def data_arrived(self, dataset: str, version: str, uri: str, *,
                           sha256: str | None = None, rows: int | None = None,
                           size: int | None = None, event_id: str | None = None) -> Published:
        return await self.publish(payload(DataArrived, dataset=dataset, version=version,
                                          uri=uri, sha256=sha256, rows=rows, size=size),
                                  event_id=event_id)

    async def drift_detected(self, model: str, dataset: str, dataset_version: str,
                             dataset_uri: str, *, score: float, threshold: float,
                             method: str = "psi", model_version: int | None = None,
                             event_id: str | None = None) -> Published:
        return await self.publish(payload(
            DriftDetected, model=model, dataset=dataset, dataset_version=dataset_version,
            dataset_uri=dataset_uri, score=score, threshold=threshold, method=method,
            model_version=model_version), event_id=event_id)

    async def publish(self, trigger: Trigger, *, event_id: str | None = None) -> Published:
        return await self.send(trigger_envelope(trigger, event_id=event_id, source=self.source))

    async def send(self, env: Envelope[Payload]) -> Published:
        """Send a trigger's envelope, retrying (the same id) what may pass."""
        raw = checked(env)  # EventParseError before anything is sent
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                answer = await (self._over_http(env) if _is_http(self.target)
                                else self._on_bus(env, raw))
                return Published(env.id, attempt, answer)
            except _Retry as retry:
                last = str(retry)
                if attempt < self.attempts:
                    await asyncio.sleep(retry.after_s or self.backoff_s * 2 ** (attempt - 1))
        raise PublishFailed(f"{self.target}: {self.attempts} attempts failed; last: {last}")

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.close()
            self._bus = None

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_bus(self, env: Envelope[Payload], raw: bytes) -> None:
        from bus import BusError, Outgoing, open_bus_url

        try:
            if self._bus is None:
                home = self.home if self.home is not None else Path.cwd()
                self._bus = await open_bus_url(self.target, home)
            await self._bus.append([Outgoing(TRIGGERS, env.subject or "", raw)])
        except BusError as exc:
            await self.close()  # a new connection for the next attempt
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        return

    async def _over_http(self, env: Envelope[Payload]) -> dict[str, Any]:
        return await asyncio.to_thread(self._post, env)

    def _post(self, env: Envelope[Payload]) -> dict[str, Any]:
        body = json.dumps({"type": env.type, "id": env.id,
                           "data": env.data.model_dump(mode="json")}).encode()
        headers = {"content-type": "application/json"}
        url = self.target.rstrip("/")
        if self.webhook_secret is not None:
            stamp = int(time.time())
            headers.update({"webhook-id": env.id, "webhook-timestamp": str(stamp),
                            "webhook-signature": sign(secret_key(self.webhook_secret),
                                                      env.id, stamp, body)})
        else:
            url += "/api/v1/triggers"
            if self.token is not None:
                headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                doc: dict[str, Any] = json.loads(answer.read() or b"{}")
                return doc
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code == 429 or exc.code >= 500:
                after = exc.headers.get("retry-after")
                raise _Retry(f"HTTP {exc.code}: {detail}",
                             float(after) if after and after.isdecimal() else None) from None
            raise PublishRefused(f"HTTP {exc.code}: {detail}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise _Retry(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None


class Publisher:
    """`AsyncPublisher` for code that is not asyncio: one event loop in a thread of its own
    keeps the connection (a bus's producer) across calls."""

    def __init__(self, target: str, **options: Any) -> None:
        self._async = AsyncPublisher(target, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="baton-publisher")
        self._thread.start()

    def data_arrived(self, dataset: str, version: str, uri: str, **options: Any) -> Published:
        return self._run(self._async.data_arrived(dataset, version, uri, **options))

    def drift_detected(self, model: str, dataset: str, dataset_version: str,
                       dataset_uri: str, **options: Any) -> Published:
        return self._run(self._async.drift_detected(model, dataset, dataset_version,
                                                    dataset_uri, **options))

    def publish(self, trigger: Trigger, *, event_id: str | None = None) -> Published:
        return self._run(self._async.publish(trigger, event_id=event_id))

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self._loop)
        return future.result()


class _Retry(Exception):
    def __init__(self, reason: str, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.after_s = after_s


def _is_http(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(error.read() or b"{}")
    except ValueError:
        return error.reason or ""
    return str(doc.get("detail") or doc.get("title") or error.reason)
