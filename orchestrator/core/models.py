"""The model registry as an aggregate per model, folded from baton.models: versions, aliases
with their whole history, and the registry's decisions (pure: the registry stage, the
coordinators' gate baselines, the CLI and the API all fold the same log with this).

Aliases move only by events that say who moved them and why. A promotion must cite the
version's passing gate and name the holder it expects (a compare-and-set: two operators, or
a run and an operator, never overwrite each other silently); a rollback undoes the alias's
latest promotion that is not undone yet, back to the holder before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from events.envelope import Envelope
from events.payloads import Payload
from events.registry import (
    AliasMoved,
    ArchiveVersion,
    ModelRegistered,
    ModelRequestRefused,
    PromoteModel,
    RegisterModel,
    RollbackAlias,
    SetTraffic,
    TrafficSet,
    VersionArchived,
)

CHAMPION = "champion"
"""The alias gates compare against ('no worse than current')."""


@dataclass(frozen=True)
class Registered:
    """A version as the registry holds it, with when it was registered."""

    data: ModelRegistered
    at: float
    """Seconds since the epoch, as the envelope's time."""
    archived: VersionArchived | None = None

    @property
    def status(self) -> str:
        return "archived" if self.archived is not None else "registered"


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias, as the log has it: what, when, and the event that says so."""

    data: AliasMoved
    at: float
    """Seconds since the epoch, as the envelope's time."""
    event_id: str


@dataclass(frozen=True)
class Refusal:
    data: ModelRequestRefused
    at: float
    event_id: str


@dataclass
class ModelState:
    versions: dict[int, Registered] = field(default_factory=dict)
    holders: dict[str, list[int]] = field(default_factory=dict)
    """Per alias, the holders its promotions stacked up (a rollback pops one): the last is
    the holder now."""
    moves: list[AliasMove] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    """Requests the registry refused, kept for the audit trail."""
    traffic: TrafficSet | None = None
    """The serving split now (None: everything to the alias's holder)."""

    def holder(self, alias: str, at: float | None = None) -> int | None:
        """Which version the alias points at now, or at `at` (None: at nothing)."""
        if at is None:
            stack = self.holders.get(alias)
            return stack[-1] if stack else None
        found = None
        for move in self.moves:
            if move.at > at:
                break
            if move.data.alias == alias:
                found = move.data.version
        return found

    def history(self, alias: str | None = None) -> list[AliasMove]:
        return [m for m in self.moves if alias is None or m.data.alias == alias]

    def latest(self) -> int:
        return max(self.versions, default=0)


Outcome = AliasMoved | VersionArchived | TrafficSet | ModelRequestRefused


@dataclass
class ModelRegistry:
    models: dict[str, ModelState] = field(default_factory=dict)
    registrations: dict[tuple[str, str], ModelRegistered] = field(default_factory=dict)
    """(run, task) -> the version it got: a repeated request gets the same answer."""
    answers: dict[str, Outcome] = field(default_factory=dict)
    """Request event id -> the registry's answer: a repeated request is answered the same."""

    def model(self, name: str) -> ModelState:
        return self.models.get(name) or ModelState()

    def apply(self, env: Envelope[Payload]) -> None:
        """Folds one baton.models event."""
        data = env.data
        if isinstance(data, ModelRegistered):
            state = self.models.setdefault(data.model, ModelState())
            state.versions[data.version] = Registered(data, env.time.timestamp())
            self.registrations[(data.run_id, data.task)] = data
        elif isinstance(data, AliasMoved):
            state = self.models.setdefault(data.model, ModelState())
            stack = state.holders.setdefault(data.alias, [])
            if data.move == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(data.version)
            state.moves.append(AliasMove(data, env.time.timestamp(), env.id))
            if env.causation_id is not None:
                self.answers[env.causation_id] = data
        elif isinstance(data, VersionArchived):
            state = self.models.setdefault(data.model, ModelState())
            held = state.versions.get(data.version)
            if held is not None:
                state.versions[data.version] = replace(held, archived=data)
            if env.causation_id is not None:
                self.answers[env.causation_id] = data
        elif isinstance(data, TrafficSet):
            self.models.setdefault(data.model, ModelState()).traffic = data
            if env.causation_id is not None:
                self.answers[env.causation_id] = data
        elif isinstance(data, ModelRequestRefused):
            known = self.models.get(data.model)
            if known is not None:  # a refusal about an unknown name makes no model
                known.refusals.append(Refusal(data, env.time.timestamp(), env.id))
            if env.causation_id is not None:
                self.answers[env.causation_id] = data

    def baseline(self, model: str) -> ModelRegistered | None:
        """What a gate compares a new version against: the champion alias's holder; for a
        model that never had one, its newest version (as before aliases existed)."""
        state = self.models.get(model)
        if state is None:
            return None
        if CHAMPION in state.holders:
            held = state.holder(CHAMPION)
            return None if held is None else state.versions[held].data
        latest = state.latest()
        return state.versions[latest].data if latest else None


def register(registry: ModelRegistry, request: RegisterModel) -> ModelRegistered:
    """A repeated request gets the same version back; a new one gets latest + 1."""
    done = registry.registrations.get((request.run_id, request.task))
    if done is not None:
        return done
    return ModelRegistered(
        run_id=request.run_id, task=request.task, model=request.model,
        version=registry.model(request.model).latest() + 1, artifact=request.artifact,
        metrics=request.metrics, lineage=request.lineage, gate=request.gate,
        approval=request.approval, eval_set=request.eval_set,
        eval_outcomes=request.eval_outcomes,
    )


def promote_registered(registry: ModelRegistry, request: RegisterModel,
                       registered: ModelRegistered) -> Outcome | None:
    """The alias a registration asks for, if any: the new version takes it when its gate
    passed, and when the champion it was gated against still holds (else the gate compared
    against a stale copy, and the move is refused). Decided before the registration is
    folded: the baseline is the one before this version."""
    alias = request.promote_to
    if alias is None:
        return None
    gate = registered.gate
    state = registry.model(registered.model)
    refused = _refused(registered.model, alias, "register_model", None)
    cites = admitted_by(registered)
    if cites is None:
        return refused(f"v{registered.version} has no passing gate, nor a person's approval, "
                       "to cite: add a gate (or an approval step) before the registration")
    current = state.holder(alias)
    if gate is not None and gate.passed and alias == CHAMPION:
        base = registry.baseline(registered.model)
        now, seen = (base.version if base else None), gate.baseline_version
        if now != seen:
            return refused(f"the gate compared v{registered.version} against {_v(seen)}, "
                           f"but the champion is {_v(now)} now: run the pipeline again to "
                           "gate against it")
    why = "its gate passed" if cites == (gate.event_id if gate else None) else (
        "a person approved it")
    return AliasMoved(model=registered.model, alias=alias, version=registered.version,
                      previous=current, move="promote", cites=cites,
                      reason=f"registered by run {registered.run_id} after {why}",
                      run_id=registered.run_id)


def admitted_by(version: ModelRegistered) -> str | None:
    """What a promotion of the version may cite: its passing gate, else a person's approval
    of its run (an override: a timeout policy's approval overrides nothing)."""
    if version.gate is not None and version.gate.passed:
        return version.gate.event_id
    approval = version.approval
    if approval is not None and approval.approved and approval.by is not None:
        return approval.event_id
    return None


def promote(registry: ModelRegistry, request: PromoteModel) -> Outcome:
    refused = _refused(request.model, request.alias, "promote_model", request)
    state = registry.models.get(request.model)
    if state is None:
        return refused(f"no model {request.model!r} is registered: `baton models list` shows "
                       "the models there are")
    version = state.versions.get(request.version)
    if version is None:
        return refused(f"{request.model} has no v{request.version} (its versions: "
                       f"{_versions(state)})")
    if version.archived is not None:
        return refused(f"{request.model} v{request.version} is archived "
                       f"({version.archived.reason}): it cannot be promoted")
    admitted = admitted_by(version.data)
    if admitted is None:
        return refused(f"{request.model} v{request.version} was admitted by neither a passing "
                       "gate nor a person's approval in its run, so it cannot be promoted "
                       "(give its pipeline an approval step to override a gate)")
    if request.cites != admitted:
        return refused(f"{request.cites!r} is not the gate decision or approval that "
                       f"admitted {request.model} v{request.version} (that is {admitted})")
    current = state.holder(request.alias)
    if current != request.expected:
        return refused(_moved_since(request.alias, request.expected, current))
    if current == request.version:
        return refused(f"{request.alias} already points at v{request.version}")
    return AliasMoved(model=request.model, alias=request.alias, version=request.version,
                      previous=current, move="promote", cites=request.cites,
                      reason=request.reason, audit=request.audit, run_id=request.run_id)


def rollback(registry: ModelRegistry, request: RollbackAlias) -> Outcome:
    refused = _refused(request.model, request.alias, "rollback_alias", request)
    state = registry.models.get(request.model)
    stack = state.holders.get(request.alias) if state is not None else None
    if state is None or not stack:
        return refused(f"{request.model} has no alias {request.alias!r} to roll back")
    current = stack[-1]
    if current != request.expected:
        return refused(_moved_since(request.alias, request.expected, current))
    if len(stack) < 2:
        return refused(f"v{current} is the first version {request.alias} pointed at: there "
                       "is no earlier holder to roll back to")
    return AliasMoved(model=request.model, alias=request.alias, version=stack[-2],
                      previous=current, move="rollback", reason=request.reason,
                      audit=request.audit)


def archive(registry: ModelRegistry, request: ArchiveVersion) -> Outcome:
    refused = _refused(request.model, "", "archive_version", request)
    state = registry.models.get(request.model)
    version = state.versions.get(request.version) if state is not None else None
    if state is None or version is None:
        return refused(f"{request.model} has no v{request.version}")
    if version.archived is not None:
        return refused(f"{request.model} v{request.version} is archived already")
    holding = sorted(a for a in state.holders if state.holder(a) == request.version)
    if holding:
        return refused(f"{', '.join(holding)} points at v{request.version}: move it first "
                       "(promote another version, or roll it back)")
    return VersionArchived(model=request.model, version=request.version,
                           reason=request.reason, audit=request.audit)


def set_traffic(registry: ModelRegistry, request: SetTraffic) -> Outcome:
    refused = _refused(request.model, "", "set_traffic", request)
    state = registry.models.get(request.model)
    if state is None:
        return refused(f"no model {request.model!r} is registered")
    for role, version in (("candidate", request.candidate), ("mirror", request.mirror)):
        if version is None:
            continue
        held = state.versions.get(version)
        if held is None:
            return refused(f"the {role} v{version} does not exist (versions: "
                           f"{_versions(state)})")
        if held.archived is not None:
            return refused(f"the {role} v{version} is archived")
    if request.candidate is None and request.percent:
        return refused(f"{request.percent}% of the traffic to no candidate: name one "
                       "(or send percent 0)")
    split = state.traffic
    holder = split.run_id if split is not None and split.candidate and split.percent else None
    if request.held_by is not None and holder != request.held_by:
        return refused(f"the split is not run {request.held_by}'s any more "
                       f"({_split(split)}): left as it is")
    if request.run_id is not None and holder not in (None, request.run_id):
        return refused(f"run {holder}'s canary holds {request.model}'s split "
                       f"({_split(split)}): one canary at a time; run this one after it ends")
    return TrafficSet(model=request.model, candidate=request.candidate,
                      percent=request.percent if request.candidate else 0,
                      mirror=request.mirror, reason=request.reason, audit=request.audit,
                      run_id=request.run_id)


def _refused(model: str, alias: str, kind: str,
             request: PromoteModel | RollbackAlias | ArchiveVersion | SetTraffic | None
             ) -> Callable[[str], ModelRequestRefused]:
    def refused(reason: str) -> ModelRequestRefused:
        return ModelRequestRefused(model=model, alias=alias, request=kind, reason=reason,
                                   audit=request.audit if request is not None else None,
                                   run_id=getattr(request, "run_id", None))
    return refused


def _split(traffic: TrafficSet | None) -> str:
    if traffic is None or not traffic.candidate or not traffic.percent:
        return "everything to the alias"
    return f"{traffic.percent}% to v{traffic.candidate}"


def _moved_since(alias: str, expected: int | None, current: int | None) -> str:
    return (f"{alias} points at {_v(current)}, not {_v(expected)} as the request expected: "
            "it moved since you looked; look again (`baton models show`) and retry")


def _v(version: int | None) -> str:
    return "nothing" if version is None else f"v{version}"


def _versions(state: ModelState) -> str:
    return ", ".join(f"v{v}" for v in sorted(state.versions)) or "none"
