"""What several subcommands share: the home, the bus, publishing a record or an intent.

The projection (reading runs and models) is in projection.py: publishing never needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import sys
import uuid
from pathlib import Path

from bus import EMBEDDED, Bus, BusError, BusUnusable, open_bus_url
from bus.backoff import Backoff
from events.client import AsyncPublisher, PublishFailed
from events.common import Audit
from events.envelope import Envelope
from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload
from orchestrator.cli.errors import Failed, UsageError
from orchestrator.service.home import Home
from orchestrator.service.run_requests import intent_value, publish_intent


def operator() -> Audit:
    """Who gives a command from the CLI: the OS user (the API records the token's name)."""
    try:
        actor = getpass.getuser() or "cli"
    except (KeyError, OSError):
        actor = "cli"
    return Audit(actor=actor, request_id=uuid.uuid4().hex, via="cli")


def home_of(args: argparse.Namespace) -> Home:
    return Home.resolve(args.home)


def relay_positions(args: argparse.Namespace, kind: str, *target: str) -> Path:
    """Where a relay to `target` (`service/relay.py`) keeps how far it got: one file per
    kind and target in the home, so relays to two targets never share positions."""
    digest = hashlib.sha256("|".join(target).encode()).hexdigest()[:16]
    return home_of(args).root / kind / f"{digest}.json"


async def open_bus(args: argparse.Namespace, *, create: bool = False) -> Bus:
    """The bus --bus names; the embedded one must already exist unless `create`."""
    home = home_of(args)
    if args.bus == EMBEDDED and not home.bus.exists() and not create:
        raise UsageError(f"no Baton state in {home.root} (start it with 'baton up', or pass "
                         "--home / set BATON_HOME to where it runs)")
    home.create()
    return await open_bus_url(args.bus, home.root)


async def open_bus_patiently(args: argparse.Namespace) -> Bus:
    """For the processes that run until stopped (up, coordinator, agent): a bus that does not
    answer yet, e.g. a broker still starting or restarting, is waited for, said once, the way
    a restart would wait; a one-shot command fails at once instead. What waiting cannot cure
    (BusUnusable: partition counts that differ, a damaged bus file) stops at once too."""
    backoff = Backoff(0.5, 5.0)
    waiting = False
    while True:
        try:
            bus = await open_bus(args, create=True)
        except BusUnusable:
            raise
        except BusError as exc:
            if not waiting:
                sys.stderr.write(f"baton {args.command}: waiting for the bus: {exc} (trying "
                                 "again until it answers; Ctrl-C to stop)\n")
                waiting = True
            await asyncio.sleep(backoff.next())
            continue
        if waiting:
            sys.stderr.write(f"baton {args.command}: the bus answers\n")
        return bus


async def publish_trigger_env(args: argparse.Namespace, env: Envelope[Payload]) -> None:
    """One trigger on the bus --bus names (the embedded one is created if need be), through
    the publisher SDK (`events.client`), as a data system publishes one: its event id kept
    through retries; a bus that stays unreachable is one line (exit 1)."""
    home = home_of(args).create()
    try:
        async with AsyncPublisher(args.bus, home=home.root, source=env.source) as publisher:
            await publisher.send(env)
    except PublishFailed as exc:
        raise Failed(str(exc)) from None


async def send_intent(args: argparse.Namespace, request: RunRequested | RunCancelRequested,
                      event_id: str, correlation: str | None) -> None:
    value = intent_value(request, event_id, correlation)
    bus = await open_bus(args, create=True)
    try:
        await publish_intent(bus, request.run_id, value)
    finally:
        await bus.close()
