"""`baton demo --lifecycle` as a user runs it: the model's whole loop on the digits data, told
by the registry and the run logs (`--json`); then `baton monitor drift --from-serving` on
what that demo's gateway was asked, and `baton openlineage` sending the whole loop out."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.digits import data
from tests.e2e.support import baton
from tests.openlineage.schema import problems

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


def test_the_whole_loop_goes_out_as_valid_openlineage_events(
    lifecycle: tuple[Path, dict[str, Any]], tmp_path: Path,
) -> None:
    # given the demo's logs; when they are sent as OpenLineage events to a file
    home, _ = lifecycle
    out = tmp_path / "lineage.jsonl"
    sent = baton(home, "openlineage", "--transport", f"file:{out}", "--once")
    assert sent.returncode == 0, sent.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"{len(events)} OpenLineage events sent" in sent.stdout
    # then each is valid against the OpenLineage schema, each facet against its own
    for event in events:
        assert problems(event) == [], event
    # and each run and each task that ran has a START and one end
    ends: dict[str, list[str]] = {}
    for e in events:
        ends.setdefault(f"{e['job']['name']}/{e['run']['runId']}", []).append(e["eventType"])
    runs = {e["job"]["name"] for e in events if e["job"]["namespace"] == "baton"}
    assert {"digits", "digits_release", "digits_release.canary"} <= runs
    for job, types in ends.items():
        assert types in (["START", "COMPLETE"], ["START", "FAIL"], ["ABORT"]), job
    # and the retraining run names the drift that triggered it; v3's canary failed
    release = [e for e in events if e["job"]["name"] == "digits_release"
               and e["eventType"] == "START"]
    parents = sorted(e["run"]["facets"]["parent"]["job"]["name"] for e in release)
    assert parents == [f"drift_detected.{MODEL}", "manual.digits_release"]
    canaries = [e["run"]["facets"]["baton_canary"] for e in events
                if e["job"]["name"] == "digits_release.canary" and e["eventType"] != "START"]
    assert sorted((c["version"], c["verdict"]) for c in canaries) == [(2, "promoted"),
                                                                       (3, "rolled_back")]
    # and the champion's two moves are jobs of the registry, the second parented by v2's run
    moves = [e for e in events if e["job"]["namespace"] == "baton.registry"
             and e["eventType"] == "COMPLETE"]
    assert [m["run"]["facets"]["baton_aliasMove"]["version"] for m in moves] == [1, 2]
    assert moves[1]["run"]["facets"]["parent"]["job"]["name"] == "digits_release"
    # and run again, it sends nothing twice
    again = baton(home, "openlineage", "--transport", f"file:{out}", "--once")
    assert again.returncode == 0 and "0 OpenLineage events sent" in again.stdout
    assert len(out.read_text().splitlines()) == len(events)


def test_openlineage_goes_to_an_http_endpoint_as_posts(
    lifecycle: tuple[Path, dict[str, Any]],
) -> None:
    # given a real HTTP server that keeps what is POSTed to it
    home, _ = lifecycle
    received: list[dict[str, Any]] = []

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "event": json.loads(body)})
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sent = baton(home, "openlineage", "--transport", url, "--namespace", "prod", "--once")
    finally:
        server.shutdown()
        server.server_close()
    # then every event came as a POST to /api/v1/lineage, valid, in the namespace asked for
    assert sent.returncode == 0, sent.stderr
    assert received and {r["path"] for r in received} == {"/api/v1/lineage"}
    assert f"{len(received)} OpenLineage events sent" in sent.stdout
    assert {r["event"]["job"]["namespace"] for r in received} >= {"prod", "prod.registry"}
    for r in received:
        assert problems(r["event"]) == []


def test_a_transport_that_fails_or_is_not_one_is_said_in_one_line(
    lifecycle: tuple[Path, dict[str, Any]],
) -> None:
    home, _ = lifecycle
    nothing = baton(home, "openlineage", "--transport", "ftp://x", "--once")
    assert nothing.returncode == 2 and "give file:PATH" in nothing.stderr
    refused = baton(home, "openlineage", "--transport", "http://127.0.0.1:9", "--once")
    assert refused.returncode == 1 and "sending to http://127.0.0.1:9 failed" in refused.stderr
    for result in (nothing, refused):
        assert "Traceback" not in result.stderr
