"""The PyTorch variant of the digits pipeline: declared without torch, trained where it runs.

Tests marked `torch` need the torch extra and run on the CPU; tests marked `gpu` need a CUDA
GPU as well. tests/conftest.py skips them, with the reason, where those are missing (CI
installs no torch); everything unmarked here runs everywhere.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.task_api import ContextData, TaskContext, TaskError
from events import runs as ev
from examples.digits import data, tasks, torch_tasks
from examples.digits.pipeline import TORCH_MODEL, digits, digits_torch, digits_torch_cpu
from tests.e2e.support import REPO, RunLog, Service, baton, cli_env, command, wait_for_run_log

RUN_TIMEOUT_S = 240.0


def _ctx(*, gpus: tuple[int, ...] = (), params: dict[str, Any] | None = None,
         progress: list[tuple[float, str]] | None = None) -> TaskContext:
    seen = progress if progress is not None else []
    ctx_data = ContextData(run_id="r", pipeline="digits_torch", task="train", attempt=1,
                           attempt_id="r/train/1", params=params or {}, gpus=gpus)
    return TaskContext(data=ctx_data, report_progress=lambda f, m: seen.append((f, m)))


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    X, y = data.load(data.write_version(tmp_path_factory.mktemp("data"), "v1").path)
    value: dict[str, Any] = tasks.features(ingest={"X": X, "y": y}).value
    return value


# -- declared and loaded without torch (these run in CI) ------------------------------------

def test_torch_pipelines_reuse_the_digits_steps_and_differ_only_in_train() -> None:
    # given / when
    svm, on_gpu, on_cpu = digits.spec(), digits_torch.spec(), digits_torch_cpu.spec()
    # then: ingest, features and evaluate are the digits functions, with the same requests
    for name in ("ingest", "features", "evaluate"):
        assert on_gpu.task(name).function == on_cpu.task(name).function == svm.task(name).function
        assert on_gpu.task(name).resources == svm.task(name).resources
    # and: train is the network, asking for one GPU in digits_torch and none in the CPU variant
    assert on_gpu.task("train").function == "examples.digits.torch_tasks:train"
    assert on_cpu.task("train").function == "examples.digits.torch_tasks:train"
    assert (on_gpu.task("train").resources.gpus, on_cpu.task("train").resources.gpus) == (1, 0)
    # and: the networks are registered as their own model, gated against their own champion
    for spec in (on_gpu, on_cpu):
        assert [t.name for t in spec.tasks] == [t.name for t in svm.tasks]
        gate, register = spec.task("gate").gate, spec.task("register").registration
        assert gate is not None and register is not None
        assert (gate.model, register.model, register.artifact_from) == (
            TORCH_MODEL, TORCH_MODEL, "train")


def test_pipelines_validate_loads_the_torch_pipelines_where_torch_cannot_be_imported(
    tmp_path: Path,
) -> None:
    # given: a `torch` package that refuses to be imported, ahead of any real one
    blocker = tmp_path / "blocked" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked by this test')\n")
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker.parent), env["PYTHONPATH"]])
    refs = ["examples.digits.pipeline:digits_torch", "examples.digits.pipeline:digits_torch_cpu"]
    # when: the pipelines are validated as a coordinator would load them
    result = subprocess.run(command(tmp_path / "home", "pipelines", "validate", *refs),
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    # then: both load, and say what they run
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["digits_torch", "digits_torch_cpu"]
    assert all(line.endswith("ingest -> features -> train -> evaluate -> gate -> register")
               for line in lines)


def test_training_without_torch_fails_once_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, features: dict[str, Any]
) -> None:
    # given: an agent on which `import torch` fails
    monkeypatch.setitem(sys.modules, "torch", None)
    # when / then: the task fails permanently, saying how to install torch
    with pytest.raises(TaskError, match=r"pip install -e '\.\[torch\]'") as caught:
        torch_tasks.train(features=features, ctx=_ctx())
    assert caught.value.retryable is False


@pytest.mark.parametrize("epochs", ["0", "-3", "many", "10001"])
def test_an_impossible_epochs_param_fails_permanently_naming_it(
    features: dict[str, Any], epochs: str
) -> None:
    # given: a run started with `--param epochs=...` that is no whole number from 1 to 10000
    ctx = _ctx(params={"epochs": epochs})
    # when / then
    with pytest.raises(TaskError, match=f"param epochs='{epochs}'") as caught:
        torch_tasks.train(features=features, ctx=ctx)
    assert caught.value.retryable is False


def test_the_trained_network_predicts_with_numpy_alone() -> None:
    # given: a network whose hidden units copy the two inputs and whose classes score them
    net = torch_tasks.MLPClassifier(
        w1=np.eye(2), b1=np.zeros(2),
        w2=np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), b2=np.array([0.0, 0.0, 0.5]))
    X = np.array([[2.0, 1.0], [1.0, 2.0], [-1.0, -1.0]])
    # when: it predicts, also after a round trip through the artifact store's pickle
    restored = pickle.loads(pickle.dumps(net))
    # then: the larger input wins; ReLU zeroes negatives, so the bias of class 2 wins there
    np.testing.assert_array_equal(net.predict(X), [0, 1, 2])
    np.testing.assert_array_equal(restored.predict(X), [0, 1, 2])
    # and: the digits evaluate step takes a network as it takes the SVM (one that always
    # says 3 is right on the evaluation set's threes alone)
    threes = torch_tasks.MLPClassifier(w1=np.zeros((1, 64)), b1=np.zeros(1),
                                       w2=np.zeros((10, 1)), b2=np.eye(10)[3])
    X_eval, y_eval = data.eval_rows()
    scores = tasks.evaluate(train=threes, features={"X_test": X_eval / 16, "y_test": y_eval})
    assert scores.metrics["accuracy"] == pytest.approx(float(np.mean(y_eval == 3)))
    assert scores.metrics["test_accuracy"] == scores.metrics["accuracy"]


# -- the network, trained on the CPU (needs torch) ------------------------------------------

@pytest.mark.torch
def test_a_task_given_no_gpu_trains_on_the_cpu_accurately_and_says_so(
    features: dict[str, Any],
) -> None:
    import torch

    # given
    progress: list[tuple[float, str]] = []
    # when
    trained = torch_tasks.train(features=features, ctx=_ctx(progress=progress))
    # then: the network is accurate on held-out data
    evaluated = tasks.evaluate(train=trained.value, features=features)
    assert evaluated.metrics["accuracy"] >= 0.95
    # and: the result records where and how it was trained
    assert trained.metadata["device"] == trained.metadata["device_name"] == "cpu"
    assert trained.metadata["device_note"] == "no GPU assigned to this task"
    assert trained.metadata["torch_version"] == str(torch.__version__)
    assert trained.metrics["epochs"] == torch_tasks.EPOCHS
    assert 0 < trained.metrics["train_seconds"] < 120
    assert trained.metrics["train_accuracy"] >= evaluated.metrics["accuracy"] - 0.05
    # and: progress rose to 1.0 in a bounded number of reports, naming epochs
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(progress) <= torch_tasks.PROGRESS_REPORTS + 1
    assert progress[-1][1].startswith(f"epoch {torch_tasks.EPOCHS}/{torch_tasks.EPOCHS} loss ")


@pytest.mark.torch
def test_the_same_data_and_seed_give_the_same_network_on_the_cpu(
    features: dict[str, Any],
) -> None:
    # given / when: two trainings of three epochs
    first = torch_tasks.train(features=features, ctx=_ctx(params={"epochs": "3"}))
    second = torch_tasks.train(features=features, ctx=_ctx(params={"epochs": "3"}))
    # then: the weights are identical, and the epochs param was honoured
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(getattr(first.value, name), getattr(second.value, name))
    assert first.metrics["epochs"] == 3.0


@pytest.mark.torch
def test_an_assigned_gpu_torch_cannot_see_falls_back_to_the_cpu_and_says_why(
    monkeypatch: pytest.MonkeyPatch, features: dict[str, Any],
) -> None:
    import torch

    # given: an agent that advertised a simulated GPU (`--gpus 1`): torch sees no CUDA device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # when
    trained = torch_tasks.train(features=features, ctx=_ctx(gpus=(0,), params={"epochs": "2"}))
    # then
    assert trained.metadata["device"] == "cpu"
    assert trained.metadata["assigned_gpus"] == "0"
    assert "torch sees no CUDA device" in str(trained.metadata["device_note"])


# -- on the GPU Baton assigned (needs torch and CUDA) ---------------------------------------

@pytest.mark.gpu
def test_a_task_given_a_gpu_trains_on_it(features: dict[str, Any]) -> None:
    import torch

    # given: the task was given GPU 0 (in a task process, the agent's CUDA_VISIBLE_DEVICES
    # makes the assigned GPU cuda:0 whatever its index on the machine)
    ctx = _ctx(gpus=(0,))
    # when
    trained = torch_tasks.train(features=features, ctx=ctx)
    # then: it trained there, and the network is as accurate as on the CPU
    assert trained.metadata["device"] == "cuda:0"
    assert trained.metadata["device_name"] == torch.cuda.get_device_name(0)
    assert trained.metadata["cuda_version"] == str(torch.version.cuda)
    assert tasks.evaluate(train=trained.value, features=features).metrics["accuracy"] >= 0.95


# -- whole runs through `baton up` (real agent, real worker processes) ----------------------

@pytest.fixture
def up(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.reap()


def _run_to_the_end(tmp_path: Path, up: list[Service], pipeline: str,
                    *agent_flags: str) -> dict[str, Any]:
    """`baton up` with one agent, a published digits v1, and the run as `runs show` has it."""
    home = tmp_path / "home"
    ref = f"examples.digits.pipeline:{pipeline}"
    up.append(Service.spawn(home, ["up", "--pipeline", ref, "--agents", "1", *agent_flags],
                            tmp_path / "up.log"))
    published = data.write_version(home / "datasets", "v1")
    sent = baton(home, "publish", "data-arrived", "--dataset", "digits", "--version", "v1",
                 "--uri", str(published.path))
    assert sent.returncode == 0, sent.stderr

    def ended(log: RunLog) -> bool:
        return any(isinstance(e.data, ev.RunSucceeded | ev.RunFailed) for e in log)

    log = wait_for_run_log(home, ended, timeout=RUN_TIMEOUT_S)
    run_id = next(e.data.run_id for e in log if isinstance(e.data, ev.RunCreated))
    shown = baton(home, "runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    run: dict[str, Any] = json.loads(shown.stdout)
    assert run["status"] == "succeeded", f"{run}\n{up[0].output()}"
    return run


def _task(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in run["tasks"] if t["name"] == name)


@pytest.mark.e2e
@pytest.mark.torch
def test_digits_torch_cpu_runs_end_to_end_on_a_cpu_agent(
    tmp_path: Path, up: list[Service]
) -> None:
    # given / when: the CPU variant served by `baton up` with a CPU-only agent
    run = _run_to_the_end(tmp_path, up, "digits_torch_cpu", "--gpus", "none")
    # then: the network trained on the CPU, passed the gate and was registered
    train, evaluate = _task(run, "train"), _task(run, "evaluate")
    assert train["metadata"]["device"] == "cpu"
    assert evaluate["metrics"]["accuracy"] >= 0.95
    assert run["models"] == [{"name": TORCH_MODEL, "version": 1}]


@pytest.mark.e2e
@pytest.mark.gpu
def test_digits_torch_runs_on_the_gpu_the_agent_detected_and_assigned(
    tmp_path: Path, up: list[Service]
) -> None:
    import torch

    # given / when: digits_torch served by `baton up`, whose agent detects this machine's GPUs
    run = _run_to_the_end(tmp_path, up, "digits_torch")
    # then: train ran in a process that saw exactly the GPU it was given, as cuda:0
    train = _task(run, "train")
    assigned = train["metadata"]["assigned_gpus"]
    assert train["metadata"]["device"] == "cuda:0"
    assert train["metadata"]["cuda_visible_devices"] == assigned != ""
    names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
    assert train["metadata"]["device_name"] in names
    assert _task(run, "evaluate")["metrics"]["accuracy"] >= 0.95
    assert run["models"] == [{"name": TORCH_MODEL, "version": 1}]
