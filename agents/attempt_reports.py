"""What an attempt says, in order: its reports (started, progress, the outcome) delivered one
after another, and the ledger entries and report payloads made from its command."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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


class Reports:
    """One attempt's reports (started, progress, the outcome), delivered in that order, each
    retried until the bus takes it: none may overtake another, and none may be lost."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._chain: asyncio.Future[bool] | None = None

    def push(self, out: Outgoing) -> None:
        self._chain = asyncio.ensure_future(self._after(self._chain, out))

    async def _after(self, previous: asyncio.Future[bool] | None, out: Outgoing) -> bool:
        """False once one could not be delivered (the agent is stopping): the rest wait for
        the next start, which sends the outcome from the ledger."""
        if previous is not None and not await previous:
            return False
        try:
            await self._sender.deliver([out], "reporting")
        except BusError:
            return False
        return True

    async def delivered(self) -> bool:
        return True if self._chain is None else await self._chain

    def cancel(self) -> None:
        if self._chain is not None:
            self._chain.cancel()


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
