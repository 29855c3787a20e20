"""Which versions of a model answer: the one its alias points at, and, when the registry
splits the traffic, a candidate taking a share of the requests (stable per request key, so
one caller sees one version) and a mirror getting a copy of each. Every version is loaded
from the artifact store (content-addressed, verified) and warmed up before it takes a
request, so a switch never answers 503 and never drops one (kserve #5983): what answered
before answers until its successor is ready.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.artifacts import ArtifactStore
from events.registry import ModelRegistered
from orchestrator.core.models import ModelRegistry, ModelState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    version: int
    model: Any
    registered: ModelRegistered
    loaded_at: float


@dataclass
class Tally:
    """What one version answered since the gateway started (a mirror: `agreed` rows of
    `rows` with what the caller got)."""

    requests: int = 0
    errors: int = 0
    rows: int = 0
    agreed: int = 0


@dataclass(frozen=True)
class Plan:
    """What should answer: the alias's holder, a candidate with its share, a mirror."""

    primary: int | None
    candidate: int | None = None
    percent: int = 0
    mirror: int | None = None

    def versions(self) -> set[int]:
        return {v for v in (self.primary, self.candidate, self.mirror) if v is not None}


@dataclass
class Versions:
    """The loaded versions of `model` that the registry's alias and traffic split name, kept
    current as the registry changes."""

    store: ArtifactStore
    model: str
    alias: str
    loaded: dict[int, Loaded] = field(default_factory=dict)
    plan: Plan = field(default_factory=lambda: Plan(None))
    """What answers now: only versions that are loaded and warm."""
    failed: str | None = None
    """Why a version the registry names could not be loaded (what answered keeps answering)."""
    say: Callable[[str], None] = log.warning
    """Where a switch, or a version that cannot be loaded, is told (one line each)."""
    tallies: dict[int, Tally] = field(default_factory=dict)
    _broken: set[int] = field(default_factory=set)

    @property
    def current(self) -> Loaded | None:
        """The alias's version, answering."""
        return self.loaded.get(self.plan.primary) if self.plan.primary else None

    def wanted(self, registry: ModelRegistry) -> Plan:
        state = registry.models.get(self.model)
        if state is None:
            return Plan(None)
        traffic = state.traffic
        primary = state.holder(self.alias)
        if traffic is None:
            return Plan(primary)
        return Plan(primary, traffic.candidate if traffic.percent else None, traffic.percent,
                    traffic.mirror)

    async def follow(self, registry: ModelRegistry) -> None:
        """After the registry changed: load what its plan names and this has not loaded yet,
        then answer by that plan (a version that cannot be loaded is left out of it, and not
        tried again: its artifact is content-addressed, so it stays what it is)."""
        state = registry.models.get(self.model)
        wanted = self.wanted(registry)
        if state is None or wanted == self.plan:
            return
        for version in sorted(wanted.versions() - self.loaded.keys() - self._broken):
            try:
                self.loaded[version] = await asyncio.to_thread(_load, self.store,
                                                               _registered(state, version))
            except Exception as exc:  # any failure to load or warm up: not this version
                self._broken.add(version)
                self.failed = f"v{version} could not be loaded: {type(exc).__name__}: {exc}"
                self.say(f"baton serve: {self.model} {self.failed} ({self._keeps()})")
        if self.wanted(registry) != wanted:
            return  # the registry moved on meanwhile: the next follow takes its plan
        ok = self.loaded.keys()
        ready = Plan(wanted.primary if wanted.primary in ok else self.plan.primary,
                     wanted.candidate if wanted.candidate in ok else None,
                     wanted.percent if wanted.candidate in ok else 0,
                     wanted.mirror if wanted.mirror in ok else None)
        if ready == wanted:
            self.failed = None
        for version in list(self.loaded):
            if version not in ready.versions():
                del self.loaded[version]
        if ready != self.plan:
            self.plan = ready
            self.say(f"baton serve: {self.model} {describe(ready)} answers now ({self.alias})")

    def pick(self, key: str | None) -> Loaded | None:
        """The version that answers this request: the candidate for its share (the same for
        every request with the same key), else the alias's holder."""
        plan = self.plan
        if plan.candidate is not None and plan.percent and _bucket(key) < plan.percent:
            return self.loaded.get(plan.candidate)
        return self.current

    def tally(self, version: int) -> Tally:
        return self.tallies.setdefault(version, Tally())

    def mirror(self) -> Loaded | None:
        return self.loaded.get(self.plan.mirror) if self.plan.mirror else None

    def _keeps(self) -> str:
        return f"{describe(self.plan)} keeps answering" if self.current else "nothing answers"


def describe(plan: Plan) -> str:
    out = f"v{plan.primary}" if plan.primary else "nothing"
    if plan.candidate is not None and plan.percent and plan.candidate != plan.primary:
        out += f" ({100 - plan.percent}%) and v{plan.candidate} ({plan.percent}%)"
    if plan.mirror is not None:
        out += f", mirrored to v{plan.mirror}"
    return out


def _bucket(key: str | None) -> int:
    """0-99: from the request key (stable), or at random without one."""
    if key is None:
        return random.randrange(100)  # a request without a key has no one to be stable for
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100


def _registered(state: ModelState, version: int) -> ModelRegistered:
    return state.versions[version].data


def _load(store: ArtifactStore, registered: ModelRegistered,
          clock: Callable[[], float] = time.time) -> Loaded:
    """Load and warm up (one prediction on a row of zeros of the width the model was fitted
    on), off the event loop."""
    model = store.get_object(registered.artifact)
    if not hasattr(model, "predict"):
        raise TypeError(f"{type(model).__name__} has no predict()")
    width = getattr(model, "n_features_in_", None)
    if isinstance(width, int):
        model.predict([[0.0] * width])
    return Loaded(registered.version, model, registered, clock())
