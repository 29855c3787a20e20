"""Validating emitted OpenLineage events against the OpenLineage JSON schema (vendored from
OpenLineage/OpenLineage spec/, Apache-2.0: the wheel ships no schema) and every facet against
the schema its `_schemaURL` names: OpenLineage's own facets (vendored) and Baton's (shipped
in orchestrator/openlineage/schemas)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from orchestrator.openlineage.facets import SCHEMAS

SPEC = Path(__file__).parent / "spec"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


@cache
def registry() -> Registry:
    files = [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json")),
             *sorted(SCHEMAS.glob("*.json"))]
    resources = [Resource.from_contents(json.loads(f.read_text())) for f in files]
    return Registry().with_resources((str(r.id()), r) for r in resources if r.id())


def problems(event: dict[str, Any]) -> list[str]:
    """Every way `event` breaks the schema or one of its facets breaks its own."""
    found = [f"event: {e.message}" for e in _validator(RUN_EVENT).iter_errors(event)]
    for where, facet in _facets(event):
        url = facet.get("_schemaURL")
        if not url:
            found.append(f"{where}: no _schemaURL")
            continue
        found += [f"{where} ({url}): {e.message}" for e in _validator(url).iter_errors(facet)]
    return found


def _validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref}, registry=registry(),
                                format_checker=FormatChecker())


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for part in ("run", "job"):
        for name, facet in (event.get(part, {}).get("facets") or {}).items():
            yield f"{part}.{name}", facet
    for side in ("inputs", "outputs"):
        for i, dataset in enumerate(event.get(side) or []):
            for name, facet in (dataset.get("facets") or {}).items():
                yield f"{side}[{i}].{name}", facet
