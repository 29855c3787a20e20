"""Declaring pipelines: Python decorators and YAML, both compiled to one PipelineSpec."""

from events.schedule_spec import CatchUp
from orchestrator.pipelines.authoring import (
    Pipeline,
    cron,
    every,
    manual,
    on_data_arrived,
    on_drift,
)

__all__ = ["CatchUp", "Pipeline", "cron", "every", "manual", "on_data_arrived", "on_drift"]
