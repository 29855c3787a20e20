"""`baton mlflow mirror --tracking-uri URI`: Baton's registry mirrored to MLflow."""

from __future__ import annotations

import argparse
import asyncio

from bus import Record
from orchestrator.cli.context import open_bus, relay_positions
from orchestrator.cli.errors import Failed, UsageError
from orchestrator.cli.signals import stop_on_signals


def add_mlflow(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="mlflow", required=True, parser_class=type(p))
    m = sub.add_parser("mirror", help="mirror versions, metrics and alias moves to MLflow")
    m.add_argument("--tracking-uri", required=True, metavar="URI",
                   help="the MLflow tracking server (http://HOST:PORT)")
    m.add_argument("--experiment-prefix", default="baton",
                   help="each model's runs go to the experiment PREFIX/MODEL (default baton)")
    m.add_argument("--once", action="store_true",
                   help="mirror what the registry has, then stop (default: follow it)")
    m.set_defaults(handler=mirror)


async def mirror(args: argparse.Namespace) -> int:
    try:
        from mlflow import MlflowClient

        from orchestrator.mlflow_interop.mirror import Mirror
    except ImportError as exc:
        raise UsageError(f"MLflow interop needs its extra: pip install 'baton[mlflow]' ({exc})"
                         ) from None
    from events import topics
    from orchestrator.core.logged import decode_logged
    from orchestrator.service.reading import partitions_of
    from orchestrator.service.relay import relay

    mirrored = Mirror(MlflowClient(tracking_uri=args.tracking_uri), args.experiment_prefix)
    positions = relay_positions(args, "mlflow", args.tracking_uri)
    bus = await open_bus(args)
    stop = asyncio.Event() if args.once else stop_on_signals()

    async def send(records: list[Record]) -> int:
        changes = 0
        for record in records:
            env = decode_logged(record.value, record.where)
            changes += await asyncio.to_thread(mirrored.apply, env)
        return changes

    try:
        total = await relay(bus, partitions_of(bus, topics.MODELS), positions, stop, send,
                            once=args.once)
    except Exception as exc:  # MLflow's failure, said in one line; nothing is skipped
        raise Failed(f"mirroring to {args.tracking_uri} failed: {type(exc).__name__}: "
                     f"{str(exc)[:500]} (run it again: it goes on from where it got)") from None
    finally:
        await bus.close()
    print(f"{total} changes mirrored to {args.tracking_uri}")
    return 0
