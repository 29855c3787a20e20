"""The digits pipelines: ingest -> features -> train -> evaluate -> gate -> register.

`digits` trains an SVM; `digits_torch` (GPU) and `digits_torch_cpu` train a PyTorch MLP.
"""

from examples.digits import tasks, torch_tasks
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
            no_worse_than_current=("accuracy",), model=MODEL, test="mcnemar")
digits.register("register", model=MODEL, artifact_from="train", metrics_from="evaluate",
                after=["gate"], promote_to="champion")

digits_release = Pipeline(
    "digits_release",
    triggers=[on_drift(MODEL, cooldown_s=600)],
    deadline_s=1800,
    description="Retrain on drift, gate, package, approve, then a canary on live traffic: "
                "promoted only if the new version serves as well as the champion.",
)
digits_release.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(
    tasks.ingest)
digits_release.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(
    tasks.features)
digits_release.task(cpus=1, memory="512Mi", retries=2, backoff_s=0.5, timeout_s=300)(
    tasks.train)
digits_release.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(
    tasks.evaluate)
digits_release.gate("gate", metrics_from="evaluate", minimum={"accuracy": 0.9},
                    no_worse_than_current=("accuracy",), model=MODEL, test="mcnemar")
digits_release.task(cpus=0.5, memory="256Mi", timeout_s=120, after=["gate"])(tasks.package)
digits_release.register("register", model=MODEL, artifact_from="package",
                        metrics_from="evaluate", after=["package"])
digits_release.approval("approve", after=["register"], timeout_s=1200, on_timeout="reject",
                        inputs={"comment": "text"})
# max_psi 1.0: a version retrained on drifted data predicts the drifted rows differently from
# the champion (better: that is why it was retrained), a PSI of 0.1-0.25 here; a version that
# collapses onto a few classes is far above 1
digits_release.canary("canary", model=MODEL, version_from="register", after=["approve"],
                      timeout_s=600, min_requests=50, max_psi=1.0,
                      steps=[{"percent": 10, "hold_s": 5}, {"percent": 50, "hold_s": 5}])


TORCH_MODEL = "digits-mlp"


def torch_pipeline(name: str, *, gpus: int) -> Pipeline:
    """The digits pipeline with a PyTorch MLP as train step (examples/digits/torch_tasks.py).

    The GPU is a resource request, not a setting of the code: with `gpus=1` the train task
    waits for an agent that advertises a GPU and runs on the one it is given; with `gpus=0`
    it runs on any agent's CPU. The model is `digits-mlp`, so its gate compares networks with
    networks, not with the SVM of `digits`.
    """
    pipe = Pipeline(
        name,
        triggers=[on_data_arrived("digits"), on_drift(TORCH_MODEL, cooldown_s=600)],
        deadline_s=1800,
        description=f"Train a PyTorch MLP on digits ({'GPU' if gpus else 'CPU'}).",
    )
    pipe.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(tasks.ingest)
    pipe.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(tasks.features)
    pipe.task(name="train", cpus=torch_tasks.CPU_THREADS, memory="2Gi", gpus=gpus, retries=1,
              backoff_s=0.5, timeout_s=600)(torch_tasks.train)
    pipe.task(cpus=0.5, memory="256Mi", retries=2, backoff_s=0.5, timeout_s=120)(tasks.evaluate)
    pipe.gate("gate", metrics_from="evaluate", minimum={"accuracy": 0.9},
              no_worse_than_current=("accuracy",), model=TORCH_MODEL, test="mcnemar")
    pipe.register("register", model=TORCH_MODEL, artifact_from="train",
                  metrics_from="evaluate", after=["gate"], promote_to="champion")
    return pipe


digits_torch = torch_pipeline("digits_torch", gpus=1)
digits_torch_cpu = torch_pipeline("digits_torch_cpu", gpus=0)
