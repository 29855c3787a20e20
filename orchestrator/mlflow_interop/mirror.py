"""Baton's registry mirrored to MLflow: each version a model version of the same name (its
Baton version, sha256, run and admitting gate as tags; its metrics and lineage in an MLflow
run of the experiment `baton/MODEL`; the artifact logged to that run, which is the version's
source), each alias move the MLflow alias, an archived version tagged so.

Idempotent: a version is looked up by its `baton.version` tag before it is made, so a relay
that sends a turn again (`service/relay.py`) makes nothing twice. MLflow numbers its versions
itself: a model that already had versions there keeps its numbers, and Baton's is the tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from events.envelope import Envelope
from events.payloads import Payload
from events.registry import AliasMoved, ModelRegistered, VersionArchived
from orchestrator.core.models import admitted_by

VERSION_TAG = "baton.version"


class Mirror:
    def __init__(self, client: MlflowClient, experiment_prefix: str = "baton") -> None:
        self.client = client
        self.prefix = experiment_prefix

    def apply(self, env: Envelope[Payload]) -> int:
        """Mirror one event of baton.models; how many MLflow changes it made."""
        data = env.data
        if isinstance(data, ModelRegistered):
            return self._registered(data)
        if isinstance(data, AliasMoved):
            version = self.version_of(data.model, data.version)
            if version is None:
                return 0  # a version made before the mirror could see it: not in MLflow
            self.client.set_registered_model_alias(data.model, data.alias, version)
            return 1
        if isinstance(data, VersionArchived):
            version = self.version_of(data.model, data.version)
            if version is not None:
                self.client.set_model_version_tag(data.model, version, "baton.status",
                                                  "archived")
                return 1
        return 0

    def version_of(self, model: str, baton_version: int) -> str | None:
        """The MLflow version that mirrors Baton's `baton_version`, if there is one."""
        for found in self.client.search_model_versions(f"name='{_quoted(model)}'"):
            if found.tags.get(VERSION_TAG) == str(baton_version):
                return str(found.version)
        return None

    def _registered(self, data: ModelRegistered) -> int:
        self._model(data.model)
        if self.version_of(data.model, data.version) is not None:
            return 0  # mirrored already: a relay's repeated turn
        run_id = self._run(data)
        lineage = data.lineage
        tags = {VERSION_TAG: str(data.version), "baton.sha256": data.artifact.sha256,
                "baton.run_id": data.run_id, "baton.pipeline": lineage.pipeline,
                "baton.admitted_by": admitted_by(data) or "", "baton.status": "registered"}
        self.client.create_model_version(
            data.model, source=f"runs:/{run_id}/baton", run_id=run_id, tags=tags,
            description=f"Baton {data.model} v{data.version}, registered by run {data.run_id}")
        return 1

    def _model(self, name: str) -> None:
        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise
            self.client.create_registered_model(
                name, tags={"baton.model": name},
                description="Mirrored from Baton's registry (baton mlflow mirror)")

    def _run(self, data: ModelRegistered) -> str:
        """An MLflow run holding the version's metrics, lineage and artifact."""
        experiment = f"{self.prefix}/{data.model}"
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (found.experiment_id if found is not None
                         else self.client.create_experiment(experiment))
        lineage = data.lineage
        run = self.client.create_run(experiment_id, tags={
            "mlflow.runName": f"{data.model} v{data.version}", "baton.run_id": data.run_id,
            "baton.trigger": f"{lineage.trigger.type}:{lineage.trigger.event_id}"})
        run_id = str(run.info.run_id)
        params: dict[str, Any] = {"pipeline": lineage.pipeline,
                                  "pipeline_version": lineage.pipeline_version,
                                  "dataset": lineage.dataset, "dataset_version":
                                  lineage.dataset_version, "dataset_sha256": lineage.dataset_sha256}
        for key, value in params.items():
            if value is not None:
                self.client.log_param(run_id, key, value)
        for key, metric in data.metrics.items():
            self.client.log_metric(run_id, key, metric)
        path = _local(data.artifact.uri)
        if path is not None and path.exists():
            self.client.log_artifact(run_id, str(path), artifact_path="baton")
        self.client.set_terminated(run_id)
        return run_id


def _local(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("", "file") else None


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")
