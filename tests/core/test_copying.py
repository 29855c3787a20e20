"""copying.replace gives what dataclasses.replace gives, however the class keeps its fields."""

from __future__ import annotations

import dataclasses

import pytest

from events.common import Resources
from orchestrator.core.copying import replace
from orchestrator.core.state import Attempt, TaskState


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    a: int
    b: str = "b"


@dataclasses.dataclass(frozen=True, slots=True)
class Inherits(Slotted):
    c: float = 0.5


@dataclasses.dataclass(frozen=True)
class Plain:
    a: int
    b: str = "b"


@pytest.mark.parametrize("given", [Slotted(1), Inherits(1, "x", 2.5), Plain(1),
                                   TaskState(name="t", status="ready", ready_at=3.0)])
def test_replace_matches_dataclasses_replace(given: object) -> None:
    # given a record, when one field and then none is replaced, then the copies equal the
    # standard library's and the original is untouched
    field = dataclasses.fields(given)[0].name  # type: ignore[arg-type]
    changed = replace(given, **{field: 7})
    assert changed == dataclasses.replace(given, **{field: 7})  # type: ignore[type-var]
    assert replace(given) == given and replace(given) is not given
    assert type(changed) is type(given)


def test_a_replaced_frozen_record_stays_frozen() -> None:
    # given a frozen slotted record copied with a change, when it is written, then it refuses
    attempt = replace(Attempt(number=1, attempt_id="a", agent_id="x", placement=1,
                              resources=Resources()), status="running")
    assert attempt.status == "running"
    with pytest.raises(dataclasses.FrozenInstanceError):
        attempt.status = "failed"  # type: ignore[misc]
