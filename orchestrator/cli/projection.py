"""What the commands that read runs and models share: the projection, caught up, and one run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from events.pipeline import PipelineSpec
from orchestrator.cli.context import home_of, open_bus
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.pipelines.loader import load_pipeline
from orchestrator.store import queries
from orchestrator.store.projections import Projector, connect, find_run


async def caught_up_projection(args: argparse.Namespace) -> Path:
    """Bring the projection up to the log end unless a running `baton up` owns it."""
    bus = await open_bus(args)
    try:
        projector = Projector(bus, home_of(args).projections)
        await projector.catch_up_if_free()
    finally:
        await bus.close()
    return home_of(args).projections


async def one_run(args: argparse.Namespace) -> dict[str, Any]:
    """The run a (prefix of a) run id names, or a message saying why there is not one."""
    conn = await connect(await caught_up_projection(args))
    try:
        rows = await find_run(conn, args.run_id)
    finally:
        await conn.close()
    if not rows:
        raise NotFound(f"no run {args.run_id!r} (list them with 'baton runs list')")
    if len(rows) > 1:
        raise UsageError(f"{args.run_id!r} matches {len(rows)} runs; give more of the id")
    return rows[0]


async def pipeline_spec(conn: Any, args: argparse.Namespace) -> PipelineSpec:
    """`args.pipeline` as `--pipeline-ref` defines it, else its latest version that ran."""
    if args.pipeline_ref:
        spec = load_pipeline(args.pipeline_ref)
        if spec.name != args.pipeline:
            raise UsageError(f"--pipeline-ref {args.pipeline_ref} defines {spec.name!r}, not "
                             f"{args.pipeline!r}")
        return spec
    versions = [p for p in await queries.pipelines(conn) if p["name"] == args.pipeline]
    if not versions:
        raise NotFound(f"no pipeline {args.pipeline!r} has run here; name its definition with "
                       "--pipeline-ref ('package.module:name' or file.yaml)")
    return PipelineSpec.model_validate(versions[-1]["spec"])
