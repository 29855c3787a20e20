"""`baton runs show` in a real process, from a real log: each attempt's queue and run time, and
the run's lineage from its trigger event and dataset version to its model version."""

from __future__ import annotations

import json
from pathlib import Path

from bus import EMBEDDED, Outgoing, open_bus_url
from events import topics
from events.codec import encode
from orchestrator.service.home import Home
from tests.core.support import CheckedHarness
from tests.e2e.support import baton
from tests.integration.test_projection_rows import data_arrival_that_registered_a_model


async def logged(h: CheckedHarness, home: Path) -> None:
    """The harness's run log appended to the home's embedded bus, each run on its partition
    as the coordinator places it; nothing else runs there."""
    bus = await open_bus_url(EMBEDDED, Home(home).create().root)
    try:
        n = bus.partitions(topics.RUNS)
        await bus.publish([Outgoing(topics.RUNS, env.subject, encode(env),
                                    partition=topics.partition_for(env.subject, n))
                           for env in h.log])
    finally:
        await bus.close()


async def test_runs_show_prints_each_attempts_queue_and_run_time_and_the_lineage(
    tmp_path: Path,
) -> None:
    # given: a home whose log holds a run started by digits v3 arriving: train queued 2 s
    # (its agent held `started` 0.25 s of that) and ran 1.5 s, then model v4 was registered
    h, run_id = data_arrival_that_registered_a_model()
    await logged(h, tmp_path)

    # when: `baton runs show` is asked for it (it catches the projection up from the log)
    shown = baton(tmp_path, "runs", "show", run_id[:12])
    as_json = baton(tmp_path, "runs", "show", run_id, "--json")

    # then: the lineage on one line, and the attempt's line with its queue and run time
    assert shown.returncode == 0, shown.stderr
    version = h.run(run_id).spec.version()[:8]
    lines = shown.stdout.splitlines()
    assert (f"  lineage   data_arrived event evt-7 → dataset digits@v3 → pipeline "
            f"retrain@{version} → model digits-clf v4") in lines
    train = next(i for i, line in enumerate(lines) if " train " in line)
    assert lines[train + 1].split()[:5] == ["#1", "cpu-a", "no", "GPU", "succeeded"]
    assert "queued 2.00 s" in lines[train + 1] and "ran 1.50 s" in lines[train + 1]
    # and: --json has the times that line was drawn from
    (attempt,) = next(t for t in json.loads(as_json.stdout)["tasks"]
                      if t["name"] == "train")["attempt_history"]
    assert [attempt[k] for k in ("queued_at", "scheduled_at", "started_at", "ended_at")] == [
        1000.0, 1001.5, 1002.0, 1003.5]
