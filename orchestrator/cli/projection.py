"""What the commands that read runs and models share: the projection, caught up, and one run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator.cli.context import home_of, open_bus
from orchestrator.cli.errors import NotFound, UsageError
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
