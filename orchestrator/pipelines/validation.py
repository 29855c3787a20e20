"""Checks that need the outside world (imports) on top of the pure DAG validation."""

from __future__ import annotations

import importlib
import inspect

from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.core import dag
from orchestrator.core.errors import SpecError


def check(spec: PipelineSpec, *, source: str | None = None) -> None:
    """Raise SpecError naming `source` and every problem: structure, imports, resources."""
    problems = [f"pipeline {spec.name!r}: {p}" for p in dag.problems(spec)]
    for task in spec.tasks:
        problems.extend(_resource_problems(spec.name, task))
        if task.kind == "function" and task.function:
            problems.extend(_import_problems(spec, task))
    if problems:
        raise SpecError([f"{source}: {p}" if source else p for p in problems])


def _resource_problems(pipeline: str, task: TaskSpec) -> list[str]:
    r = task.resources
    where = f"pipeline {pipeline!r}, task {task.name!r}"
    out: list[str] = []
    if (r.gpu_memory_mb or r.gpu_model) and r.gpus == 0:
        out.append(f"{where}: gpu_memory/gpu_model are set but gpus is 0 (request gpus>=1)")
    if task.kind == "function" and r.cpus == 0 and r.gpus == 0:
        out.append(f"{where}: requests no cpus and no gpus; request cpus>0 (fractions allowed)")
    return out


def _import_problems(spec: PipelineSpec, task: TaskSpec) -> list[str]:
    where = f"pipeline {spec.name!r}, task {task.name!r}"
    module_name, _, attr = (task.function or "").partition(":")
    if not attr:
        return [f"{where}: function {task.function!r} must look like 'package.module:function'"]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure makes the task unrunnable
        return [f"{where}: cannot import module {module_name!r}: {exc}"]
    fn: object = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            return [f"{where}: module {module_name!r} has no attribute {attr!r}"]
    if not callable(fn):
        return [f"{where}: {task.function!r} is not callable"]
    return _signature_problems(where, task, fn)


def _signature_problems(where: str, task: TaskSpec, fn: object) -> list[str]:
    params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
                and n != "ctx"]
    missing = [n for n in required if n not in task.deps]
    if missing:
        return [f"{where}: parameter(s) {', '.join(missing)} name no upstream task "
                f"(add them to the task's deps, or give them defaults)"]
    return []
