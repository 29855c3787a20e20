"""How a CLI command to a pipeline's router reports the router's answer, the same for
schedules, backfills and escalations: applied (exit 0), refused with the router's reason (exit
1), or not answered in time (the command stays on the log and applies when a router reads it:
exit 0, saying so)."""

from __future__ import annotations

from orchestrator.cli.errors import Failed
from orchestrator.printable import printable
from orchestrator.service.router_commands import Answered, CommandAnswer

ANSWER_WAIT_S = 30.0


def reported(answered: Answered[CommandAnswer] | None, what: str) -> int:
    if answered is None:
        print(printable(f"published {what}; no router answered within {ANSWER_WAIT_S:g}s (is "
                        "'baton up' or a coordinator running?): it applies when one reads it"))
        return 0
    if not answered.answer.applied:
        raise Failed(f"{what} refused: {answered.answer.detail}")
    print(printable(f"{what}: {answered.answer.detail}"))
    return 0
