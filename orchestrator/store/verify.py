"""replay --verify: rebuild state from the log alone and compare with the stored projection (I4)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus import Bus
from events import topics
from orchestrator.store.projections import (
    all_run_rows,
    connect,
    fold_runs,
    stored_positions,
    stored_row_version,
)
from orchestrator.store.rows import ROW_VERSION, run_row


@dataclass
class Verification:
    runs: int = 0
    events: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


async def verify(bus: Bus, projections: Path, now: float) -> Verification:
    """Differences between the log's fold and the projection, and runs the log shows past
    their deadline yet not ended (I1: a coordinator fails such a run at its next tick, so
    one that stays means no coordinator is deciding for its partition group)."""
    conn = await connect(projections)
    try:
        positions = {tp: o for tp, o in (await stored_positions(conn)).items()
                     if tp.topic == topics.RUNS}
        version = await stored_row_version(conn)
        state = await fold_runs(bus, positions)
        actual = await all_run_rows(conn)
    finally:
        await conn.close()
    if version != ROW_VERSION:
        # every row would differ in the same way; one line says why and what mends it
        return Verification(runs=len(state.runs), events=sum(positions.values()), differences=[
            f"the projection's rows have shape {version}, this Baton writes {ROW_VERSION}: "
            "they are rebuilt from the log by the next query (e.g. baton runs list) or baton up"])
    expected = {rid: _jsonable(run_row(run)) for rid, run in state.runs.items()}
    result = Verification(runs=len(expected), events=sum(positions.values()))
    for rid in sorted(expected.keys() | actual.keys()):
        result.differences.extend(_diff(rid, expected.get(rid), actual.get(rid)))
    result.differences.extend(
        f"{run.run_id}: still {run.status} {now - run.deadline_at:.0f} s past its deadline "
        "(is a coordinator running? it fails such a run at its next tick)"
        for run in sorted(state.runs.values(), key=lambda r: r.run_id)
        if run.status == "running" and run.deadline_at < now)
    return result


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(row, sort_keys=True))
    return loaded


def _diff(run_id: str, expected: dict[str, Any] | None, actual: dict[str, Any] | None
          ) -> list[str]:
    if expected is None:
        return [f"{run_id}: in the projection but not in the log"]
    if actual is None:
        return [f"{run_id}: in the log but missing from the projection"]
    return [f"{run_id}: {key}: log says {expected.get(key)!r}, projection says {actual.get(key)!r}"
            for key in sorted(expected.keys() | actual.keys())
            if expected.get(key) != actual.get(key)]
