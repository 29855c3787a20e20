"""Pipelines declared in Python for the authoring tests."""

from agents.task_api import Result
from orchestrator.pipelines import Pipeline, on_data_arrived

pipe = Pipeline("sample", triggers=[on_data_arrived("numbers")])


@pipe.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=30)
def load(ctx: object) -> list[int]:
    return [1, 2, 3]


@pipe.task(labels={"pool": "cpu"})
def total(load: list[int]) -> Result:
    return Result(value=sum(load), metrics={"total": float(sum(load))})


pipe.gate("gate", metrics_from="total", minimum={"total": 1})


gpu_pipe = Pipeline("gpu-train", max_concurrent_tasks=2)


@gpu_pipe.task(gpus=1, gpu_memory="40Gi", gpu_model="A100", schedule_to_start_timeout_s=600,
               labels={"pool": "training"})
def train() -> None:
    return None


oom_pipe = Pipeline("oom")


@oom_pipe.task(max_lost_attempts=2)
def grow() -> None:
    return None
