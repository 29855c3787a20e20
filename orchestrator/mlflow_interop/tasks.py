"""A task that reads a model registered in MLflow into a pipeline as a candidate: gated,
registered in Baton, canaried like any other (`baton serve` serves what it returns)."""

from __future__ import annotations

from typing import Any

from agents.task_api import Result, TaskContext, TaskError


def from_mlflow(ctx: TaskContext) -> Result:
    """Params: `mlflow_tracking_uri`, `mlflow_model`, and `mlflow_version` or
    `mlflow_alias`. Returns the model (its scikit-learn flavor: what `baton serve` calls
    `predict` on) with the MLflow version's run metrics, and where it came from."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    params = ctx.params
    uri, name = params.get("mlflow_tracking_uri"), params.get("mlflow_model")
    version, alias = params.get("mlflow_version"), params.get("mlflow_alias")
    if not uri or not name or (version is None) == (alias is None):
        raise TaskError("from_mlflow needs params mlflow_tracking_uri, mlflow_model, and one "
                        "of mlflow_version or mlflow_alias")
    client = MlflowClient(tracking_uri=str(uri))
    try:
        found = (client.get_model_version(str(name), str(version)) if version is not None
                 else client.get_model_version_by_alias(str(name), str(alias)))
        mlflow.set_tracking_uri(str(uri))
        model: Any = mlflow.sklearn.load_model(f"models:/{name}/{found.version}")
        metrics = client.get_run(found.run_id).data.metrics if found.run_id else {}
    except MlflowException as exc:
        raise TaskError(f"MLflow {uri}: {name} {version or '@' + str(alias)}: {exc.message}"
                        ) from None
    return Result(value=model, metrics={k: float(v) for k, v in metrics.items()}, metadata={
        "mlflow_model": str(name), "mlflow_version": str(found.version),
        "mlflow_run_id": str(found.run_id or ""), "mlflow_source": str(found.source)})
