"""Which version answers: loaded from the artifact store and warmed up before it takes over;
one that cannot be loaded leaves the old one answering, and says so."""

from __future__ import annotations

from pathlib import Path

from agents.artifacts import ArtifactStore
from events.common import ArtifactRef
from events.envelope import envelope
from events.registry import AliasMoved, ModelRegistered, TrafficSet
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


def split(registry: ModelRegistry, candidate: int | None, percent: int,
          mirror: int | None = None) -> ModelRegistry:
    registry.apply(envelope(TrafficSet(model="m", candidate=candidate, percent=percent,
                                       mirror=mirror, reason="r"),
                            id=f"m/traffic/{candidate}-{percent}-{mirror}", time=9.0,
                            source="t", subject="m"))
    return registry


async def test_a_candidate_takes_its_share_the_same_for_each_key(tmp_path: Path) -> None:
    # given champion v1 and a 30% split to v2
    store = ArtifactStore(tmp_path)
    registry = registry_with(store.put_object(Doubler()), store.put_object(Doubler()))
    registry.apply(envelope(AliasMoved(model="m", alias="champion", version=1, previous=2,
                                       move="rollback", reason="r"),
                            id="m/champion/3", time=3.0, source="t", subject="m"))
    versions = Versions(store, "m", "champion", say=lambda _: None)
    await versions.follow(split(registry, 2, 30))
    # when requests come with many keys, and again with the same ones
    picked = {f"k{i}": versions.pick(f"k{i}") for i in range(2000)}
    again = {key: versions.pick(key) for key in picked}
    # then about 30% go to v2, and each key always to the same version
    share = sum(1 for p in picked.values() if p is not None and p.version == 2) / 2000
    assert 0.25 < share < 0.35
    assert {k: p.version for k, p in picked.items() if p} == {
        k: p.version for k, p in again.items() if p}
    # and with the split back to 0, everything goes to v1 and v2 is let go
    await versions.follow(split(registry, None, 0))
    assert {versions.pick(f"k{i}").version for i in range(50)} == {1}  # type: ignore[union-attr]
    assert set(versions.loaded) == {1}


async def test_a_mirror_is_loaded_beside_the_champion(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    registry = registry_with(store.put_object(Doubler()), store.put_object(Doubler()))
    versions = Versions(store, "m", "champion", say=lambda _: None)
    await versions.follow(split(registry, None, 0, mirror=1))
    assert versions.pick("any") is versions.current and versions.current is not None
    assert versions.current.version == 2
    mirror = versions.mirror()
    assert mirror is not None and mirror.version == 1
