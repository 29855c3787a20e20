"""`baton approve` against real processes: a run waits for a decision in its log, not in a
process, so the wait survives `baton up` being SIGKILLed; the decision is recorded with who
made it."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path

import pytest

from events import runs as ev
from tests.e2e.support import REPO, RunLog, Service, baton, of_run, wait_for_run_log

PIPELINE = str(REPO / "tests/e2e/approval.yaml")

pytestmark = pytest.mark.e2e


def has(kind: type, run_id: str) -> Callable[[RunLog], bool]:
    return lambda log: any(isinstance(e.data, kind) for e in of_run(log, run_id))


def waiting(home: Path, services: list[Service], log: Path) -> str:
    """`baton up` on `home`, and a run of the pipeline once its approval step waits."""
    services.append(Service.start(home, [PIPELINE], log))
    requested = baton(home, "run", "approved", "--pipeline-ref", PIPELINE)
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    wait_for_run_log(home, has(ev.ApprovalRequested, run_id), timeout=60)
    return run_id


def test_an_approval_waits_through_a_sigkill_and_a_restart_then_the_decision_moves_it_on(
    tmp_path: Path, services: list[Service],
) -> None:
    # given `baton up`, and a run of a pipeline whose approval step waits for a decision
    home = tmp_path / "home"
    run_id = waiting(home, services, tmp_path / "up-1.log")
    # when `baton up` is killed outright while it waits, and started again
    services[-1].kill()
    services.append(Service.start(home, [PIPELINE], tmp_path / "up-2.log"))
    # and someone approves it, with a comment
    approved = baton(home, "approve", run_id[:16], "--reason", "numbers look right",
                     "--input", "comment=ship it", "--wait", "60")
    # then the decision is taken and the run finishes
    assert approved.returncode == 0, approved.stderr
    assert f"{run_id}: approve approved" in approved.stdout
    log: RunLog = wait_for_run_log(home, has(ev.RunSucceeded, run_id), timeout=60)
    (decided,) = [e.data for e in of_run(log, run_id) if isinstance(e.data, ev.ApprovalDecided)]
    assert decided.audit is not None
    assert (decided.audit.actor, decided.audit.via) == (getpass.getuser(), "cli")
    assert decided.values == {"comment": "ship it"}
    assert len([e for e in of_run(log, run_id) if isinstance(e.data, ev.ApprovalRequested)]) == 1
    # and the run's page says who approved it
    shown = baton(home, "runs", "show", run_id)
    assert shown.returncode == 0 and "approved approve" in shown.stdout


def test_bad_decisions_are_one_line_each_and_publish_nothing(
    tmp_path: Path, services: list[Service],
) -> None:
    home = tmp_path / "home"
    run_id = waiting(home, services, tmp_path / "up.log")
    unknown = baton(home, "approve", "run-nope", "--reason", "r")
    malformed = baton(home, "approve", run_id, "--reason", "r", "--input", "nonsense")
    wrong = baton(home, "approve", run_id, "--reason", "r", "--input", "ticket=7",
                  "--wait", "60")
    assert unknown.returncode == 1 and "no run 'run-nope'" in unknown.stderr
    assert malformed.returncode == 2 and "is not NAME=VALUE" in malformed.stderr
    assert wrong.returncode == 2 and "refused" in wrong.stderr
    assert "the step takes no input 'ticket'" in wrong.stderr
    assert "Traceback" not in unknown.stderr + malformed.stderr + wrong.stderr
