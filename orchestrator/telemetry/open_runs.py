"""The runs of one run-log partition whose spans are still to be finished, and where reading
must resume so that a restart rebuilds them: the position an exporter may commit. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from events.envelope import Envelope
from events.payloads import Payload
from events.runs import RunCreated
from orchestrator.telemetry.spans import RunTrace, Span


@dataclass
class OpenRuns:
    """Fed the partition's events in order with their offsets (`add`). A run's events before
    the point where reading began are never seen, so a run is followed only from its
    run_created: one seen mid-way ended before that point (`resume_at` keeps it so)."""

    public_url: str
    traces: dict[str, tuple[int, RunTrace]] = field(default_factory=dict)
    """Run id -> (offset of its run_created, its trace so far); insertion order = offset order."""

    def add(self, env: Envelope[Payload], offset: int) -> list[Span]:
        data = env.data
        if isinstance(data, RunCreated):
            if data.run_id not in self.traces:
                trace = RunTrace.begin(env, self.public_url)  # type: ignore[arg-type]
                self.traces[data.run_id] = (offset, trace)
            return []
        run_id = getattr(data, "run_id", "")
        entry = self.traces.get(run_id)
        if entry is None:
            return []
        spans = entry[1].add(env)
        if entry[1].ended:
            del self.traces[run_id]
        return spans

    def resume_at(self, after: int) -> int:
        """Where a restart must read from, once the spans finished so far are exported: the
        run_created of the oldest run still open, else `after` (the next offset)."""
        return min((offset for offset, _ in self.traces.values()), default=after)
