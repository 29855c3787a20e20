"""The long-running processes: up (everything in one), coordinator, agent.

Each runs until SIGINT/SIGTERM and then stops cleanly: a coordinator leaves its group so its
units move at once, an agent stops taking work. On the embedded bus one coordinator owns a
home (a lock says so); on Kafka any number share the partition groups.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

from agents import gc_policy
from agents.config import AgentConfig
from agents.runtime import Agent, AgentReplaced
from bus import EMBEDDED
from orchestrator.cli.agent_flags import (
    add_agent_flags,
    add_agent_process_flags,
    agent_specs,
    agent_timing,
)
from orchestrator.cli.context import home_of, open_bus_patiently
from orchestrator.cli.errors import Failed, UsageError
from orchestrator.cli.http import add_http_flag, api_tokens, api_webhooks, http_socket, served
from orchestrator.cli.scheduling import add_coordinator_flags, coordinator_settings, describe
from orchestrator.cli.signals import stop_on_signals
from orchestrator.pipelines.loader import DEFAULT_PIPELINES, load_all
from orchestrator.service.coordinator import DEFAULT_SESSION_TIMEOUT_S, Coordinator
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.home import Home
from orchestrator.store.locks import file_lock

MIN_SESSION_TIMEOUT_S = 6.0
"""The broker's group.min.session.timeout.ms default: shorter sessions are refused."""


@contextlib.contextmanager
def _one_coordinator(args: argparse.Namespace, home: Home) -> Iterator[None]:
    """On the embedded bus a second coordinator would decide every run twice: refuse it."""
    if args.bus != EMBEDDED:
        yield
        return
    home.create()
    with file_lock(home.root / "coordinator.lock") as held:
        if not held:
            raise UsageError(f"a coordinator (baton up or baton coordinator) already runs on "
                             f"{home.root}; stop it first, or run several on Kafka (--bus)")
        yield


def _add_pipelines(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", action="append", metavar="REF",
                   help="pipeline 'package.module:name' or file.yaml (repeatable; default: the "
                        "digits example)")


# -- up -------------------------------------------------------------------------------------

def add_up(p: argparse.ArgumentParser) -> None:
    _add_pipelines(p)
    p.add_argument("--agents", type=int, default=1, help="local agents to run (default 1)")
    add_http_flag(p, off=True)
    add_agent_flags(p)
    add_coordinator_flags(p)
    p.set_defaults(handler=up)


async def up(args: argparse.Namespace) -> int:
    pipelines = load_all(args.pipeline or list(DEFAULT_PIPELINES))
    agents = agent_specs(args)  # checked before the home is touched
    gc_policy.apply(gc_policy.LOOP)
    settings, expiry_s = coordinator_settings(args)
    home = home_of(args)
    tokens = api_tokens(args)
    with http_socket(args) as sock, _one_coordinator(args, home):
        app = EmbeddedApp(home, pipelines, agents, settings=settings, expiry_s=expiry_s,
                          bus_url=args.bus, bus=await open_bus_patiently(args), http=sock,
                          tokens=tokens, webhooks=api_webhooks(args))
        app.stop = stop_on_signals()
        await app.start()
        print(f"baton up: home {app.home.root}, bus {args.bus}, pipelines "
              f"{', '.join(pipelines)}, {len(app.agents)} local agent(s), "
              f"{describe(settings, expiry_s)}{served(sock)}; Ctrl-C to stop", flush=True)
        try:
            await app.wait()
        finally:
            await app.close()
    return 0


# -- api ------------------------------------------------------------------------------------

def add_api(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", action="append", metavar="REF",
                   help="pipelines to list before they first run ('package.module:name' or "
                        "file.yaml; repeatable; default: only those seen in the log)")
    add_http_flag(p, off=False)
    p.set_defaults(handler=api)


async def api(args: argparse.Namespace) -> int:
    """The API alone, on any bus: it keeps the home's projection itself unless another
    process (`baton up` on the same home) writes it, and then reads that one."""
    pipelines = load_all(args.pipeline) if args.pipeline else {}
    tokens = api_tokens(args)
    with http_socket(args) as sock:
        assert sock is not None  # `baton api` has no --http off
        app = EmbeddedApp(home_of(args), pipelines, coordinate=False, bus_url=args.bus,
                          bus=await open_bus_patiently(args), http=sock, tokens=tokens,
                          webhooks=api_webhooks(args))
        app.stop = stop_on_signals()
        await app.start()
        print(f"baton api: home {app.home.root}, bus {args.bus}{served(sock)}; Ctrl-C to "
              "stop", flush=True)
        try:
            await app.wait()
        finally:
            await app.close()
    return 0


# -- coordinator ----------------------------------------------------------------------------

def add_coordinator(p: argparse.ArgumentParser) -> None:
    _add_pipelines(p)
    p.add_argument("--session-timeout", type=float, default=DEFAULT_SESSION_TIMEOUT_S,
                   metavar="SECONDS",
                   help="Kafka only: how long a silent coordinator keeps its partition groups "
                        f"before the others take them over (default {DEFAULT_SESSION_TIMEOUT_S:g})")
    add_coordinator_flags(p)
    p.set_defaults(handler=coordinator)


async def coordinator(args: argparse.Namespace) -> int:
    if args.session_timeout < MIN_SESSION_TIMEOUT_S:
        raise UsageError(f"--session-timeout {args.session_timeout:g} is below the broker's "
                         f"minimum of {MIN_SESSION_TIMEOUT_S:g} seconds")
    pipelines = load_all(args.pipeline or list(DEFAULT_PIPELINES))
    settings, expiry_s = coordinator_settings(args)
    gc_policy.apply(gc_policy.LOOP)
    home = home_of(args)
    with _one_coordinator(args, home):
        bus = await open_bus_patiently(args)
        try:
            node = Coordinator(bus, pipelines, settings, expiry_s, on_event=_say)
            stop = stop_on_signals()
            _say(f"baton coordinator: bus {args.bus}, pipelines {', '.join(pipelines)}, "
                 f"{len(node.units)} units to share, {describe(settings, expiry_s)}; "
                 "Ctrl-C to stop")
            await node.run(stop, session_timeout_s=args.session_timeout)
        finally:
            await bus.close()
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


# -- agent ----------------------------------------------------------------------------------

def add_agent(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent-id", help="stable name of this agent (default: the host name); "
                                      "a restarted agent finds its work by it")
    add_agent_flags(p)
    add_agent_process_flags(p)
    p.set_defaults(handler=agent, agents=1)


async def agent(args: argparse.Namespace) -> int:
    lease_s, drain_grace_s = agent_timing(args)
    spec = agent_specs(args)[0]
    agent_id = args.agent_id or socket.gethostname()
    if not agent_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"--agent-id {agent_id!r}: use letters, digits, '-', '_' and '.'")
    gc_policy.apply(gc_policy.LOOP)
    home = home_of(args)
    home.create()
    with file_lock(home.agents / f"agent-{agent_id}.lock") as held:
        if not held:
            raise UsageError(f"agent {agent_id!r} already runs from {home.root}; give this one "
                             "another --agent-id")
        bus = await open_bus_patiently(args)
        try:
            config = AgentConfig(agent_id=agent_id, capabilities=spec.capabilities,
                                 home=home.agents, artifact_root=home.artifacts,
                                 workers=spec.workers, lease_s=lease_s,
                                 drain_grace_s=drain_grace_s)
            caps = spec.capabilities
            _say(f"baton agent {agent_id}: bus {args.bus}, cpus {caps.cpus:g}, memory "
                 f"{caps.memory_mb} MB, gpus {len(caps.gpus)}, {spec.workers} workers, lease "
                 f"{lease_s:g} s; Ctrl-C or SIGTERM drains (grace {drain_grace_s:g} s), "
                 "a second one stops at once")
            node = Agent(bus, config)
            try:
                await node.run(_drain_on_signals(node))
            except AgentReplaced as exc:
                raise Failed(f"stopped: {exc}") from exc
        finally:
            await bus.close()
    return 0


def _drain_on_signals(node: Agent) -> asyncio.Event:
    """The first SIGINT/SIGTERM drains the agent; the next one stops it at once (the stop
    event it returns, which cuts the drain short)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if node.drain_requested or stop.is_set():
            _say(f"baton agent {node.agent_id}: {sig.name} again, stopping now")
            stop.set()
            return
        _say(f"baton agent {node.agent_id}: {sig.name}, draining: no new work, running tasks "
             f"get {node.config.drain_grace_s:g} s (send it again to stop at once)")
        node.drain(reason=sig.name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop
