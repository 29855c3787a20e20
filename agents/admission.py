"""Admission on the agent, as pure functions: what is free, which GPUs a request gets, and
why a request does not fit.

The agent is the authority on its capacity (coordinators place optimistically and may race),
so these decide; the runtime only feeds them its running attempts. GPUs are counted by index
and never shared between running attempts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from events.common import Capabilities, GpuInfo, Resources

CPU_SLACK = 1e-9
"""Fractions of CPUs add up with float error; 0.1 + 0.2 of 0.3 free still fits."""


@dataclass(frozen=True)
class Free:
    cpus: float
    memory_mb: int
    gpus: tuple[GpuInfo, ...]
    """The GPUs no running attempt holds, in the order the agent advertises them."""

    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(gpu.index for gpu in self.gpus)


@dataclass
class Held:
    """What the running attempts hold, kept up as they come and go: admitting a command then
    costs the same with one attempt running or a thousand (a fan-out's batch of commands
    walked every running attempt for each of its commands)."""

    count: int = 0
    cpus: float = 0.0
    memory_mb: int = 0
    gpus: Counter[int] = field(default_factory=Counter)

    def add(self, resources: Resources, gpus: tuple[int, ...]) -> None:
        self.count += 1
        self.cpus += resources.cpus
        self.memory_mb += resources.memory_mb
        self.gpus.update(gpus)

    def remove(self, resources: Resources, gpus: tuple[int, ...]) -> None:
        self.count -= 1
        if self.count == 0:  # exactly nothing: sums of CPU fractions never drift
            self.cpus, self.memory_mb = 0.0, 0
            self.gpus.clear()
            return
        self.cpus -= resources.cpus
        self.memory_mb -= resources.memory_mb
        self.gpus.subtract(gpus)
        self.gpus += Counter()  # drops the GPUs no attempt holds any more

    def free(self, caps: Capabilities) -> Free:
        """What is left of `caps` once everything held is counted."""
        return Free(caps.cpus - self.cpus, caps.memory_mb - self.memory_mb,
                    tuple(g for g in caps.gpus if g.index not in self.gpus))


def free_capacity(caps: Capabilities,
                  held: Iterable[tuple[Resources, tuple[int, ...]]]) -> Free:
    """What is left of `caps` once every running attempt (its request, its GPUs) is counted."""
    total = Held()
    for resources, gpus in held:
        total.add(resources, gpus)
    return total.free(caps)


def choose_gpus(free: Free, req: Resources, reserved: Sequence[int] = ()) -> tuple[int, ...] | None:
    """The GPU indices `req` gets, or None when too few free GPUs qualify.

    The coordinator's reservation is honoured when it names exactly the GPUs asked for, each
    free and qualifying: its view of the agent then matches the agent's. Otherwise the first
    free qualifying GPUs are taken (the coordinator's view was stale, or it raced another).
    """
    if req.gpus == 0:
        return ()
    qualifying = [gpu.index for gpu in free.gpus if req.takes_gpu(gpu)]
    if len(qualifying) < req.gpus:
        return None
    if len(reserved) == req.gpus and len(set(reserved)) == req.gpus \
            and set(reserved) <= set(qualifying):
        return tuple(reserved)
    return tuple(qualifying[: req.gpus])


def refusal(free: Free, req: Resources) -> str | None:
    """None when `req` fits in `free` now, else the reason, naming what is missing."""
    fits = (req.cpus <= free.cpus + CPU_SLACK and req.memory_mb <= free.memory_mb
            and choose_gpus(free, req) is not None)
    if fits:
        return None
    needs = f"cpus={req.cpus:g} memory={req.memory_mb}MB"
    has = f"free cpus={max(free.cpus, 0):g} memory={max(free.memory_mb, 0)}MB"
    if req.gpus:
        qualifying = sum(req.takes_gpu(gpu) for gpu in free.gpus)
        needs += f" and {describe_gpus(req)}"
        has += f", free qualifying gpus {qualifying} (free gpus {len(free.gpus)})"
    return f"no capacity: needs {needs}, {has}"


def describe_gpus(req: Resources) -> str:
    """'2 GPUs with >=40000MB of model A100', as an operator would say it."""
    text = f"{req.gpus} GPU{'s' if req.gpus != 1 else ''}"
    constraints = []
    if req.gpu_memory_mb:
        constraints.append(f">={req.gpu_memory_mb}MB")
    if req.gpu_model:
        constraints.append(f"model {req.gpu_model}")
    return f"{text} with {' of '.join(constraints)}" if constraints else text
