"""Which records travel on which topic, under which key: the one table of the bus's channels.

`events.topics` names the topics; this says what is on each, for the AsyncAPI document
(`baton schema asyncapi`) and for any code that must know it, so the description other teams
read and the tests that check the producers cannot drift apart. A payload type may travel on
several topics (a `model_registered` is the registry's log entry, its reply to the run and an
entry in the run log).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal, cast

from pydantic import create_model

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
    topics,
    triggers,
)
from events import runs as run_log
from events.codec import _typed_envelope
from events.envelope import Envelope
from events.payloads import Payload

Direction = Literal["in", "out"]
"""Seen from Baton's control plane (coordinators, trigger fan-out and router, registry):
"in" = others (data systems, API clients, agents) write, the control plane consumes;
"out" = the control plane writes, others (agents, dashboards, operators) may read."""

RecordFormat = Literal["envelope", "dead_letter", "binary"]
"""`envelope`: JSON `events.envelope.Envelope` whose `data` is one of `types`;
`dead_letter`: JSON `events.dlq.DeadLetter`, no envelope; `binary`: opaque bytes."""

_MURMUR2 = ("murmur2(key) mod the topic's partition count (Kafka's default partitioner, "
            "`events.topics.partition_for`)")
_GROUP = ("partition k = partition_for(run id, n): the run's partition group, the same k on "
          "baton.intents, baton.reports and baton.runs, which always have the same partition "
          "count; producers choose it explicitly")


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it is for, its key and partitioning, who writes and reads it, its types."""

    topic: str
    summary: str
    key: str
    partitioning: str
    written_by: str
    read_by: str
    direction: Direction
    types: tuple[type[Payload], ...] = ()
    record: RecordFormat = "envelope"
    headers: Mapping[str, str] = field(default_factory=dict)
    """Record headers every record carries (name -> meaning), beyond the value."""


TOPIC_SPECS: Final[tuple[TopicSpec, ...]] = (
    TopicSpec(
        topics.TRIGGERS,
        "Events that may start runs. Also accepted as a CloudEvent in the Kafka protocol "
        "binding (binary mode with `ce_` headers, or structured mode with content type "
        "`application/cloudevents+json`); an unreadable record is dead-lettered.",
        key="the subject: the dataset name (data_arrived) or the model name (drift_detected)",
        partitioning=_MURMUR2,
        written_by="data systems, drift monitors, `baton publish`, `baton monitor drift`",
        read_by="the trigger fan-out",
        direction="in",
        types=(triggers.DataArrived, triggers.DriftDetected),
    ),
    TopicSpec(
        topics.PIPELINE_TRIGGERS,
        "One copy of a trigger per pipeline whose trigger spec matches it; commands to a "
        "pipeline's schedules; backfill plans and commands; the ends of runs a schedule or a "
        "backfill started (which free its overlap, or a place of the backfill's).",
        key="the pipeline name",
        partitioning=_MURMUR2,
        written_by="the trigger fan-out, `baton schedules`, `baton backfill(s)`, the "
                   "coordinator (run ends)",
        read_by="the trigger router",
        direction="out",
        types=(triggers.PipelineTriggered, schedules.ScheduleCommand, schedules.RunEnded,
               backfills.BackfillRequested, backfills.BackfillCommand,
               triggers.AcknowledgeEscalation),
    ),
    TopicSpec(
        topics.TRIGGER_LOG,
        "The trigger router's own log: every trigger it accepted (with the run it requested) "
        "or ignored, and why; every schedule slot and what became of it, with the reason; "
        "the commands given to schedules; each backfill's plan, runs, commands and end; what "
        "each event did in a condition, a debounced or a capped trigger (a step of a match, "
        "filtered and by what, waiting, fired with the cause set, expired, superseded).",
        key="the pipeline name",
        partitioning=_MURMUR2,
        written_by="the trigger router",
        read_by="the trigger router on restart, dashboards",
        direction="out",
        types=(triggers.TriggerAccepted, triggers.TriggerIgnored, schedules.ScheduleTracked,
               schedules.ScheduleSlotDecided, schedules.ScheduleCommanded,
               schedules.ScheduleRunEnded, backfills.BackfillPlanned,
               backfills.BackfillRefused, backfills.BackfillItemStarted,
               backfills.BackfillRunEnded, backfills.BackfillCommanded,
               backfills.BackfillFinished, conditions.MatchAdvanced,
               conditions.MatchFiltered, conditions.MatchExpired, conditions.MatchWaiting,
               conditions.MatchFired, conditions.MatchRunEnded, triggers.RetrainEnded,
               triggers.Escalated, triggers.EscalationAcknowledged),
    ),
    TopicSpec(
        topics.INTENTS,
        "Requests to the coordinator about one run: start it (the run id is derived, so a "
        "repeat is a duplicate), cancel it, decide its approval, the registry's replies to "
        "its registrations and canary requests, and the serving windows its canary analyses.",
        key="the run id",
        partitioning=_GROUP,
        written_by="the trigger router, `baton run`, `baton runs cancel`, API clients, "
                   "the registry (replies), `baton serve` gateways (a canary's windows)",
        read_by="the coordinator owning the partition group",
        direction="in",
        types=(intents.RunRequested, intents.RunCancelRequested, intents.ApprovalDecision,
               registry.ModelRegistered, registry.TrafficSet, registry.AliasMoved,
               registry.ModelRequestRefused, canary.ServingObserved),
    ),
    TopicSpec(
        topics.REPORTS,
        "What agents report about the attempts placed on them. A report's id is derived "
        "from the attempt, the agent and the report, so a re-sent report is a duplicate.",
        key="the run id",
        partitioning=_GROUP,
        written_by="agents",
        read_by="the coordinator owning the partition group",
        direction="in",
        types=(reports.AttemptAccepted, reports.AttemptRejected, reports.AttemptStarted,
               reports.AttemptProgress, reports.AttemptSucceeded, reports.AttemptFailed),
    ),
    TopicSpec(
        topics.RUNS,
        "The run log, Baton's source of truth: every decision the coordinator made, with a "
        "gapless per-run `sequence`. Folding it rebuilds every run.",
        key="the run id",
        partitioning=_GROUP,
        written_by="the coordinator owning the partition group",
        read_by="coordinators taking over a group, projections, dashboards, `baton watch`",
        direction="out",
        types=(run_log.RunCreated, run_log.RunSucceeded, run_log.RunFailed,
               run_log.RunCancelled, run_log.TaskReady, run_log.TaskWaiting,
               run_log.TaskScheduled, run_log.TaskAccepted, run_log.TaskRejected,
               run_log.TaskStarted, run_log.TaskProgress, run_log.TaskSucceeded,
               run_log.TaskFailed, run_log.TaskRetryScheduled, run_log.TaskTimedOut,
               run_log.TaskLost, run_log.TaskUpstreamFailed, run_log.TaskCancelled,
               run_log.GateEvaluated, run_log.InputIgnored, registry.ModelRegistered,
               run_log.ApprovalRequested, run_log.ApprovalDecided, run_log.ApprovalRefused,
               canary.CanaryStarted, canary.CanaryTrafficRequested, canary.CanaryStepStarted,
               canary.CanaryWindowObserved, canary.CanaryAnalysed,
               canary.CanaryPromotionRequested, canary.CanaryEnded),
    ),
    TopicSpec(
        topics.COMMANDS,
        "Commands to one agent. Each agent reads its own partition and filters by key; a "
        "command past its `not_after` is rejected. Commands never carry secrets.",
        key="the agent id",
        partitioning=_MURMUR2,
        written_by="coordinators",
        read_by="the addressed agent",
        direction="out",
        types=(commands.ExecuteTask, commands.CancelTask),
    ),
    TopicSpec(
        topics.AGENTS,
        "What agents say about themselves: capabilities, heartbeats with free capacity and "
        "running attempts, draining, stopping.",
        key="the agent id",
        partitioning=_MURMUR2,
        written_by="agents",
        read_by="every coordinator, whole (no consumer group)",
        direction="in",
        types=(agents.AgentAdvertised, agents.AgentHeartbeat, agents.AgentDraining,
               agents.AgentStopped),
    ),
    TopicSpec(
        topics.MODELS,
        "The registry's log: model versions (metrics, lineage, the gate that admitted each), "
        "alias moves (who, why, citing what) and the requests it refused.",
        key="the model name",
        partitioning=_MURMUR2,
        written_by="the registry",
        read_by="the registry on restart, coordinators (gate baselines), dashboards, "
                "`baton models`",
        direction="out",
        types=(registry.ModelRegistered, registry.AliasMoved, registry.VersionArchived,
               registry.TrafficSet, registry.ModelRequestRefused),
    ),
    TopicSpec(
        topics.MODEL_REQUESTS,
        "Registration requests from runs (the registry assigns the version and replies on "
        "baton.intents), alias moves and traffic splits from operators and from runs' canary "
        "steps (answered on baton.models, and on baton.intents to a run that asked); the "
        "registry decides each as a compare-and-set.",
        key="the model name",
        partitioning=_MURMUR2,
        written_by="coordinators, `baton models promote|rollback|traffic`, the HTTP API",
        read_by="the registry",
        direction="out",
        types=(registry.RegisterModel, registry.PromoteModel, registry.RollbackAlias,
               registry.ArchiveVersion, registry.SetTraffic),
    ),
    TopicSpec(
        topics.SERVING,
        "What serving gateways saw, per model version and window: requests, errors, latency "
        "quantiles, the predictions' and the inputs' distributions (small aggregates, never "
        "an event per request).",
        key="the model name",
        partitioning=_MURMUR2,
        written_by="`baton serve` gateways",
        read_by="canary analysis, drift monitors, dashboards",
        direction="out",
        types=(serving.ServingWindow,),
    ),
    TopicSpec(
        topics.SNAPSHOTS,
        "Snapshots of a partition group's folded runs (zlib-compressed JSON of the state "
        "records, validated on load; only for Baton itself), so a takeover need not replay "
        "the whole run log.",
        key="`coordinator-group-<k>` for partition group k",
        partitioning=_MURMUR2,
        written_by="coordinators, after a commit",
        read_by="the next owner of that partition group",
        direction="out",
        record="binary",
        headers={
            "offset": "the next baton.runs offset of the group the snapshot does not cover",
            "schema": "the event schema version of the folded runs",
            "fold": "hash of the fold code and of every module whose types a snapshot holds; "
                    "a snapshot is used only when it matches",
            "format": "how the bytes are laid out (3: an 8-byte length, zlib-compressed JSON "
                      "of the live runs, then the packed index of the ended ones)",
        },
    ),
    TopicSpec(
        topics.PIPELINES,
        "Every pipeline version that ran, with its spec, written once (in the transaction of "
        "the first run of it a coordinator decides); a run's `run_created` names its version "
        "and carries no spec, and readers fill it in from here.",
        key="the pipeline version (the spec's content hash)",
        partitioning=_MURMUR2,
        written_by="coordinators, with the first run of a version",
        read_by="whoever folds the run log (coordinators taking over, projections, "
                "`replay --verify`, the metrics, the HTTP API)",
        direction="out",
        types=(run_log.PipelineDeclared,),
    ),
    TopicSpec(
        topics.DLQ,
        "Dead letters: inputs no reader could accept, kept whole (base64) with the reason, "
        "written inside the consumer's input transaction.",
        key="the original record's key",
        partitioning=_MURMUR2,
        written_by="any consumer of an input topic",
        read_by="operators",
        direction="out",
        record="dead_letter",
    ),
)

BY_TOPIC: Final[Mapping[str, TopicSpec]] = {spec.topic: spec for spec in TOPIC_SPECS}


def topics_of(cls: type[Payload]) -> tuple[str, ...]:
    """Every topic a payload type travels on, in topic order."""
    return tuple(spec.topic for spec in TOPIC_SPECS if cls in spec.types)


@cache
def wire_envelope(cls: type[Payload]) -> type[Envelope[Payload]]:
    """The envelope of `cls` as a record carries it, with `type` and `version` pinned.

    The codec's typed envelope (what `baton schema export` describes), narrowed to the one
    type name and the current version a writer puts there. Pinned, the types of one topic
    are told apart by `type` alone: several payloads differ only in optional fields.
    """
    type_name: Any = Literal[cls.TYPE]  # a value only known at run time: no static type
    version: Any = Literal[cls.VERSION]
    model = create_model(
        f"{cls.__name__}Envelope",
        __base__=_typed_envelope(cls),
        __doc__=f"An envelope whose `data` is a {cls.TYPE} (version {cls.VERSION}) payload.",
        type=(type_name, ...),
        version=(version, ...),
    )
    return cast("type[Envelope[Payload]]", model)
