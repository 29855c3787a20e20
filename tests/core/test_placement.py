"""Placement as a pure function: fit, capacity, GPUs by index, labels, pack or spread."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from events.common import Capabilities, GpuInfo, Resources
from orchestrator.core.placement import FULL, Fleet, Placed, Usage, Waiting, place
from orchestrator.core.state import AgentStatus


def agent(agent_id: str, cpus: float = 4, memory_mb: int = 8000,
          gpus: tuple[GpuInfo, ...] = (), **labels: str) -> AgentStatus:
    caps = Capabilities(cpus=cpus, memory_mb=memory_mb, gpus=gpus, labels=labels)
    return AgentStatus(agent_id=agent_id, capabilities=caps, lease_s=5)


def req(cpus: float = 1, memory_mb: int = 100, gpus: int = 0, **extra: object) -> Resources:
    return Resources(cpus=cpus, memory_mb=memory_mb, gpus=gpus, **extra)


A100 = GpuInfo(index=0, model="NVIDIA A100-SXM4-40GB", memory_mb=40960)
T4 = GpuInfo(index=1, model="Tesla T4", memory_mb=15360)


def test_spread_picks_the_least_loaded_agent_and_pack_the_most_loaded_that_fits() -> None:
    fleet = [agent("a1"), agent("a2")]
    used = {"a1": Usage(cpus=2)}

    assert place(req(), fleet, used, "spread") == Placed("a2")
    assert place(req(), fleet, used, "pack") == Placed("a1")


def test_pack_fills_one_agent_before_using_the_next_and_spread_alternates() -> None:
    packed = Fleet([agent("a1", cpus=2), agent("a2", cpus=2)], {}, "pack")
    spread = Fleet([agent("a1", cpus=2), agent("a2", cpus=2)], {}, "spread")

    assert [packed.place(req()) for _ in range(3)] == [
        Placed("a1"), Placed("a1"), Placed("a2")]
    assert [spread.place(req()) for _ in range(3)] == [
        Placed("a1"), Placed("a2"), Placed("a1")]


def test_load_is_the_dominant_share_not_only_cpus() -> None:
    fleet = [agent("a1", memory_mb=1000), agent("a2", memory_mb=1000)]
    used = {"a1": Usage(cpus=0.5), "a2": Usage(memory_mb=900)}

    assert place(req(memory_mb=50), fleet, used, "spread") == Placed("a1")


def test_an_agent_is_never_given_more_than_its_capacity() -> None:
    fleet = Fleet([agent("a1", cpus=3, memory_mb=1000)], {"a1": Usage(cpus=1)})

    assert fleet.place(req(cpus=2)) == Placed("a1")
    assert fleet.place(req(cpus=0.5)) == Waiting(FULL, full=True)
    assert fleet.usage["a1"] == Usage(cpus=3, memory_mb=100)


def test_gpus_are_assigned_by_index_and_never_shared() -> None:
    gpus = tuple(GpuInfo(index=i, model="simulated") for i in range(3))
    fleet = Fleet([agent("g", cpus=8, gpus=gpus)], {"g": Usage(gpus=1, gpu_ids=frozenset({1}))})

    first = fleet.place(req(gpus=1))
    second = fleet.place(req(gpus=1))

    assert (first, second) == (Placed("g", (0,)), Placed("g", (2,)))
    assert fleet.place(req(gpus=1)) == Waiting(FULL, full=True)


def test_gpu_memory_and_model_narrow_which_gpus_qualify() -> None:
    fleet = [agent("mixed", gpus=(A100, T4))]

    assert place(req(gpus=1, gpu_model="a100"), fleet, {}) == Placed("mixed", (0,))
    assert place(req(gpus=1, gpu_memory_mb=30000), fleet, {}) == Placed("mixed", (0,))
    assert place(req(gpus=1, gpu_model="T4"), fleet, {}) == Placed("mixed", (1,))
    taken = {"mixed": Usage(gpus=1, gpu_ids=frozenset({0}))}
    assert place(req(gpus=1, gpu_model="A100"), fleet, taken) == Waiting(FULL, full=True)
    assert place(req(gpus=2, gpu_memory_mb=30000), fleet, {}) == Waiting(
        "no agent advertises gpus>=2 with >=30000MB")


def test_a_task_without_gpus_goes_to_a_gpu_agent_only_when_nothing_else_fits() -> None:
    fleet = Fleet([agent("gpu", cpus=64, gpus=(A100,)), agent("cpu", cpus=2)], {})

    assert [fleet.place(req()) for _ in range(3)] == [
        Placed("cpu"), Placed("cpu"), Placed("gpu")]


def test_labels_must_match_exactly() -> None:
    fleet = [agent("eu", region="eu", pool="training"), agent("us", region="us")]

    assert place(req(labels={"region": "us"}), fleet, {}) == Placed("us")
    assert place(req(labels={"pool": "training"}), fleet, {}) == Placed("eu")
    assert place(req(labels={"region": "ap"}), fleet, {}) == Waiting(
        "no agent advertises label region=ap")


def test_the_waiting_reason_names_what_no_agent_advertises() -> None:
    cpu_only = [agent("a1"), agent("a2", cpus=2)]

    assert place(req(gpus=1), cpu_only, {}) == Waiting("no agent advertises gpus>=1")
    assert place(req(cpus=16), cpu_only, {}) == Waiting("no agent advertises cpus>=16")
    assert place(req(memory_mb=10**6), cpu_only, {}) == Waiting(
        "no agent advertises memory>=1000000MB")


def test_agents_that_are_not_live_are_never_chosen_and_the_reason_counts_them() -> None:
    draining, lost, stopped = agent("d"), agent("l"), agent("s")
    draining.draining, lost.lost_evidence, stopped.stopped = True, "silent 20s", True

    assert place(req(), [draining, lost, stopped], {}) == Waiting(
        "no live agent (1 draining, 1 lost, 1 stopped)")
    assert place(req(), [], {}) == Waiting("no live agent")
    assert place(req(), [draining, agent("ok")], {}) == Placed("ok")


def test_a_reserved_agent_is_kept_free_for_the_request_that_reserved_it() -> None:
    fleet = Fleet([agent("a1", cpus=4), agent("a2", cpus=4)],
                  {"a1": Usage(cpus=3), "a2": Usage(cpus=4)})

    assert fleet.place(req(cpus=4)) == Waiting(FULL, full=True)
    assert fleet.reserve(req(cpus=4)) == "a1"
    assert fleet.place(req(cpus=1)) == Waiting(FULL, full=True)
    assert fleet.reserve(req(cpus=4)) is None, "one reservation per kind of request per pass"


AGENTS = st.lists(st.tuples(st.integers(1, 8), st.integers(0, 2)), min_size=1, max_size=6)
REQUESTS = st.lists(st.tuples(st.sampled_from([0.5, 1, 2, 3]), st.integers(0, 1)), max_size=40)


@given(AGENTS, REQUESTS, st.sampled_from(["spread", "pack"]))
def test_whatever_is_asked_no_agent_is_overcommitted_and_no_gpu_is_given_twice(
    shapes: list[tuple[int, int]], asks: list[tuple[float, int]], strategy: str,
) -> None:
    agents = [agent(f"a{i}", cpus=c, gpus=tuple(GpuInfo(index=g) for g in range(n)))
              for i, (c, n) in enumerate(shapes)]
    fleet = Fleet(agents, {}, strategy)  # type: ignore[arg-type]
    given_gpus: dict[str, list[int]] = {}

    for cpus, gpus in asks:
        choice = fleet.place(req(cpus=cpus, memory_mb=10, gpus=gpus))
        if isinstance(choice, Placed):
            assert len(choice.gpus) == gpus
            given_gpus.setdefault(choice.agent_id, []).extend(choice.gpus)

    for a in agents:
        used = fleet.usage[a.agent_id]
        assert used.cpus <= a.capabilities.cpus + 1e-9
        ids = given_gpus.get(a.agent_id, [])
        assert len(ids) == len(set(ids)) == used.gpus <= len(a.capabilities.gpus)
