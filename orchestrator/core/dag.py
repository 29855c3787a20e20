"""Validation and ordering of a pipeline's DAG; every message says where the problem is.

Nothing here recurses or scans the task list once per task: a spec is input anyone who can
write baton.intents may send, so a 5,000-task chain must cost milliseconds, not a
RecursionError inside decide (which once crash-looped the coordinator that owned it).
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable
from typing import Any, TypeVar

from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.core.errors import SpecError

T = TypeVar("T")
_REMEMBERED = 96
"""About a dozen specs: each keeps up to eight facts (order, positions, kinds of request, ...)."""
_FACTS: dict[tuple[str, int], tuple[PipelineSpec, Any]] = {}
"""(what, id of a spec) -> (the spec, what was computed from it), latest last.

One run request computed its spec's order three times (validation, decide's scratch run,
evolve's live run) and its index maps twice, and every run of a trigger's pipeline
carries the same spec object: a tenth of the request's decision (measured). A spec is
frozen, so what comes from it never changes; keeping the spec itself in the entry keeps
its id from being reused while the entry lives. Callers never write what they get."""


def _remembered(what: str, spec: PipelineSpec, compute: Callable[[PipelineSpec], T]) -> T:
    key = (what, id(spec))
    hit = _FACTS.get(key)
    if hit is not None and hit[0] is spec:
        result: T = hit[1]
        return result
    value = compute(spec)
    if len(_FACTS) >= _REMEMBERED:
        del _FACTS[next(iter(_FACTS))]
    _FACTS[key] = (spec, value)
    return value


def facts(what: str, spec: PipelineSpec, compute: Callable[[PipelineSpec], T]) -> T:
    """What `compute` gives for the spec, computed once per spec object (see _FACTS) under
    the name `what`; for facts other modules derive from a spec."""
    return _remembered(what, spec, compute)


def validate(spec: PipelineSpec) -> None:
    """Raise SpecError listing every structural problem (not only the first)."""
    found = _remembered("problems", spec, lambda s: tuple(problems(s)))
    if found:
        raise SpecError([f"pipeline {spec.name!r}: {p}" for p in found])


def problems(spec: PipelineSpec) -> list[str]:
    found = _duplicates(spec) + _unknown_deps(spec) + _kind_problems(spec)
    return found or _cycles(spec)


def _duplicates(spec: PipelineSpec) -> list[str]:
    seen: set[str] = set()
    dupes: list[str] = []
    for t in spec.tasks:
        if t.name in seen:
            dupes.append(t.name)
        seen.add(t.name)
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
        if t.kind == "approval" and t.approval is None:
            problems.append(f"approval {t.name!r} needs its approval settings (timeout_s and "
                            "on_timeout: fail, approve or reject)")
        elif t.kind == "approval" and t.approval is not None and (
                t.approval.timeout_s >= spec.deadline_s):
            problems.append(
                f"approval {t.name!r} waits up to {t.approval.timeout_s:g}s, but the run's "
                f"deadline_s of {spec.deadline_s:g}s ends it first: give the run a longer "
                "deadline_s, or the step a shorter timeout_s")
        if t.kind != "approval" and t.approval is not None:
            problems.append(f"task {t.name!r} has approval settings but is not kind approval")
        problems.extend(_canary_problems(spec, t))
    return problems


def _canary_problems(spec: PipelineSpec, t: TaskSpec) -> list[str]:
    if t.kind != "canary":
        return ([f"task {t.name!r} has canary settings but is not kind canary"]
                if t.canary is not None else [])
    canary = t.canary
    if canary is None:
        return [f"canary {t.name!r} needs its canary settings (model, version_from, steps, "
                "timeout_s)"]
    names = {task.name: task for task in spec.tasks}
    source = names.get(canary.version_from)
    if source is None or source.kind != "register" or source.registration is None:
        return [f"canary {t.name!r}: version_from must name a register step, not "
                f"{canary.version_from!r}"]
    problems = []
    if canary.version_from not in ancestors(spec, t.name):
        problems.append(f"canary {t.name!r} must come after {canary.version_from!r}, whose "
                        "version it canaries")
    if source.registration.model != canary.model:
        problems.append(f"canary {t.name!r} is about model {canary.model!r}, but "
                        f"{canary.version_from!r} registers {source.registration.model!r}")
    if canary.timeout_s >= spec.deadline_s:
        problems.append(f"canary {t.name!r} may take up to {canary.timeout_s:g}s, but the "
                        f"run's deadline_s of {spec.deadline_s:g}s ends it first: give the run "
                        "a longer deadline_s, or the canary a shorter timeout_s")
    return problems


def _cycles(spec: PipelineSpec) -> list[str]:
    try:
        _static_order(spec)
    except graphlib.CycleError as exc:
        cycle = reversed(exc.args[1])  # graphlib lists dependencies first; we say "needs"
        return [f"tasks form a cycle: {' -> '.join(cycle)}"]
    return []


def _static_order(spec: PipelineSpec) -> list[str]:
    """Some order with every dependency first (graphlib: linear, iterative), once per spec
    object: a new run's request validates its spec, then orders it (each a tenth of that
    decision on a 1,000-task spec)."""
    return _remembered("static order", spec, lambda s: list(
        graphlib.TopologicalSorter({t.name: t.deps for t in s.tasks}).static_order()))


def topological(spec: PipelineSpec) -> tuple[TaskSpec, ...]:
    """`order` of the spec, computed once per spec object (`_FACTS`)."""
    return _remembered("order", spec, order)


def order(spec: PipelineSpec) -> tuple[TaskSpec, ...]:
    """Tasks in an order where every dependency comes first, stable by declaration.

    The order is part of every folded run (RunState.order), so it must never change for a
    given spec. It is the one of repeated passes over the declaration: each pass takes, in
    declaration order, every task whose dependencies are taken (earlier in the same pass
    included). A task's pass is therefore the latest of its dependencies' passes, one later
    for a dependency declared after it; sorting by (pass, declaration) gives the same order
    in O(n log n) instead of a pass per task.
    """
    index = {t.name: i for i, t in enumerate(spec.tasks)}
    by_name = {t.name: t for t in spec.tasks}
    passes: dict[str, int] = {}
    for name in _static_order(spec):
        passes[name] = max((passes[d] + (index[d] > index[name]) for d in by_name[name].deps),
                           default=0)
    return tuple(sorted(spec.tasks, key=lambda t: (passes[t.name], index[t.name])))


def positions(spec: PipelineSpec) -> dict[str, int]:
    """Task -> its position in the declaration (once per spec object; never written)."""
    return _remembered("positions", spec, lambda s: {t.name: i for i, t in enumerate(s.tasks)})


def places(spec: PipelineSpec) -> dict[str, int]:
    """Task -> its position in `topological` (once per spec object; never written)."""
    return _remembered("places", spec,
                       lambda s: {t.name: i for i, t in enumerate(topological(s))})


def dependents(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    """Task -> the tasks that depend on it (once per spec object; never written)."""
    return _remembered("dependents", spec, _dependents)


def _dependents(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
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
