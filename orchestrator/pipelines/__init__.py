"""Declaring pipelines: Python decorators and YAML, both compiled to one PipelineSpec."""

from orchestrator.pipelines.authoring import Pipeline, manual, on_data_arrived, on_drift

__all__ = ["Pipeline", "manual", "on_data_arrived", "on_drift"]
