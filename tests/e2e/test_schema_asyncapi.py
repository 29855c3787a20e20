"""`baton schema asyncapi` as a user runs it: a real process, its files, output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from events import topics
from events.catalog import CATALOG
from tests.e2e.support import baton
from tests.e2e.test_cli import assert_one_line_error

pytestmark = pytest.mark.e2e


def addresses(doc: dict[str, object]) -> list[str]:
    channels = doc["channels"]
    assert isinstance(channels, dict)
    return [channel["address"] for channel in channels.values()]


def test_writes_the_document_to_a_file_in_the_format_its_name_says(tmp_path: Path) -> None:
    # when the document is written to a .yaml file and to a .json file
    as_yaml = baton(None, "schema", "asyncapi", "--out", str(tmp_path / "baton.yaml"))
    as_json = baton(None, "schema", "asyncapi", "--out", str(tmp_path / "baton.json"))
    # then each file holds the same AsyncAPI 3 document, with every topic as a channel
    assert as_yaml.returncode == 0 and as_json.returncode == 0, as_yaml.stderr + as_json.stderr
    assert f"wrote AsyncAPI 3.0.0 (yaml, {len(topics.ALL_TOPICS)} channels)" in as_yaml.stdout
    doc = yaml.safe_load((tmp_path / "baton.yaml").read_text())
    assert json.loads((tmp_path / "baton.json").read_text()) == doc
    assert doc["asyncapi"] == "3.0.0"
    assert addresses(doc) == list(topics.ALL_TOPICS)
    consts = {schema["properties"]["type"].get("const")
              for schema in doc["components"]["schemas"].values()
              if "type" in schema.get("properties", {})}
    assert set(CATALOG.types) <= consts


def test_prints_the_document_for_a_kafka_deployment_with_its_servers_and_namespace() -> None:
    # when the bus names a Kafka cluster with a namespace (nothing connects to it)
    result = baton(None, "schema", "asyncapi", "--format", "json",
                   bus="kafka://kafka-1:9092?namespace=prod")
    # then the document on stdout names its hosts and the namespaced topics
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert addresses(doc) == [f"prod.{t}" for t in topics.ALL_TOPICS]
    assert [s["host"] for s in doc["servers"].values()] == ["kafka-1:9092"]


def test_a_bad_format_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = baton(None, "schema", "asyncapi", "--format", "xml",
                   "--out", str(tmp_path / "a.xml"))
    assert_one_line_error(result, 2, "--format", "invalid choice: 'xml'",
                          "see 'baton schema asyncapi --help'")
    assert not (tmp_path / "a.xml").exists()


def test_an_unwritable_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "baton.yaml"
    result = baton(None, "schema", "asyncapi", "--out", str(target))
    assert_one_line_error(result, 2, f"cannot write {target}", "No such file or directory")
