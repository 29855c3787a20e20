"""A pipeline's version (its content hash) is computed once, and caching it changes nothing
else about the spec: equality, dumps, and what a decoded copy says."""

from __future__ import annotations

import json

from events.pipeline import PipelineSpec, TaskSpec


def spec(name: str = "p", width: int = 3) -> PipelineSpec:
    return PipelineSpec(name=name, tasks=tuple(
        TaskSpec(name=f"t{i}", function="m:f") for i in range(width)))


def test_the_version_is_hashed_once_and_the_spec_is_otherwise_unchanged() -> None:
    # given a spec whose version was asked for, and an equal one never asked
    asked, fresh = spec(), spec()
    version = asked.version()
    # when it is asked again, dumped, compared and decoded
    again = asked.version()
    decoded = PipelineSpec.model_validate_json(asked.model_dump_json())
    # then the hash is the same object (not recomputed), the specs are still equal, the
    # dump carries no trace of it, and a decoded copy has the same version
    assert again is version
    assert asked == fresh
    assert asked.model_dump() == fresh.model_dump()
    assert "content_hash" not in json.loads(asked.model_dump_json())
    assert decoded.version() == version == fresh.version()
    assert spec(width=4).version() != version


def test_tasks_looked_up_by_name_leave_the_spec_as_it_was() -> None:
    # given a spec whose tasks were looked up by name, and an equal one never looked up
    looked, fresh = spec(), spec()
    found = [looked.task(f"t{i}") for i in range(3)]
    # when both are compared, dumped and decoded
    decoded = PipelineSpec.model_validate_json(looked.model_dump_json())
    # then the lookup found each task, and left no trace in equality, dumps or versions
    assert found == list(fresh.tasks)
    assert looked == fresh
    assert looked.model_dump_json() == fresh.model_dump_json()
    assert decoded.task("t2") == fresh.task("t2")
    assert looked.version() == fresh.version()
