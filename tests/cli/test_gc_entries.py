"""Each long-running command sets the garbage collection policy first (agents/gc_policy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents import gc_policy
from orchestrator.cli.main import build_parser
from orchestrator.service.home import Home


class _Stopped(Exception):
    """Raised by the stand-in policy, so the command goes no further than setting it."""


@pytest.mark.parametrize("command", [["up"], ["coordinator"], ["agent", "--agent-id", "a1"]],
                         ids=["up", "coordinator", "agent"])
async def test_a_long_running_command_applies_the_event_loops_policy_before_it_starts(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the command's parsed arguments, and the policy watched
    args = build_parser().parse_args(["--home", str(tmp_path), *command])
    applied: list[str] = []

    def watched(role: str) -> None:
        applied.append(role)
        raise _Stopped

    monkeypatch.setattr(gc_policy, "apply", watched)
    # when the command runs
    with pytest.raises(_Stopped):
        await args.handler(args)
    # then it set the event loop's policy before opening anything
    assert applied == [gc_policy.LOOP]
    assert not Home(tmp_path).bus.exists()
