"""Baton's own OpenLineage run facets (OpenLineage has no ML facets yet: OpenLineage #4035):
the model version a task registered, a gate's decision, a canary's verdict, an alias move,
where a task ran. Each names its JSON schema (`_schemaURL`), shipped in `schemas/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attr
from openlineage.client.generated.base import RunFacet

SCHEMAS = Path(__file__).parent / "schemas"
BASE_URL = "https://baton.dev/spec/facets/1-0-0"
PRODUCER = "https://github.com/baton-ml/baton"
"""What every event and facet Baton emits names as its producer."""


def schema_url(name: str) -> str:
    return f"{BASE_URL}/{name}.json#/$defs/{name}"


def schema_file(url: str) -> Path | None:
    """The shipped schema a Baton `_schemaURL` names (None: not one of Baton's)."""
    if not url.startswith(BASE_URL + "/"):
        return None
    return SCHEMAS / url.removeprefix(BASE_URL + "/").split("#", 1)[0]


@attr.define
class BatonModelRunFacet(RunFacet):
    model: str
    version: int
    metrics: dict[str, float] = attr.field(factory=dict)
    artifactSha256: str | None = attr.field(default=None)
    admittedBy: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("BatonModelRunFacet")


@attr.define
class BatonGateRunFacet(RunFacet):
    passed: bool
    checks: list[dict[str, Any]] = attr.field(factory=list)
    baselineVersion: int | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("BatonGateRunFacet")


@attr.define
class BatonCanaryRunFacet(RunFacet):
    model: str
    version: int
    baseline: int
    alias: str
    verdict: str
    reason: str
    steps: list[dict[str, Any]] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("BatonCanaryRunFacet")


@attr.define
class BatonAliasMoveRunFacet(RunFacet):
    model: str
    alias: str
    version: int
    move: str
    reason: str
    previous: int | None = attr.field(default=None)
    cites: str | None = attr.field(default=None)
    by: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("BatonAliasMoveRunFacet")


@attr.define
class BatonTaskRunFacet(RunFacet):
    attempts: int
    metrics: dict[str, float] = attr.field(factory=dict)
    agent: str | None = attr.field(default=None)
    gpus: list[int] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("BatonTaskRunFacet")
