"""Flag parsing shared by several subcommands, with errors that say how to fix them."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from agents.capabilities import detect_capabilities
from agents.runtime import AgentConfig
from orchestrator.cli.errors import UsageError
from orchestrator.cli.printable import printable
from orchestrator.datasets import file_digest
from orchestrator.service.embedded_app import AgentSpec


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpus", type=float, help="CPUs to advertise (default: detected)")
    p.add_argument("--memory", help="memory to advertise, e.g. 4Gi (default: detected)")
    p.add_argument("--gpus", help="GPUs: none, a count, or e.g. 2xA100:40960 (default: detected)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, help="worker processes per agent (default: cpus, max 4)")


HEARTBEAT_S = AgentConfig.heartbeat_s
DEFAULT_LEASE_S = AgentConfig.lease_s
DEFAULT_DRAIN_GRACE_S = AgentConfig.drain_grace_s


def add_agent_process_flags(p: argparse.ArgumentParser) -> None:
    """What only a standalone `baton agent` takes: how it leaves, and how long it holds on."""
    p.add_argument("--drain-grace", type=float, default=DEFAULT_DRAIN_GRACE_S, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, how long running tasks may finish before they are "
                        "reported interrupted and retried elsewhere; a second signal stops at "
                        f"once (default {DEFAULT_DRAIN_GRACE_S:g})")
    p.add_argument("--lease", type=float, default=DEFAULT_LEASE_S, metavar="SECONDS",
                   help="how long the agent keeps running its tasks while no heartbeat gets "
                        "through to the bus; longer than a broker failover, longer than the "
                        f"heartbeat interval of {HEARTBEAT_S:g} s (default {DEFAULT_LEASE_S:g})")


def agent_timing(args: argparse.Namespace) -> tuple[float, float]:
    """(lease, drain grace) in seconds, checked against what the agent can honour."""
    lease, grace = float(args.lease), float(args.drain_grace)
    if not math.isfinite(lease) or lease <= HEARTBEAT_S:
        raise UsageError(f"--lease {args.lease:g}: use a number of seconds longer than the "
                         f"heartbeat interval of {HEARTBEAT_S:g} s (default {DEFAULT_LEASE_S:g})")
    if not math.isfinite(grace) or grace < 0:
        raise UsageError(f"--drain-grace {args.drain_grace:g}: use a number of seconds, 0 or "
                         f"more (default {DEFAULT_DRAIN_GRACE_S:g})")
    return lease, grace


def agent_specs(args: argparse.Namespace) -> list[AgentSpec]:
    if args.agents < 0:
        raise UsageError("--agents must be 0 or more")
    try:
        caps = detect_capabilities(cpus=args.cpus, memory=args.memory, gpus=args.gpus,
                                   labels=args.label)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    workers = args.workers or max(1, min(int(caps.cpus), 4))
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    return [AgentSpec(capabilities=caps, workers=workers) for _ in range(args.agents)]


def key_values(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: write it as KEY=VALUE, e.g. --param epochs=3")
        out[key] = value
    return out


def file_facts(location: str, flag: str) -> tuple[str, str | None, int | None]:
    """A URI for a path or URI (given as `flag`), with sha256 and size when it is a local file.

    A local path that is not UTF-8 still works: `as_uri` percent-encodes its bytes.
    """
    parsed = urlparse(location)
    if parsed.scheme and parsed.scheme != "file":
        return location, None, None
    path = Path(parsed.path if parsed.scheme else location).expanduser().resolve()
    if not path.is_file():
        shown = printable(location) or repr(location)
        raise UsageError(f"{flag} {shown}: no such file (give a path to the data, or a URI)")
    digest, size = file_digest(path)
    return path.as_uri(), digest, size
