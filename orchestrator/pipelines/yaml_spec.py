"""Pipelines in YAML: the same fields as the Python API, compiled to the same spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from events.common import Resources
from events.pipeline import PipelineSpec
from orchestrator.core.errors import SpecError
from orchestrator.pipelines.validation import check


def load_yaml(path: Path) -> PipelineSpec:
    """Parse, normalise (memory sizes, retries) and validate one pipeline file."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError([f"{path}: cannot read YAML: {exc}"]) from None
    if not isinstance(doc, dict) or "tasks" not in doc:
        raise SpecError([f"{path}: expected a mapping with 'name' and 'tasks'"])
    try:
        spec = PipelineSpec.model_validate(_normalise(doc))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SpecError([f"{path}: {where}: {err['msg']}"]) from None
    check(spec, source=str(path))
    return spec


def _normalise(doc: dict[str, Any]) -> dict[str, Any]:
    tasks = doc.get("tasks")
    if isinstance(tasks, dict):  # allow `tasks: {name: {...}}` as well as a list
        tasks = [{"name": k, **(v or {})} for k, v in tasks.items()]
    out = {**doc, "tasks": [_task(t) for t in tasks or []]}
    if isinstance(doc.get("triggers"), list):
        out["triggers"] = [_trigger(t) for t in doc["triggers"]]
    return out


def _trigger(trigger: Any) -> Any:
    """YAML 1.1 reads a bare `on:` key as the boolean True; give it its name back."""
    if isinstance(trigger, dict) and True in trigger and "on" not in trigger:
        return {"on": trigger[True], **{k: v for k, v in trigger.items() if k is not True}}
    return trigger


def _task(task: dict[str, Any]) -> dict[str, Any]:
    from agents.capabilities import parse_memory

    out = dict(task)
    res = dict(out.pop("resources", {}) or {})
    if "memory" in res:
        res["memory_mb"] = parse_memory(str(res.pop("memory")))
    if res:
        out["resources"] = Resources.model_validate(res)
    if "retries" in out:
        retries = out.pop("retries")
        backoff = out.pop("backoff_s", 1.0)
        out["retry"] = {"max_attempts": int(retries) + 1, "backoff_s": backoff}
    if "register" in out:
        out["registration"] = out.pop("register")
    return out
