"""The digits demo's data system and task functions behave as the demo story needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.task_api import ContextData, Result, TaskContext, TaskError
from examples.digits import data, tasks


def _ctx(trigger: dict[str, Any], progress: list[float] | None = None) -> TaskContext:
    seen = progress if progress is not None else []
    ctx_data = ContextData(
        run_id="r",
        pipeline="digits",
        task="train",
        attempt=1,
        attempt_id="r/train/1",
        trigger=trigger,
    )
    return TaskContext(data=ctx_data, report_progress=lambda f, _m: seen.append(f))


def _arrived(published: data.DatasetFile, **extra: Any) -> dict[str, Any]:
    payload = {
        "dataset": published.dataset,
        "version": published.version,
        "uri": published.uri,
        "sha256": published.sha256,
        **extra,
    }
    return {"type": "data_arrived", "payload": payload}


def _run_pipeline(published: data.DatasetFile) -> tuple[Result, Result]:
    ctx = _ctx(_arrived(published))
    ingested = tasks.ingest(ctx)
    feats = tasks.features(ingest=ingested.value)
    model = tasks.train(features=feats.value, ctx=ctx)
    return ingested, tasks.evaluate(train=model.value, features=feats.value)


def test_writing_the_same_version_twice_gives_identical_bytes(tmp_path: Path) -> None:
    # given / when
    first = data.write_version(tmp_path / "a", "v1")
    first_bytes = first.path.read_bytes()
    second = data.write_version(tmp_path / "b", "v1")
    # then
    assert second.path.read_bytes() == first_bytes
    assert second.sha256 == first.sha256


def test_v2_extends_v1_with_shifted_new_rows(tmp_path: Path) -> None:
    # given
    v1 = data.write_version(tmp_path, "v1")
    v2 = data.write_version(tmp_path, "v2")
    # when
    X1, y1 = data.load(v1.path)
    X2, y2 = data.load(v2.path)
    # then
    assert v2.path == tmp_path / "digits" / "v2.npz"
    assert X1.dtype == np.dtype(np.float64) and y1.dtype == np.dtype(np.int64)
    assert X1.shape[1] == 64
    np.testing.assert_array_equal(X2[: v1.rows], X1)
    np.testing.assert_array_equal(X2[v1.rows :], data.new_batch("v2"))
    assert v2.rows == len(y2) == 1797 - len(data.eval_rows()[1])
    assert X2.min() >= 0 and X2.max() <= 16


def test_every_version_is_evaluated_on_the_same_held_out_rows(tmp_path: Path) -> None:
    # given the fixed evaluation set, and both versions' rows
    X_eval, y_eval = data.eval_rows()
    X2, _ = data.load(data.write_version(tmp_path, "v2").path)
    # then it is a fifth of the digits, none of them in any version
    assert len(y_eval) == 359
    in_versions = {row.tobytes() for row in X2}
    assert not any(row.tobytes() in in_versions for row in X_eval)


def test_uri_is_an_absolute_file_uri(tmp_path: Path) -> None:
    # given / when
    published = data.write_version(tmp_path, "v1")
    # then
    assert published.uri.startswith("file:///")
    assert published.uri.endswith("/digits/v1.npz")


def test_v2_model_is_accurate_and_no_worse_than_v1(tmp_path: Path) -> None:
    # given
    v1 = data.write_version(tmp_path, "v1")
    v2 = data.write_version(tmp_path, "v2")
    # when
    _, eval_v1 = _run_pipeline(v1)
    _, eval_v2 = _run_pipeline(v2)
    # then
    assert eval_v1.metrics["accuracy"] >= 0.9
    assert eval_v2.metrics["accuracy"] >= 0.9
    assert eval_v2.metrics["accuracy"] >= eval_v1.metrics["accuracy"]
    assert eval_v2.metrics["f1"] >= 0.9


def test_ingest_reports_dataset_lineage_metadata(tmp_path: Path) -> None:
    # given
    published = data.write_version(tmp_path, "v1")
    # when
    ingested, _ = _run_pipeline(published)
    # then
    assert dict(ingested.metadata) == {
        "dataset": "digits",
        "dataset_version": "v1",
        "dataset_sha256": published.sha256,
        "rows": published.rows,
    }


def test_ingest_reads_dataset_uri_from_a_drift_trigger(tmp_path: Path) -> None:
    # given
    published = data.write_version(tmp_path, "v2")
    payload = {
        "model": "digits-clf",
        "dataset": "digits",
        "dataset_version": "v2",
        "dataset_uri": published.uri,
        "dataset_sha256": published.sha256,
    }
    # when
    result = tasks.ingest(_ctx({"type": "drift_detected", "payload": payload}))
    # then
    assert result.metadata["dataset_version"] == "v2"
    assert result.value["X"].shape == (published.rows, 64)


def test_ingest_without_uri_fails_permanently_naming_the_field() -> None:
    # given
    ctx = _ctx({"type": "manual", "payload": {}})
    # when / then
    with pytest.raises(TaskError, match="'uri'") as caught:
        tasks.ingest(ctx)
    assert caught.value.retryable is False


def test_ingest_with_wrong_sha256_fails_permanently(tmp_path: Path) -> None:
    # given
    published = data.write_version(tmp_path, "v1")
    ctx = _ctx(_arrived(published, sha256="0" * 64))
    # when / then
    with pytest.raises(TaskError, match="sha256 mismatch") as caught:
        tasks.ingest(ctx)
    assert caught.value.retryable is False


def test_manual_run_with_only_a_uri_derives_dataset_and_version(tmp_path: Path) -> None:
    # given
    published = data.write_version(tmp_path, "v1")
    ctx = _ctx({"type": "manual", "payload": {"uri": published.uri}})
    # when
    result = tasks.ingest(ctx)
    # then
    assert (result.metadata["dataset"], result.metadata["dataset_version"]) == ("digits", "v1")


def test_features_split_is_stratified_and_scaled(tmp_path: Path) -> None:
    # given
    X, y = data.load(data.write_version(tmp_path, "v1").path)
    # when
    result = tasks.features(ingest={"X": X, "y": y})
    # then
    feats = result.value
    assert feats["X_train"].max() <= 1.0 and feats["X_test"].min() >= 0.0
    assert result.metadata["test_rows"] == pytest.approx(0.25 * len(y), abs=1)
    assert set(np.unique(feats["y_test"])) == set(range(10))
    assert result.metadata["n_features"] == 64


def test_train_reports_progress_up_to_completion(tmp_path: Path) -> None:
    # given
    published = data.write_version(tmp_path, "v1")
    seen: list[float] = []
    ctx = _ctx(_arrived(published), seen)
    feats = tasks.features(ingest=tasks.ingest(ctx).value)
    # when
    result = tasks.train(features=feats.value, ctx=ctx)
    # then
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == 1.0
    assert result.metadata["algorithm"] == "SVC(rbf)"
