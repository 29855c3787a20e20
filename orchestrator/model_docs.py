"""Models as documents, the same for the CLI's JSON and the HTTP API: a version (with the
gate that admitted it and the aliases that point at it), an alias move, a refusal, and two
versions side by side. Times are seconds since the epoch (`at`), as everywhere in the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events.registry import ModelRegistered
from orchestrator.core.models import AliasMove, ModelState, Refusal


def version_doc(state: ModelState, version: int) -> dict[str, Any]:
    registered = state.versions[version]
    data: ModelRegistered = registered.data
    doc = data.model_dump(mode="json")
    doc["gate"] = data.gate.model_dump(mode="json") if data.gate else None
    doc["registered_at"] = registered.at
    doc["status"] = registered.status
    doc["archived"] = ({"reason": registered.archived.reason, "actor": registered.archived.audit
                        .actor if registered.archived.audit else None}
                       if registered.archived is not None else None)
    doc["aliases"] = sorted(a for a in state.holders if state.holder(a) == version)
    return doc


def history_docs(state: ModelState, alias: str | None = None) -> list[dict[str, Any]]:
    """Every move of the model's aliases (one alias's with `alias`), and every request the
    registry refused, oldest first."""
    moves = [move_doc(m) for m in state.history(alias)]
    refused = [refusal_doc(r) for r in state.refusals if alias is None or r.data.alias == alias]
    return sorted(moves + refused, key=lambda e: float(e["at"]))


def move_doc(move: AliasMove) -> dict[str, Any]:
    data = move.data
    return {"at": move.at, "event_id": move.event_id, "alias": data.alias,
            "version": data.version, "previous": data.previous, "move": data.move,
            "reason": data.reason, "cites": data.cites, "run_id": data.run_id,
            "actor": data.audit.actor if data.audit else None,
            "request_id": data.audit.request_id if data.audit else None}


def refusal_doc(refusal: Refusal) -> dict[str, Any]:
    data = refusal.data
    return {"at": refusal.at, "event_id": refusal.event_id, "alias": data.alias,
            "move": "refused", "request": data.request, "reason": data.reason,
            "actor": data.audit.actor if data.audit else None,
            "request_id": data.audit.request_id if data.audit else None}


def diff_rows(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    rows: list[tuple[str, Any, Any]] = []
    for key in sorted(set(a["metrics"]) | set(b["metrics"])):
        rows.append((f"metrics.{key}", a["metrics"].get(key), b["metrics"].get(key)))
    for key in ("run_id", "pipeline", "pipeline_version", "dataset", "dataset_version",
                "dataset_sha256"):
        rows.append((f"lineage.{key}", a["lineage"].get(key), b["lineage"].get(key)))
    rows.append(("lineage.trigger", a["lineage"]["trigger"].get("type"),
                 b["lineage"]["trigger"].get("type")))
    rows.append(("artifact.sha256", a["artifact"]["sha256"], b["artifact"]["sha256"]))
    rows.append(("gate", (a["gate"] or {}).get("event_id"), (b["gate"] or {}).get("event_id")))
    rows.append(("aliases", ",".join(a["aliases"]), ",".join(b["aliases"])))
    return rows


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
