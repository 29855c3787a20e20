"""`baton up` and `baton api` as real processes: where they serve the API, what they refuse,
and a run requested on the command line read over HTTP, on both buses (on Kafka from a
`baton api` in a home of its own, which keeps its own projection)."""

from __future__ import annotations

import asyncio
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
