"""MLflow interop (the `mlflow` extra): Baton's registry mirrored to an MLflow tracking server,
and a model registered in MLflow read into a pipeline as a candidate."""
