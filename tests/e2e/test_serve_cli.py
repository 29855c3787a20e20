"""`baton serve` against real processes: the demo's champion answers predictions over HTTP,
and when the alias moves the gateway switches to the new version without failing a request
(the new one is loaded and warmed up first)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_digits

from bus import open_bus_url
from events import topics
from events.codec import decode
from events.serving import ServingWindow
from orchestrator.service.reading import read_all
from tests.e2e.support import Service, baton

MODEL = "digits-classifier"
PROBLEM = "application/problem+json"


@dataclass
class Served:
    home: Path
    url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo's home (champion: v2), `baton up` (its registry answers alias moves) and
    `baton serve` on a free port."""
    root = tmp_path_factory.mktemp("serve")
    home = root / "home"
    demo = baton(home, "demo", timeout=110)
    assert demo.returncode == 0, demo.stderr[-3000:]
    up = Service.spawn(home, ["up", "--http", "off"], root / "up.log")
    gateway = Service.spawn(home, ["serve", "--model", MODEL, "--http", "127.0.0.1:0",
                                   "--window", "0.5"], root / "serve.log")
    try:
        gateway.until_printed("answers now")
        found = re.search(r"at (http://\S+)/v1/models", gateway.output())
        assert found, gateway.output()
        yield Served(home, f"{found.group(1)}/v1/models")
    finally:
        for service in (gateway, up):
            service.stop()
            service.reap()


def until(done: Callable[[], bool], what: str, within_s: float = 60) -> None:
    """Another process's state, polled over HTTP with a bound (nothing to await across
    processes), as `Service.until_printed` polls its output."""
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, f"{what} not within {within_s:g} s"
        time.sleep(0.05)


def rows(n: int) -> tuple[list[list[float]], list[int]]:
    digits = load_digits()
    return (digits.data[:n] / 16).tolist(), digits.target[:n].tolist()


def described(served: Served) -> Any:
    return httpx.get(f"{served.url}/{MODEL}", timeout=30).json()


def predict(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/{MODEL}:predict", json=body, timeout=30)


def test_the_champion_answers_predictions(served: Served) -> None:
    instances, labels = rows(20)
    answer = predict(served.url, {"instances": instances})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert (doc["model"], doc["version"]) == (MODEL, 2)
    assert answer.headers["baton-model-version"] == "2"
    right = sum(p == t for p, t in zip(doc["predictions"], labels, strict=True))
    assert right >= 18


def test_an_alias_move_switches_the_version_without_failing_a_request(served: Served) -> None:
    # given clients predicting without pause
    instances, _ = rows(5)
    seen: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                answer = http.post(f"{served.url}/{MODEL}:predict",
                                   json={"instances": instances})
                version = answer.json().get("version") if answer.status_code == 200 else None
                seen.append((answer.status_code, version))

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    try:
        # when the champion is rolled back to v1
        back = baton(served.home, "models", "rollback", MODEL, "--reason", "canary failed",
                     "--wait", "60")
        assert back.returncode == 0, back.stderr
        # then the gateway answers with v1 soon, and every answer meanwhile was a 200
        until(lambda: predict(served.url, {"instances": instances}).json().get(
            "version") == 1, "the switch to v1")
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert seen and {status for status, _ in seen} == {200}
    versions = [v for _, v in seen]
    assert versions[0] == 2 and 1 in versions
    shown = described(served)
    assert (shown["version"], shown["alias"], shown["ready"]) == (1, "champion", True)


def test_bad_requests_get_a_problem_document(served: Served) -> None:
    malformed = httpx.post(f"{served.url}/{MODEL}:predict", content=b"{not json",
                           timeout=30)
    empty = predict(served.url, {"instances": []})
    narrow = predict(served.url, {"instances": [[1.0, 2.0, 3.0]]})
    unknown = httpx.post(f"{served.url}/nope:predict", json={"instances": [[1.0]]}, timeout=30)
    for answer, status in ((malformed, 400), (empty, 400), (narrow, 422), (unknown, 404)):
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == PROBLEM
        assert "Traceback" not in answer.text
    assert "expecting 64 features" in narrow.json()["detail"]
    assert "serves 'digits-classifier', not 'nope'" in unknown.json()["detail"]


def test_a_split_sends_a_keys_requests_to_one_version_and_a_mirror_answers_unseen(
    served: Served,
) -> None:
    # given the champion (v1 after the rollback above) and half the traffic split to v2
    split = baton(served.home, "models", "traffic", MODEL, "--candidate", "2", "--percent",
                  "50", "--reason", "canary step 2", "--wait", "60")
    assert split.returncode == 0, split.stderr
    assert "traffic 50% to v2" in split.stdout
    instances, _ = rows(1)

    def version_for(key: str) -> int:
        answer = predict(served.url, {"instances": instances, "key": key})
        assert answer.status_code == 200, answer.text
        return int(answer.json()["version"])

    until(lambda: described(served)["percent"] == 50, "the split")
    # when requests come with 40 keys, each twice
    first = {key: version_for(key) for key in (f"caller-{i}" for i in range(40))}
    second = {key: version_for(key) for key in first}
    # then both versions answer, and each caller stays on one of them
    assert first == second and set(first.values()) == {1, 2}
    # and when v2 only mirrors, every answer is v1's while v2 answers the copies
    mirror = baton(served.home, "models", "traffic", MODEL, "--mirror", "2", "--reason",
                   "shadow", "--wait", "60")
    assert mirror.returncode == 0 and "all to the alias, mirrored to v2" in mirror.stdout
    until(lambda: (described(served)["mirror"], described(served)["percent"]) == (2, 0),
          "the mirror")
    before = described(served)["counts"].get("2", {"requests": 0, "agreed": 0})
    assert {version_for(f"caller-{i}") for i in range(10)} == {1}
    # the copies are answered after the callers have theirs
    until(lambda: described(served)["counts"]["2"]["requests"] >= before["requests"] + 10,
          "the mirror's answers")
    agreed = described(served)["counts"]["2"]["agreed"] - before["agreed"]
    assert agreed >= 9  # two good digits models agree on nearly every row


def windows_of(home: Path) -> list[ServingWindow]:
    async def read() -> list[ServingWindow]:
        bus = await open_bus_url("embedded", home)
        try:
            found = [decode(r.value).data for r in await read_all(bus, topics.SERVING, {})]
            return [w for w in found if isinstance(w, ServingWindow)]
        finally:
            await bus.close()
    return asyncio.run(read())


def test_each_version_s_traffic_is_published_as_small_windows(served: Served) -> None:
    # given requests to the gateway, which publishes a window every half second
    instances, _ = rows(3)
    def served_requests() -> int:  # what callers got, not a mirror's copies
        return sum(w.requests for w in windows_of(served.home) if w.role != "mirror")

    before = served_requests()
    answered = [predict(served.url, {"instances": instances}) for _ in range(12)]
    assert {a.status_code for a in answered} == {200}
    # then windows on baton.serving count them, with latency, predictions and inputs
    until(lambda: served_requests() >= before + 12, "windows counting the requests")
    window = next(w for w in reversed(windows_of(served.home)) if w.requests)
    assert window.model == MODEL and window.end > window.start
    assert set(window.latency_ms) == {"p50", "p95", "p99", "max"}
    assert window.predictions and sum(window.predictions.values()) <= window.rows
    assert len(window.features) == 64
