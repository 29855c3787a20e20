"""Events from data systems, monitors and people that may start runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.common import AUDIT_FIELD, Audit, JsonObject
from events.payloads import Payload


class DataArrived(Payload):
    """A data system published a new version of a dataset."""

    TYPE = "data_arrived"
    dataset: str = Field(min_length=1)
    version: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    rows: int | None = Field(default=None, ge=0)
    size: int | None = Field(default=None, ge=0)
    partition: dict[str, str] = Field(default_factory=dict, exclude_if=lambda v: not v)
    """Partition keys of this version (e.g. {"date": "2026-12-01"}): what a condition over
    several datasets matches them by."""
    schema_fingerprint: str | None = Field(default=None, min_length=1,
                                           exclude_if=lambda v: v is None)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                          exclude_if=lambda v: not v)


class DriftDetected(Payload):
    """A drift monitor found a batch that differs from a model's training data."""

    TYPE = "drift_detected"
    model: str = Field(min_length=1)
    model_version: int | None = None
    dataset: str = Field(min_length=1)
    dataset_version: str = Field(min_length=1)
    dataset_uri: str = Field(min_length=1)
    dataset_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    method: Literal["psi", "ks"] = "psi"
    threshold: float
    score: float
    drifted_features: tuple[str, ...] = ()
    top_scores: dict[str, float] = Field(default_factory=dict)
    alpha: float | None = Field(default=None, exclude_if=lambda v: v is None)
    """With the KS test: the family-wise error rate its p-values were held to."""
    top_p_values: dict[str, float] = Field(default_factory=dict,
                                           exclude_if=lambda v: not v)
    """With the KS test: the Holm-adjusted p-values of the top-scoring features."""


TriggerType = Literal["data_arrived", "drift_detected", "manual", "schedule", "condition"]


class TriggerInfo(Payload):
    """Which event started a run, copied into the run so lineage never needs a lookup."""

    TYPE = "trigger_info"
    type: TriggerType
    event_id: str
    subject: str
    payload: JsonObject = Field(default_factory=dict)


class PipelineTriggered(Payload):
    """The fan-out's copy of a trigger for one pipeline whose trigger spec matches it."""

    TYPE = "pipeline_triggered"
    pipeline: str
    trigger: TriggerInfo


class TriggerAccepted(Payload):
    """The router turned a trigger into a run request."""

    TYPE = "trigger_accepted"
    pipeline: str
    trigger_event_id: str
    trigger_type: TriggerType
    run_id: str
    data_version: str | None = None
    """`dataset@version` of a data arrival deduped by version: what the router remembers, so
    a second announcement of it is ignored naming this run (None before such dedupe)."""


IgnoreReason = Literal[
    "duplicate", "duplicate_version", "cooldown", "unknown_pipeline", "rate_limited",
    "escalated"]


class TriggerIgnored(Payload):
    """The router decided not to start a run, and says why (I2: every ignore is recorded)."""

    TYPE = "trigger_ignored"
    pipeline: str
    trigger_event_id: str
    reason: IgnoreReason
    detail: str = ""


class RetrainEnded(Payload):
    """A retrain on drift ended: what escalation counts (failures in a row)."""

    TYPE = "retrain_ended"
    pipeline: str
    model: str
    run_id: str
    status: Literal["succeeded", "failed", "cancelled"]
    failures: int
    """Retrains of this model that failed in a row, this one included."""


class Escalated(Payload):
    """Automatic retraining of a model stopped: a person must look (`baton triggers ack`)."""

    TYPE = "escalated"
    pipeline: str
    model: str
    reason: str
    runs: tuple[str, ...] = ()
    """The retrains that led to it."""


class AcknowledgeEscalation(Payload):
    """An operator's acknowledgement, on baton.pipeline-triggers keyed by pipeline."""

    TYPE = "acknowledge_escalation"
    pipeline: str = Field(min_length=1)
    model: str = Field(min_length=1)
    reason: str = ""
    audit: Audit | None = AUDIT_FIELD


class EscalationAcknowledged(Payload):
    TYPE = "escalation_acknowledged"
    pipeline: str
    model: str
    command_id: str
    applied: bool
    detail: str = ""
    reason: str = ""
    audit: Audit | None = AUDIT_FIELD
