"""`baton dev kafka`: a real Kafka broker (or a 3-broker cluster) on loopback, until Ctrl-C.

For machines without Docker: the broker comes from Maven Central through Java and Maven.
The bootstrap address is the only line on stdout, so scripts and tests can read it and know
the broker answers; everything meant for people goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.cli.errors import UsageError
from orchestrator.devkafka import DevKafkaError, KafkaCluster, running_kafka
from orchestrator.devkafka.cluster import BROKER_COUNTS, HOST


def add_dev(dev: argparse.ArgumentParser) -> None:
    kinds = dev.add_subparsers(dest="dev_command", metavar="{kafka}", required=True,
                               parser_class=type(dev))  # main's one-line-error Parser
    p = kinds.add_parser("kafka", help="a real Kafka broker on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, help="client port (3 brokers: N, N+1, N+2; default: free)")
    p.add_argument("--data-dir", type=Path,
                   help="keep the data here; formatted storage is reused (default: temporary)")
    p.add_argument("--brokers", type=int, choices=BROKER_COUNTS, default=1,
                   help="1, or 3 for a cluster with replication 3 and min ISR 2 (default 1)")
    p.set_defaults(handler=dev_kafka)


def check_flags(args: argparse.Namespace) -> None:
    if args.port is not None and not 1 <= args.port <= 65535 - args.brokers + 1:
        raise UsageError(f"--port must be a free TCP port number, not {args.port}")
    if args.port is not None:
        _check_free(range(args.port, args.port + args.brokers))
    if args.data_dir is not None and args.data_dir.exists() and not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is a file; name a directory")


def _check_free(ports: range) -> None:
    """A taken port would only show up as a broker that dies while starting; say it now."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds
            try:
                sock.bind((HOST, port))
            except OSError:
                raise UsageError(f"port {port} on {HOST} is in use; pick another --port "
                                 "or leave it out for a free one") from None


async def dev_kafka(args: argparse.Namespace) -> int:
    """Run until SIGINT or SIGTERM, then stop the brokers cleanly and exit 0."""
    check_flags(args)
    _cancel_on_signals(asyncio.current_task())
    started = time.monotonic()
    say("starting Kafka (the first run resolves it from Maven Central)...")
    try:
        async with running_kafka(args.brokers, args.data_dir, args.port) as cluster:
            _announce(cluster, args, time.monotonic() - started)
            await asyncio.Event().wait()
    except asyncio.CancelledError:
        say("Kafka stopped")
        return 0
    except DevKafkaError as exc:
        sys.stderr.write(f"baton dev kafka: {exc}\n")
        return 1
    return 0


def _announce(cluster: KafkaCluster, args: argparse.Namespace, seconds: float) -> None:
    print(cluster.bootstrap, flush=True)
    where = args.data_dir or "a temporary directory (removed on exit)"
    say(f"Kafka {cluster.runtime.version}: {args.brokers} broker(s) ready in {seconds:.1f} s, "
        f"data in {where}; export BATON_KAFKA_BOOTSTRAP={cluster.bootstrap}; Ctrl-C stops it")


def _cancel_on_signals(task: asyncio.Task[Any] | None) -> None:
    """The first SIGINT/SIGTERM cancels the command, whose cleanup stops the JVMs; later
    ones are ignored so they cannot interrupt that cleanup and orphan a broker."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: None)
        say("stopping Kafka...")
        if task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
