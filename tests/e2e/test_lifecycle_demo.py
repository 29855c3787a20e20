"""`baton demo --lifecycle` as a user runs it: the model's whole loop on the digits data, told
by the registry and the run logs (`--json`); then `baton monitor drift --from-serving` on
what that demo's gateway was asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.digits import data
from tests.e2e.support import baton

MODEL = "digits-classifier"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("lifecycle") / "home"
    done = baton(home, "demo", "--lifecycle", "--json", "--http", "off", timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return home, json.loads(done.stdout)


def test_v2_is_promoted_by_its_canary_and_broken_v3_rolled_back_the_champion_unmoved(
    lifecycle: tuple[Path, dict[str, Any]],
) -> None:
    _, summary = lifecycle
    # then v1 came from data, v2 from the drift the gateway's traffic showed, v3 by hand
    runs = summary["runs"]
    assert [(r["trigger_type"], r["status"]) for r in runs] == [
        ("data_arrived", "succeeded"), ("drift_detected", "succeeded"), ("manual", "failed")]
    assert [(m["version"], m["dataset_version"]) for m in summary["models"]] == [
        (1, "v1"), (2, "v2"), (3, "v2")]
    # and v2's canary passed both steps and promoted it; v3's rolled back in its first step
    promoted, rolled_back = summary["canaries"]
    assert (promoted["version"], promoted["against"], promoted["verdict"]) == (2, 1, "promoted")
    assert [s["verdict"] for s in promoted["steps"]] == ["passed", "passed"]
    assert (rolled_back["version"], rolled_back["against"]) == (3, 2)
    assert rolled_back["verdict"] == "rolled_back" and "error rate" in rolled_back["reason"]
    assert [s["verdict"] for s in rolled_back["steps"]] == ["failed", "not reached"]
    assert rolled_back["steps"][0]["candidate"]["errors"] > 0
    # and the champion moved twice, by v1's registration and v2's canary, never to v3
    assert summary["aliases"] == {MODEL: {"champion": 2}}
    moves = [(h["move"], h["previous"], h["version"]) for h in summary["alias_history"]]
    assert moves == [("promote", None, 1), ("promote", 1, 2)]
    assert summary["alias_history"][1]["run_id"] == promoted["run_id"]
    # and the gateway answered all three; v3's errors are the only ones
    answers = summary["traffic"]["answers"]
    assert answers["v1"] > 0 and answers["v2"] > 0 and answers["v3"] > 0
    assert set(answers) <= {"v1", "v2", "v3", "HTTP 422"}


def test_the_drift_monitor_reads_what_the_gateway_was_asked(
    lifecycle: tuple[Path, dict[str, Any]], tmp_path: Path,
) -> None:
    # given the demo's serving windows, and v1's training rows in the model's input space
    home, _ = lifecycle
    X, _ = data.load(home / "datasets" / "digits" / "v1.npz")
    reference = tmp_path / "v1-inputs.npz"
    np.savez(reference, X=X / 16)
    retrain = home / "datasets" / "digits" / "v2.npz"
    flags = ["--model", MODEL, "--from-serving", "--since", "3600", "--version", "1",
             "--reference", str(reference)]
    # when it compares them (a dry run), then it finds the scanner's shift
    dry = baton(home, "monitor", "drift", *flags, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "psi drift of what v1 was asked" in dry.stdout
    assert "no drift event published (dry run)" in dry.stdout
    # and with data to retrain on, it publishes the drift event
    published = baton(home, "monitor", "drift", *flags, "--retrain-on", str(retrain))
    assert published.returncode == 0, published.stderr
    assert "published drift_detected" in published.stdout
    # and too little traffic, or no data to retrain on, are said in one line
    few = baton(home, "monitor", "drift", *flags, "--min-rows", "100000000", "--dry-run")
    assert few.returncode == 0 and "too little serving traffic to judge" in few.stdout
    missing = baton(home, "monitor", "drift", *flags)
    assert missing.returncode == 2 and "give --retrain-on PATH" in missing.stderr
    both = baton(home, "monitor", "drift", *flags, "--batch", str(reference), "--dry-run")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    for result in (dry, published, few, missing, both):
        assert "Traceback" not in result.stderr
