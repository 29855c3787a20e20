"""Validation and ordering of a pipeline's DAG; every message says where the problem is."""

from __future__ import annotations

from collections.abc import Mapping

from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.core.errors import SpecError


def validate(spec: PipelineSpec) -> None:
    """Raise SpecError listing every structural problem (not only the first)."""
    found = problems(spec)
    if found:
        raise SpecError([f"pipeline {spec.name!r}: {p}" for p in found])


def problems(spec: PipelineSpec) -> list[str]:
    found = _duplicates(spec) + _unknown_deps(spec) + _kind_problems(spec)
    return found or _cycles(spec)


def _duplicates(spec: PipelineSpec) -> list[str]:
    seen: set[str] = set()
    dupes = [t.name for t in spec.tasks if t.name in seen or seen.add(t.name)]  # type: ignore[func-returns-value]
    return [f"task {name!r} is declared twice" for name in dupes]


def _unknown_deps(spec: PipelineSpec) -> list[str]:
    names = {t.name for t in spec.tasks}
    return [
        f"task {t.name!r} depends on unknown task {d!r} (known: {', '.join(sorted(names))})"
        for t in spec.tasks for d in t.deps if d not in names
    ]


def _kind_problems(spec: PipelineSpec) -> list[str]:
    problems: list[str] = []
    for t in spec.tasks:
        if t.kind == "function" and not t.function:
            problems.append(f"task {t.name!r} has no function (use 'module:function')")
        if t.kind == "gate" and (t.gate is None or t.gate.metrics_from not in t.deps):
            problems.append(f"gate {t.name!r} must depend on the task it reads metrics from")
        if t.kind == "register" and (
            t.registration is None or t.registration.artifact_from not in ancestors(spec, t.name)
        ):
            problems.append(
                f"register {t.name!r} must come after the task whose artifact it registers")
    return problems


def _cycles(spec: PipelineSpec) -> list[str]:
    deps = {t.name: t.deps for t in spec.tasks}
    state: dict[str, int] = {}
    for start in deps:
        cycle = _visit(start, deps, state, [])
        if cycle:
            return [f"tasks form a cycle: {' -> '.join(cycle)}"]
    return []


def _visit(node: str, deps: Mapping[str, tuple[str, ...]], state: dict[str, int],
           path: list[str]) -> list[str] | None:
    if state.get(node) == 2:
        return None
    if state.get(node) == 1:
        return [*path[path.index(node):], node]
    state[node] = 1
    for dep in deps[node]:
        found = _visit(dep, deps, state, [*path, node])
        if found:
            return found
    state[node] = 2
    return None


def topological(spec: PipelineSpec) -> list[TaskSpec]:
    """Tasks in an order where every dependency comes first (stable by declaration)."""
    done: set[str] = set()
    order: list[TaskSpec] = []
    while len(order) < len(spec.tasks):
        for t in spec.tasks:
            if t.name not in done and all(d in done for d in t.deps):
                order.append(t)
                done.add(t.name)
    return order


def dependents(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {t.name: [] for t in spec.tasks}
    for t in spec.tasks:
        for d in t.deps:
            out[d].append(t.name)
    return {k: tuple(v) for k, v in out.items()}


def ancestors(spec: PipelineSpec, name: str) -> set[str]:
    deps = {t.name: t.deps for t in spec.tasks}
    found: set[str] = set()
    stack = list(deps.get(name, ()))
    while stack:
        d = stack.pop()
        if d not in found:
            found.add(d)
            stack.extend(deps.get(d, ()))
    return found
