"""A pipeline version is written to the log once, and runs name it (issue #16, point 5).

The coordinator writes each run's `run_created` without its spec, and the spec once to
baton.pipelines in the transaction of the first run of its version; whoever folds the log
fills it back in. Runs on both buses, each reader starting with nothing cached (a process of
its own would: `KNOWN` is emptied for each test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import cast

import pytest

from bus import Bus, Outgoing, Record
from events import topics
from events.codec import RECENT, decode, encode
from events.envelope import envelope
from events.pipeline import PipelineSpec, TaskSpec
from events.runs import PipelineDeclared, RunCreated
from orchestrator.core.errors import LogCorrupt
from orchestrator.service import pipeline_versions
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.group_loop import GroupLoop
from orchestrator.service.pipeline_versions import INLINE_VARIABLE, PipelineVersions
from orchestrator.store.projections import fold_runs
from tests.integration.support import all_tps, intent_record, read_all, run_request, tp_for
from tests.integration.tasks import ref

PIPE = PipelineSpec(name="versioned", description="a spec big enough to be worth naming once",
                    tasks=tuple(TaskSpec(name=f"t{i}", function=ref("seed"),
                                         deps=(f"t{i - 1}",) if i else ())
                                for i in range(4)))


@pytest.fixture(autouse=True)
def nothing_cached(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a fresh process would: no spec known but what it reads."""
    monkeypatch.setattr(pipeline_versions, "KNOWN", {})
    monkeypatch.setattr(pipeline_versions, "_AS_JSON", {})
    monkeypatch.delenv(INLINE_VARIABLE, raising=False)
    yield


async def requested(bus: Bus, keys: list[str], *, inline: bool = False) -> list[str]:
    """Runs of PIPE requested under `keys`, each decided by the group loop that owns it."""
    run_ids = []
    for key in keys:
        request = run_request(PIPE, key)
        k = tp_for(bus, topics.RUNS, request.run_id).partition
        loop = GroupLoop(bus, k, FleetTracker(bus), ChampionTracker(bus), {},
                         specs_inline=inline)
        await loop.restore()
        await bus.publish([intent_record(bus, request, run_id=request.run_id, env_id=key)])
        assert await loop.step()
        run_ids.append(request.run_id)
    return run_ids


async def test_runs_name_their_version_and_the_spec_is_on_the_pipelines_topic(bus: Bus) -> None:
    # given: three runs of one pipeline version, decided by the coordinator
    run_ids = await requested(bus, ["a", "b", "c"])

    # then: each run_created names the version and carries no spec
    logged = [decode(r.value) for r in await read_all(bus, all_tps(bus, topics.RUNS))]
    created = [e for e in logged if isinstance(e.data, RunCreated)]
    assert sorted(e.data.run_id for e in created if isinstance(e.data, RunCreated)) == sorted(
        run_ids)
    assert {json.loads(encode(e))["data"]["spec"] is None for e in created} == {True}
    assert {e.data.pipeline_version for e in created
            if isinstance(e.data, RunCreated)} == {PIPE.version()}
    # and: baton.pipelines holds the version's spec, under its version
    declared = await read_all(bus, all_tps(bus, topics.PIPELINES))
    assert declared and {r.key for r in declared} == {PIPE.version()}
    data = decode(declared[0].value).data
    assert isinstance(data, PipelineDeclared) and data.spec == PIPE
    # and: a run's log record is much lighter than with the spec in it
    inline = encode(created[0].model_copy(update={"data": created[0].data.model_copy(
        update={"spec": PIPE})}))
    assert len(encode(created[0])) < len(inline) / 2


async def test_a_reader_that_knows_nothing_folds_each_run_with_its_spec(bus: Bus) -> None:
    # given: runs whose run_created name their version, and a process with nothing cached
    run_ids = await requested(bus, ["a", "b"])
    pipeline_versions.KNOWN.clear()

    # when: the run log is folded from the start, as a takeover or a projector does
    state = await fold_runs(bus)

    # then: every run has its pipeline's whole spec, read from baton.pipelines
    assert sorted(state.runs) == sorted(run_ids)
    assert all(run.spec == PIPE for run in state.runs.values())
    assert {PIPE.version(): PIPE} == pipeline_versions.KNOWN


async def test_a_taken_over_group_restores_runs_named_by_version(bus: Bus) -> None:
    # given: a run decided by one owner of its group
    [run_id] = await requested(bus, ["taken"])
    k = tp_for(bus, topics.RUNS, run_id).partition
    pipeline_versions.KNOWN.clear()

    # when: a new owner restores the group from the log
    loop = GroupLoop(bus, k, FleetTracker(bus), ChampionTracker(bus), {})
    await loop.restore()

    # then: the run is back whole, and the new owner knows the version is declared
    assert loop.state.runs[run_id].spec == PIPE
    assert loop.versions is not None and PIPE.version() in loop.versions.declared


async def test_a_run_naming_a_version_the_log_lacks_is_refused_naming_both(bus: Bus) -> None:
    # given: a run_created naming a version no one declared (a damaged or foreign log)
    [run_id] = await requested(bus, ["orphan"])
    [record] = [r for r in await read_all(bus, all_tps(bus, topics.RUNS))
                if isinstance(decode(r.value).data, RunCreated)]
    env = decode(record.value)
    assert isinstance(env.data, RunCreated)
    orphan = env.model_copy(update={"data": env.data.model_copy(
        update={"pipeline_version": "0123456789abcdef"})})
    [written] = await bus.publish([Outgoing(topics.RUNS, run_id, encode(orphan),
                                            partition=record.partition)])
    pipeline_versions.KNOWN.clear()

    # when / then: a reader refuses it loudly, naming the record and the version
    with pytest.raises(LogCorrupt) as refused:
        await PipelineVersions(bus).decoded([written])
    assert written.where in str(refused.value)
    assert "0123456789abcdef" in str(refused.value)
    assert topics.PIPELINES in str(refused.value)


async def test_a_log_with_the_spec_inline_still_folds(bus: Bus) -> None:
    # given: runs written as builds before wrote them (BATON_SPECS_INLINE=1), nothing declared
    # read by this reader
    run_ids = await requested(bus, ["old-1", "old-2"], inline=True)
    created = [decode(r.value) for r in await read_all(bus, all_tps(bus, topics.RUNS))]
    assert all(e.data.spec == PIPE for e in created if isinstance(e.data, RunCreated))
    pipeline_versions.KNOWN.clear()
    RECENT.forget()  # each record decoded from its bytes, as by another process

    # when: the log is folded
    state = await fold_runs(bus)

    # then: the runs are whole, from their own records
    assert sorted(state.runs) == sorted(run_ids)
    assert all(run.spec == PIPE for run in state.runs.values())
    # and: they share one spec, not a copy each from their own records
    assert len({id(run.spec) for run in state.runs.values()}) == 1


async def test_runs_requested_apart_share_one_spec_in_the_deciding_group(bus: Bus) -> None:
    # given: three requests of one pipeline version, each decoded from its own bytes, for
    # one partition group
    keys = [key for key in (f"burst-{i}" for i in range(200))
            if tp_for(bus, topics.RUNS, run_request(PIPE, key).run_id).partition == 0][:3]
    loop = GroupLoop(bus, 0, FleetTracker(bus), ChampionTracker(bus), {})
    await loop.restore()
    requests = [run_request(PIPE, key) for key in keys]
    await bus.publish([intent_record(bus, r, run_id=r.run_id, env_id=key)
                       for r, key in zip(requests, keys, strict=True)])
    RECENT.forget()  # each decoded from its bytes, as when another process requested them

    # when: the group decides them
    while len(loop.state.runs) < len(keys):
        assert await loop.step()

    # then: the live runs hold one spec between them (a burst of thousands held a copy each)
    runs = [loop.state.runs[r.run_id] for r in requests]
    assert all(run.spec == PIPE for run in runs)
    assert len({id(run.spec) for run in runs}) == 1


async def test_the_api_shows_a_run_created_with_its_spec(bus: Bus) -> None:
    # given: a run_created as the log holds it (by version), seen by a process knowing nothing
    await requested(bus, ["shown"])
    [record] = [r for r in await read_all(bus, all_tps(bus, topics.RUNS))
                if isinstance(decode(r.value).data, RunCreated)]
    pipeline_versions.KNOWN.clear()
    doc = json.loads(record.value)

    # when: it is filled in for a client (the event stream, a run's events)
    await PipelineVersions(bus).filled(doc, record.where)

    # then: the client reads the spec as before
    assert PipelineSpec.model_validate(doc["data"]["spec"]) == PIPE


def test_an_unreadable_inline_setting_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: the setting set to something that is neither on nor off
    monkeypatch.setenv(INLINE_VARIABLE, "sometimes")

    # when / then: it is refused, saying what is wanted
    with pytest.raises(ValueError, match=f"{INLINE_VARIABLE}='sometimes'.*set it to 1"):
        pipeline_versions.specs_inline()
    monkeypatch.setenv(INLINE_VARIABLE, "1")
    assert pipeline_versions.specs_inline()


def test_the_declaration_goes_with_the_first_run_of_a_version_only_until_committed() -> None:
    # given: a writer's view, with nothing committed yet
    versions = PipelineVersions(cast(Bus, _OneTopicBus()))
    request = run_request(PIPE, "w")
    created = RunCreated(run_id=request.run_id, pipeline=PIPE.name,
                         pipeline_version=PIPE.version(), spec=PIPE, trigger=request.trigger,
                         deadline_at=1.0)
    env = envelope(created, id="x", time=0.0, source="t", subject=request.run_id)

    # when: a run of the version is written before and after a commit carrying its declaration
    before = versions.written(env)
    again = versions.written(env)
    versions.committed([_declared_record(before[0])])
    after = versions.written(env)

    # then: it is declared with every run until the declaration is committed, then never
    assert [o.topic for o in before] == [o.topic for o in again] == [topics.PIPELINES]
    assert after == []


class _OneTopicBus:
    def partitions(self, topic: str) -> int:
        return 3


def _declared_record(out: Outgoing) -> Record:
    return Record(out.topic, out.partition or 0, 0, out.key, out.value, (), 0)

