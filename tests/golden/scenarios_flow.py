"""Golden history scenarios of how runs move: shapes, retries, faults, cancel, gates, inputs."""

from __future__ import annotations

from collections.abc import Callable

from events import reports as rp
from events.registry import Lineage, ModelRegistered
from events.triggers import TriggerInfo
from orchestrator.core.errors import InvalidInput
from orchestrator.core.ids import run_id_for
from orchestrator.core.state import Champion
from tests.core.harness import keyed_request, pipeline, ref, task
from tests.core.support import CheckedHarness, gate_task, register_task
from tests.golden.record import MODEL, digits_spec


def retry_at(h: CheckedHarness, run_id: str, task_name: str) -> float:
    due = h.run(run_id).tasks[task_name].retry_at
    assert due is not None, f"{task_name} is not waiting to retry"
    return due


def refused(feed: Callable[[], object]) -> None:
    """The input must be refused as invalid (the shell dead-letters it)."""
    try:
        feed()
    except InvalidInput:
        return
    raise AssertionError("the input was accepted, not refused as invalid")


# --- shapes -------------------------------------------------------------------------------


def linear_run(h: CheckedHarness) -> None:
    """Three tasks in a line, each placed when the one before succeeds, with progress."""
    h.agent("a1")
    h.start(pipeline(task("extract"), task("transform", "extract"), task("load", "transform"),
                     name="etl"))
    h.complete("extract")
    h.now += 2
    cmd = h.last_execute("transform")
    h.start_attempt(cmd)
    h.report(rp.AttemptProgress, cmd, fraction=0.5, message="half way")
    h.now += 2
    h.succeed(cmd, duration_s=4.0)
    h.now += 1
    h.complete("load")


def fan_out_fan_in(h: CheckedHarness) -> None:
    """One root fans out to three tasks placed at once; the join waits for all three."""
    h.agent("a1", cpus=4)
    h.start(pipeline(task("root"), task("x", "root"), task("y", "root"), task("z", "root"),
                     task("join", "x", "y", "z"), name="fan"))
    h.complete("root")
    for name in ("z", "x", "y"):
        h.now += 1
        h.complete(name)
    h.complete("join")


# --- failures -----------------------------------------------------------------------------


def retry_then_success(h: CheckedHarness) -> None:
    """Retryable failures wait out a doubling backoff (a tick just before places nothing)."""
    h.agent("a1", cpus=2)
    rid = h.start(pipeline(task("fetch", attempts=3, backoff_s=2.0), task("use", "fetch"),
                           name="flaky"))
    for _ in range(2):
        h.fail("fetch")
        due = retry_at(h, rid, "fetch")
        h.tick(due - 0.01)
        h.tick(due)
    h.complete("fetch")
    h.now += 1
    h.complete("use")


def retries_exhausted(h: CheckedHarness) -> None:
    """Retries run out and a non-retryable failure fails at once: dependents fail upstream,
    the independent sibling still succeeds, the run fails naming both."""
    h.agent("a1", cpus=4)
    rid = h.start(pipeline(task("a", attempts=2), task("b"), task("c", "a"), task("d", "c"),
                           task("e", attempts=5), name="doomed"))
    h.fail("a")
    h.tick(retry_at(h, rid, "a"))
    h.fail("a")
    h.fail("e", retryable=False)
    h.now += 1
    h.complete("b")


def timed_out_then_superseded(h: CheckedHarness) -> None:
    """A started attempt passes its timeout: cancelled and retried; the stale attempt's late
    success is ignored and the task completes once, from the fresh attempt."""
    h.agent("a1")
    t0 = h.now
    h.start(pipeline(task("a", attempts=2, timeout_s=10), task("b", "a"), name="slow"))
    stale = h.last_execute("a")
    h.start_attempt(stale)
    h.tick(t0 + 9.99)
    h.tick(t0 + 10)
    h.tick(t0 + 11)
    fresh = h.last_execute("a")
    h.succeed(stale)
    h.start_attempt(fresh)
    h.succeed(fresh)
    h.complete("b")


def late_reports(h: CheckedHarness) -> None:
    """Late and repeated reports never move an attempt back: a second started, an accepted
    after started, a redelivered envelope, a report from an agent it was not placed on."""
    h.agent("a1")
    h.start(pipeline(task("a", timeout_s=10), name="chatty"))
    cmd = h.last_execute("a")
    h.start_attempt(cmd)
    h.now += 5
    h.report(rp.AttemptStarted, cmd)
    h.report(rp.AttemptAccepted, cmd)
    h.report(rp.AttemptProgress, cmd, fraction=0.5)
    h.deliver(h.inputs[-1])
    h.succeed(cmd, agent_id="intruder")
    h.succeed(cmd)


def lost_agent(h: CheckedHarness) -> None:
    """The agent running an attempt is lost (the evidence is logged): retried on another."""
    h.agent("a1")
    h.agent("a2")
    rid = h.start(pipeline(task("a", attempts=2), name="orphan"))
    h.start_attempt(h.last_execute("a"))
    h.now += 20
    h.lose("a1", "no heartbeat for 15s")
    h.tick()
    h.tick(retry_at(h, rid, "a"))
    h.complete("a")


def lost_attempts_spend_no_retries(h: CheckedHarness) -> None:
    """Attempts lost to their agents spend no retries: a task with none is lost with an
    expired agent, then interrupted by a drain, and succeeds on its third attempt. A task
    allowed two lost attempts loses them (a restarted agent, a lease run out while cut off)
    and fails naming the bound and the last evidence."""
    h.agent("a1")
    h.agent("a2")
    survivor = h.start(pipeline(task("a"), name="survivor"))
    first = h.last_execute("a")
    h.start_attempt(first)
    h.now += 20
    h.lose(first.agent_id, "no heartbeat for 15.2s (expiry 15s, coordinator clock)")
    h.tick()
    h.tick(retry_at(h, survivor, "a"))
    second = h.last_execute("a")
    h.start_attempt(second)
    h.lent.agents[second.agent_id].draining = True
    h.now += 30
    h.give_up(second, "drained")
    h.revive(first.agent_id)
    h.tick(retry_at(h, survivor, "a"))
    h.complete("a")

    oom = h.start(pipeline(task("grow", lost=2), name="oom"))
    first = h.last_execute("grow")
    h.start_attempt(first)
    h.give_up(first, "restarted")
    h.tick(retry_at(h, oom, "grow"))
    second = h.last_execute("grow")
    h.start_attempt(second)
    h.give_up(second, "cut off")


def cancelled_run(h: CheckedHarness) -> None:
    """The user cancels a run with a task running, one scheduled and one pending; the running
    attempt's success comes too late and is ignored."""
    h.agent("a1", cpus=4)
    rid = h.start(pipeline(task("a"), task("b"), task("c", "a", "b"), name="stopped"))
    running = h.last_execute("a")
    h.start_attempt(running)
    h.now += 3
    h.cancel(rid)
    h.now += 1
    h.succeed(running)


def run_deadline(h: CheckedHarness) -> None:
    """The run passes its deadline: it fails and cancels what is still active."""
    h.agent("a1")
    t0 = h.now
    h.start(pipeline(task("a"), task("b", "a"), name="late", deadline_s=100))
    h.start_attempt(h.last_execute("a"))
    h.tick(t0 + 99.9)
    h.tick(t0 + 100)


# --- gates and the registry ---------------------------------------------------------------


def gate_passes_and_registers(h: CheckedHarness) -> None:
    """The digits pipeline: its gate passes against the champion, the model is registered
    and the registry's reply (ModelRegistered) completes the run."""
    h.agent("a1", cpus=4)
    h.lent.champions[MODEL] = Champion(model=MODEL, version=3, metrics={"accuracy": 0.95})
    rid = h.start(digits_spec(), key="data-v2")
    for name, metrics in (("ingest", {}), ("features", {}), ("train", {"train_accuracy": 0.99}),
                          ("evaluate", {"accuracy": 0.96})):
        h.now += 5
        h.complete(name, metrics=metrics)
    (request,) = h.registrations()
    h.now += 1
    h.feed(ModelRegistered(run_id=rid, task="register", model=MODEL, version=4,
                           artifact=request.artifact, metrics=request.metrics,
                           lineage=request.lineage))


def gate_rejects(h: CheckedHarness) -> None:
    """A model worse than the champion: the gate rejects it, registration fails upstream and
    the run fails naming the gate."""
    h.agent("a1")
    h.lent.champions["m"] = Champion(model="m", version=3, metrics={"accuracy": 0.97})
    h.start(pipeline(
        task("train"),
        gate_task(metrics_from="train", minimum={"accuracy": 0.9},
                  no_worse_than_current=("accuracy",), model="m"),
        register_task("register", "gate", model="m", artifact_from="train"), name="guarded"))
    h.complete("train", metrics={"accuracy": 0.95})


# --- inputs -------------------------------------------------------------------------------


def duplicates_ignored(h: CheckedHarness) -> None:
    """Repeats are recorded as ignored: a duplicate trigger, a redelivered report, a registry
    reply with nothing in flight, and one after the run ended."""
    h.agent("a1")
    spec = pipeline(task("train", attempts=2), register_task("register", model="m"), name="dup")
    rid = h.start(spec, key="k")
    h.start(spec, key="k")
    lineage = Lineage(run_id=rid, pipeline="dup", pipeline_version=spec.version(),
                      trigger=TriggerInfo(type="manual", event_id="k", subject="dup"))
    h.fail("train")
    h.deliver(h.inputs[-1])
    h.feed(ModelRegistered(run_id=rid, task="register", model="m", version=1,
                           artifact=ref("train"), lineage=lineage))
    h.tick(retry_at(h, rid, "train"))
    h.complete("train")
    (request,) = h.registrations()
    reply = ModelRegistered(run_id=rid, task="register", model="m", version=1,
                            artifact=request.artifact, lineage=request.lineage)
    h.feed(reply)
    h.feed(reply)


def idempotency_key_conflict(h: CheckedHarness) -> None:
    """`baton run --idempotency-key` twice with the same request: a duplicate; a third time with
    other params and data: a recorded conflict naming the run and the fields that differ. The
    run goes on as first asked for."""
    h.agent("a1")
    spec = pipeline(task("train"), name="keyed")
    for _ in range(2):
        keyed_request(h, spec, "nightly-1", params={"epochs": 5}, priority=50,
                      uri="file:///data/v1")
    keyed_request(h, spec, "nightly-1", params={"epochs": 6}, priority=50,
                  uri="file:///data/v2")
    h.complete("train")


def ended_run_inputs(h: CheckedHarness) -> None:
    """Inputs to runs that have ended, each recorded as ignored with its reason (what the
    coordinator answers from the little it keeps of an ended run, core/ended.py): the same
    keyed request again (a duplicate), the key with other params (a conflict naming them), a
    report redelivered and one late, a cancel; for a run that succeeded and one cancelled."""
    h.agent("a1")
    spec = pipeline(task("train"), name="ended")
    keyed_request(h, spec, "daily-7", params={"epochs": 5}, uri="file:///data/v7")
    rid = run_id_for("ended", "idempotency_key", "daily-7")
    h.complete("train")
    keyed_request(h, spec, "daily-7", params={"epochs": 5}, uri="file:///data/v7")
    keyed_request(h, spec, "daily-7", params={"epochs": 9}, priority=3, uri="file:///data/v7")
    h.deliver(h.inputs[-3])  # the success report, redelivered
    cmd = h.executes()[-1]
    h.report(rp.AttemptProgress, cmd, fraction=0.5)
    h.cancel(rid)
    other = h.start(pipeline(task("a"), name="stopped"), "t-9")
    h.cancel(other)
    h.report(rp.AttemptStarted, h.executes()[-1])


def invalid_inputs(h: CheckedHarness) -> None:
    """Inputs that cannot apply are refused, to be dead-lettered: an unknown run, an unknown
    task, an invalid spec; the valid run beside them is untouched."""
    h.agent("a1")
    rid = h.start(pipeline(task("a"), name="valid"))
    refused(lambda: h.feed(rp.AttemptStarted(run_id="run-nope", task="a", attempt=1,
                                             attempt_id="run-nope/a/1", agent_id="a1")))
    refused(lambda: h.feed(rp.AttemptStarted(run_id=rid, task="ghost", attempt=1,
                                             attempt_id=f"{rid}/ghost/1", agent_id="a1")))
    refused(lambda: h.start(pipeline(task("b", "missing"), name="broken")))
    h.complete("a")


SCENARIOS: dict[str, Callable[[CheckedHarness], None]] = {
    f.__name__: f for f in (
        linear_run, fan_out_fan_in, retry_then_success, retries_exhausted,
        timed_out_then_superseded, late_reports, lost_agent, lost_attempts_spend_no_retries,
        cancelled_run, run_deadline,
        gate_passes_and_registers, gate_rejects, duplicates_ignored,
        idempotency_key_conflict, invalid_inputs, ended_run_inputs,
    )
}
