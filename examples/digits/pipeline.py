"""The digits pipeline: ingest -> features -> train -> evaluate -> gate -> register."""

from examples.digits import tasks
from orchestrator.pipelines import Pipeline, on_data_arrived, on_drift

MODEL = "digits-classifier"

digits = Pipeline(
    "digits",
    triggers=[on_data_arrived("digits"), on_drift(MODEL, cooldown_s=600)],
    deadline_s=900,
    description="Train a digits classifier on every new dataset version and on drift.",
)
digits.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(tasks.ingest)
digits.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(tasks.features)
digits.task(cpus=1, memory="512Mi", retries=2, backoff_s=0.5, timeout_s=300)(tasks.train)
digits.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(tasks.evaluate)
digits.gate("gate", metrics_from="evaluate", minimum={"accuracy": 0.9},
            no_worse_than_current=("accuracy",), model=MODEL)
digits.register("register", model=MODEL, artifact_from="train", metrics_from="evaluate",
                after=["gate"])
