"""Pipelines of the canary's end-to-end test: a digits SVC fitted in a second (no dataset
files), registered as the champion by `first_release`, canaried by `release` (its `flaw`
param makes the new version fail a share of its predictions)."""

from __future__ import annotations

from sklearn.datasets import load_digits
from sklearn.svm import SVC

from agents.task_api import Result, TaskContext
from examples.digits.flaws import flawed
from orchestrator.pipelines import Pipeline

MODEL = "canaried"
STEPS = [{"percent": 20, "hold_s": 2.0}, {"percent": 50, "hold_s": 2.0}]


def fit(ctx: TaskContext) -> Result:
    digits = load_digits()
    X, y = digits.data / 16, digits.target
    model = SVC(C=10.0, gamma="scale").fit(X[:1200], y[:1200])
    flaw = str(ctx.params.get("flaw", "none"))
    return Result(value=flawed(model, flaw), metrics={"accuracy": model.score(X[1200:], y[1200:])},
                  metadata={"flaw": flaw})


first_release = Pipeline("first_release", deadline_s=600)
first_release.task(cpus=0.5)(fit)
first_release.gate("gate", metrics_from="fit", minimum={"accuracy": 0.9})
first_release.register("register", model=MODEL, artifact_from="fit", after=["gate"],
                       promote_to="champion")

release = Pipeline("release", deadline_s=900)
release.task(cpus=0.5)(fit)
release.gate("gate", metrics_from="fit", minimum={"accuracy": 0.9})
release.register("register", model=MODEL, artifact_from="fit", after=["gate"])
release.canary("canary", model=MODEL, version_from="register", steps=STEPS, timeout_s=300,
               min_requests=20, latency_slack_ms=50.0)
