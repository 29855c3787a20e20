"""A condition over two datasets in real processes: `baton publish` with partition keys,
one run for the date both arrived for, a filtered event recorded with the filter that said
no, and `baton triggers explain` giving the run's cause set and what each event did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events import runs as ev
from events import topics
from events.conditions import MatchAdvanced
from tests.e2e.support import Service, baton, wait_for_log, wait_for_run_log

REF = "tests.e2e.schedule_pipelines:joined"

pytestmark = pytest.mark.e2e


def test_two_datasets_for_one_date_start_one_run_whose_cause_set_is_explained(
        tmp_path: Path, services: list[Service]) -> None:
    home = tmp_path / "home"
    services.append(Service.start(home, [REF], tmp_path / "up.log"))
    services[0].until_printed("Ctrl-C to stop")

    def publish(dataset: str, version: str, date: str, rows: int, event_id: str) -> None:
        sent = baton(home, "publish", "data-arrived", "--dataset", dataset, "--version",
                     version, "--uri", f"s3://{dataset}/{version}", "--rows", str(rows),
                     "--partition", f"date={date}", "--event-id", event_id)
        assert sent.returncode == 0, sent.stderr

    # given sales for two dates (one too small to count), then fx for the first
    publish("sales", "v1", "2026-12-01", 5000, "sales-1")
    publish("sales", "v2", "2026-12-02", 12, "sales-2")
    publish("fx", "v1", "2026-12-01", 30, "fx-1")
    # then one run starts, for 2026-12-01
    log = wait_for_run_log(home, lambda log: any(isinstance(e.data, ev.RunSucceeded)
                                                 for e in log), timeout=60)
    [created] = [e.data for e in log if isinstance(e.data, ev.RunCreated)]
    assert created.trigger.type == "condition"
    assert created.trigger.payload["partition"] == "2026-12-01"

    # when asked why it started, the cause set: both events, which dependency each met
    why = baton(home, "triggers", "explain", created.run_id, "--json")
    assert why.returncode == 0, why.stderr
    doc = json.loads(why.stdout)
    assert doc["text"].startswith(f"run {created.run_id} of joined started because its "
                                  "condition was met for 2026-12-01: sales@v1 "
                                  "(date=2026-12-01) (event sales-1, data sales) and fx@v1")
    # and what the small one did: filtered, with the filter that said no
    small = json.loads(baton(home, "triggers", "explain", "sales-2", "--json").stdout)
    assert small["text"] == "joined: ignored, filtered out (min_rows 100: 12 rows)"
    first = json.loads(baton(home, "triggers", "explain", "sales-1", "--json").stdout)
    assert "joined: waiting, 1 met; still missing: data fx" in first["text"]
    assert f"joined: started run {created.run_id} (fired with sales@v1" in first["text"]

    # when fx arrives for a date sales has not, then `triggers show` has it waiting
    publish("fx", "v2", "2026-12-03", 30, "fx-3")
    wait_for_log(home, topics.TRIGGER_LOG, lambda log: any(
        isinstance(e.data, MatchAdvanced) and e.data.key == "2026-12-03" for e in log),
        timeout=30)
    shown = baton(home, "triggers", "show", "joined", "--pipeline-ref", REF, "--json")
    assert shown.returncode == 0, shown.stderr
    [trigger] = json.loads(shown.stdout)["triggers"]
    waiting = {p["key"]: p for p in trigger["partials"]}
    assert waiting["2026-12-03"]["missing"] == ["data sales"]
    assert trigger["what"] == "(data sales and data fx) per date, timeout 600s"
    text = baton(home, "triggers", "show", "joined", "--pipeline-ref", REF).stdout
    assert "partial 2026-12-03: has fx@v2 (date=2026-12-03); missing data sales" in text

    # and an acknowledgement of an escalation there is none of is refused, saying so
    ack = baton(home, "triggers", "ack", "joined", "--model", "clf")
    assert ack.returncode == 1
    assert "acknowledge joined --model clf refused: clf is not escalated" in ack.stderr
