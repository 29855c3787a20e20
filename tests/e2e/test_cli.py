"""The `baton` command line as a user meets it: real processes, real exit codes and output."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import EMBEDDED, Record, TopicPartition, open_bus_url
from events import topics
from events.catalog import CATALOG
from events.runs import RunCreated
from orchestrator.service.dead_letters import dead_letter
from orchestrator.service.reading import read_all
from tests.e2e.support import (
    REPO,
    Service,
    baton,
    cli_env,
    command,
    of_run,
    read_run_log,
    wait_for_run_log,
    watch_until,
)
from tests.pipelines.bad_yaml import BAD_YAML, BadYaml, train_with

pytestmark = pytest.mark.e2e

CHAIN = "tests.e2e.pipelines:slow_chain"
MODEL = "digits-classifier"


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int,
                          *fragments: str) -> str:
    """Exit `code`, nothing on stdout, one line on stderr naming every fragment, no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""
    return lines[0]


# -- wrong usage: exit 2, one line that says how to fix it ----------------------------------

USAGE_ERRORS = {
    "runs show without an id": (
        ["runs", "show"], ["run_id", "see 'baton runs show --help'"]),
    "data-arrived missing flags": (
        ["publish", "data-arrived", "--dataset", "x"],
        ["--version", "--uri", "see 'baton publish data-arrived --help'"]),
    "negative agent count": (
        ["up", "--pipeline", CHAIN, "--agents", "-1"], ["--agents must be 0 or more"]),
    "unknown pipeline": (
        ["run", "nope", "--pipeline-ref", CHAIN], ["unknown pipeline 'nope'", "known: slow_chain"]),
    "param without a value": (
        ["run", "slow_chain", "--pipeline-ref", CHAIN, "--param", "ledger"],
        ["--param 'ledger'", "KEY=VALUE"]),
    "data file that does not exist": (
        ["publish", "data-arrived", "--dataset", "d", "--version", "v1", "--uri",
         "/does/not/exist"], ["/does/not/exist: no such file", "give a path"]),
    "replay without --verify": (["replay"], ["--verify", "see 'baton replay --help'"]),
    "coordinator session shorter than the broker allows": (
        ["coordinator", "--pipeline", CHAIN, "--session-timeout", "2"],
        ["--session-timeout 2", "minimum of 6 seconds"]),
    "agent id with a space": (
        ["agent", "--agent-id", "cpu 1", "--cpus", "1"], ["--agent-id 'cpu 1'", "letters"]),
    "unknown command": (["bogus"], ["invalid choice: 'bogus'", "see 'baton --help'"]),
    "cyclic pipeline": (
        ["pipelines", "validate", "tests.e2e.bad_pipelines:cyclic"],
        ["invalid pipeline", "'cyclic'", "cycle: ping -> pong -> ping"]),
    "task function that cannot be imported": (
        ["pipelines", "validate", "tests.e2e.bad_pipelines:unimportable"],
        ["invalid pipeline", "'unimportable'", "task 'ghost'", "_local_task.<locals>.inner"]),
    "yaml task in a module that does not exist": (
        ["pipelines", "validate", "tests/e2e/missing_module.yaml"],
        ["missing_module.yaml", "task 'lost'", "cannot import module 'tests.e2e.no_such_module'"]),
    "pipeline reference to a missing module": (
        ["pipelines", "validate", "tests.e2e.nowhere:pipe"],
        ["'tests.e2e.nowhere:pipe'", "cannot import 'tests.e2e.nowhere'"]),
}


@pytest.mark.parametrize(("args", "fragments"), USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_wrong_usage_exits_2_with_a_one_line_fix(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    # given: a home nobody has used
    home = tmp_path / "home"
    # when: the command is used wrongly
    result = baton(home, *args)
    # then: exit 2, one actionable line, and no state was created as a side effect
    assert_one_line_error(result, 2, *fragments)
    assert not home.exists()


@pytest.mark.parametrize("bad", BAD_YAML.values(), ids=BAD_YAML.keys())
def test_a_wrong_yaml_pipeline_exits_2_with_one_line_naming_file_task_and_field(
    tmp_path: Path, bad: BadYaml
) -> None:
    # given: a pipeline file with one mistake
    path = bad.written(tmp_path)
    # when: it is validated
    result = baton(tmp_path / "home", "pipelines", "validate", str(path))
    # then: exit 2 and one line, no traceback, naming the file, the task and the field
    assert_one_line_error(result, 2, f"invalid pipeline: {path}: ", *bad.names)


def test_up_refuses_a_wrong_yaml_pipeline_in_the_same_line(tmp_path: Path) -> None:
    # given: a pipeline file whose memory is not a size
    path = tmp_path / "my.yaml"
    path.write_bytes(train_with("resources: {memory: 12X}"))
    # when: `baton up` is asked to serve it
    result = baton(tmp_path / "home", "up", "--pipeline", str(path), "--agents", "0")
    # then: the same one line as validate, before anything starts
    assert_one_line_error(result, 2, f"baton up: invalid pipeline: {path}: task 'train': "
                                     "resources.memory '12X' is not a size")
    assert not (tmp_path / "home").exists()


def test_queries_against_a_home_without_state_say_where_to_start(tmp_path: Path) -> None:
    # given: an empty directory as home
    home = tmp_path / "empty"
    home.mkdir()
    # when: runs are queried there
    result = baton(home, "runs", "show", "run-unknown")
    # then: it says there is no state there and how to point at the right place
    assert_one_line_error(result, 2, f"no Baton state in {home}", "baton up", "--home")
    assert list(home.iterdir()) == []


def test_showing_an_unknown_run_exits_1_and_says_how_to_list_runs(tmp_path: Path) -> None:
    # given: a home with a bus but no runs (a trigger was published, nothing serves it)
    home, data = tmp_path / "home", tmp_path / "data.csv"
    data.write_text("x\n1\n")
    published = baton(home, "publish", "data-arrived", "--dataset", "d", "--version", "v1",
                      "--uri", str(data))
    assert published.returncode == 0, published.stderr
    # when: a run that does not exist is shown
    result = baton(home, "runs", "show", "run-unknown")
    # then: not found is exit 1, with the way to find real run ids
    assert_one_line_error(result, 1, "no run 'run-unknown'", "baton runs list")
    # and: listing and verifying an empty log work
    listed = baton(home, "runs", "list", "--json")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
    verified = baton(home, "replay", "--verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout) == {"ok": True, "runs": 0, "events": 0, "differences": []}


def test_schema_export_writes_one_json_schema_per_event_type(tmp_path: Path) -> None:
    # given: an output directory that does not exist yet
    out = tmp_path / "schemas"
    # when: the schemas are exported
    result = baton(None, "schema", "export", str(out))
    # then: one file per catalogued event type (plus the dead letter), each a JSON Schema
    assert result.returncode == 0, result.stderr
    expected = {f"{t}.v{cls.VERSION}.schema.json" for t, cls in CATALOG.types.items()}
    written = {p.name for p in out.iterdir()}
    assert written == expected | {"dead_letter.schema.json"}
    assert f"wrote {len(written)} schemas" in result.stdout
    for name in ("run_created.v1.schema.json", "task_succeeded.v1.schema.json",
                 "data_arrived.v1.schema.json", "dead_letter.schema.json"):
        schema = json.loads((out / name).read_text())
        assert isinstance(schema, dict)
        assert schema["type"] == "object"
        assert isinstance(schema["properties"], dict) and schema["properties"]
    envelope = json.loads((out / "task_succeeded.v1.schema.json").read_text())
    assert {"id", "type", "time", "data"} <= set(envelope["required"])


# -- the demo, and the tools that read what it leaves behind --------------------------------

@dataclass(frozen=True)
class Demo:
    home: Path
    summary: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """One real `baton demo --json` (about 10 s) shared by the tests that read its home."""
    home = tmp_path_factory.mktemp("demo") / "home"
    result = baton(home, "demo", "--json", timeout=110)
    assert result.returncode == 0, result.stderr[-3000:]
    return Demo(home, json.loads(result.stdout), result.stderr)


def test_demo_trains_on_arrival_and_retrains_on_drift(demo: Demo) -> None:
    # given/when: the demo ran in a fresh home
    runs, models = demo.summary["runs"], demo.summary["models"]
    # then: two digits runs, caused first by data arriving, then by detected drift
    assert [r["trigger_type"] for r in runs] == ["data_arrived", "drift_detected"]
    for run in runs:
        assert run["run_id"].startswith("run-")
        assert (run["pipeline"], run["status"]) == ("digits", "succeeded")
        assert [t["name"] for t in run["tasks"]] == [
            "ingest", "features", "train", "evaluate", "gate", "register"]
        assert all(t["status"] == "succeeded" for t in run["tasks"])
        assert all(t["attempts"] == 1 for t in run["tasks"] if t["name"] != "gate")
    # and: each run registered one version of the classifier, both accurate
    assert [(m["name"], m["version"]) for m in models] == [(MODEL, 1), (MODEL, 2)]
    assert [m["run_id"] for m in models] == [r["run_id"] for r in runs]
    assert all(m["metrics"]["accuracy"] >= 0.9 for m in models)
    assert demo.summary["home"] == str(demo.home)
    # and: it says where its dashboard showed each run
    assert demo.summary["dashboard"].startswith("http://127.0.0.1:")
    assert [r["url"] for r in runs] == [f"{demo.summary['dashboard']}runs/{r['run_id']}"
                                        for r in runs]
    # and: progress went to stderr, so stdout stays machine-readable
    assert "run ✔ succeeded" in demo.stderr


def test_demo_home_can_be_listed_and_replayed(demo: Demo) -> None:
    # when: the demo's home is queried with the ordinary commands
    listed = baton(demo.home, "runs", "list", "--json")
    verified = baton(demo.home, "replay", "--verify")
    models = baton(demo.home, "models", "--json")
    # then: both runs are there, the projection equals the log's replay, models agree
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {r["run_id"] for r in rows} == {r["run_id"] for r in demo.summary["runs"]}
    assert {r["status"] for r in rows} == {"succeeded"}
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "2 runs: no differences" in verified.stdout
    assert models.returncode == 0, models.stderr
    assert [m["version"] for m in json.loads(models.stdout)] == [1, 2]


def test_a_demo_whose_run_stalls_stops_at_its_timeout_saying_where_to_look(
    tmp_path: Path,
) -> None:
    # given a demo with no agent, so its first run waits for one forever, saying nothing
    # when it runs with a short timeout
    result = baton(tmp_path / "home", "demo", "--agents", "0", "--timeout", "3", timeout=60)
    # then it gives up on its own with exit 1 and one line that says what to look at
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("baton demo: the run for trigger "), result.stderr
    assert "did not finish within 3 s (--timeout)" in last
    assert "baton runs show" in last
    assert "Traceback" not in result.stderr


def test_demo_refuses_a_home_it_did_not_create(tmp_path: Path) -> None:
    # given: a non-empty directory that is not a demo's
    home = tmp_path / "mine"
    home.mkdir()
    (home / "precious.txt").write_text("keep me")
    # when: the demo is pointed at it
    result = baton(home, "demo", "--json")
    # then: it refuses, and deletes nothing
    assert_one_line_error(result, 2, f"{home} is not empty", "pass --home with a new directory")
    assert (home / "precious.txt").read_text() == "keep me"


def test_watch_from_start_replays_the_demo_runs_and_stops_on_ctrl_c(
    demo: Demo, tmp_path: Path
) -> None:
    # given: `baton watch --from-start` on the finished demo's home
    # when: its output is read until both runs' ends have been printed, then it gets Ctrl-C
    watched = watch_until(demo.home, lambda seen: sum("run ✔ succeeded" in line
                                                      for line in seen) >= 2, tmp_path)
    # then: it printed both runs' lifecycles and exited cleanly
    assert watched.code == 0
    text = "".join(watched.lines)
    for run in demo.summary["runs"]:
        assert f"{run['run_id'][:16]} run created: digits@" in text
    assert "model digits-classifier v2 registered" in text
    assert "Traceback" not in watched.stderr


def test_drift_monitor_publishes_only_when_the_batch_drifted(demo: Demo) -> None:
    # given the demo's home: model v2 trained on digits v2 (v1 rows plus scanner-shifted rows)
    data = demo.home / "datasets" / "digits"
    # when a batch from the training distribution is checked
    calm = baton(demo.home, "monitor", "drift", "--model", "digits-classifier",
                 "--batch", str(data / "v1.npz"), "--reference", str(data / "v1.npz"))
    # then nothing is published
    assert calm.returncode == 0, calm.stderr
    assert "0/64 features" in calm.stdout and "no drift event published" in calm.stdout
    # when the shifted batch is checked against the model's own training data (its lineage)
    shifted = baton(demo.home, "monitor", "drift", "--model", "digits-classifier",
                    "--batch", str(data / "v2-batch.npz"), "--reference", str(data / "v1.npz"),
                    "--method", "ks")
    # then a drift event naming the current model version is published
    assert shifted.returncode == 0, shifted.stderr
    assert "published drift_detected" in shifted.stdout and "digits-classifier v2" in shifted.stdout
    # and with the KS test on top of D, the shift is significant too (Holm over 64 features)
    tested = baton(demo.home, "monitor", "drift", "--model", "digits-classifier",
                   "--batch", str(data / "v2-batch.npz"), "--reference", str(data / "v1.npz"),
                   "--method", "ks", "--alpha", "0.01", "--dry-run")
    assert tested.returncode == 0, tested.stderr
    assert "significant at 0.01 (Holm)" in tested.stdout and "(p " in tested.stdout
    wrong = baton(demo.home, "monitor", "drift", "--model", "digits-classifier",
                  "--batch", str(data / "v2-batch.npz"), "--alpha", "0.01")
    assert wrong.returncode == 2 and "with --method ks" in wrong.stderr


def test_triggers_say_what_the_router_decided_and_why_each_run_started(demo: Demo) -> None:
    # given the demo's two runs: one started by data, one by drift
    first, second = demo.summary["runs"]
    listed = baton(demo.home, "triggers", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"started {first['run_id']}" in listed.stdout
    assert f"started {second['run_id']}" in listed.stdout
    # when the drift run is explained, then its cause is the drift check, with its figures
    why = baton(demo.home, "triggers", "explain", second["run_id"][:16])
    assert why.returncode == 0, why.stderr
    assert "digits-classifier drifted (psi" in why.stdout and "accepted by the router" in why.stdout
    # and the data event, by its id, says which run it started
    cause = json.loads(baton(demo.home, "triggers", "explain", first["run_id"],
                             "--json").stdout)["cause"]
    event = baton(demo.home, "triggers", "explain", cause["event_id"])
    assert event.returncode == 0 and f"digits: started run {first['run_id']}" in event.stdout
    unknown = baton(demo.home, "triggers", "explain", "nothing-like-it")
    assert unknown.returncode == 1 and "no run and no trigger decision" in unknown.stderr


def test_drift_monitor_explains_an_unknown_model_and_a_bad_batch(demo: Demo) -> None:
    unknown = baton(demo.home, "monitor", "drift", "--model", "nope", "--batch", "x.npz")
    assert unknown.returncode == 1 and "no registered model 'nope'" in unknown.stderr
    missing = baton(demo.home, "monitor", "drift", "--model", "digits-classifier",
                    "--batch", "/does/not/exist.npz")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


# -- what the bus would refuse: exit 2, one line naming the flag, nothing published ---------

DATA = "{data}"
"""Stands for a real data file in the arguments below (the test's own)."""
ARRIVED = ["publish", "data-arrived", "--dataset", "d", "--version", "v1", "--uri", DATA]
DRIFT = ["publish", "drift", "--model", MODEL, "--dataset", "d", "--dataset-version", "v2",
         "--dataset-uri", DATA, "--score", "0.5", "--threshold", "0.2"]
RUN = ["run", "slow_chain", "--pipeline-ref", CHAIN]
NOT_UTF8 = "\udcff"
"""How the byte 0xff arrives in argv (a surrogate escape); subprocess passes it back as 0xff."""
INLINE = "x" * 120_000


def given(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with `flag` set to `value`: replaced where it is, else added (repeatable flags)."""
    if flag in args and flag != "--param":
        at = args.index(flag) + 1
        return [*args[:at], value, *args[at + 1:]]
    return [*args, flag, value]


PUBLISHED = "(nothing was published)"
REFUSED = {
    "data-arrived, empty --dataset": (
        given(ARRIVED, "--dataset", ""),
        ["baton publish: error: --dataset '': String should have at least 1 character",
         PUBLISHED]),
    "data-arrived, empty --version": (
        given(ARRIVED, "--version", ""), ["--version '': String should have at least 1"]),
    "data-arrived, empty --event-id": (
        given(ARRIVED, "--event-id", ""), ["--event-id '': ", "leave the flag out", PUBLISHED]),
    "data-arrived, --dataset not UTF-8": (
        given(ARRIVED, "--dataset", NOT_UTF8), ["--dataset '\\udcff': not valid UTF-8 text"]),
    "data-arrived, --version not UTF-8": (
        given(ARRIVED, "--version", f"v{NOT_UTF8}"), ["--version 'v\\udcff': not valid UTF-8"]),
    "data-arrived, --event-id not UTF-8": (
        given(ARRIVED, "--event-id", f"e{NOT_UTF8}"), ["--event-id 'e\\udcff': not valid UTF-8"]),
    "data-arrived, --uri not UTF-8": (
        given(ARRIVED, "--uri", f"s3://bucket/{NOT_UTF8}"),
        ["--uri 's3://bucket/\\udcff': not valid UTF-8 text", PUBLISHED]),
    "data-arrived, --uri a missing path not UTF-8": (
        given(ARRIVED, "--uri", f"/no/such/{NOT_UTF8}"),
        ["--uri /no/such/\\udcff: no such file"]),
    "drift, empty --model": (
        given(DRIFT, "--model", ""),
        ["baton publish: error: --model '': String should have at least 1 character"]),
    "drift, --model not UTF-8": (
        given(DRIFT, "--model", NOT_UTF8), ["--model '\\udcff': not valid UTF-8 text"]),
    "drift, empty --dataset": (given(DRIFT, "--dataset", ""), ["--dataset '': "]),
    "drift, --score nan": (
        given(DRIFT, "--score", "nan"), ["--score nan: Input should be a finite number",
                                         PUBLISHED]),
    "drift, --threshold inf": (
        given(DRIFT, "--threshold", "inf"), ["--threshold inf: Input should be a finite"]),
    "drift, empty --event-id": (
        given(DRIFT, "--event-id", ""), ["--event-id '': ", "leave the flag out"]),
    "run, empty --idempotency-key": (
        given(RUN, "--idempotency-key", ""),
        ["baton run: error: --idempotency-key '': ", "leave the flag out", PUBLISHED]),
    "run, --idempotency-key not UTF-8": (
        given(RUN, "--idempotency-key", f"k{NOT_UTF8}"),
        ["--idempotency-key 'k\\udcff': not valid UTF-8 text"]),
    "run, --param value not UTF-8": (
        given(RUN, "--param", f"k={NOT_UTF8}"), ["--param k '\\udcff': not valid UTF-8 text"]),
    "run, --param key not UTF-8": (
        given(RUN, "--param", f"{NOT_UTF8}=v"), ["--param \\udcff 'v': not valid UTF-8 text"]),
    "run, --uri not UTF-8": (
        given(RUN, "--uri", f"s3://bucket/{NOT_UTF8}"), ["--uri 's3://bucket/\\udcff': not"]),
    "run, params over the size of an event": (
        [*RUN, "--uri", DATA, *(a for i in range(1, 10) for a in ("--param", f"k{i}={INLINE}"))],
        ["baton run: error: --param k1: the run request would be 1,08",
         " bytes, over the 1,000,000-byte limit of an event: pass large values by reference "
         "(a file path or URI), not inline"]),
}


async def published(home: Path) -> list[Record]:
    """Everything on the home's baton.triggers and baton.intents."""
    bus = await open_bus_url(EMBEDDED, home)
    try:
        return [r for topic in (topics.TRIGGERS, topics.INTENTS)
                for r in await read_all(bus, topic, {})]
    finally:
        await bus.close()


@pytest.mark.parametrize(("args", "fragments"), REFUSED.values(), ids=REFUSED.keys())
def test_what_the_bus_would_refuse_exits_2_naming_the_flag_and_publishes_nothing(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    # given: a home with a bus, and a data file
    home, data = tmp_path / "home", tmp_path / "data.csv"
    data.write_text("x\n1\n")
    home.mkdir()
    assert asyncio.run(published(home)) == []
    # when: a producing command is given a value the bus's consumers would refuse
    result = baton(home, *(str(data) if a == DATA else a for a in args))
    # then: exit 2, one line naming the flag and what is wrong, no traceback
    assert_one_line_error(result, 2, *fragments)
    # and: nothing reached the bus
    assert asyncio.run(published(home)) == []


# -- `baton run` says the run exists only once it does --------------------------------------

QUICK = "tests.e2e.pipelines:quick_chain"
ON_THE_BUS_S = 60.0


async def requests_on_the_bus(home: Path) -> list[Record]:
    """baton.intents once it holds a record (the CLI's request): a wait on the bus, bounded."""
    bus = await open_bus_url(EMBEDDED, home)
    try:
        positions = {TopicPartition(topics.INTENTS, p): 0
                     for p in range(bus.partitions(topics.INTENTS))}
        deadline = asyncio.get_running_loop().time() + ON_THE_BUS_S
        while not (found := await read_all(bus, topics.INTENTS, {})):
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"no request on baton.intents within {ON_THE_BUS_S:g} s"
            await bus.wait(positions, remaining)
        return found
    finally:
        await bus.close()


async def dead_letter_it(home: Path, request: Record, reason: str) -> None:
    """What the coordinator does with a request it refuses."""
    bus = await open_bus_url(EMBEDDED, home)
    try:
        await bus.publish([dead_letter(request, reason, consumer="baton.coordinator")])
    finally:
        await bus.close()


@contextmanager
def requesting(home: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`baton run` in the background, while the test plays the rest of the world."""
    with subprocess.Popen(command(home, "run", *args), cwd=REPO, env=cli_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()



def test_run_prints_the_run_id_once_a_coordinator_has_created_the_run(
    tmp_path: Path, services: list[Service]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # given: a run requested while no coordinator runs
    with requesting(home, "quick_chain", "--pipeline-ref", QUICK, "--wait", "90") as run:
        (request,) = asyncio.run(requests_on_the_bus(home))
        # then: with its request on the bus, it still waits: the run does not exist yet
        assert run.poll() is None, run.communicate()
        # when: `baton up` starts and takes the request
        services.append(Service.spawn(home, ["up", "--pipeline", QUICK, "--agents", "0"],
                                      tmp_path / "up.log"))
        out, err = run.communicate(timeout=120)
    # then: exit 0 and the run id alone, and the run is in the log by then
    assert run.returncode == 0, err + services[0].output()
    run_id = out.strip()
    assert run_id == request.key and out == f"{run_id}\n"
    created = [e for e in of_run(read_run_log(home), run_id) if isinstance(e.data, RunCreated)]
    assert len(created) == 1


def test_run_with_no_wait_prints_the_run_id_once_the_request_is_on_the_bus(
    tmp_path: Path,
) -> None:
    # given: no coordinator
    home = tmp_path / "home"
    # when: a run is requested without waiting
    result = baton(home, "run", "slow_chain", "--pipeline-ref", CHAIN, "--no-wait")
    # then: exit 0, the run id, and its request is on the bus
    assert result.returncode == 0, result.stderr
    (request,) = asyncio.run(requests_on_the_bus(home))
    assert result.stdout == f"{request.key}\n"
    assert result.stderr == ""


def test_run_with_no_coordinator_says_nobody_has_taken_the_request_within_the_wait(
    tmp_path: Path,
) -> None:
    # given: no coordinator
    home = tmp_path / "home"
    # when: a run is requested, waiting 2 s
    result = baton(home, "run", "slow_chain", "--pipeline-ref", CHAIN, "--wait", "2")
    # then: exit 1, one line: the request is on the bus and nobody has taken it
    line = assert_one_line_error(result, 1, "no coordinator has taken it within 2 s",
                                 "is `baton up` running?")
    (request,) = asyncio.run(requests_on_the_bus(home))
    assert line.startswith(f"baton run: the request for {request.key} is on the bus, but no "
                           "coordinator has taken it within 2 s (is `baton up` running?)")


def test_run_whose_request_is_dead_lettered_says_why_and_exits_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # given: a run requested, waiting for an answer
    with requesting(home, "slow_chain", "--pipeline-ref", CHAIN, "--wait", "90") as run:
        (request,) = asyncio.run(requests_on_the_bus(home))
        # when: its coordinator dead-letters the request
        asyncio.run(dead_letter_it(home, request, "data.spec: refused by the test"))
        out, err = run.communicate(timeout=60)
    # then: exit 1, and one line with the consumer and the reason
    assert_one_line_error(
        subprocess.CompletedProcess(run.args, run.returncode, out, err), 1,
        f"baton run: the run request for {request.key} was refused and dead-lettered by "
        "baton.coordinator: data.spec: refused by the test (see 'baton dlq list')")


# -- idempotency keys: their own namespace; one key, one request ------------------------------


def runs_listed(home: Path) -> list[dict[str, Any]]:
    listed = baton(home, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


def test_a_manual_run_whose_idempotency_key_is_a_triggers_event_id_is_a_run_of_its_own(
    tmp_path: Path, services: list[Service]
) -> None:
    home, data = tmp_path / "home", tmp_path / "digits.npz"
    home.mkdir()
    data.write_bytes(b"not read: no agent runs the tasks")
    services.append(Service.spawn(home, ["up", "--agents", "0"], tmp_path / "up.log"))
    # given: a data arrival with the event id nightly-1, and the run it started
    published = baton(home, "publish", "data-arrived", "--dataset", "digits", "--version", "v1",
                      "--uri", str(data), "--event-id", "nightly-1")
    assert published.returncode == 0, published.stderr
    log = wait_for_run_log(home, lambda log: any(isinstance(e.data, RunCreated) for e in log),
                           timeout=120)
    (triggered,) = [e.data.run_id for e in log if isinstance(e.data, RunCreated)]
    # when: a manual run is requested with the idempotency key nightly-1
    run = baton(home, "run", "digits", "--uri", str(data), "--param", "epochs=5",
                "--priority", "50", "--idempotency-key", "nightly-1", "--wait", "90",
                timeout=120)
    # then: a new run is made, not the data arrival's run answered
    assert run.returncode == 0, run.stderr + services[0].output()
    manual = run.stdout.strip()
    assert run.stdout == f"{manual}\n" and manual != triggered and run.stderr == ""
    # and: both runs are listed, each with its own origin
    assert services[0].stop() == 0, services[0].output()
    rows = {row["run_id"]: row for row in runs_listed(home)}
    assert {(r, rows[r]["trigger_type"], rows[r]["trigger_event_id"]) for r in rows} == {
        (triggered, "data_arrived", "nightly-1"), (manual, "manual", "nightly-1")}
    assert rows[manual]["priority"] == 50


def test_an_idempotency_key_reused_for_a_different_request_is_refused_naming_the_run(
    tmp_path: Path, services: list[Service]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    services.append(Service.spawn(home, ["up", "--pipeline", QUICK, "--agents", "0"],
                                  tmp_path / "up.log"))
    request = ["run", "quick_chain", "--pipeline-ref", QUICK, "--idempotency-key", "k",
               "--wait", "90"]
    # given: a run made with the key k
    first = baton(home, *request, "--param", "epochs=5", timeout=120)
    assert first.returncode == 0, first.stderr + services[0].output()
    run_id = first.stdout.strip()
    # when: the same request is sent again
    again = baton(home, *request, "--param", "epochs=5", timeout=120)
    # then: it is answered with that run, noting that nothing new was started
    assert (again.returncode, again.stdout) == (0, f"{run_id}\n"), again.stderr
    assert f"{run_id} already existed (same --idempotency-key)" in again.stderr
    # when: the key is sent with a different request
    other = baton(home, *request, "--param", "epochs=6", timeout=120)
    # then: exit 2, one line naming the run the key made and the field that differs
    assert_one_line_error(
        other, 2, f"baton run: error: conflict: idempotency key 'k' already made run {run_id} "
        "with different params; nothing new was started (a different request needs its own "
        "--idempotency-key)")
    # and: still one run
    assert services[0].stop() == 0, services[0].output()
    assert [row["run_id"] for row in runs_listed(home)] == [run_id]


def test_demo_with_serve_keeps_serving_its_runs_until_stopped(
    tmp_path: Path, services: list[Service],
) -> None:
    # given a demo told to keep serving
    demo = Service.spawn(tmp_path / "home", ["demo", "--serve"], tmp_path / "demo.log")
    services.append(demo)
    # when its runs are done
    demo.until_printed("until Ctrl-C", within_s=110)
    urls = re.findall(r"(http://\S+/runs/(run-\w+))", demo.output())
    # then each run it printed is there to read, until it is stopped
    assert len(urls) == 2, demo.output()
    for url, run_id in urls:
        api = url.replace(f"/runs/{run_id}", f"/api/v1/runs/{run_id}")
        answer = httpx.get(api, timeout=30)
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
    assert demo.stop(signal.SIGTERM) == 0
