"""The drift monitor's event is built by the contract's rules: what a consumer would refuse is
refused where the event is made, naming the field (the CLI maps it to the flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from events.errors import EventParseError
from orchestrator.monitor.check import DriftCheck, drift_record, run_check

MODEL: dict[str, Any] = {"model": "digits-classifier", "version": 2,
                         "lineage": {"dataset": "digits", "trigger": {"payload": {}}}}


def drifting(tmp_path: Path, **overrides: Any) -> DriftCheck:
    """A reference and a batch whose every feature moved."""
    rng = np.random.default_rng(0)
    reference, batch = tmp_path / "reference.npz", tmp_path / "batch.npz"
    np.savez(reference, X=rng.normal(size=(200, 4)))
    np.savez(batch, X=rng.normal(loc=5.0, size=(200, 4)))
    return DriftCheck(model=MODEL, reference=reference, batch=batch, **overrides)


def test_a_drifted_batch_makes_an_event_that_passes_the_consumers_check(tmp_path: Path) -> None:
    # given / when: a batch that drifted
    report, event = run_check(drifting(tmp_path, retrain_version="v3"))
    # then: an event the fan-out would accept, for the version given
    assert report.drifted and event is not None
    env, record = drift_record(event)
    assert (env.data, record.key) == (event, "digits-classifier")
    assert event.dataset_version == "v3"


def test_an_empty_retrain_version_is_refused_not_replaced_by_the_batch_name(
    tmp_path: Path,
) -> None:
    # given: --retrain-version '' (only an absent one means "the batch's name")
    check = drifting(tmp_path, retrain_version="")
    # when / then
    with pytest.raises(EventParseError) as err:
        run_check(check)
    assert err.value.field == "data.dataset_version"


def test_a_batch_drifts_only_when_the_share_of_features_that_moved_is_enough(
        tmp_path: Path) -> None:
    # given a batch where one feature of four moved
    rng = np.random.default_rng(1)
    reference, batch = tmp_path / "reference.npz", tmp_path / "batch.npz"
    np.savez(reference, X=rng.normal(size=(400, 4)))
    moved = rng.normal(size=(400, 4))
    moved[:, 0] += 5.0
    np.savez(batch, X=moved)
    check = DriftCheck(model=MODEL, reference=reference, batch=batch, retrain_version="v2")
    # then a quarter is drift under the default share (5%), not when half must move
    assert run_check(check)[0].drifted
    report, event = run_check(DriftCheck(**{**check.__dict__, "min_share": 0.5}))
    assert not report.drifted and event is None
    assert report.drifted_features == ("feature_0",)
