"""A model version's whole chain, from what triggered its run to where its aliases moved:
trigger event (with the drift check's figures, or the data system's event), dataset version
and hash, pipeline version, the run's task attempts (agent, GPUs), artifacts, evaluation set
and metrics, the gate decision, the approval, and every alias move of the version. Assembled
from the registry's log and the run's projected row (for the attempts), nothing else."""

from __future__ import annotations

from typing import Any

from orchestrator.core.models import ModelState
from orchestrator.model_docs import move_doc


def chain(name: str, state: ModelState, version: int, run: dict[str, Any] | None
          ) -> dict[str, Any]:
    registered = state.versions[version]
    data, lineage = registered.data, registered.data.lineage
    moves = [move_doc(m) for m in state.history()
             if m.data.version == version or m.data.previous == version]
    return {
        "model": name, "version": version, "status": registered.status,
        "registered_at": registered.at,
        "trigger": {"type": lineage.trigger.type, "event_id": lineage.trigger.event_id,
                    "subject": lineage.trigger.subject, "payload": lineage.trigger.payload},
        "dataset": {"name": lineage.dataset, "version": lineage.dataset_version,
                    "sha256": lineage.dataset_sha256},
        "pipeline": {"name": lineage.pipeline, "version": lineage.pipeline_version},
        "run_id": lineage.run_id,
        "attempts": _attempts(lineage.attempts, run),
        "artifacts": {task: ref.model_dump(mode="json")
                      for task, ref in sorted(lineage.artifacts.items())},
        "model_artifact": data.artifact.model_dump(mode="json"),
        "evaluation": {"eval_set": data.eval_set, "metrics": dict(data.metrics)},
        "gate": data.gate.model_dump(mode="json") if data.gate else None,
        "approval": data.approval.model_dump(mode="json") if data.approval else None,
        "alias_moves": moves,
        "complete": bool(lineage.dataset_version and lineage.pipeline_version),
    }


def _attempts(succeeded: dict[str, str], run: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each task's attempt that succeeded (the lineage names it), with its agent and GPUs
    from the run's row when the projection has it."""
    history = {a["attempt_id"]: a for task in (run or {}).get("tasks", [])
               for a in task.get("attempt_history", [])}
    out = []
    for task, attempt_id in sorted(succeeded.items()):
        seen = history.get(attempt_id, {})
        out.append({"task": task, "attempt_id": attempt_id, "agent": seen.get("agent_id"),
                    "gpus": seen.get("gpus", []), "queued_s": seen.get("queued_s"),
                    "started_at": seen.get("started_at"), "ended_at": seen.get("ended_at")})
    return out
