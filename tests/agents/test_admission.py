"""Admission on the agent: which GPUs an attempt gets, and why a command does not fit."""

from __future__ import annotations

from agents.admission import Held, choose_gpus, describe_gpus, free_capacity, refusal
from events.common import Capabilities, GpuInfo, Resources

A100 = GpuInfo(index=0, model="NVIDIA A100-SXM4-40GB", memory_mb=40960)
T4 = GpuInfo(index=1, model="Tesla T4", memory_mb=16384)
CAPS = Capabilities(cpus=4, memory_mb=8192, gpus=(A100, T4))


def test_running_attempts_take_their_cpus_memory_and_gpus_from_what_is_free() -> None:
    # given one attempt holding GPU 1
    held = [(Resources(cpus=1.5, memory_mb=1000, gpus=1), (1,))]
    # when the free capacity is counted
    free = free_capacity(CAPS, held)
    # then
    assert (free.cpus, free.memory_mb, free.gpu_indices) == (2.5, 7192, (0,))


def test_a_reservation_of_free_qualifying_gpus_is_honoured() -> None:
    free = free_capacity(CAPS, [])
    assert choose_gpus(free, Resources(gpus=1), reserved=(1,)) == (1,)
    assert choose_gpus(free, Resources(gpus=2), reserved=(1, 0)) == (1, 0)


def test_a_reservation_that_does_not_qualify_gives_way_to_a_gpu_that_does() -> None:
    # given a request for an A100 whose reservation names the T4
    free = free_capacity(CAPS, [])
    req = Resources(gpus=1, gpu_model="a100")
    # then the agent gives the A100 (model matched as a substring, any case)
    assert choose_gpus(free, req, reserved=(1,)) == (0,)


def test_a_reservation_of_a_taken_or_unknown_gpu_gives_way_to_a_free_one() -> None:
    busy = free_capacity(CAPS, [(Resources(gpus=1), (0,))])
    assert choose_gpus(busy, Resources(gpus=1), reserved=(0,)) == (1,)
    free = free_capacity(CAPS, [])
    assert choose_gpus(free, Resources(gpus=1), reserved=(7,)) == (0,)
    assert choose_gpus(free, Resources(gpus=2), reserved=(0, 0)) == (0, 1)
    assert choose_gpus(free, Resources(gpus=1), reserved=(0, 1)) == (0,)


def test_no_gpu_request_gets_none_and_too_few_qualifying_gpus_get_nothing() -> None:
    free = free_capacity(CAPS, [])
    assert choose_gpus(free, Resources()) == ()
    assert choose_gpus(free, Resources(gpus=3)) is None
    assert choose_gpus(free, Resources(gpus=2, gpu_memory_mb=20000)) is None
    assert choose_gpus(free_capacity(CAPS, [(Resources(gpus=1), (0,))]),
                       Resources(gpus=1, gpu_model="A100")) is None


def test_a_request_that_fits_is_not_refused() -> None:
    free = free_capacity(CAPS, [])
    assert refusal(free, Resources(cpus=4, memory_mb=8192, gpus=2)) is None
    assert refusal(free_capacity(CAPS, [(Resources(cpus=0.1), ())] * 3),
                   Resources(cpus=3.7)) is None  # float sums do not refuse an exact fit


def test_a_refusal_names_the_cpus_and_memory_missing() -> None:
    free = free_capacity(CAPS, [(Resources(cpus=3, memory_mb=8000), ())])
    assert refusal(free, Resources(cpus=2, memory_mb=100)) == (
        "no capacity: needs cpus=2 memory=100MB, free cpus=1 memory=192MB")


def test_a_refusal_names_the_gpus_missing_and_how_many_free_ones_qualify() -> None:
    # given the A100 busy
    free = free_capacity(CAPS, [(Resources(cpus=1, gpus=1), (0,))])
    # when a request wants a GPU with 40000 MB
    why = refusal(free, Resources(gpus=1, gpu_memory_mb=40000))
    # then
    assert why == ("no capacity: needs cpus=1 memory=256MB and 1 GPU with >=40000MB, "
                   "free cpus=3 memory=7936MB, free qualifying gpus 0 (free gpus 1)")


def test_gpu_requests_are_described_as_an_operator_would_say_them() -> None:
    assert describe_gpus(Resources(gpus=1)) == "1 GPU"
    assert describe_gpus(Resources(gpus=2, gpu_model="A100")) == "2 GPUs with model A100"
    assert describe_gpus(Resources(gpus=1, gpu_memory_mb=40000, gpu_model="A100")) == (
        "1 GPU with >=40000MB of model A100")


def test_what_attempts_hold_is_counted_as_they_come_and_go() -> None:
    # given attempts that come and go, fractions of CPUs and GPUs among them
    held = Held()
    taken = [(Resources(cpus=0.1, memory_mb=100), ()), (Resources(cpus=0.2, gpus=1), (1,)),
             (Resources(cpus=0.7, memory_mb=50, gpus=1), (0,))]
    for resources, gpus in taken:
        held.add(resources, gpus)
    held.remove(*taken[1])
    # then what is free is what the ones still running leave
    still = [taken[0], taken[2]]
    assert held.free(CAPS) == free_capacity(CAPS, still)
    assert held.free(CAPS).gpu_indices == (1,)
    # and once every attempt is gone, everything is free again, exactly
    for resources, gpus in still:
        held.remove(resources, gpus)
    assert held.free(CAPS) == free_capacity(CAPS, [])
    assert held.free(CAPS).cpus == CAPS.cpus
