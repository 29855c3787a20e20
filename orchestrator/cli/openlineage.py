"""`baton openlineage --transport SPEC`: runs, tasks and alias moves as OpenLineage events."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.cli.context import open_bus, relay_positions
from orchestrator.cli.errors import Failed, UsageError
from orchestrator.cli.signals import stop_on_signals


def add_openlineage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", required=True, metavar="SPEC",
                   help="file:PATH (JSON lines), http(s)://HOST:PORT[/PATH] (an OpenLineage "
                        "endpoint such as Marquez; default path api/v1/lineage) or "
                        "kafka:TOPIC@BROKERS")
    p.add_argument("--namespace", default="baton",
                   help="the jobs' namespace (default baton; datasets, models, triggers and "
                        "the registry get NAMESPACE.datasets and so on)")
    p.add_argument("--once", action="store_true",
                   help="send what the log has, then stop (default: follow it until Ctrl-C)")
    p.set_defaults(handler=openlineage)


async def openlineage(args: argparse.Namespace) -> int:
    try:
        from orchestrator.openlineage.emitter import TransportError, emit, transport_of
        from orchestrator.openlineage.mapping import Lineage
    except ImportError as exc:
        raise UsageError(f"OpenLineage needs its extra: pip install 'baton[lineage]' ({exc})"
                         ) from None
    try:
        transport = transport_of(args.transport)
    except TransportError as exc:
        raise UsageError(f"--transport {exc}") from None
    positions = relay_positions(args, "openlineage", args.transport, args.namespace)
    bus = await open_bus(args)
    stop = asyncio.Event() if args.once else stop_on_signals()
    try:
        total = await emit(bus, transport, Lineage(args.namespace), positions, stop,
                           once=args.once)
    except Exception as exc:  # the transport's failure: said in one line, nothing skipped
        raise Failed(f"sending to {args.transport} failed: {type(exc).__name__}: {exc} "
                     "(run it again: it goes on from the last turn that was sent)") from None
    finally:
        await bus.close()
    print(f"{total} OpenLineage events sent to {args.transport}")
    return 0
