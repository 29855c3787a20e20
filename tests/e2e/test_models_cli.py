"""`baton models` against real processes: the demo's registered versions, a running `baton
up` (its registry answers), and promotions and rollbacks made from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bus import open_bus_url
from events import topics
from events.codec import decode
from events.registry import AliasMoved, ModelRequestRefused
from orchestrator.service.reading import read_all
from tests.e2e.support import Service, baton

MODEL = "digits-classifier"
WAIT = ("--wait", "60")


@dataclass
class Served:
    home: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo's home (v1 then v2 registered, each taking `champion` after its gate), with
    `baton up` running on it so the registry answers."""
    root = tmp_path_factory.mktemp("models")
    home = root / "home"
    demo = baton(home, "demo", timeout=110)
    assert demo.returncode == 0, demo.stderr[-3000:]
    service = Service.spawn(home, ["up", "--http", "off"], root / "up.log")
    try:
        yield Served(home)
    finally:
        service.stop()
        service.reap()


def models(served: Served, *args: str) -> Any:
    result = baton(served.home, "models", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def log_of(home: Path) -> list[Any]:
    bus = await open_bus_url("embedded", home)
    try:
        return [decode(r.value) for r in await read_all(bus, topics.MODELS, {})]
    finally:
        await bus.close()


async def test_an_operator_rolls_back_and_promotes_and_the_history_is_the_logs(
    served: Served,
) -> None:
    # given the demo's champion: v2, which its run promoted after its gate
    assert models(served, "show", MODEL)["aliases"] == {"champion": 2}
    # when an operator rolls it back, then promotes v2 again
    back = baton(served.home, "models", "rollback", MODEL, "--reason", "errors in prod", *WAIT)
    assert back.returncode == 0, back.stderr
    assert "champion v2 -> v1 (rollback)" in back.stdout
    assert models(served, "show", MODEL)["aliases"] == {"champion": 1}
    again = baton(served.home, "models", "promote", MODEL, "2", "--reason", "fixed", *WAIT)
    assert again.returncode == 0, again.stderr
    # then the champion is v2, and the history says who moved it, when, why, citing what
    history = [h for h in models(served, "history", MODEL) if h["move"] != "refused"]
    assert [(h["move"], h["previous"], h["version"]) for h in history] == [
        ("promote", None, 1), ("promote", 1, 2), ("rollback", 2, 1), ("promote", 1, 2)]
    first, _, rollback, promoted = history
    assert first["run_id"] and first["cites"].startswith(first["run_id"])
    assert (rollback["reason"], rollback["cites"]) == ("errors in prod", None)
    assert rollback["actor"] and promoted["actor"] == rollback["actor"]
    listed = {m["version"]: m for m in models(served, "list")}
    assert promoted["cites"] == listed[2]["gate"]["event_id"] and listed[2]["gate"]["passed"]
    # and it is exactly what baton.models says, move for move
    moves = [e for e in await log_of(served.home) if isinstance(e.data, AliasMoved)]
    assert [(e.id, e.data.version, e.data.reason) for e in moves] == [
        (h["event_id"], h["version"], h["reason"]) for h in history]
    # and where the alias pointed at each past time (between two moves) is answered from it
    for entry, after in zip(history, [*history[1:], {"at": history[-1]["at"] + 2}],
                            strict=True):
        between = datetime.fromtimestamp((entry["at"] + after["at"]) / 2, UTC).isoformat()
        at = models(served, "show", MODEL, "--at", between)
        assert at["aliases"] == {"champion": entry["version"]}


async def test_bad_promotions_are_refused_with_the_reason_and_change_nothing(
    served: Served,
) -> None:
    before = models(served, "show", MODEL)["aliases"]
    # when a version that does not exist is promoted
    missing = baton(served.home, "models", "promote", MODEL, "7", "--reason", "r", *WAIT)
    # then the registry refuses it, saying which versions there are, and records that
    assert missing.returncode != 0
    assert "refused" in missing.stderr and "has no v7 (its versions: v1, v2)" in missing.stderr
    refusals = [e.data for e in await log_of(served.home)
                if isinstance(e.data, ModelRequestRefused)]
    assert refusals and "no v7" in refusals[-1].reason
    # and an alias with path tricks, or an unknown model, never reaches the registry
    tricks = baton(served.home, "models", "promote", MODEL, "1", "--alias", "../champion",
                   "--reason", "r")
    unknown = baton(served.home, "models", "rollback", "nope", "--reason", "r")
    assert tricks.returncode == 2 and "is not an alias name" in tricks.stderr
    assert unknown.returncode != 0 and "no model 'nope'" in unknown.stderr
    assert "Traceback" not in missing.stderr + tricks.stderr + unknown.stderr
    # and nothing moved
    assert models(served, "show", MODEL)["aliases"] == before


def test_an_archived_version_cannot_be_promoted(served: Served) -> None:
    # given v1, which no alias points at any more (the first test moved champion to v2)
    assert models(served, "show", MODEL)["aliases"] == {"champion": 2}
    # when it is archived, then promoted
    archived = baton(served.home, "models", "archive", MODEL, "1", "--reason", "superseded",
                     *WAIT)
    promoted = baton(served.home, "models", "promote", MODEL, "1", "--reason", "r", *WAIT)
    # then it is archived (listed so), and its promotion refused with why
    assert archived.returncode == 0, archived.stderr
    assert "v1 archived" in archived.stdout
    assert {m["version"]: m["status"] for m in models(served, "list")} == {
        1: "archived", 2: "registered"}
    assert promoted.returncode != 0 and "is archived (superseded)" in promoted.stderr


def test_diff_shows_two_versions_side_by_side(served: Served) -> None:
    diff = models(served, "diff", MODEL, "1", "v2")
    rows = {r["field"]: r for r in diff["rows"]}
    assert not rows["metrics.test_accuracy"]["same"]  # the same on the held-out rows
    assert rows["lineage.pipeline"]["same"] and rows["lineage.pipeline"]["a"] == "digits"
    assert (rows["lineage.dataset_version"]["a"], rows["lineage.dataset_version"]["b"]) == \
        ("v1", "v2")
    text = baton(served.home, "models", "diff", MODEL, "1", "2")
    assert text.returncode == 0 and "metrics.accuracy" in text.stdout


def test_lineage_gives_a_versions_whole_chain(served: Served) -> None:
    # when the lineage of v2 (trained after the demo's drift) is asked for
    chain = json.loads(baton(served.home, "lineage", f"{MODEL}@v2", "--json").stdout)
    # then it reaches from the drift check that triggered it to the alias moves
    assert chain["trigger"]["type"] == "drift_detected"
    assert {"score", "threshold"} <= set(chain["trigger"]["payload"])
    assert (chain["dataset"]["name"], chain["dataset"]["version"]) == ("digits", "v2")
    assert len(chain["dataset"]["sha256"]) == 64
    assert chain["pipeline"]["name"] == "digits" and chain["pipeline"]["version"]
    assert {a["task"] for a in chain["attempts"]} == {"ingest", "features", "train",
                                                      "evaluate"}
    assert all(a["agent"] for a in chain["attempts"])
    assert chain["gate"]["passed"] and chain["complete"]
    assert chain["alias_moves"] and all(
        2 in (m["version"], m["previous"]) for m in chain["alias_moves"])
    # and an alias names the version it points at; a wrong target is one line, exit 1 or 2
    by_alias = baton(served.home, "lineage", f"{MODEL}@champion", "--json")
    assert json.loads(by_alias.stdout)["version"] == models(served, "show", MODEL)[
        "aliases"]["champion"]
    missing = baton(served.home, "lineage", f"{MODEL}@v9")
    malformed = baton(served.home, "lineage", MODEL)
    assert missing.returncode == 1 and "no such version or alias" in missing.stderr
    assert malformed.returncode == 2 and "give MODEL@VERSION" in malformed.stderr
