"""The drift monitor reading what gateways saw: a model's serving windows (baton.serving) over
a recent span, their input histograms added up per column, against the training data counted
in the same value buckets (`events.serving.value_bucket`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bus import Bus
from events import topics
from events.serving import ServingWindow
from orchestrator.core.logged import decode_logged
from orchestrator.service.reading import read_all


@dataclass
class Served:
    """What the alias's holder was asked over the span: its version and rows, per column the
    rows in each value bucket, and from how many windows (of how many gateways)."""

    model: str
    version: int | None = None
    rows: int = 0
    windows: int = 0
    gateways: set[str] = field(default_factory=set)
    columns: list[Counter[int]] = field(default_factory=list)

    def add(self, window: ServingWindow) -> None:
        if not window.feature_hist:
            return  # a window of a gateway from before histograms, or of no valid row
        if not self.columns:
            self.columns = [Counter() for _ in window.feature_hist]
        if len(window.feature_hist) != len(self.columns):
            return  # rows of another width: the model refused them anyway
        for total, counts in zip(self.columns, window.feature_hist, strict=True):
            total.update(counts)
        self.rows += sum(window.feature_hist[0].values())
        self.windows += 1
        self.gateways.add(window.gateway)


async def served(bus: Bus, model: str, since: float, version: int | None = None) -> Served:
    """The primary version's windows of `model` that ended at `since` or later (the newest
    window's primary version, unless `version` names one)."""
    found: list[ServingWindow] = []
    for record in await read_all(bus, topics.SERVING, {}):
        data = decode_logged(record.value, record.where).data
        if (isinstance(data, ServingWindow) and data.model == model and data.end >= since
                and data.role == "primary"):
            found.append(data)
    chosen = version if version is not None else max(
        found, key=lambda w: w.end).version if found else None
    out = Served(model, chosen)
    for window in found:
        if window.version == chosen:
            out.add(window)
    return out
