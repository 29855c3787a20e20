"""Model registry traffic: requests from runs, and the registry's own log of versions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from events.common import ALIAS_PATTERN, AUDIT_FIELD, ArtifactRef, Audit, Frozen
from events.payloads import Payload, RunPayload
from events.triggers import TriggerInfo

MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
"""A model name as requests name it: no slashes, no leading dot."""


class GateRef(Frozen):
    """The gate decision that admitted a version: its run's `gate_evaluated` event."""

    event_id: str
    passed: bool
    baseline_version: int | None = None
    """The version the gate compared against (the alias holder it read), if any."""


class ApprovalRef(Frozen):
    """A person's decision that admitted a version without a passing gate (an override): its
    run's `approval_decided` event."""

    event_id: str
    approved: bool
    by: str | None
    """Who decided; None: the step's timeout policy did (which overrides nothing)."""


def _none(value: object) -> bool:
    return value is None


OPTIONAL: Any = Field(default=None, exclude_if=_none)
"""Left out of the wire form when absent: events without it keep their old bytes."""


class Lineage(Payload):
    """Everything needed to say where a model came from, without reading any other log."""

    TYPE = "lineage"
    run_id: str
    pipeline: str
    pipeline_version: str
    trigger: TriggerInfo
    dataset: str | None = None
    dataset_version: str | None = None
    dataset_sha256: str | None = None
    attempts: dict[str, str] = Field(default_factory=dict)
    artifacts: dict[str, ArtifactRef] = Field(default_factory=dict)


class RegisterModel(RunPayload):
    """Sent to baton.model-requests; the registry assigns the version (compare-and-set there)."""

    TYPE = "register_model"
    task: str
    model: str
    artifact: ArtifactRef
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: Lineage
    gate: GateRef | None = OPTIONAL
    """The run's gate decision, when the pipeline has a gate before this step."""
    approval: ApprovalRef | None = OPTIONAL
    """The run's approval decision, when the pipeline has an approval step before it."""
    eval_set: str | None = OPTIONAL
    """Which evaluation set its metrics were measured on (the `eval_set` metadata)."""
    eval_outcomes: str | None = OPTIONAL
    """Which rows of that set it got right (`events.evaluation`): what McNemar's test pairs."""
    promote_to: str | None = OPTIONAL
    """An alias the new version takes at once, citing `gate` (refused without a passing one)."""


class ModelRegistered(RunPayload):
    """Written to baton.models by the registry, returned to the run as an intent, logged there."""

    TYPE = "model_registered"
    task: str
    model: str
    version: int = Field(ge=1)
    artifact: ArtifactRef
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: Lineage
    gate: GateRef | None = OPTIONAL
    """The gate decision that admitted this version, if one did."""
    approval: ApprovalRef | None = OPTIONAL
    """The approval decision of its run, if it had one (what an override cites)."""
    eval_set: str | None = OPTIONAL
    """Which evaluation set its metrics were measured on: a gate compares another version
    with it only on the same one."""
    eval_outcomes: str | None = OPTIONAL
    """Which rows of that set it got right (`events.evaluation`): what McNemar's test pairs."""


class PromoteModel(Payload):
    """Point an alias at a version (baton.model-requests). The registry refuses it unless it
    cites the version's passing gate, and unless the alias is still held by `expected` (what
    the requester saw: a compare-and-set, so two promotions never race silently)."""

    TYPE = "promote_model"
    model: str = Field(pattern=MODEL_PATTERN)
    alias: str = Field(pattern=ALIAS_PATTERN)
    version: int = Field(ge=1)
    expected: int | None
    """The alias's holder the requester saw (None: the alias held nothing)."""
    cites: str = Field(min_length=1, max_length=300)
    """What admits the version: its passing gate (`gate_evaluated` id), or a person's
    approval in its run (`approval_decided` id: an override of a failed or missing gate)."""
    reason: str = Field(min_length=1, max_length=2000)
    audit: Audit
    run_id: str | None = OPTIONAL
    """The run whose step asked (a canary that passed), if a run did: the registry answers
    it there too."""


class RollbackAlias(Payload):
    """Move an alias back to the holder before its latest promotion (baton.model-requests),
    if it is still held by `expected`."""

    TYPE = "rollback_alias"
    model: str = Field(pattern=MODEL_PATTERN)
    alias: str = Field(pattern=ALIAS_PATTERN)
    expected: int | None
    reason: str = Field(min_length=1, max_length=2000)
    audit: Audit


class ArchiveVersion(Payload):
    """Retire a version (baton.model-requests): it keeps its history but can no longer be
    promoted. Refused while an alias points at it."""

    TYPE = "archive_version"
    model: str = Field(pattern=MODEL_PATTERN)
    version: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=2000)
    audit: Audit


class VersionArchived(Payload):
    """The registry archived a version (baton.models): who asked, and why."""

    TYPE = "version_archived"
    model: str
    version: int
    reason: str
    audit: Audit | None = AUDIT_FIELD


class SetTraffic(Payload):
    """Split a model's serving traffic (baton.model-requests): `percent` of requests to
    `candidate`, the rest to the alias's holder, and a copy of every request to `mirror`
    (its answers recorded, never returned). `candidate` None (or percent 0) sends everything
    to the alias's holder again."""

    TYPE = "set_traffic"
    model: str = Field(pattern=MODEL_PATTERN)
    candidate: int | None = Field(default=None, ge=1)
    percent: int = Field(default=0, ge=0, le=100)
    mirror: int | None = Field(default=None, ge=1)
    reason: str = Field(min_length=1, max_length=2000)
    audit: Audit | None = AUDIT_FIELD
    run_id: str | None = OPTIONAL
    """The run whose step asked (a canary), if a run did."""
    held_by: str | None = OPTIONAL
    """Only if the split is still this run's (a canary giving its traffic back must not undo
    another's split, or an operator's made since)."""


class TrafficSet(Payload):
    """The registry set a model's traffic split (baton.models): what every gateway serving
    the model follows."""

    TYPE = "traffic_set"
    model: str
    candidate: int | None
    percent: int
    mirror: int | None
    reason: str
    audit: Audit | None = AUDIT_FIELD
    run_id: str | None = OPTIONAL


Move = Literal["promote", "rollback"]


class AliasMoved(Payload):
    """An alias now points at `version` (baton.models, the registry's decision). Who moved it
    and why: `audit` (an operator, or a run's step), `cites` (the gate event that admitted
    the version; for a rollback, none is needed: the version held the alias before)."""

    TYPE = "alias_moved"
    model: str
    alias: str
    version: int
    previous: int | None
    move: Move
    reason: str
    cites: str | None = OPTIONAL
    audit: Audit | None = AUDIT_FIELD
    run_id: str | None = OPTIONAL
    """The run whose step moved it (a registration that promotes), if a run did."""


class ModelRequestRefused(Payload):
    """A promotion or rollback the registry refused (baton.models), with why and how to fix
    it: recorded, so an audit shows the attempt too, and the requester reads its answer."""

    TYPE = "model_request_refused"
    model: str
    alias: str
    """The alias the request was about ("" for a request about a version alone)."""
    request: str
    """The refused request's type (`promote_model`, `rollback_alias`)."""
    reason: str
    audit: Audit | None = AUDIT_FIELD
    run_id: str | None = OPTIONAL
    """The run whose step made the request, if a run did."""
