"""Declaring pipelines: Python decorators and YAML, both compiled to one PipelineSpec."""

from events.schedule_spec import CatchUp
from orchestrator.pipelines.authoring import (
    Pipeline,
    all_of,
    any_of,
    cron,
    data,
    drift,
    every,
    manual,
    on_condition,
    on_data_arrived,
    on_drift,
    run_of,
)

__all__ = ["CatchUp", "Pipeline", "all_of", "any_of", "cron", "data", "drift", "every",
           "manual", "on_condition", "on_data_arrived", "on_drift", "run_of"]
