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


canary_pipe = Pipeline("released", deadline_s=3600)


@canary_pipe.task()
def fit() -> Result:
    return Result(metrics={"accuracy": 0.9})


canary_pipe.gate("gate", metrics_from="fit", minimum={"accuracy": 0.8})
canary_pipe.register("register", model="digits", artifact_from="fit", after=["gate"])
canary_pipe.canary("canary", model="digits", version_from="register", timeout_s=1800,
                   steps=[{"percent": 5, "hold_s": 60}, {"percent": 50, "requests": 500}],
                   max_error_rate_increase=0.02)
