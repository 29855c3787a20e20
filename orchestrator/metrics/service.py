"""What the API process runs for the metrics: the log followed incrementally, the figures on
demand (`/metrics`, the dashboard), and the OTel instruments fed from the same figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from opentelemetry.sdk.metrics import MeterProvider

from bus import Bus
from orchestrator.metrics.figures import Figures
from orchestrator.metrics.follower import MetricsLoop
from orchestrator.metrics.otel import instrument, otlp_meter_provider
from orchestrator.metrics.prometheus import CONTENT_TYPE, render

REFRESH_S = 5.0
"""How often the figures OTel exports are computed again (the consumer lag asks the bus)."""


class Metrics:
    """Keeps the figures current from `bus`. `run(stop)` until stopped (from the start of the
    log: a catch-up of the whole history first); `figures()` and `prometheus()` any time
    after (before `caught_up` is set they count only what was read so far).

    `meter_provider`: where the OTel instruments live; by default one exporting over OTLP
    when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._METRICS_ENDPOINT`) is set, else none."""

    def __init__(self, bus: Bus, *, meter_provider: MeterProvider | None = None,
                 clock: Callable[[], float] = time.time, refresh_s: float = REFRESH_S) -> None:
        self.clock, self.refresh_s = clock, refresh_s
        self.provider = meter_provider or otlp_meter_provider()
        self._owns_provider = meter_provider is None and self.provider is not None
        self.latest: Figures | None = None
        observed = (instrument(self.provider.get_meter("baton.metrics"), lambda: self.latest)
                    if self.provider is not None else lambda _: None)
        self.loop = MetricsLoop(bus, observed=observed)
        self.caught_up = self.loop.caught_up

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; a bus error goes up as it came (its supervisor restarts this, and the
        next run folds the log again), so no task group may wrap it in an ExceptionGroup."""
        refresh = (asyncio.create_task(self._refresh(stop)) if self.provider is not None
                   else None)  # only OTel export reads the figures unasked
        try:
            await self.loop.catch_up()
            await self.loop.run(stop)
        finally:
            if refresh is not None:
                refresh.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresh
            if stop.is_set() and self._owns_provider and self.provider is not None:
                await asyncio.to_thread(self.provider.shutdown)

    async def figures(self, *, since: float | None = None, until: float | None = None,
                      pipeline: str | None = None) -> Figures:
        return await self.loop.figures(now=self.clock(), since=since, until=until,
                                       pipeline=pipeline)

    async def prometheus(self) -> tuple[bytes, str]:
        """The body and content type of a `/metrics` answer: every figure over the whole log."""
        figures = await self.figures()
        self.latest = figures
        return render(figures), CONTENT_TYPE

    async def _refresh(self, stop: asyncio.Event) -> None:
        await self.caught_up.wait()
        while not stop.is_set():
            self.latest = await self.figures()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.refresh_s)
