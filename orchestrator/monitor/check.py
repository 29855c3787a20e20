"""The drift monitor's shell: load the model's training data and a new batch, compare, and
publish a drift event only when the statistics say so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np

from bus import Bus, Outgoing
from events.codec import payload
from events.envelope import Envelope
from events.payloads import Payload
from events.triggers import DriftDetected
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.datasets import file_digest
from orchestrator.monitor.drift import DriftReport, compare
from orchestrator.service.triggers import publish_trigger, trigger_record


def path_of(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise UsageError(f"{uri}: only file:// URIs and paths can be read by the monitor")
    return Path(parsed.path)


def load_features(path: Path) -> np.ndarray[Any, Any]:
    """Features from an .npz (array 'X') or .npy file."""
    if not path.exists():
        raise UsageError(f"{path}: no such file (give an .npz with an 'X' array, or an .npy)")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read features: {exc}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        if "X" not in data.files:
            raise UsageError(f"{path}: the .npz has no 'X' array (it has {', '.join(data.files)})")
        return np.asarray(data["X"], dtype=float)
    return np.asarray(data, dtype=float)


def training_data_uri(model_doc: dict[str, Any]) -> str:
    """The dataset a model version was trained on, from its lineage (the trigger payload)."""
    payload = model_doc["lineage"]["trigger"]["payload"]
    uri = payload.get("uri") or payload.get("dataset_uri")
    if not uri:
        raise NotFound(f"model {model_doc['model']} v{model_doc['version']} has no dataset uri "
                       "in its lineage; pass --reference PATH")
    return str(uri)


@dataclass(frozen=True)
class DriftCheck:
    model: dict[str, Any]
    reference: Path
    batch: Path
    method: Literal["psi", "ks"] = "psi"
    threshold: float = 0.2
    alpha: float | None = None
    min_share: float = 0.05
    """The share of features that must move for the batch to have drifted."""
    retrain_uri: str | None = None
    retrain_version: str | None = None


def run_check(check: DriftCheck) -> tuple[DriftReport, DriftDetected | None]:
    report = compare(load_features(check.reference), load_features(check.batch),
                     method=check.method, threshold=check.threshold, alpha=check.alpha,
                     min_drifted_fraction=check.min_share)
    if not report.drifted:
        return report, None
    retrain = check.retrain_uri or check.batch.resolve().as_uri()
    version = check.batch.stem if check.retrain_version is None else check.retrain_version
    return report, drift_event(check.model, report, retrain, version)


def drift_event(model: dict[str, Any], report: DriftReport, retrain_uri: str,
                retrain_version: str) -> DriftDetected:
    """The trigger for retraining `model` (a version's document) on the data at
    `retrain_uri`, saying what drifted and by how much."""
    lineage = model["lineage"]
    return payload(
        DriftDetected, model=model["model"], model_version=model["version"],
        dataset=lineage.get("dataset") or "unknown", dataset_version=retrain_version,
        dataset_uri=retrain_uri, dataset_sha256=_sha256(path_of(retrain_uri)),
        method=report.method, threshold=report.threshold, score=report.max_score,
        drifted_features=report.drifted_features, top_scores=dict(report.top(10)),
        alpha=report.alpha, top_p_values={name: report.p_values[name]
                                          for name, _ in report.top(10)
                                          if name in report.p_values},
    )


def _sha256(path: Path) -> str | None:
    return file_digest(path)[0] if path.exists() else None


MONITOR_SOURCE = "baton.monitor.drift"


def drift_record(event: DriftDetected) -> tuple[Envelope[Payload], Outgoing]:
    """The monitor's trigger, checked as the fan-out will read it (EventParseError if not)."""
    return trigger_record(event, source=MONITOR_SOURCE)


async def publish_drift(bus: Bus, event: DriftDetected) -> Envelope[Payload]:
    return await publish_trigger(bus, event, source=MONITOR_SOURCE)
