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
