"""A McNemar gate through a real app: each version is evaluated on the same rows, registered
with its per-row outcomes, and a new one is promoted only if it is not worse beyond chance."""

from __future__ import annotations

from pathlib import Path

from bus import Bus
from events import runs as ev
from events.pipeline import GateSpec, PipelineSpec, RegisterSpec, TaskSpec
from orchestrator.service.home import Home
from orchestrator.service.model_requests import registry_of
from tests.integration.support import Apps, intent_record, run_request, run_to_end
from tests.metrics.tasks import ref

MCNEMAR = PipelineSpec(name="tested", tasks=(
    TaskSpec(name="evaluate", function=ref("evaluated")),
    TaskSpec(name="gate", kind="gate", deps=("evaluate",), gate=GateSpec(
        metrics_from="evaluate", no_worse_than_current=("accuracy",), model="tested",
        test="mcnemar")),
    TaskSpec(name="register", kind="register", deps=("gate",), registration=RegisterSpec(
        model="tested", artifact_from="evaluate", promote_to="champion")),
))


async def version(bus: Bus, key: str, right: int) -> list[ev.GateEvaluated]:
    """A run whose evaluation is right on the first `right` of the 100 rows; its gate."""
    request = run_request(MCNEMAR, key).model_copy(update={"params": {"right": right}})
    await bus.publish([intent_record(bus, request, run_id=request.run_id,
                                     env_id=f"{request.run_id}/requested")])
    events = await run_to_end(bus, request.run_id)
    return [e.data for e in events if isinstance(e.data, ev.GateEvaluated)]


async def test_a_version_worse_beyond_chance_on_the_same_rows_is_not_promoted(
    tmp_path: Path, bus_url: str,
) -> None:
    apps = Apps(Home(tmp_path / "home"), bus_url)
    try:
        _, bus = await apps.start(MCNEMAR)
        # given v1, right on 90 of the 100 rows, the champion
        await version(bus, "v1", 90)
        # when a version right on 70 of them is gated, then one right on 87
        (worse,) = await version(bus, "worse", 70)
        (close,) = await version(bus, "close", 87)
        registry = await registry_of(bus)
    finally:
        await apps.close_all()
    # then the first fails McNemar's test (p and counts recorded), the second passes it
    (test,) = [c for c in worse.checks if c.op == "mcnemar"]
    assert not worse.passed and test.value is not None and test.value < 0.05
    assert test.expected == ("wrong where the champion was right: 20, right where it was "
                             "wrong: 0")
    assert close.passed and worse.baseline_version == close.baseline_version == 1
    # and only the second became the champion
    state = registry.models["tested"]
    assert sorted(state.versions) == [1, 2] and state.holder("champion") == 2
    assert state.versions[2].data.eval_set == "fixed-100"
