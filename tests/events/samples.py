"""One realistic payload of every event type in the catalog, for tests of the published contract.

A new event type fails `test_every_catalog_type_has_a_sample` until it gets a sample here, so
the checks that use these samples (the AsyncAPI schemas, the topic table) cover it too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

from events import (
    agents,
    backfills,
    canary,
    commands,
    conditions,
    intents,
    registry,
    reports,
    schedules,
    serving,
    triggers,
)
from events import runs as ev
from events.codec import encode
from events.common import ArtifactRef, Audit, Capabilities, GpuInfo, Resources
from events.envelope import envelope
from events.payloads import Payload
from events.pipeline import GateSpec, PipelineSpec, RegisterSpec, RetryPolicy, TaskSpec
from events.schedule_spec import ScheduleSpec
from events.triggers import TriggerInfo

SHA = "ab" * 32
RUN = "run-0123456789abcdef0123"
ATTEMPT = f"{RUN}/train/1"
AGENT = "gpu-1"
MODEL = "digits-classifier"
AT = 1_700_000_000.0
_AT = datetime.fromtimestamp(AT, UTC)

ARTIFACT = ArtifactRef(uri="file:///artifacts/ab/abab", sha256=SHA, size=1234)
RESOURCES = Resources(cpus=2, memory_mb=1024, gpus=1, gpu_memory_mb=8000, gpu_model="A100",
                      labels={"pool": "training"})
TRIGGER = TriggerInfo(type="data_arrived", event_id="evt-1", subject="digits",
                      payload={"dataset": "digits", "version": "v1"})
SPEC = PipelineSpec(
    name="digits",
    tasks=(
        TaskSpec(name="train", function="examples.digits.tasks:train", resources=RESOURCES,
                 retry=RetryPolicy(max_attempts=3, backoff_s=0.5), timeout_s=300,
                 params={"epochs": 3}),
        TaskSpec(name="gate", kind="gate", deps=("train",),
                 gate=GateSpec(metrics_from="train", minimum={"accuracy": 0.9},
                               no_worse_than_current=("accuracy",), model=MODEL)),
        TaskSpec(name="register", kind="register", deps=("gate",),
                 registration=RegisterSpec(model=MODEL, artifact_from="train")),
    ),
)
GATE = registry.GateRef(event_id=f"{RUN}/9", passed=True, baseline_version=1)
AUDIT = Audit(actor="alice", request_id="req-7", via="cli")
LINEAGE = registry.Lineage(run_id=RUN, pipeline="digits", pipeline_version=SPEC.version(),
                           trigger=TRIGGER, dataset="digits", dataset_version="v1",
                           dataset_sha256=SHA, attempts={"train": ATTEMPT},
                           artifacts={"train": ARTIFACT})


class _Attempt(TypedDict):
    run_id: str
    task: str
    attempt: int
    attempt_id: str


class _Report(_Attempt):
    agent_id: str


_ATTEMPT = _Attempt(run_id=RUN, task="train", attempt=1, attempt_id=ATTEMPT)
_REPORT = _Report(**_ATTEMPT, agent_id=AGENT)

WINDOW = serving.ServingWindow(
    model=MODEL, version=2, role="primary", gateway="h:1:ab", start=AT, end=AT + 10,
    requests=120, errors=1, rows=130, latency_ms={"p50": 0.4, "p95": 0.7, "p99": 1.2, "max": 3.0},
    latency_hist={35: 100, 40: 19}, predictions={"3": 60, "7": 70},
    features=[serving.FeatureStats(mean=0.3, std=0.1)])
FIGURES = canary.Figures(requests=120, errors=1, latency_hist={35: 100, 40: 19},
                         predictions={"3": 60, "7": 70})
CHECK = canary.CanaryCheck(check="error rate", candidate=0.008, baseline=0.008, limit=0.018,
                           passed=True)

BACKFILL_ITEM = backfills.BackfillItem(
    key="slot:nightly@2026-12-01T01:30:00Z",
    trigger=TriggerInfo(type="schedule", event_id="schedule:digits:nightly@2026-12-01T01:30:00Z",
                        subject="digits", payload={"schedule": "nightly", "backfill": "bf-1"}))

CAUSE = conditions.Cause(event_id="evt-1", dependency="data sales",
                         summary="sales@v1 (date=2026-12-01)", at=AT, position="p@1", leaf=0,
                         type="data_arrived", subject="sales",
                         payload={"dataset": "sales", "version": "v1"})

SAMPLES: tuple[Payload, ...] = (
    triggers.DataArrived(dataset="digits", version="v1", uri="file:///d/v1.npz", sha256=SHA,
                         rows=1797, size=4096),
    triggers.DriftDetected(model=MODEL, model_version=1, dataset="digits", dataset_version="v2",
                           dataset_uri="file:///d/v2.npz", threshold=0.2, score=0.35,
                           drifted_features=("px_3",), top_scores={"px_3": 0.41}),
    triggers.PipelineTriggered(pipeline="digits", trigger=TRIGGER),
    triggers.TriggerAccepted(pipeline="digits", trigger_event_id="evt-1",
                             trigger_type="data_arrived", run_id=RUN),
    triggers.TriggerIgnored(pipeline="digits", trigger_event_id="evt-2", reason="cooldown",
                            detail="next run allowed in 540s"),
    intents.RunRequested(run_id=RUN, spec=SPEC, trigger=TRIGGER, params={"lr": 0.1},
                         idempotency_key="ci-42"),
    intents.RunCancelRequested(run_id=RUN),
    reports.AttemptAccepted(**_REPORT, gpus=(0,)),
    reports.AttemptRejected(**_REPORT, reason="no free GPU"),
    reports.AttemptStarted(**_REPORT, gpus=(0,), held_s=0.012),
    reports.AttemptProgress(**_REPORT, fraction=0.5, message="epoch 2/3"),
    reports.AttemptSucceeded(**_REPORT, output=ARTIFACT, metrics={"accuracy": 0.97},
                             metadata={"dataset_version": "v1", "rows": 1797},
                             duration_s=12.5),
    reports.AttemptFailed(**_REPORT, reason="exception", message="boom",
                          error_type="ValueError"),
    ev.RunCreated(run_id=RUN, pipeline="digits", pipeline_version=SPEC.version(), spec=SPEC,
                  trigger=TRIGGER, deadline_at=AT + 3600),
    ev.PipelineDeclared(pipeline="digits", version=SPEC.version(), spec=SPEC),
    ev.RunSucceeded(run_id=RUN),
    ev.RunFailed(run_id=RUN, reason="task train failed", failed_tasks=("train",)),
    ev.RunCancelled(run_id=RUN, reason="cancelled by user"),
    ev.TaskReady(run_id=RUN, task="train"),
    ev.TaskWaiting(run_id=RUN, task="train", reason="no agent has a free A100"),
    ev.TaskScheduled(**_ATTEMPT, agent_id=AGENT, resources=RESOURCES, not_after=AT + 30),
    ev.TaskAccepted(**_ATTEMPT, agent_id=AGENT, gpus=(0,)),
    ev.TaskRejected(**_ATTEMPT, agent_id=AGENT, reason="no free GPU", place_after=AT + 1),
    ev.TaskStarted(**_ATTEMPT, agent_id=AGENT, timeout_at=AT + 300, gpus=(0,)),
    ev.TaskProgress(**_ATTEMPT, fraction=0.5, message="epoch 2/3"),
    ev.TaskSucceeded(**_ATTEMPT, output=ARTIFACT, metrics={"accuracy": 0.97}, duration_s=12.5),
    ev.TaskFailed(**_ATTEMPT, reason="crashed", message="worker exited with -9", final=True),
    ev.TaskRetryScheduled(run_id=RUN, task="train", next_attempt=2, retry_at=AT + 1),
    ev.TaskTimedOut(**_ATTEMPT, timeout_at=AT + 300),
    ev.TaskLost(**_ATTEMPT, agent_id=AGENT, evidence="no heartbeat for 30s"),
    ev.TaskUpstreamFailed(run_id=RUN, task="gate", upstream="train"),
    ev.TaskCancelled(run_id=RUN, task="train", reason="cancelled by user"),
    ev.GateEvaluated(run_id=RUN, task="gate", passed=True, checks=(
        ev.GateCheck(run_id=RUN, metric="accuracy", op=">=", threshold=0.9, value=0.97,
                     passed=True),
        ev.GateCheck(run_id=RUN, metric="accuracy", op=">= current", threshold=None,
                     value=0.97, passed=True),
    ), baseline_model=MODEL, baseline_version=1),
    ev.InputIgnored(run_id=RUN, input_id="evt-1", input_type="run_requested",
                    reason="duplicate run request (run already exists)"),
    commands.ExecuteTask(**_ATTEMPT, agent_id=AGENT, pipeline="digits", placement=1,
                         function="examples.digits.tasks:train",
                         inputs={"ingest": ARTIFACT}, resources=RESOURCES, timeout_s=300,
                         not_after=AT + 30, trigger=TRIGGER, params={"epochs": 3}),
    commands.CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=ATTEMPT,
                        reason="cancelled by user"),
    agents.AgentAdvertised(agent_id=AGENT, capabilities=Capabilities(
        cpus=8, memory_mb=32768, gpus=(GpuInfo(index=0, model="A100", memory_mb=40960),),
        labels={"pool": "training"}), lease_s=15, host="node-7", pid=4242),
    agents.AgentHeartbeat(agent_id=AGENT, beat=3, free_cpus=6, free_memory_mb=30000,
                          free_gpus=(0,), running=(ATTEMPT,)),
    agents.AgentDraining(agent_id=AGENT),
    agents.AgentStopped(agent_id=AGENT),
    intents.ApprovalDecision(run_id=RUN, task="approve", approve=True, reason="looks good",
                             values={"comment": "ship it", "alias": "champion"},
                             role="operator", audit=AUDIT),
    ev.ApprovalRequested(run_id=RUN, task="approve", timeout_at=AT + 3600,
                         on_timeout="reject", role="operator", inputs={"comment": "text"}),
    ev.ApprovalDecided(run_id=RUN, task="approve", approved=True, reason="looks good",
                       values={"comment": "ship it"}, audit=AUDIT),
    ev.ApprovalRefused(run_id=RUN, task="approve", reason="alice is a viewer", audit=AUDIT),
    registry.RegisterModel(run_id=RUN, task="register", model=MODEL, artifact=ARTIFACT,
                           metrics={"accuracy": 0.97}, lineage=LINEAGE),
    registry.ModelRegistered(run_id=RUN, task="register", model=MODEL, version=2,
                             artifact=ARTIFACT, metrics={"accuracy": 0.97}, lineage=LINEAGE,
                             gate=GATE),
    registry.PromoteModel(model=MODEL, alias="champion", version=2, expected=1,
                          cites=GATE.event_id, reason="better on the holdout", audit=AUDIT),
    registry.RollbackAlias(model=MODEL, alias="champion", expected=2,
                           reason="errors in production", audit=AUDIT),
    registry.AliasMoved(model=MODEL, alias="champion", version=2, previous=1, move="promote",
                        reason="better on the holdout", cites=GATE.event_id, audit=AUDIT),
    registry.SetTraffic(model=MODEL, candidate=3, percent=5, mirror=4, reason="canary",
                        audit=AUDIT),
    registry.TrafficSet(model=MODEL, candidate=3, percent=5, mirror=4, reason="canary",
                        audit=AUDIT),
    WINDOW,
    registry.ArchiveVersion(model=MODEL, version=1, reason="superseded", audit=AUDIT),
    registry.VersionArchived(model=MODEL, version=1, reason="superseded", audit=AUDIT),
    registry.ModelRequestRefused(model=MODEL, alias="champion", request="promote_model",
                                 reason="champion points at v3, not v1", audit=AUDIT),
    canary.ServingObserved(run_id=RUN, windows=(WINDOW,)),
    canary.CanaryStarted(run_id=RUN, task="canary", model=MODEL, version=3,
                         alias="champion", baseline=2, percents=(5, 50), timeout_at=AT + 600),
    canary.CanaryTrafficRequested(run_id=RUN, task="canary", step=0, percent=5,
                                  request_id=f"{RUN}/9/traffic/canary/0"),
    canary.CanaryStepStarted(run_id=RUN, task="canary", step=0, percent=5),
    canary.CanaryWindowObserved(run_id=RUN, task="canary", step=0, gateway="h:1:ab",
                                start=AT, end=AT + 10, candidate=FIGURES, baseline=FIGURES),
    canary.CanaryAnalysed(run_id=RUN, task="canary", step=0, passed=True, checks=(CHECK,),
                          candidate=FIGURES, baseline=FIGURES),
    canary.CanaryPromotionRequested(run_id=RUN, task="canary", alias="champion", version=3,
                                    expected=2, cites=GATE.event_id,
                                    request_id=f"{RUN}/14/promote/canary"),
    canary.CanaryEnded(run_id=RUN, task="canary", verdict="promoted",
                       reason="every step passed", report=canary.ReleaseReport(
                           model=MODEL, version=3, alias="champion", baseline=2, steps=(
                               canary.StepReport(percent=5, started_at=AT, ended_at=AT + 60,
                                                 windows=6, analyses=2, candidate=FIGURES,
                                                 baseline=FIGURES, verdict="passed"),),
                           checks=(CHECK,))),
    schedules.ScheduleTracked(pipeline="digits", schedule="nightly", since=_AT,
                              spec=ScheduleSpec(name="nightly", cron="30 2 * * *",
                                                timezone="Europe/Berlin"),
                              next_due=_AT + timedelta(hours=1)),
    schedules.ScheduleSlotDecided(pipeline="digits", schedule="nightly", slot=_AT,
                                  outcome="fired", reason="on_time", detail="due", run_id=RUN,
                                  next_due=_AT + timedelta(days=1)),
    schedules.ScheduleCommand(pipeline="digits", schedule="nightly", command="pause",
                              reason="holiday freeze", audit=AUDIT),
    schedules.ScheduleCommanded(pipeline="digits", schedule="nightly", command="pause",
                                command_id="cmd-1", applied=True, detail="paused",
                                reason="holiday freeze", audit=AUDIT),
    schedules.RunEnded(run_id=RUN, pipeline="digits", status="succeeded",
                       trigger=TriggerInfo(type="schedule", event_id="schedule:digits:nightly@x",
                                           subject="digits", payload={"schedule": "nightly"})),
    schedules.ScheduleRunEnded(pipeline="digits", schedule="nightly", run_id=RUN,
                               status="succeeded"),
    backfills.BackfillRequested(backfill_id="bf-1", pipeline="digits", part=0, parts=1,
                                items=(BACKFILL_ITEM,), max_concurrent=2, audit=AUDIT),
    backfills.BackfillCommand(backfill_id="bf-1", pipeline="digits", command="pause",
                              audit=AUDIT),
    backfills.BackfillPlanned(backfill_id="bf-1", pipeline="digits", part=0, parts=1,
                              items=(BACKFILL_ITEM,), max_concurrent=2, priority=-10,
                              description="slots of nightly", audit=AUDIT),
    backfills.BackfillRefused(backfill_id="bf-1", pipeline="digits", reason="no pipeline"),
    backfills.BackfillItemStarted(backfill_id="bf-1", pipeline="digits", key="slot:x",
                                  run_id=RUN),
    backfills.BackfillRunEnded(backfill_id="bf-1", pipeline="digits", key="slot:x",
                               run_id=RUN, status="failed"),
    backfills.BackfillCommanded(backfill_id="bf-1", pipeline="digits", command="cancel",
                                command_id="cmd-2", applied=True, cancelled_runs=(RUN,),
                                audit=AUDIT),
    backfills.BackfillFinished(backfill_id="bf-1", pipeline="digits", outcome="cancelled",
                               succeeded=3, failed=1, cancelled=2),
    conditions.MatchAdvanced(pipeline="digits", trigger=0, key="2026-12-01", cause=CAUSE,
                             have=1, need="data fx"),
    conditions.MatchFiltered(pipeline="digits", trigger=0, event_id="evt-2",
                             reason="min_rows 1000: 12 rows"),
    conditions.MatchExpired(pipeline="digits", trigger=0, key="2026-12-01", causes=(CAUSE,),
                            reason="timed out after 7200s"),
    conditions.MatchWaiting(pipeline="digits", trigger=0, key="", match_id="evt-1",
                            causes=(CAUSE,), reason="debounce"),
    conditions.MatchFired(pipeline="digits", trigger=0, key="2026-12-01", match_id="m-1",
                          run_id=RUN, causes=(CAUSE,), superseded=(CAUSE,), cleared=("m-0",)),
    conditions.MatchRunEnded(pipeline="digits", trigger=0, run_id=RUN),
    triggers.RetrainEnded(pipeline="digits", model=MODEL, run_id=RUN, status="failed",
                          failures=2),
    triggers.Escalated(pipeline="digits", model=MODEL, reason="2 retrains failed in a row",
                       runs=(RUN,)),
    triggers.AcknowledgeEscalation(pipeline="digits", model=MODEL, reason="data fixed",
                                   audit=AUDIT),
    triggers.EscalationAcknowledged(pipeline="digits", model=MODEL, command_id="cmd-3",
                                    applied=True, audit=AUDIT),
)

BY_TYPE: dict[str, Payload] = {sample.TYPE: sample for sample in SAMPLES}


def encoded(sample: Payload) -> bytes:
    """The bytes a producer puts on the bus for `sample`, through the real codec."""
    env = envelope(sample, id=f"{sample.TYPE}-1", time=AT, source="tests", subject=RUN,
                   correlation_id="evt-1", causation_id="evt-0", sequence=7)
    return encode(env)
