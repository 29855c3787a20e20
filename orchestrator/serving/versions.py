"""Which version of a model answers: the one its alias points at, loaded from the artifact
store (content-addressed, verified) and warmed up before it takes a request, so a switch
never answers 503 and never drops a request (kserve #5983): the old version answers until
the new one is ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.artifacts import ArtifactStore
from events.registry import ModelRegistered
from orchestrator.core.models import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    version: int
    model: Any
    registered: ModelRegistered
    loaded_at: float


@dataclass
class Versions:
    """The loaded version of `model` that `alias` points at, kept current as the registry
    moves the alias."""

    store: ArtifactStore
    model: str
    alias: str
    current: Loaded | None = None
    failed: str | None = None
    """Why the version the alias points at now could not be loaded (the old one answers)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    say: Callable[[str], None] = log.warning
    """Where a switch, or a version that cannot be loaded, is told (one line each)."""
    _loading: int | None = None

    def wanted(self, registry: ModelRegistry) -> ModelRegistered | None:
        state = registry.models.get(self.model)
        held = state.holder(self.alias) if state is not None else None
        return None if held is None or state is None else state.versions[held].data

    async def follow(self, registry: ModelRegistry) -> None:
        """After the registry changed: load the version the alias points at, if it is not
        the one answering (or being loaded) already."""
        wanted = self.wanted(registry)
        if wanted is None or self._loading == wanted.version or (
                self.current is not None and self.current.version == wanted.version):
            return
        self._loading = wanted.version
        try:
            loaded = await asyncio.to_thread(_load, self.store, wanted)
        except Exception as exc:  # any failure to load or warm up keeps the old version
            self.failed = f"v{wanted.version} could not be loaded: {type(exc).__name__}: {exc}"
            keeps = f"v{self.current.version}" if self.current else "no version"
            self.say(f"baton serve: {self.model} {self.failed} ({keeps} keeps answering)")
            return
        finally:
            self._loading = None
        if self.wanted(registry) is not None and self.wanted(registry) != wanted:
            return  # the alias moved again meanwhile: the next follow loads that one
        self.current, self.failed = loaded, None
        self.changed.set()
        self.say(f"baton serve: {self.model} v{loaded.version} answers now ({self.alias})")


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
