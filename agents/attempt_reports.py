"""What an attempt says, in order: its reports (started, progress, the outcome) delivered one
after another, and the ledger entries and report payloads made from its command."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agents.coalesce import Coalesced
from agents.ledger import LedgerEntry
from agents.outcomes import Failed, Outcome
from agents.process_identity import ProcessIdentity
from agents.sender import Sender
from bus import BusError, Outgoing
from events.commands import ExecuteTask
from events.payloads import Payload
from events.reports import AttemptFailed, AttemptSucceeded, FailureReason


@dataclass(frozen=True)
class GiveUp:
    """Why the agent itself stopped an attempt, reported instead of a plain "cancelled"."""

    reason: FailureReason
    message: str


class Outbox:
    """Every attempt's reports on their way to the bus: those pushed in one turn of the loop
    go out in one append (agents/coalesce.py), in the order they were pushed, after those of
    earlier turns. An append the bus refuses is retried whole until the agent stops
    (`Sender.deliver`); from the first one that fails then, nothing more is sent: the next
    start sends what the ledger holds."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._failed = False
        self._appends: Coalesced[Outgoing, bool] = Coalesced(self._append)

    def push(self, out: Outgoing) -> asyncio.Future[bool]:
        """Its future says whether the bus took it (False: the agent stopped first)."""
        return self._appends.add(out)

    async def _append(self, records: list[Outgoing]) -> bool:
        if not self._failed:
            try:
                await self._sender.deliver(records, "reporting")
            except BusError:
                self._failed = True
        return not self._failed

    def close(self) -> None:
        """The agent stops: what is not on the bus yet is left to the next start."""
        self._appends.close()


class Reports:
    """One attempt's reports (started, progress, the outcome), delivered in that order
    through the agent's `Outbox`, each retried until the bus takes it: none may overtake
    another, and none may be lost."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._sent: list[asyncio.Future[bool]] = []

    def push(self, out: Outgoing) -> asyncio.Future[bool]:
        """Its future says whether the bus took it (as `Outbox.push`)."""
        self._sent = [sent for sent in self._sent if not sent.done()]
        sent = self._outbox.push(out)
        self._sent.append(sent)
        return sent

    async def delivered(self) -> bool:
        """False once one could not be delivered (the agent is stopping): the rest wait for
        the next start, which sends the outcome from the ledger."""
        return True if not self._sent else await self._sent[-1]

    def cancel(self) -> None:
        """Those not appended yet are not sent (an outbox sends what is taken along)."""
        for sent in self._sent:
            sent.cancel()


def report_fields(cmd: ExecuteTask) -> dict[str, object]:
    return dict(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                attempt_id=cmd.attempt_id, agent_id=cmd.agent_id)


def entry(cmd: ExecuteTask, status: str, report: bytes | None = None,
          worker: ProcessIdentity | None = None) -> LedgerEntry:
    return LedgerEntry(cmd.attempt_id, cmd.run_id, cmd.task, cmd.attempt, cmd.placement, status,
                       report, worker)


def outcome_report(base: dict[str, object], outcome: Outcome,
                    given_up: GiveUp | None = None) -> Payload:
    """An attempt the agent itself gave up (drain, lease) reports why, and is retryable."""
    if isinstance(outcome, Failed):
        if given_up is not None and outcome.reason == "cancelled":
            return AttemptFailed(**base, reason=given_up.reason, message=given_up.message,
                                 retryable=True, duration_s=outcome.duration_s)
        return AttemptFailed(**base, reason=outcome.reason, message=outcome.message,
                             error_type=outcome.error_type, retryable=outcome.retryable,
                             duration_s=outcome.duration_s,
                             traceback=outcome.traceback or None)
    return AttemptSucceeded(**base, output=outcome.output, metrics=outcome.metrics,
                            metadata=outcome.metadata, duration_s=outcome.duration_s)
