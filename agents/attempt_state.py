"""What the agent holds about one command it decided on, and about one attempt it runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agents.attempt_reports import GiveUp, Reports
from agents.ledger import LedgerEntry
from agents.process_identity import ProcessIdentity
from agents.workers import Outcome, Reservation
from bus import Outgoing
from events.commands import ExecuteTask
from events.payloads import Payload


@dataclass(frozen=True)
class Decided:
    """What the agent says to one command: its ledger entry and the report."""

    entry: LedgerEntry
    report: Payload
    later: bool = False
    """Said later, not with the batch's reports (agents/acceptance.py): an acceptance only if
    the attempt still waits for a worker a while, a "started" when its hold ends."""


@dataclass
class Running:
    command: ExecuteTask
    gpus: tuple[int, ...]
    task: asyncio.Task[None] | None = None
    """Set once its acceptance is on the bus (`start_admitted`)."""
    invocation: asyncio.Future[Outcome] | None = None
    cancelled: bool = False
    started: bool = False
    finished: bool = False
    """Its outcome is known (its report may still be waiting for the bus)."""
    given_up: GiveUp | None = None
    reserved: Reservation | None = None
    """The worker slot it was given at admission, when it starts at once."""
    recorded: ProcessIdentity | None = None
    """The process the ledger names as running it (saved with its admission): `started`
    need not be written again for that one."""
    accepted: Outgoing | None = None
    """Its acceptance, until said or no longer worth saying."""
    reports: Reports | None = None
    held_since: float | None = None
    """While its "started" is held (agents/acceptance.py): when the hold began, on the
    loop's clock (`held_s` is a duration)."""
    hold: asyncio.TimerHandle | None = None
    """The timer that ends the hold."""
