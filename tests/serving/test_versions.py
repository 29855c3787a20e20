"""Which version answers: loaded from the artifact store and warmed up before it takes over;
one that cannot be loaded leaves the old one answering, and says so."""

from __future__ import annotations

from pathlib import Path

from agents.artifacts import ArtifactStore
from events.common import ArtifactRef
from events.envelope import envelope
from events.registry import AliasMoved, ModelRegistered
from orchestrator.core.models import ModelRegistry
from orchestrator.serving.versions import Versions
from tests.events.samples import LINEAGE


class Doubler:
    """A model: fitted on 2 features, predicts twice the first."""

    n_features_in_ = 2

    def predict(self, rows: list[list[float]]) -> list[float]:
        return [2 * row[0] for row in rows]


def registry_with(*artifacts: ArtifactRef) -> ModelRegistry:
    """v1.. of "m" with these artifacts, the champion alias moved to each in turn."""
    registry = ModelRegistry()
    for n, artifact in enumerate(artifacts, start=1):
        registry.apply(envelope(ModelRegistered(
            run_id=f"run-{n}", task="register", model="m", version=n, artifact=artifact,
            lineage=LINEAGE), id=f"m/v{n}", time=float(n), source="t", subject="m"))
        registry.apply(envelope(AliasMoved(
            model="m", alias="champion", version=n, previous=n - 1 or None, move="promote",
            reason="r"), id=f"m/champion/{n}", time=float(n), source="t", subject="m"))
    return registry


async def test_the_aliass_version_is_loaded_warmed_and_then_answers(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    said: list[str] = []
    versions = Versions(store, "m", "champion", say=said.append)
    # when the registry says champion -> v1
    await versions.follow(registry_with(store.put_object(Doubler())))
    # then v1 answers
    assert versions.current is not None and versions.current.version == 1
    assert versions.current.model.predict([[3.0, 0.0]]) == [6.0]
    assert said == ["baton serve: m v1 answers now (champion)"]


async def test_a_version_that_cannot_load_leaves_the_old_one_answering(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    good = store.put_object(Doubler())
    broken = store.put_bytes(b"not a pickle at all", "application/x-python-pickle")
    said: list[str] = []
    versions = Versions(store, "m", "champion", say=said.append)
    await versions.follow(registry_with(good))
    # when the alias moves to a version whose artifact is not a model
    await versions.follow(registry_with(good, broken))
    # then v1 still answers, and why v2 does not is said once and kept
    assert versions.current is not None and versions.current.version == 1
    assert versions.failed is not None and versions.failed.startswith("v2 could not be loaded")
    assert said[-1].endswith("(v1 keeps answering)")
