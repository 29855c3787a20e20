"""The flags of the commands that run agents (up, agent, demo): capacity, lease, drain grace."""

from __future__ import annotations

import argparse
import math

from agents.capabilities import detect_capabilities
from agents.config import AgentConfig
from orchestrator.cli.errors import UsageError
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
