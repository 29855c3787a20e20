"""Value objects shared by many events: artifact references, resources, capabilities."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ALIAS_PATTERN = r"^[a-z][a-z0-9_\-]{0,62}$"
"""A model alias is a plain name (`champion`, `challenger`, `staging`...): lower-case
letters, digits, `_` and `-`, starting with a letter; no dots or slashes, so it is safe in a
URL path and a file name."""


class Frozen(BaseModel):
    """Base for every contract model: immutable, strict about unknown fields, and finite.

    JSON has no NaN or infinity: pydantic would write them as null, which no reader accepts
    as a number, so a NaN score or metric is refused where it is made, not dead-lettered later.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _finite_throughout(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form JSON (params, a trigger's payload) is finite too, at any depth. Checked
    without naming places first (every event with params or a payload comes through here),
    then walked again to name the one that is not."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                _refuse_infinite(value)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


def _refuse_infinite(value: dict[str, Any]) -> None:
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{path} is {item}: JSON has no NaN or infinity (send a finite "
                             "number, or leave it out)")
        if isinstance(item, dict):
            stack += [(f"{path}.{key}" if path else str(key), v) for key, v in item.items()]
        elif isinstance(item, list | tuple):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(item)]


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_throughout)]
"""A free-form JSON object, as finite as the rest of the contract."""


class ArtifactRef(Frozen):
    """Where a task output lives; large payloads never travel on the bus, only this."""

    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    media_type: str = "application/x-python-pickle"


class GpuInfo(Frozen):
    index: int = Field(ge=0)
    model: str = "unknown"
    memory_mb: int = Field(default=0, ge=0)


class Resources(Frozen):
    """What a task asks for. `gpus` is a count; GPU constraints narrow which GPUs qualify."""

    cpus: float = Field(default=1.0, ge=0)
    memory_mb: int = Field(default=256, ge=0)
    gpus: int = Field(default=0, ge=0)
    gpu_memory_mb: int = Field(default=0, ge=0)
    gpu_model: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    def takes_gpu(self, gpu: GpuInfo) -> bool:
        """Whether one GPU qualifies for this request (the coordinator and agent both ask)."""
        return gpu.memory_mb >= self.gpu_memory_mb and (
            self.gpu_model is None or self.gpu_model.lower() in gpu.model.lower())


class Capabilities(Frozen):
    """What an agent advertises it can run."""

    cpus: float = Field(gt=0)
    memory_mb: int = Field(gt=0)
    gpus: tuple[GpuInfo, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)


class Audit(Frozen):
    """Who asked for a change and in which request: the token's name and the HTTP request id
    for the API (`via`), so the run's log says who requested or cancelled it."""

    actor: str = Field(min_length=1, max_length=200)
    request_id: str = Field(min_length=1, max_length=200)
    via: Literal["api", "cli", "run"] = "api"


def _no_audit(value: object) -> bool:
    return value is None


AUDIT_FIELD: Any = Field(default=None, exclude_if=_no_audit)
"""An optional `audit`, left out of the wire form when absent: events without one keep the
bytes they had before the field existed, and older readers read them."""
