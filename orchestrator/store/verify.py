"""replay --verify: rebuild state from the log alone and compare with the stored projection (I4)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from bus import Bus, TopicPartition
from bus.ranges import between
from events import topics
from orchestrator.core.evolve import evolve
from orchestrator.core.state import CoordinatorState, RunState
from orchestrator.service.pipeline_versions import PipelineVersions
from orchestrator.store.bulk import bulk_fold
from orchestrator.store.projections import (
    connect,
    fold_run,
    stored_positions,
    stored_row_version,
)
from orchestrator.store.queries import run_doc, run_span
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
    one that stays means no coordinator is deciding for its partition group).

    The log is streamed: each run is compared with its row when it ends, then forgotten (a
    late event of an ended run folds it again from its first event, and compares again), so
    memory is the live runs and the ended runs' index (~70 bytes a run, core/ended.py)."""
    conn = await connect(projections)
    try:
        positions = {tp: o for tp, o in (await stored_positions(conn)).items()
                     if tp.topic == topics.RUNS}
        version = await stored_row_version(conn)
        if version != ROW_VERSION:
            # every row would differ in the same way; one line says why and what mends it
            return Verification(runs=await _count(conn), events=sum(positions.values()),
                                differences=[
                f"the projection's rows have shape {version}, this Baton writes {ROW_VERSION}: "
                "they are rebuilt from the log by the next query (e.g. baton runs list) or "
                "baton up"])
        return await _compared(bus, conn, positions, now)
    finally:
        await conn.close()


async def _compared(bus: Bus, conn: aiosqlite.Connection, positions: dict[TopicPartition, int],
                    now: float) -> Verification:
    state, versions = CoordinatorState(retire=True), PipelineVersions(bus)
    differences: dict[str, list[str]] = {}

    async def compare(run: RunState) -> None:
        expected = _jsonable(run_row(run))
        differences[run.run_id] = _diff(run.run_id, expected, await run_doc(conn, run.run_id))

    with bulk_fold():
        for tp, upto in positions.items():
            async for batch in between(bus, tp, 0, upto):
                for record, env in zip(batch, await versions.decoded(batch), strict=True):
                    live = state.runs.get(env.subject)
                    evolve(state, env)
                    if env.subject in state.runs:
                        continue
                    if live is None:  # a late event of a run compared and forgotten
                        span = await run_span(conn, env.subject)
                        live = None if span is None else await fold_run(
                            bus, tp, span.first_offset, record.offset, env.subject)
                        if live is None:
                            differences[env.subject] = [
                                f"{env.subject}: in the log but missing from the projection"]
                            continue
                    await compare(live)
    for run in state.runs.values():
        await compare(run)
    async with conn.execute("SELECT run_id FROM runs") as cur:
        async for (run_id,) in cur:
            if run_id not in state.runs and run_id not in state.ended:
                differences[run_id] = _diff(run_id, None, {})
    result = Verification(runs=len(state.runs) + len(state.ended),
                          events=sum(positions.values()))
    for run_id in sorted(differences):
        result.differences.extend(differences[run_id])
    result.differences.extend(
        f"{run.run_id}: still {run.status} {now - run.deadline_at:.0f} s past its deadline "
        "(is a coordinator running? it fails such a run at its next tick)"
        for run in sorted(state.runs.values(), key=lambda r: r.run_id)
        if run.status == "running" and run.deadline_at < now)
    return result


async def _count(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT COUNT(*) FROM runs") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


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
