"""Find pipelines by reference: 'package.module:attribute' or a path to a YAML file."""

from __future__ import annotations

import importlib
from pathlib import Path

from events.pipeline import PipelineSpec
from orchestrator.core.errors import SpecError
from orchestrator.pipelines.authoring import Pipeline
from orchestrator.pipelines.yaml_spec import load_yaml

DEFAULT_PIPELINES = ("examples.digits.pipeline:digits",)


def load_pipeline(ref: str) -> PipelineSpec:
    if ref.endswith((".yaml", ".yml")):
        return load_yaml(Path(ref))
    module_name, _, attr = ref.partition(":")
    if not attr:
        raise SpecError([f"pipeline reference {ref!r}: use 'package.module:name' or a .yaml path"])
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # show the import failure to the user, not a traceback
        problem = f"pipeline reference {ref!r}: cannot import {module_name!r}: {exc}"
        raise SpecError([problem]) from None
    obj = getattr(module, attr, None)
    if isinstance(obj, Pipeline):
        return obj.spec()
    if isinstance(obj, PipelineSpec):
        return obj
    raise SpecError([f"pipeline reference {ref!r}: {attr!r} is not a Pipeline or PipelineSpec"])


def load_all(refs: tuple[str, ...] | list[str]) -> dict[str, PipelineSpec]:
    specs: dict[str, PipelineSpec] = {}
    for ref in refs:
        spec = load_pipeline(ref)
        if spec.name in specs:
            raise SpecError([f"two pipelines are named {spec.name!r}"])
        specs[spec.name] = spec
    return specs
