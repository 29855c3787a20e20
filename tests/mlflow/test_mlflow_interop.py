"""MLflow interop against a real `mlflow server` (SQLite backend, started here): a model
registered in MLflow is read into a pipeline as a candidate, gated and registered in Baton;
`baton mlflow mirror` then mirrors Baton's versions, metrics and alias moves to MLflow, once.
Runs where the `mlflow` extra is installed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

mlflow = pytest.importorskip(
    "mlflow", reason="mlflow test: needs MLflow, an optional extra CI does not install: "
                     "pip install -e '.[mlflow]'")

from agents.artifacts import ArtifactStore  # noqa: E402
from events.common import Capabilities  # noqa: E402
from events.pipeline import GateSpec, PipelineSpec, RegisterSpec, TaskSpec  # noqa: E402
from events.runs import TaskSucceeded  # noqa: E402
from orchestrator.service.embedded_app import AgentSpec, EmbeddedApp  # noqa: E402
from orchestrator.service.home import Home  # noqa: E402
from orchestrator.service.model_requests import registry_of  # noqa: E402
from tests.e2e.support import baton  # noqa: E402
from tests.integration.support import Apps, run_to_end, submit  # noqa: E402

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
OUTSIDE, IMPORTED = "outside-digits", "imported"


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on a free loopback port, until the module ends."""
    root = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", (root / "artifacts").as_uri(), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        import urllib.request
        while True:
            assert server.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer within 120 s"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def outside(tracking: str) -> str:
    """A digits model someone registered in MLflow, with its accuracy, aliased `candidate`."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    X, y = load_digits(return_X_y=True)
    model = SVC(gamma="scale").fit(X[:1200] / 16, y[:1200])
    mlflow.set_tracking_uri(tracking)
    with warnings.catch_warnings(), mlflow.start_run():
        warnings.simplefilter("ignore")  # MLflow's own notes on signatures it infers
        mlflow.log_metric("accuracy", model.score(X[1200:] / 16, y[1200:]))
        mlflow.sklearn.log_model(model, name="model", registered_model_name=OUTSIDE)
    mlflow.MlflowClient(tracking).set_registered_model_alias(OUTSIDE, "candidate", "1")
    return tracking


def imported_pipeline(tracking: str) -> PipelineSpec:
    return PipelineSpec(name="imported", tasks=(
        TaskSpec(name="candidate", function="orchestrator.mlflow_interop.tasks:from_mlflow",
                 params={"mlflow_tracking_uri": tracking, "mlflow_model": OUTSIDE,
                         "mlflow_alias": "candidate"}),
        TaskSpec(name="gate", kind="gate", deps=("candidate",), gate=GateSpec(
            metrics_from="candidate", minimum={"accuracy": 0.9}, model=IMPORTED)),
        TaskSpec(name="register", kind="register", deps=("gate",), registration=RegisterSpec(
            model=IMPORTED, artifact_from="candidate", metrics_from="candidate",
            promote_to="champion")),
    ))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def imported(outside: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[tuple[Home, list[TaskSucceeded]]]:
    """A Baton home where the pipeline read MLflow's candidate, gated and registered it."""
    home = Home(tmp_path_factory.mktemp("baton") / "home")
    apps = Apps(home)
    try:
        spec = imported_pipeline(outside)
        app = EmbeddedApp(home, {spec.name: spec},
                          [AgentSpec(Capabilities(cpus=2, memory_mb=2048))])
        apps.opened.append(app)
        bus = await app.start()
        events = await run_to_end(bus, await submit(bus, spec, "from-mlflow"))
        yield home, [e.data for e in events if isinstance(e.data, TaskSucceeded)]
    finally:
        await apps.close_all()


@MODULE_LOOP
async def test_a_model_registered_in_mlflow_is_read_in_as_a_candidate(
    imported: tuple[Home, list[TaskSucceeded]],
) -> None:
    home, succeeded = imported
    # then the candidate came from MLflow's alias, with its metrics, and passed the gate
    (candidate,) = [s for s in succeeded if s.task == "candidate"]
    assert candidate.metadata["mlflow_model"] == OUTSIDE
    assert candidate.metadata["mlflow_version"] == "1"
    assert candidate.metrics["accuracy"] > 0.9
    assert {s.task for s in succeeded} == {"candidate", "gate", "register"}
    # and Baton registered it as a version of its own, champion, that answers predictions
    from bus import open_bus_url
    bus = await open_bus_url("embedded", home.root)
    try:
        registry = await registry_of(bus)
    finally:
        await bus.close()
    state = registry.model(IMPORTED)
    assert state.holder("champion") == 1
    model = ArtifactStore(home.artifacts).get_object(state.versions[1].data.artifact)
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    assert (model.predict(X[1500:1510] / 16) == y[1500:1510]).mean() >= 0.8


@MODULE_LOOP
async def test_the_registry_is_mirrored_to_mlflow_once(
    imported: tuple[Home, list[TaskSucceeded]], outside: str,
) -> None:
    home, _ = imported
    # when Baton's registry is mirrored to MLflow
    mirrored = baton(home.root, "mlflow", "mirror", "--tracking-uri", outside, "--once")
    assert mirrored.returncode == 0, mirrored.stderr
    assert "2 changes mirrored" in mirrored.stdout  # the version and the champion alias
    # then MLflow has the version, tagged with Baton's, its metrics in its run, the alias
    client = mlflow.MlflowClient(outside)
    (version,) = client.search_model_versions(f"name='{IMPORTED}'")
    assert version.tags["baton.version"] == "1" and version.tags["baton.status"] == "registered"
    assert version.tags["baton.admitted_by"]
    assert client.get_model_version_by_alias(IMPORTED, "champion").version == version.version
    run = client.get_run(version.run_id)
    assert run.data.metrics["accuracy"] > 0.9
    assert run.data.params["pipeline"] == "imported"
    assert [a.path for a in client.list_artifacts(version.run_id, "baton")]
    # and mirrored again, nothing is made twice
    again = baton(home.root, "mlflow", "mirror", "--tracking-uri", outside, "--once")
    assert again.returncode == 0 and "0 changes mirrored" in again.stdout
    assert len(client.search_model_versions(f"name='{IMPORTED}'")) == 1


def test_a_tracking_server_that_does_not_answer_is_said_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert baton(home, "run", "--help").returncode == 0
    made = baton(home, "mlflow", "mirror", "--tracking-uri", "http://127.0.0.1:9", "--once")
    assert made.returncode in (1, 2) and "Traceback" not in made.stderr
    assert made.stderr.strip().count("\n") == 0, made.stderr
