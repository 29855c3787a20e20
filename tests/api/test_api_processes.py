"""`baton up` and `baton api` as real processes: where they serve the API, what they refuse,
and a run requested on the command line read over HTTP, on both buses (on Kafka from a
`baton api` in a home of its own, which keeps its own projection)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from pathlib import Path

import httpx
import pytest

from bus import EMBEDDED, TopicPartition, open_bus_url
from events import topics
from events.runs import RunCancelled, RunFailed, RunSucceeded
from orchestrator.api import positions
from tests.e2e.support import RunLog, Service, baton, of_run, wait_for_run_log
from tests.integration.support import read_all

pytestmark = pytest.mark.e2e

QUICK = "tests.e2e.pipelines:quick_chain"


def served_url(service: Service) -> str:
    service.until_printed("API at ")
    found = re.search(r"API at (\S+?/api/v1)", service.output())
    assert found is not None, service.output()
    return found[1]


def ended(log: RunLog, run_id: str) -> bool:
    return any(isinstance(e.data, RunSucceeded | RunFailed | RunCancelled)
               for e in of_run(log, run_id))


def log_end(home: Path, bus: str) -> str:
    """`min_position` for everything now on baton.runs: a read given it sees all of it. Past
    each partition's last record, not its end offset: on Kafka a transaction's marker may
    follow it, which no reader ever steps onto."""
    async def ends() -> str:
        opened = await open_bus_url(bus, home)
        try:
            tps = [TopicPartition(topics.RUNS, p) for p in range(opened.partitions(topics.RUNS))]
            records = await read_all(opened, tps)
            last = {r.tp: r.offset + 1 for r in records}
            return ",".join([positions.token(tp, last.get(tp, 0)) for tp in tps])
        finally:
            await opened.close()
    return asyncio.run(ends())


def test_up_refuses_a_non_loopback_address_without_tokens(tmp_path: Path) -> None:
    # when `baton up` is asked to listen on every interface
    done = baton(tmp_path / "home", "up", "--http", "0.0.0.0:8765")
    # then it refuses before starting anything, saying why
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()


def test_up_refuses_an_address_that_is_not_host_and_port(tmp_path: Path) -> None:
    done = baton(tmp_path / "home", "up", "--http", "8765")
    assert done.returncode == 2
    assert "is not HOST:PORT" in done.stderr


def test_up_says_so_when_the_port_is_taken(tmp_path: Path) -> None:
    # given a port another program listens on
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        # when `baton up` is asked to serve there
        done = baton(tmp_path / "home", "up", "--http", f"127.0.0.1:{port}")
    # then it stops with one line saying what to do
    assert done.returncode == 1
    assert f"cannot serve the API on 127.0.0.1:{port}" in done.stderr
    assert "--http" in done.stderr and "Traceback" not in done.stderr


def test_a_run_requested_on_the_command_line_is_read_from_up_and_from_a_separate_api(
    tmp_path: Path, services: list[Service],
) -> None:
    # given `baton up` serving its API, and a `baton api` on the same home
    home = tmp_path / "home"
    up = Service.start(home, [QUICK], tmp_path / "up.log")
    services.append(up)
    up_url = served_url(up)
    api = Service.spawn(home, ["api"], tmp_path / "api.log")
    services.append(api)
    api_url = served_url(api)
    # when a run is requested and finishes
    requested = baton(home, "run", "quick_chain", "--pipeline-ref", QUICK,
                      "--param", f"ledger={tmp_path / 'ledger'}")
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    wait_for_run_log(home, lambda log: ended(log, run_id), timeout=60)
    wanted = log_end(home, EMBEDDED)
    # then both servers answer with it, succeeded, once they hold the log's end
    for url in (up_url, api_url):
        run = httpx.get(f"{url}/runs/{run_id}", params={"min_position": wanted}, timeout=30)
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "succeeded"
        assert [t["name"] for t in run.json()["tasks"]] == ["first", "second", "third"]
    # and both stop cleanly on SIGTERM
    assert api.stop(signal.SIGTERM) == 0
    assert up.stop(signal.SIGTERM) == 0


@pytest.mark.kafka
@pytest.mark.parametrize("bus_url", ["kafka"], indirect=True)
def test_on_kafka_an_api_in_its_own_home_keeps_its_own_projection(
    tmp_path: Path, services: list[Service], bus_url: str,
) -> None:
    kafka_url = bus_url
    # given `baton up` on Kafka, and a `baton api` with a home of its own on the same bus
    up = Service.start(tmp_path / "up-home", [QUICK], tmp_path / "up.log", bus=kafka_url)
    services.append(up)
    served_url(up)
    api = Service.spawn(tmp_path / "api-home", ["api"], tmp_path / "api.log", bus=kafka_url)
    services.append(api)
    api_url = served_url(api)
    # when a run is requested and finishes
    requested = baton(tmp_path / "up-home", "run", "quick_chain", "--pipeline-ref", QUICK,
                      "--param", f"ledger={tmp_path / 'ledger'}", bus=kafka_url)
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    wait_for_run_log(tmp_path / "up-home", lambda log: ended(log, run_id), timeout=60,
                     bus=kafka_url)
    wanted = log_end(tmp_path / "up-home", kafka_url)
    # then the separate API answers from its own projection
    run = httpx.get(f"{api_url}/runs/{run_id}", params={"min_position": wanted}, timeout=30)
    assert run.status_code == 200, run.text
    assert run.json()["status"] == "succeeded"
    assert (tmp_path / "api-home" / "projections.db").exists()
    assert api.stop(signal.SIGTERM) == 0


def test_tokens_add_prints_a_token_once_and_keeps_only_its_hash_privately(tmp_path: Path) -> None:
    # when two tokens are made, then one more under a used name
    path = tmp_path / "tokens.yaml"
    first = baton(None, "tokens", "add", str(path), "alice", "--role", "operator")
    second = baton(None, "tokens", "add", str(path), "bob", "--role", "viewer")
    again = baton(None, "tokens", "add", str(path), "alice", "--role", "admin")
    # then each printed its token, the file holds only hashes, readable by its owner alone
    assert first.returncode == 0 and second.returncode == 0
    tokens = [first.stdout.strip(), second.stdout.strip()]
    text = path.read_text()
    assert all(token.startswith("baton_") and token not in text for token in tokens)
    assert "alice" in text and "bob" in text and oct(path.stat().st_mode & 0o777) == "0o600"
    assert again.returncode == 2 and "has a token named 'alice'" in again.stderr


def test_a_bad_tokens_file_is_one_line_saying_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n  - {name: alice, role: boss, sha256: abc}\n")
    done = baton(tmp_path / "home", "up", "--tokens", str(path))
    assert done.returncode == 2
    assert "tokens.0.role" in done.stderr and "Traceback" not in done.stderr


def test_with_tokens_up_serves_beyond_loopback_and_asks_every_call_for_one(
    tmp_path: Path, services: list[Service],
) -> None:
    # given a tokens file with a viewer
    path = tmp_path / "tokens.yaml"
    token = baton(None, "tokens", "add", str(path), "carol", "--role", "viewer").stdout.strip()
    # when `baton up` serves on every interface with it
    up = Service.spawn(tmp_path / "home", ["up", "--http", "0.0.0.0:0", "--tokens", str(path),
                                           "--pipeline", QUICK], tmp_path / "up.log")
    services.append(up)
    url = served_url(up).replace("0.0.0.0", "127.0.0.1")
    # then a call without the token is refused, with it answered
    assert httpx.get(f"{url}/runs", timeout=30).status_code == 401
    assert httpx.get(f"{url}/runs", headers={"Authorization": f"Bearer {token}"},
                     timeout=30).status_code == 200
    assert up.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("bus_url", ["embedded", "kafka"], indirect=True)
def test_a_baton_up_process_takes_writes_over_http_with_roles_positions_and_audit(
    tmp_path: Path, services: list[Service], bus_url: str,
) -> None:
    # given `baton up` serving with a viewer's and an operator's token
    path = tmp_path / "tokens.yaml"
    viewer = baton(None, "tokens", "add", str(path), "vera", "--role", "viewer").stdout.strip()
    operator = baton(None, "tokens", "add", str(path), "otto", "--role", "operator").stdout.strip()
    bus = None if bus_url == EMBEDDED else bus_url
    up = Service.spawn(tmp_path / "home", ["up", "--tokens", str(path), "--pipeline", QUICK],
                       tmp_path / "up.log", bus=bus)
    services.append(up)
    url = served_url(up)
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    as_operator = {"Authorization": f"Bearer {operator}"}
    body = {"pipeline": "quick_chain", "params": {"ledger": str(tmp_path / "ledger")}}
    with httpx.Client(base_url=url, timeout=60) as http:
        # when a viewer, then nobody, then an operator request a run
        refused = http.post("/runs", json=body, headers=as_viewer)
        anonymous = http.post("/runs", json=body)
        made = http.post("/runs", json=body, headers=as_operator)
        # then only the operator's is taken, and a read at its position has it, with who asked
        assert (refused.status_code, anonymous.status_code, made.status_code) == (403, 401, 202)
        run_id, position = made.json()["run_id"], made.json()["position"]
        run = http.get(f"/runs/{run_id}", params={"min_position": position},
                       headers=as_viewer).json()
        assert [(a["action"], a["actor"]) for a in run["audit"]] == [("requested", "otto")]
        # and a trigger sent as a CloudEvent is refused (no pipeline of this up listens for
        # it, so it has no outcome) only for the viewer
        event = {"specversion": "1.0", "id": "ce-1", "source": "/test", "type": "data_arrived",
                 "data": {"dataset": "d", "version": "v1", "uri": "file:///d"}}
        ce = {"Content-Type": "application/cloudevents+json"}
        assert http.post("/triggers", content=json.dumps(event), params={"wait": 0},
                         headers={**ce, **as_viewer}).status_code == 403
        assert http.post("/triggers", content=json.dumps(event), params={"wait": 0},
                         headers={**ce, **as_operator}).status_code == 202
    wait_for_run_log(tmp_path / "home", lambda log: ended(log, run_id), timeout=60, bus=bus_url)
    assert up.stop(signal.SIGTERM) == 0
    # and only the operator's run was ever requested
    runs = {e.data.run_id for e in wait_for_run_log(tmp_path / "home", lambda _: True,
                                                      timeout=60, bus=bus_url)
            if isinstance(e.data, RunSucceeded)}
    assert runs == {run_id}
