"""compose.yaml cannot run here (no Docker engine), so hold it to everything that can be checked:
Docker Compose v2 accepts it, its broker runs with the test broker's settings, every Baton
command in it parses with Baton's own CLI, the GPU agent reserves NVIDIA devices, and the
Dockerfile and the collector config agree with it."""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agents.capabilities import detect_capabilities
from bus import parse_bus_url
from events.trace_context import exporting
from orchestrator.cli.main import build_parser
from orchestrator.core.placement import satisfies
from orchestrator.devkafka.classpath import POM, kafka_version
from orchestrator.devkafka.cluster import ClusterConfig, NodeConfig, broker_settings
from orchestrator.pipelines.loader import DEFAULT_PIPELINES, load_all
from tests.deploy import compose_cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
BATON_SERVICES = ("coordinator", "agent-cpu", "agent-gpu", "api")
KAFKA_INTERNAL = "kafka:19092"


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    spec = services[name]
    assert isinstance(spec, dict)
    return spec


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def kafka_env_name(prop: str) -> str:
    """The official image's env var for a broker property: `.`→`_`, `_`→`__`, `-`→`___`."""
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def test_broker_sets_every_setting_of_the_test_broker_with_the_same_values() -> None:
    # given the properties devkafka writes for the single node the tests run against
    node = NodeConfig(1, 9092, 9093, Path("/unused"))
    test_broker = dict(line.split("=", 1) for line in
                       ClusterConfig((node,)).properties(node).splitlines())
    # when we read the broker settings compose.yaml gives the official image
    env = environment("kafka")
    compose_settings = {key: value for key, value in env.items() if key.startswith("KAFKA_")}
    # then it sets exactly those properties, and all but the node's addresses and directory
    # have the test broker's values
    assert set(compose_settings) == {kafka_env_name(prop) for prop in test_broker}
    for prop, value in broker_settings(1).items():
        assert compose_settings[kafka_env_name(prop)] == str(value), prop


def test_broker_is_the_kafka_version_the_tests_run() -> None:
    image = service("kafka")["image"]
    assert image == f"apache/kafka:{kafka_version(POM.read_text())}"


def test_broker_layout_hangs_together() -> None:
    # given the node's own settings in compose.yaml
    env = environment("kafka")
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in
                     env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    # then the quorum names this node on its controller listener
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == \
        f"{env['KAFKA_NODE_ID']}@kafka:{listeners['CONTROLLER'].rpartition(':')[2]}"
    # and every listener has a protocol, the containers' one is what Baton's services dial
    assert set(protocols) == set(listeners)
    assert advertised["PLAINTEXT"] == KAFKA_INTERNAL
    assert listeners["PLAINTEXT"] == ":19092"
    # and the host's listener is published on loopback at the port it advertises
    host_port = advertised["PLAINTEXT_HOST"].rpartition(":")[2]
    assert f"127.0.0.1:{host_port}:{listeners['PLAINTEXT_HOST'].rpartition(':')[2]}" in \
        service("kafka")["ports"]
    # and the data lives in a named volume, formatted with a valid cluster id
    assert f"kafka-data:{env['KAFKA_LOG_DIRS']}" in service("kafka")["volumes"]
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", env["CLUSTER_ID"])


@pytest.mark.parametrize("name", BATON_SERVICES)
def test_baton_service_command_parses_with_batons_cli(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the service's command (after the image's `baton` entrypoint) and environment
    # when Baton's own parser reads it
    args = _parsed(name, monkeypatch)
    # then it runs a coordinator, an agent or the API on the compose broker, with the broker's
    # replication, and the state in the shared volume
    assert args.command == {"coordinator": "coordinator", "api": "api"}.get(name, "agent")
    kafka = parse_bus_url(args.bus)
    assert kafka is not None, f"{name} runs on the embedded bus"
    assert kafka.bootstrap == KAFKA_INTERNAL
    assert kafka.replication == broker_settings(1)["default.replication.factor"]
    assert environment(name)["BATON_HOME"] == "/var/lib/baton"
    assert "baton-home:/var/lib/baton" in service(name)["volumes"]
    assert service(name)["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_coordinator_runs_pipelines_the_cpu_agent_can_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given the coordinator's pipelines and the CPU agent's advertised capacity
    coordinator = _parsed("coordinator", monkeypatch)
    specs = load_all(coordinator.pipeline or list(DEFAULT_PIPELINES))
    agent = _parsed("agent-cpu", monkeypatch)
    caps = detect_capabilities(cpus=agent.cpus, memory=agent.memory, gpus=agent.gpus,
                               labels=agent.label)
    # then the CPU agent claims no GPU, and could run every task of those pipelines
    assert agent.gpus == "none" and caps.gpus == ()
    for spec in specs.values():
        for task in spec.tasks:
            if task.kind == "function":
                assert satisfies(caps, task.resources) is None, (spec.name, task.name)


def test_agents_have_distinct_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [_parsed(name, monkeypatch).agent_id for name in BATON_SERVICES
           if name.startswith("agent")]
    assert all(ids) and len(set(ids)) == len(ids)


def test_gpu_agent_reserves_nvidia_gpus_and_detects_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given the GPU agent
    gpu = service("agent-gpu")
    agent = _parsed("agent-gpu", monkeypatch)
    # then it reserves the host's NVIDIA GPUs (Compose spec device reservation)
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", [])
               and (device.get("count") == "all" or device.get("device_ids"))
               for device in devices)
    # and advertises what it detects (NVML, from the gpu extra its image is built with)
    assert agent.gpus is None
    extras = set(gpu["build"]["args"]["EXTRAS"].split(","))
    assert {"examples", "gpu", "torch"} <= extras
    assert gpu["image"] != service("agent-cpu")["image"]
    # and is started only where asked for, so `docker compose up` works without a GPU
    assert gpu["profiles"] == ["gpu"]
    assert "profiles" not in service("coordinator") and "profiles" not in service("agent-cpu")


def test_otel_collector_is_optional_and_listens_where_baton_sends() -> None:
    # given the collector service and its config file
    collector = service("otel-collector")
    assert collector["profiles"] == ["otel"]
    assert collector["image"].startswith("otel/opentelemetry-collector:")
    mount = next(v for v in collector["volumes"] if v.endswith(":/etc/otelcol/config.yaml:ro"))
    config = yaml.safe_load((ROOT / mount.split(":")[0]).read_text())
    # then every pipeline names components the config defines
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(config.get(kind) or {}), kind
    # and its traces pipeline takes OTLP, which is what Baton sends them over
    assert "otlp" in config["service"]["pipelines"]["traces"]["receivers"]
    # and its metrics pipeline too (the API's pipeline metrics, orchestrator/metrics/otel.py)
    assert "otlp" in config["service"]["pipelines"]["metrics"]["receivers"]
    # and Baton's services point the standard OTLP variables at its HTTP receiver
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.startswith("0.0.0.0:")
    for name in BATON_SERVICES:
        env = environment(name)
        endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (endpoint.hostname, str(endpoint.port)) == \
            ("otel-collector", http.rpartition(":")[2]), name
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"].startswith("baton-")
        # so that Baton exports its traces there (orchestrator/telemetry, agents/task_tracing)
        assert exporting(env), name


def test_dockerfile_builds_what_compose_runs() -> None:
    # given the Dockerfile's instructions
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    instructions: dict[str, list[str]] = {}
    for line in lines:
        word, _, rest = line.partition(" ")
        instructions.setdefault(word.upper(), []).append(rest.strip())
    # then it is python:3.11-slim with Baton and its examples, run as a non-root user, whose
    # entrypoint is `baton` (compose commands are its arguments) and whose home is the volume
    assert instructions["FROM"] == ["python:3.11-slim"]
    assert "EXTRAS=examples" in instructions["ARG"]
    assert any('".[${EXTRAS}]"' in run for run in instructions["RUN"])
    assert instructions["USER"][-1] not in ("root", "0")
    assert instructions["ENTRYPOINT"] == ['["baton"]']
    assert "BATON_HOME=/var/lib/baton" in instructions["ENV"]
    for name in BATON_SERVICES:
        assert service(name)["build"]["context"] == "."
        assert "entrypoint" not in service(name)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".baton", "tests"} <= set(ignored)


def test_docker_compose_v2_accepts_the_file(tmp_path: Path) -> None:
    # given Docker Compose v2 (`./dev test` installs it: never skip, a file nobody checked
    # must not pass)
    command = compose_cli.find()
    if command is None:
        pytest.fail(f"no Docker Compose v2 here to validate compose.yaml: {compose_cli.FIX}",
                    pytrace=False)
    # when it validates compose.yaml with every profile on
    ok = _compose_config(command, COMPOSE)
    # then it accepts it, and it does reject a broken copy (so a pass means something)
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    hostname: kafka\n",
                                                  "    hostname: kafka\n    hostnme: kafka\n"))
    bad = _compose_config(command, broken)
    assert bad.returncode != 0
    assert "hostnme" in bad.stderr


def _compose_config(command: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` on one file with every profile; COMPOSE_* from the caller's
    environment (another file, other profiles) must not change what is checked."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    return subprocess.run(
        [*command, "--project-directory", str(path.parent), "-f", str(path),
         "--profile", "gpu", "--profile", "otel", "config", "--quiet"],
        capture_output=True, text=True, timeout=120, env=env, check=False)


def _parsed(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The service's command as Baton's parser reads it, in the service's environment."""
    for key, value in environment(name).items():
        monkeypatch.setenv(key, value)
    command = [str(arg) for arg in service(name)["command"]]
    try:
        return build_parser().parse_args(command)
    except SystemExit:  # argparse said why on stderr, which the report shows
        pytest.fail(f"compose.yaml {name}: `baton {' '.join(command)}` does not parse")


def test_the_api_service_serves_beyond_loopback_only_with_tokens_from_the_shared_home(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given the API's service, as Baton's own parser reads its command
    args = _parsed("api", monkeypatch)
    # then it listens on every interface of its container, with a tokens file in the home
    # volume (the one `docker compose run --rm coordinator tokens add` writes), published on
    # the host's loopback only
    assert (args.http.host, args.http.port) == ("0.0.0.0", 8765)
    assert str(args.tokens).startswith("/var/lib/baton/")
    assert service("api")["ports"] == ["127.0.0.1:8765:8765"]
    assert service("api")["profiles"] == ["api"]
