"""A canary against real processes: `baton up` (coordinator, registry, agent), `baton serve`
taking real HTTP traffic from a load generator in the test, and `baton` commands. A healthy
version is moved through its steps and promoted; a failing one is rolled back at once with
the champion never moving; a coordinator SIGKILLed mid-canary resumes it from the log."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_digits

from events import canary as cn
from events import runs as ev
from tests.e2e.canary_pipelines import MODEL
from tests.e2e.support import RunLog, Service, baton, of_run, wait_for_run_log

PIPELINES = ["tests.e2e.canary_pipelines:first_release", "tests.e2e.canary_pipelines:release"]
MAX_REQUESTS = 60_000
"""What one load generator sends at most, whatever happens (and for at most MAX_LOAD_S)."""
MAX_LOAD_S = 180.0

pytestmark = pytest.mark.e2e


@dataclass
class Load:
    """Clients predicting without pause on loopback, bounded in count and in time."""

    url: str
    clients: int = 2
    answers: Counter[tuple[int, int | None]] = field(default_factory=Counter)
    """(status, version) -> how many."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        digits = load_digits()  # threes alone: both versions predict the same class, so a
        rows = (digits.data[digits.target == 3] / 16).tolist()  # healthy one never shifts
        deadline = time.monotonic() + MAX_LOAD_S

        def client(first: int) -> None:
            with httpx.Client(timeout=30) as http:
                i = first
                while not self._stop.is_set() and time.monotonic() < deadline:
                    with self._lock:
                        if sum(self.answers.values()) >= MAX_REQUESTS:
                            return
                    answer = http.post(self.url, json={"instances": [rows[i % len(rows)]]})
                    version = answer.json().get("version") if answer.status_code == 200 else None
                    with self._lock:
                        self.answers[(answer.status_code, version)] += 1
                    i += self.clients

        self._threads = [threading.Thread(target=client, args=(n,)) for n in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@dataclass
class Released:
    home: Path
    root: Path
    url: str
    up: list[Service]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Released]:
    """`baton up` with the pipelines, v1 promoted to champion by a first run, and `baton
    serve` answering with it (windows every half second)."""
    root = tmp_path_factory.mktemp("canary")
    home = root / "home"
    up = [Service.start(home, PIPELINES, root / "up-1.log")]
    gateway: Service | None = None
    try:
        first = _run(home, "first_release")
        wait_for_run_log(home, _has(ev.RunSucceeded, first), timeout=120)
        gateway = Service.spawn(home, ["serve", "--model", MODEL, "--http", "127.0.0.1:0",
                                       "--window", "0.5"], root / "serve.log")
        gateway.until_printed("answers now")
        found = re.search(r"at (http://\S+)/v1/models", gateway.output())
        assert found, gateway.output()
        yield Released(home, root, f"{found.group(1)}/v1/models/{MODEL}:predict", up)
    finally:
        for service in ([gateway] if gateway else []) + up:
            service.stop()
            service.reap()


def _run(home: Path, pipeline: str, *params: str) -> str:
    args = [a for p in params for a in ("--param", p)]
    refs = [a for ref in PIPELINES for a in ("--pipeline-ref", ref)]
    started = baton(home, "run", pipeline, *refs, *args)
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def _has(kind: type, run_id: str) -> Callable[[RunLog], bool]:
    return lambda log: any(isinstance(e.data, kind) for e in of_run(log, run_id))


def _ended(run_id: str) -> Callable[[RunLog], bool]:
    return lambda log: any(isinstance(e.data, ev.RunSucceeded | ev.RunFailed)
                           for e in of_run(log, run_id))


def _of(log: RunLog, run_id: str, kind: type) -> list:  # type: ignore[type-arg]
    return [e.data for e in of_run(log, run_id) if isinstance(e.data, kind)]


def _models(home: Path, *args: str) -> Any:
    result = baton(home, "models", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _champion(home: Path) -> int:
    return int(_models(home, "show", MODEL)["aliases"]["champion"])


def _moves(home: Path) -> list[tuple[str, int | None, int]]:
    return [(h["move"], h["previous"], h["version"]) for h in _models(home, "history", MODEL)
            if h["move"] != "refused"]


def _until_served(url: str, version: int, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    instance = (load_digits().data[:1] / 16).tolist()
    while httpx.post(url, json={"instances": instance}, timeout=30).json().get(
            "version") != version:
        assert time.monotonic() < deadline, f"v{version} not served within {within_s:g} s"
        time.sleep(0.05)


def test_a_healthy_version_goes_through_its_steps_and_is_promoted(released: Released) -> None:
    # given v1 as champion, serving real traffic
    with Load(released.url) as load:
        # when a run registers v2 and canaries it
        run_id = _run(released.home, "release")
        log = wait_for_run_log(released.home, _ended(run_id), timeout=180)
    # then every step passed its analyses and the champion moved to v2, citing the gate
    (ended,) = _of(log, run_id, cn.CanaryEnded)
    assert ended.verdict == "promoted", ended.reason
    assert [(s.percent, s.verdict) for s in ended.report.steps] == [(20, "passed"),
                                                                    (50, "passed")]
    assert all(s.analyses >= 1 and s.candidate.requests > 0 for s in ended.report.steps)
    assert _of(log, run_id, ev.RunSucceeded)
    assert _champion(released.home) == 2
    assert _moves(released.home) == [("promote", None, 1), ("promote", 1, 2)]
    promoted = _models(released.home, "history", MODEL)[-1]
    assert promoted["run_id"] == run_id and promoted["cites"].startswith(run_id)
    # and the gateway answers with v2; every answer of the canary's traffic was a 200
    _until_served(released.url, 2)
    assert {status for status, _ in load.answers} == {200}
    assert load.answers[(200, 2)] > 0
    # and `baton runs show` prints the release report
    shown = baton(released.home, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "canary: promoted" in shown.stdout and "20% passed" in shown.stdout


def test_a_failing_version_is_rolled_back_at_once_and_the_champion_never_moves(
    released: Released,
) -> None:
    # given v2 as champion (the test above), serving real traffic
    with Load(released.url) as load:
        # when a run registers v3, which fails 30% of its predictions, and canaries it
        run_id = _run(released.home, "release", "flaw=errors")
        log = wait_for_run_log(released.home, _ended(run_id), timeout=180)
        # then the gateway soon answers with v2 alone again
        _until_served(released.url, 2)
    # and the canary rolled back on its first step, saying why, and the run failed
    (ended,) = _of(log, run_id, cn.CanaryEnded)
    assert ended.verdict == "rolled_back"
    assert "error rate" in ended.reason
    assert [s.verdict for s in ended.report.steps] == ["failed", "not reached"]
    (failed,) = [f for f in _of(log, run_id, ev.TaskFailed) if f.task == "canary"]
    assert failed.reason == "canary_rolled_back"
    assert _of(log, run_id, ev.RunFailed)
    # and the champion never moved: v2 throughout, no move to v3 in its history
    assert _champion(released.home) == 2
    assert _moves(released.home) == [("promote", None, 1), ("promote", 1, 2)]
    # and the errors callers saw were v3's share of the 20% step, a few, never v2's
    errors = sum(n for (status, _), n in load.answers.items() if status != 200)
    assert load.answers[(200, 2)] > errors


def test_a_coordinator_killed_mid_canary_resumes_it_and_finishes_the_same_way(
    released: Released,
) -> None:
    with Load(released.url):
        # given a canary of v4 in its first step
        run_id = _run(released.home, "release")
        wait_for_run_log(released.home, _has(cn.CanaryStepStarted, run_id), timeout=120)
        # when `baton up` (coordinator, registry, agent) is SIGKILLed and started again
        released.up[-1].kill()
        released.up.append(Service.start(released.home, PIPELINES,
                                         released.root / f"up-{len(released.up) + 1}.log"))
        log = wait_for_run_log(released.home, _ended(run_id), timeout=180)
    # then the canary went on from where it was: each step asked for once, then promoted
    (ended,) = _of(log, run_id, cn.CanaryEnded)
    assert ended.verdict == "promoted", ended.reason
    assert len(_of(log, run_id, cn.CanaryStarted)) == 1
    assert [r.step for r in _of(log, run_id, cn.CanaryTrafficRequested)] == [0, 1]
    assert _champion(released.home) == 4
