"""The wire form of a trigger's condition over several events: `all_of` / `any_of` (nestable)
of dependencies on data, drift and run outcomes, each with a window and filters, matched per
partition key, with a timeout after which a partial match is dropped (recorded).

```yaml
triggers:
  - on: condition
    condition:
      all_of:
        - {data: sales, where: {min_rows: 1000}}
        - {data: fx, window_s: 3600}
        - {run: features, status: succeeded}
    partition_by: date
    timeout_s: 7200
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from events.common import Frozen

Scalar = str | int | float | bool


class Where(Frozen):
    """Filters on a dependency's event; all must hold. A filter that cannot be checked (the
    field missing, of another type) is "no match", recorded with the filter that said no."""

    min_rows: int | None = Field(default=None, ge=0)
    schema_fingerprint: str | None = None
    metadata: dict[str, Scalar] = Field(default_factory=dict)
    """Each key equal to this value."""
    metadata_in: dict[str, tuple[Scalar, ...]] = Field(default_factory=dict)
    """Each key one of these values."""


class Dependency(Frozen):
    """One event a condition waits for: a dataset's arrival, a model's drift, or a run of a
    pipeline ending with a status."""

    data: str | None = None
    drift: str | None = None
    run: str | None = None
    schedule: str | None = None
    """A slot of this schedule of the pipeline passed (its partition values: the slot's
    local `date`, and `slot`)."""
    status: Literal["succeeded", "failed", "any"] = "succeeded"
    window_s: float | None = Field(default=None, gt=0)
    """An event older than this when the condition is checked no longer counts."""
    where: Where | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Dependency:
        given = [k for k in ("data", "drift", "run", "schedule") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a dependency names one of data (a dataset), drift (a model), run "
                             "(a pipeline) or schedule (one of the pipeline's); got "
                             f"{', '.join(given) or 'none'}")
        return self

    @property
    def label(self) -> str:
        if self.data is not None:
            return f"data {self.data}"
        if self.drift is not None:
            return f"drift of {self.drift}"
        if self.schedule is not None:
            return f"slot of schedule {self.schedule}"
        return f"run of {self.run} {self.status}"


class Condition(Frozen):
    all_of: tuple[Dependency | Condition, ...] | None = None
    any_of: tuple[Dependency | Condition, ...] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        if (self.all_of is None) == (self.any_of is None):
            raise ValueError("a condition is all_of: [...] or any_of: [...], one of them")
        if not (self.all_of or self.any_of):
            raise ValueError("all_of / any_of needs at least one dependency")
        return self

    @property
    def children(self) -> tuple[Dependency | Condition, ...]:
        return self.all_of or self.any_of or ()

    def leaves(self) -> list[Dependency]:
        """Every dependency, depth first, in the order written: a leaf's index names it."""
        out: list[Dependency] = []
        for child in self.children:
            out += child.leaves() if isinstance(child, Condition) else [child]
        return out
