"""Pipeline metrics computed from the log: one computation for `baton metrics`, the API's
Prometheus `/metrics`, the OTel instruments and the dashboard.

- `tally.py` (pure): `observe(tally, record)` folds records of baton.runs (with the
  coordinator's `evolve`), .models, .dlq and .agents into a `Tally`.
- `figures.py` (pure): `compute(tally, now=, since=, until=, pipeline=, lag=)` -> `Figures`
  (`as_json()` is what `baton metrics --json` prints); `series(tally, now=, start=, step=)`,
  one `Figures` per window, for charts over time.
- `follower.py`: `MetricsLoop`, a configuration of bus/loop.py's `Tail` that keeps a tally
  current, and `consumer_lag(bus, carried)`.
- `prometheus.py`: `render(figures) -> bytes` in the text exposition format, `CONTENT_TYPE`.
- `otel.py`: the instruments (`cicd.pipeline.run.duration`, `cicd.pipeline.run.active`,
  `cicd.worker.count`, `baton.*`), exported over OTLP when `OTEL_EXPORTER_OTLP_*` is set.
- `service.py`: `Metrics`, what the API process runs.

For the API (the integrator writes the route)::

    metrics = Metrics(bus)                        # OTLP export if OTEL_EXPORTER_OTLP_* is set
    task = asyncio.create_task(metrics.run(stop))  # follows the log until `stop` is set
    ...
    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, content_type = await metrics.prometheus()
        return Response(body, media_type=content_type)

    await metrics.figures(since=..., pipeline=...)  # the dashboard: `Figures.as_json()`
    series(metrics.loop.tally, now=..., start=..., step=...)  # its charts over time

`metrics.caught_up` (an asyncio.Event) is set once the whole log as it was at start was read;
before that the figures count what was read so far.
"""
