"""Traces on Kafka, with `baton coordinator` and `baton agent` as separate processes: a run is
one trace over coordinator, agent and task code, and stays one whole trace when the
coordinator is SIGKILLed mid-run and another takes its partition groups over (the spans are
built from the log, so the new owner exports what the dead one had not, and what it exports
again is the very same span)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from events import runs as ev
from tests import gates
from tests.e2e.support import Service, baton, of_run, wait_for_run_log
from tests.telemetry.receiver import Receiver, of_trace
from tests.telemetry.traces import assert_one_whole_trace, trace_of, whole

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(180)]

PIPELINE = "tests.telemetry.pipelines:traced"
SESSION_TIMEOUT_S = 6
GROUPS = 12
TOOK_OVER = re.compile(r"took over partition group (\d+)")


def coordinator(tmp_path: Path, bus: str, name: str) -> Service:
    return Service.spawn(tmp_path / "home", [
        "coordinator", "--pipeline", PIPELINE, "--session-timeout", str(SESSION_TIMEOUT_S)],
        tmp_path / f"{name}.log", bus)


def owns_every_group(service: Service, within_s: float = 60.0) -> None:
    """By its own account; process output is a file, polled with a bound (as until_printed)."""
    deadline = time.monotonic() + within_s
    while len(set(TOOK_OVER.findall(service.output()))) < GROUPS:
        assert service.process.poll() is None, service.output()
        assert time.monotonic() < deadline, service.output()
        time.sleep(0.05)


def test_a_run_stays_one_whole_trace_when_its_coordinator_is_killed_mid_run(
        tmp_path: Path, kafka_bootstrap: str, receiver: Receiver,
        services: list[Service]) -> None:
    # given a coordinator and an agent, separate processes on Kafka, exporting to a receiver
    bus = f"kafka://{kafka_bootstrap}?namespace=t{uuid.uuid4().hex[:12]}"
    home = tmp_path / "home"
    first = coordinator(tmp_path, bus, "first")
    services.append(first)
    owns_every_group(first)
    services.append(Service.spawn(home, ["agent", "--agent-id", "solo", "--cpus", "2",
                                         "--gpus", "none"], tmp_path / "agent.log", bus))
    # and a run whose first task's attempts are exported, its second holding at a gate
    gate = gates.make(tmp_path / "gate")
    requested = baton(home, "run", "traced", "--pipeline-ref", PIPELINE,
                      "--param", f"gate={gate}", bus=bus)
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    receiver.until(lambda spans: sum(s.name == "prepare"
                                     for s in of_trace(spans, trace_of(run_id))) == 2)
    wait_for_run_log(home, lambda log: any(
        isinstance(e.data, ev.TaskProgress) and e.data.message == gates.AT_GATE
        for e in of_run(log, run_id)), timeout=60, bus=bus)

    # when the coordinator is SIGKILLed mid-run and another takes its groups over
    first.kill()
    second = coordinator(tmp_path, bus, "second")
    services.append(second)
    owns_every_group(second)
    gates.release(gate)

    # then the run is still one whole trace, every attempt's span in it
    spans = receiver.until(whole(run_id))
    assert_one_whole_trace(spans, run_id, "manual")
    # and what the new owner exported again is the very same span (checked by the assert)
    assert sum(s.name == "prepare" for s in of_trace(spans, trace_of(run_id))) >= 4
