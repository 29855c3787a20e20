"""What attempts say later than their admission: an acceptance only if the attempt still waits
for a worker a while, a "started" held a moment so a quick attempt's goes with its outcome
(agents/acceptance.py says why each); and, until the bus has each held "started", its place
in the ledger's outbox, so a stop during the hold leaves it to the next start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from agents import acceptance
from agents.attempt_reports import report_fields
from agents.attempt_state import Running
from agents.ledger import Ledger
from agents.sender import Sender
from events.reports import AttemptStarted


class LaterReports:
    def __init__(self, ledger: Ledger, sender: Sender) -> None:
        self._ledger = ledger
        self._sender = sender
        self._later = acceptance.Later()
        self._unsent: dict[str, tuple[str, bytes]] = {}
        """Held "started" reports saved with their admission and not on the bus yet, by
        attempt id: (run id, the saved report). Each later save carries them into the
        ledger's outbox (`carried`)."""
        self._batch_sent = True
        """The last saved batch's reports to send at once are on the bus (`reported`)."""

    # -- the ledger's outbox --------------------------------------------------------------

    def saving(self) -> list[tuple[str, bytes]]:
        """A batch is being saved: the held "started"s of earlier batches still not on the
        bus, for its outbox."""
        self._batch_sent = False
        return list(self._unsent.values())

    def unsent(self, attempt_id: str, run_id: str, report: bytes) -> None:
        """A "started" saved with its admission, held from here until the bus has it."""
        self._unsent[attempt_id] = (run_id, report)

    def reported(self) -> None:
        """The last saved batch's reports to send at once are on the bus: the ledger's outbox
        is emptied (`Ledger.sent`) once no held "started" in it is still to be sent."""
        self._batch_sent = True
        self._outbox_sent()

    def _outbox_sent(self) -> None:
        if self._batch_sent and not self._unsent:
            self._ledger.sent()

    # -- acceptances ----------------------------------------------------------------------

    def accept_later(self, waiting: list[Running], current: Callable[[Running], bool]) -> None:
        """Those still waiting for a worker after a while, and still `current`, say they
        were accepted (before anything else they say: the same queue of reports)."""
        if not waiting:
            return
        delay = acceptance.delay_s([r.command.not_after for r in waiting], self._sender.clock())
        self._later.after(delay, partial(self._say_accepted, waiting, current))

    @staticmethod
    def _say_accepted(waiting: list[Running], current: Callable[[Running], bool]) -> None:
        for running in waiting:
            out, running.accepted = running.accepted, None
            if (out is not None and running.reports is not None and not running.started
                    and not running.finished and current(running)):
                running.reports.push(out)

    # -- held "started"s ------------------------------------------------------------------

    def hold_started(self, running: Running) -> None:
        """Its "started" waits until its outcome or first progress report, or until the
        window ends, whichever comes first."""
        running.held_since = asyncio.get_running_loop().time()
        delay = acceptance.delay_s([running.command.not_after], self._sender.clock(),
                                   acceptance.STARTED_HELD_S)
        running.hold = self._later.after(delay, partial(self.say_started, running))

    def say_started(self, running: Running) -> None:
        """A held "started", pushed now (so before whatever the attempt says next), saying
        how long it was held, and dated when the attempt started (as an event's time is
        when it happened). Once the bus has it, it leaves the ledger's outbox."""
        since = running.held_since
        self.unhold(running)
        if since is None or running.reports is None:
            return
        cmd = running.command
        held_s = max(0.0, asyncio.get_running_loop().time() - since)
        sent = running.reports.push(self._sender.out(
            AttemptStarted(**report_fields(cmd), gpus=running.gpus, held_s=held_s),
            at=self._sender.clock() - held_s))  # its envelope's time: when it started
        if cmd.attempt_id in self._unsent:
            sent.add_done_callback(partial(self._started_sent, cmd.attempt_id))

    def unhold(self, running: Running) -> None:
        """Said, or the attempt is over without saying it (the agent stops: it stays in the
        ledger's outbox if it was saved there, for the next start)."""
        running.held_since = None
        if running.hold is not None:
            self._later.drop(running.hold)
            running.hold = None

    def _started_sent(self, attempt_id: str, sent: asyncio.Future[bool]) -> None:
        if not sent.cancelled() and sent.exception() is None and sent.result():
            self._unsent.pop(attempt_id, None)
            self._outbox_sent()

    def cancel(self) -> None:
        """The agent stops: nothing more is said later (the next start has the ledger)."""
        self._later.cancel()
