"""Task functions of the digits pipeline: ingest -> features -> train -> evaluate.

numpy and scikit-learn are imported inside the tasks that use them: the coordinator imports
this module to declare the pipeline (it reads each function's signature) and never runs a
task, so it need not load the ML stack (~130 MB of its RSS)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from agents.task_api import Result, Scalar, TaskContext, TaskError
from events.evaluation import EVAL_SET, OUTCOMES, encode_outcomes, fingerprint

MAX_PIXEL = 16.0
TEST_SIZE = 0.25
SPLIT_SEED = 0
SVC_C = 10.0


def ingest(ctx: TaskContext) -> Result:
    """Load exactly the version the trigger names, so lineage points at real bytes."""
    from examples.digits.data import load

    payload: Mapping[str, Any] = ctx.trigger.get("payload", {})
    path = _resolve_path(payload)
    actual = _verified_sha256(path, payload)
    X, y = load(path)
    metadata: dict[str, Scalar] = {
        "dataset": str(payload.get("dataset", path.parent.name)),
        "dataset_version": str(_first(payload, "version", "dataset_version") or path.stem),
        "dataset_sha256": actual,
        "rows": int(y.shape[0]),
    }
    return Result(value={"X": X, "y": y}, metadata=metadata)


def features(ingest: dict[str, Any]) -> Result:
    """A fixed, stratified split keeps evaluations of different versions comparable."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    X = np.asarray(ingest["X"], dtype=np.float64) / MAX_PIXEL
    y = np.asarray(ingest["y"], dtype=np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, stratify=y, random_state=SPLIT_SEED
    )
    value = {"X_train": X_train, "X_test": X_test, "y_train": y_train, "y_test": y_test}
    metadata = {
        "train_rows": int(X_train.shape[0]),
        "test_rows": int(X_test.shape[0]),
        "n_features": int(X.shape[1]),
    }
    return Result(value=value, metadata=metadata)


def train(features: dict[str, Any], ctx: TaskContext) -> Result:
    """An RBF SVM: deterministic, fast on 64 features, and well above 0.9 accuracy."""
    from sklearn.svm import SVC

    ctx.progress(0.1, "fitting SVC(rbf)")
    model = SVC(C=SVC_C, kernel="rbf", gamma="scale")
    model.fit(features["X_train"], features["y_train"])
    ctx.progress(0.9, f"fitted on {len(features['y_train'])} rows")
    metadata: dict[str, Scalar] = {
        "algorithm": "SVC(rbf)",
        "C": SVC_C,
        "n_support": int(model.n_support_.sum()),
    }
    ctx.progress(1.0, "done")
    return Result(value=model, metadata=metadata)


def evaluate(train: Any, features: dict[str, Any]) -> Result:
    """Accuracy and macro F1 (a gate notices a single class collapsing) on the fixed
    evaluation set, the same rows for every version (`data.eval_rows`): the metadata names
    the set by its fingerprint and says which rows the model got right, so a gate compares
    two versions on the same rows (McNemar's test). The version's own test split is
    reported too (`test_accuracy`)."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    from examples.digits.data import eval_rows

    X_eval, y_eval = eval_rows()
    predicted = np.asarray(train.predict(X_eval / MAX_PIXEL))
    right = predicted == y_eval
    scores = {"accuracy": float(accuracy_score(y_eval, predicted)),
              "f1": float(f1_score(y_eval, predicted, average="macro", zero_division=0)),
              "test_accuracy": float(accuracy_score(features["y_test"],
                                                    train.predict(features["X_test"])))}
    metadata: dict[str, Scalar] = {
        EVAL_SET: fingerprint(X_eval.astype(np.float64).tobytes(), y_eval.astype(np.int64)
                              .tobytes()),
        OUTCOMES: encode_outcomes(bool(r) for r in right),
        "eval_rows": int(y_eval.shape[0]),
    }
    return Result(value=dict(scores), metrics=scores, metadata=metadata)


def _resolve_path(payload: Mapping[str, Any]) -> Path:
    """Data-arrived triggers carry `uri`; drift triggers carry `dataset_uri`."""
    uri = _first(payload, "uri", "dataset_uri")
    if not uri:
        raise TaskError(
            "trigger payload has no dataset location: set payload 'uri' "
            "(or 'dataset_uri') to a file:// URI of an npz file",
            retryable=False,
        )
    path = _uri_to_path(str(uri))
    if not path.is_file():
        raise TaskError(f"dataset file not found: {path} (from {uri})", retryable=False)
    return path


def _uri_to_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    raise TaskError(f"unsupported dataset URI scheme {parsed.scheme!r} in {uri}", retryable=False)


def _verified_sha256(path: Path, payload: Mapping[str, Any]) -> str:
    """A mismatch means the file changed after it was announced; retrying cannot fix that."""
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = _first(payload, "sha256", "dataset_sha256")
    if expected and str(expected).lower() != actual:
        raise TaskError(
            f"sha256 mismatch for {path}: trigger says {expected}, file has {actual}",
            retryable=False,
        )
    return actual


def _first(payload: Mapping[str, Any], *keys: str) -> Any:
    return next((payload[key] for key in keys if payload.get(key)), None)


def package(train: Any, ctx: TaskContext) -> Result:
    """The fitted model as it will be served. Its `flaw` param ("errors", "slow") breaks it
    here, after evaluation: offline numbers stay good, only live traffic shows the flaw,
    which is what a canary is for (examples/digits/flaws.py)."""
    from examples.digits.flaws import flawed

    flaw = str(ctx.params.get("flaw", "none"))
    try:
        served = flawed(train, flaw)
    except ValueError as exc:
        raise TaskError(str(exc)) from None
    return Result(value=served, metadata={"flaw": flaw})
