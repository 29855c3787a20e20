"""Model registry traffic: requests from runs, and the registry's own log of versions."""

from __future__ import annotations

from pydantic import Field

from events.common import ArtifactRef
from events.payloads import Payload, RunPayload
from events.triggers import TriggerInfo


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


class ModelRegistered(RunPayload):
    """Written to baton.models by the registry, returned to the run as an intent, logged there."""

    TYPE = "model_registered"
    task: str
    model: str
    version: int = Field(ge=1)
    artifact: ArtifactRef
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: Lineage
