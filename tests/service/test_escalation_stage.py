"""Escalation of retrains through the real trigger path on a real bus, embedded and Kafka:
failed retrains in a row stop retraining (recorded, and every later drift ignored as
escalated) until acknowledged; drift again soon after a retrain that succeeded escalates too."""

from __future__ import annotations

from bus import Bus, Outgoing
from events.codec import encode
from events.envelope import envelope
from events.intents import RunRequested
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.schedules import RunEnded, RunOutcome
from events.topics import INTENTS, PIPELINE_TRIGGERS
from events.triggers import (
    AcknowledgeEscalation,
    DriftDetected,
    Escalated,
    EscalationAcknowledged,
    RetrainEnded,
    TriggerIgnored,
)
from orchestrator.service.router import RouterStage
from orchestrator.service.router_commands import router_record
from orchestrator.service.triggers import FanOutStage, publish_trigger
from tests.service.test_trigger_stage import FakeClock, decisions, events, settle

T0 = 1_800_000_000.0
RETRAIN = PipelineSpec(name="retrain", tasks=(TaskSpec(name="a", function="m:f"),), triggers=(
    TriggerSpec(on="drift_detected", model="clf", escalate_after_failures=2,
                escalate_if_drifting_within_s=3600),))
SPECS = {RETRAIN.name: RETRAIN}


def drift(n: int) -> DriftDetected:
    return DriftDetected(model="clf", dataset="d", dataset_version=f"v{n}",
                         dataset_uri=f"s3://d/v{n}", threshold=0.2, score=0.5)


async def runs(bus: Bus) -> list[RunRequested]:
    return [e.data for e in await events(bus, INTENTS) if isinstance(e.data, RunRequested)]


async def test_failed_retrains_escalate_until_acknowledged_and_drift_after_success_too(
        bus: Bus) -> None:
    clock = FakeClock(T0)
    stages = FanOutStage(bus, SPECS), RouterStage(bus, SPECS, clock)

    async def retrain(n: int, status: RunOutcome) -> None:
        await publish_trigger(bus, drift(n), event_id=f"drift-{n}")
        await settle(*stages)
        [run] = [r for r in await runs(bus) if r.trigger.event_id == f"drift-{n}"]
        told = envelope(RunEnded(run_id=run.run_id, pipeline="retrain", status=status,
                                 trigger=run.trigger), id=f"{run.run_id}/9/told",
                        time=clock.now, source="t", subject="retrain")
        await bus.publish([Outgoing(PIPELINE_TRIGGERS, "retrain", encode(told))])
        await settle(*stages)

    # given two retrains on drift that failed in a row
    await retrain(1, "failed")
    await retrain(2, "failed")
    logged = await decisions(bus)
    assert [d.failures for d in logged if isinstance(d, RetrainEnded)] == [1, 2]
    [stopped] = [d for d in logged if isinstance(d, Escalated)]
    assert stopped.reason == "2 retrains of clf failed in a row (escalate_after_failures 2)"
    # when the model drifts again, then no retrain: ignored as escalated, saying how to go on
    await publish_trigger(bus, drift(3), event_id="drift-3")
    await settle(*stages)
    [ignored] = [d for d in await decisions(bus) if isinstance(d, TriggerIgnored)]
    assert ignored.reason == "escalated" and "baton triggers ack retrain" in ignored.detail
    assert len(await runs(bus)) == 2
    # when an operator acknowledges, then retraining goes on (and counts afresh)
    _, ack = router_record(AcknowledgeEscalation(pipeline="retrain", model="clf"), "retrain",
                           "ack-1")
    await bus.publish([ack])
    await settle(*stages)
    [answer] = [d for d in await decisions(bus) if isinstance(d, EscalationAcknowledged)]
    assert answer.applied
    clock.now += 60
    await retrain(4, "succeeded")
    # when it drifts again 10 minutes after that successful retrain, then that escalates too
    clock.now += 600
    await publish_trigger(bus, drift(5), event_id="drift-5")
    await settle(*stages)
    escalations = [d for d in await decisions(bus) if isinstance(d, Escalated)]
    assert len(escalations) == 2 and "drifts again 600s after retrain" in escalations[1].reason
    assert len(await runs(bus)) == 3
    # and a restarted router stands where this one stood
    again = RouterStage(bus, SPECS, clock)
    assert not await again.step()
    assert again.state == stages[1].state
