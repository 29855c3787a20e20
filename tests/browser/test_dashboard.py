"""The dashboard in Chromium against a real server: an app with the HTTP API on a free port,
a coordinator, an agent with real worker processes, the embedded bus. A run requested
through the API appears in the runs list and moves through its states without a reload;
the run page's DAG has one node per task and its timeline one bar per attempt; the models
page charts a point per version; a dead letter is re-driven from its page; API problems are
shown as their title and detail."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from bus import Bus, Outgoing, Record, TopicPartition
from events import topics
from events.canary import CanaryStarted, CanaryStepStarted
from events.codec import encode
from events.common import Capabilities, GpuInfo, Resources
from events.envelope import envelope
from events.pipeline import (
    ApprovalSpec,
    CanarySpec,
    CanaryStep,
    GateSpec,
    PipelineSpec,
    RegisterSpec,
    RetryPolicy,
    TaskSpec,
    TriggerSpec,
)
from events.registry import TrafficSet
from events.runs import ApprovalDecided
from events.schedule_spec import ScheduleSpec
from events.serving import ServingWindow
from events.triggers import DataArrived
from orchestrator.api.auth import Tokens, add_token
from orchestrator.api.server import Listen, bind
from orchestrator.core.backfill_plan import request_envelopes, requests, slot_plan
from orchestrator.service.embedded_app import AgentSpec, EmbeddedApp
from orchestrator.service.home import Home
from orchestrator.service.router_commands import plan_taken, router_record, told
from orchestrator.serving.service import forwarded
from tests.browser.artifacts import screenshots_dir
from tests.browser.dashboard_tasks import ref as mine
from tests.integration.support import Apps, Tail, api_url, projected, run_to_end, tp_for
from tests.integration.tasks import ref

pytestmark = pytest.mark.asyncio(loop_scope="session")

HELD = PipelineSpec(name="held", tasks=(
    TaskSpec(name="prepare", function=ref("seed")),
    TaskSpec(name="hold", function=mine("held"), deps=("prepare",),
             resources=Resources(gpus=1)),
    TaskSpec(name="finish", function=mine("finish"), deps=("hold",)),
))
FLAKY = PipelineSpec(name="flaky", tasks=(
    TaskSpec(name="first", function=ref("seed")),
    TaskSpec(name="shaky", function=mine("shaky"), deps=("first",),
             retry=RetryPolicy(max_attempts=2, backoff_s=0.05)),
))
SCORED = PipelineSpec(name="scored", tasks=(
    TaskSpec(name="fit", function=mine("scored")),
    TaskSpec(name="gate", kind="gate", deps=("fit",), gate=GateSpec(
        metrics_from="fit", minimum={"accuracy": 0.5}, model="scorer")),
    TaskSpec(name="register", kind="register", deps=("gate",),
             registration=RegisterSpec(model="scorer", artifact_from="fit", metrics_from="fit",
                                       promote_to="champion")),
))
APPROVED = PipelineSpec(name="approved", tasks=(
    TaskSpec(name="first", function=ref("seed")),
    TaskSpec(name="approve", kind="approval", deps=("first",),
             approval=ApprovalSpec(timeout_s=300, on_timeout="reject")),
    TaskSpec(name="finish", function=ref("seed"), deps=("approve",)),
))
CANARIED = PipelineSpec(name="canaried", tasks=(
    TaskSpec(name="fit", function=mine("scored")),
    TaskSpec(name="gate", kind="gate", deps=("fit",), gate=GateSpec(
        metrics_from="fit", minimum={"accuracy": 0.5}, model="scorer")),
    TaskSpec(name="register", kind="register", deps=("gate",),
             registration=RegisterSpec(model="scorer", artifact_from="fit", metrics_from="fit")),
    TaskSpec(name="canary", kind="canary", deps=("register",), canary=CanarySpec(
        model="scorer", version_from="register", timeout_s=300, min_requests=10,
        steps=(CanaryStep(percent=10, requests=20), CanaryStep(percent=50, requests=20)))),
))
MARKUP = PipelineSpec(name="markup", tasks=(TaskSpec(name="say", function=mine("markup")),))
FED = PipelineSpec(name="fed", tasks=(TaskSpec(name="only", function=ref("seed")),),
                   triggers=(TriggerSpec(on="data_arrived", dataset="digits"),),
                   schedules=(ScheduleSpec(name="yearly", cron="0 3 1 1 *",
                                           timezone="Europe/Berlin"),))
AGENT = AgentSpec(Capabilities(cpus=4, memory_mb=4096, gpus=(
    GpuInfo(index=0, model="A100", memory_mb=40960), GpuInfo(index=1, model="A100",
                                                             memory_mb=40960))),
    agent_id="gpu-a")
"""An agent that advertises two GPUs (declared, as `baton agent --gpus` does): 'hold' takes one."""
LIVE = 15_000
"""ms to wait for what the page shows to follow the log (the first task also waits for the
agent's first worker process to start)."""


@pytest.fixture(autouse=True, scope="module")
def patient_expect() -> Iterator[None]:
    """Every page here waits on a real server (and a real worker) that a loaded machine slows:
    each `expect` in this module waits up to LIVE, then the default comes back."""
    expect.set_options(timeout=LIVE)
    yield
    expect.set_options(timeout=None)


@pytest.fixture(autouse=True)
def released(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, its held tasks are let go even if it failed half way: the app is the
    module's, and a task left holding a GPU and a worker would fail the tests after it."""
    yield
    if "served" in request.fixturenames:
        served: Served = request.getfixturevalue("served")
        for release in served.releases:
            release.touch()
        served.releases.clear()


class Served:
    def __init__(self, app: EmbeddedApp, bus: Bus, client: httpx.AsyncClient) -> None:
        self.app, self.bus, self.client = app, bus, client
        self.base = api_url(app).removesuffix("/api/v1")
        self.releases: list[Path] = []
        """What the held tasks of the test under way wait for (`released` frees them)."""

    async def request(self, pipeline: str, **params: Any) -> str:
        if "release" in params:
            self.releases.append(Path(params["release"]))
        answer = await self.client.post("/runs", json={"pipeline": pipeline, "params": params})
        assert answer.status_code == 202, answer.text
        run_id: str = answer.json()["run_id"]
        return run_id


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    apps = Apps(Home(tmp_path_factory.mktemp("dashboard") / "home"))
    try:
        specs = {s.name: s for s in (HELD, FLAKY, SCORED, MARKUP, FED, APPROVED, CANARIED)}
        app = EmbeddedApp(apps.home, specs, [AGENT], http=bind(Listen("127.0.0.1", 0)))
        apps.opened.append(app)
        bus = await app.start()
        async with httpx.AsyncClient(base_url=api_url(app), timeout=30) as client:
            yield Served(app, bus, client)
    finally:
        await apps.close_all()


async def test_a_requested_run_appears_and_moves_through_its_states_without_a_reload(
    page: Page, served: Served, screenshot: Any, tmp_path: Path
) -> None:
    # given the dashboard open on the runs list
    await page.goto(f"{served.base}/")
    await expect(page.locator("table.runs")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-mode", "stream")  # SSE
    await page.evaluate("window.sameDocument = true")
    paint = await page.evaluate(
        "() => Object.fromEntries(performance.getEntriesByType('paint')"
        ".map(e => [e.name, e.startTime]))")
    (screenshots_dir() / "first-paint.json").write_text(json.dumps(paint))
    assert paint["first-contentful-paint"] > 0
    # when a run is requested through the API, its middle task held until the test says
    release = tmp_path / "release"
    run_id = await served.request("held", release=str(release))
    # then it appears at the top of the list, running
    row = page.locator(f'tr[data-run="{run_id}"]')
    await expect(row).to_have_attribute("data-status", "running", timeout=LIVE)
    assert await page.locator("table.runs tbody tr").first.get_attribute("data-run") == run_id
    # and its page shows the DAG (one node per task) with the held task running
    await row.locator("a").click()
    await expect(page).to_have_url(f"{served.base}/runs/{run_id}")
    hold = page.locator('.dag-node[data-task="hold"]')
    await expect(hold).to_have_attribute("data-state", "running", timeout=LIVE)
    assert await page.locator(".dag-node").count() == len(HELD.tasks)
    await expect(page.locator('.dag-node[data-task="finish"]')).to_have_attribute(
        "data-state", "pending")
    await screenshot("run-running")
    # when the held task is let go
    release.touch()
    # then the DAG and the timeline follow to the end: one bar per attempt
    await expect(page.locator('.dag-node[data-task="finish"]')).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE)
    await expect(page.locator(".tl-row")).to_have_count(len(HELD.tasks), timeout=LIVE)
    await expect(page.locator(".page-head .badge")).to_have_text("succeeded", timeout=LIVE)
    # and back on the list the run's row says so, the page never reloaded
    await page.go_back()
    await expect(page.locator(f'tr[data-run="{run_id}"]')).to_have_attribute(
        "data-status", "succeeded", timeout=LIVE)
    assert await page.evaluate("window.sameDocument === true")
    await screenshot("runs")


async def test_the_run_page_shows_each_attempt_its_error_and_traceback(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given a run whose second task fails twice (one retry)
    run_id = await served.request("flaky")
    await run_to_end(served.bus, run_id)
    await projected(served.app, served.bus)
    # when its page is opened
    await page.goto(f"{served.base}/runs/{run_id}")
    # then one DAG node per task, one timeline bar per attempt (1 + 2), each attempt's error
    await expect(page.locator(".tl-row")).to_have_count(3, timeout=LIVE)
    assert await page.locator(".dag-node").count() == 2
    await expect(page.locator('.dag-node[data-task="shaky"]')).to_have_attribute(
        "data-state", "failed")
    rows = await page.locator(".tl-row").evaluate_all(
        "rows => rows.map(r => [r.dataset.task, Number(r.dataset.attempt), r.dataset.status])")
    assert rows == [["first", 1, "succeeded"], ["shaky", 1, "failed"], ["shaky", 2, "failed"]]
    errors = page.locator('.attempt[data-status="failed"] .error')
    await expect(errors).to_have_count(2)
    await expect(errors.first).to_have_text("shaky: failed on purpose after 41")
    await page.locator(".attempt details summary").first.click()
    await expect(page.locator(".traceback").first).to_contain_text("ValueError")
    await expect(page.locator("section.card", has_text="Audit")).to_contain_text("local")
    await screenshot("failed-run")


async def test_the_models_page_charts_a_point_per_version(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given a model registered twice, each version with its metrics
    for accuracy in (0.81, 0.93):
        await run_to_end(served.bus, await served.request("scored", accuracy=accuracy))
    await projected(served.app, served.bus)
    # when the models page is opened
    await page.goto(f"{served.base}/models")
    # then its chart has one point per version for each metric
    await page.wait_for_function("window.baton?.charts?.length === 1")
    points = await page.evaluate("window.baton.charts[0].pointPixels()")
    assert sorted((p["series"], p["index"]) for p in points) == [
        ("accuracy", 0), ("accuracy", 1), ("loss", 0), ("loss", 1)]
    card = page.locator('section[data-model="scorer"]')
    await expect(card.locator("tr[data-version]")).to_have_count(2)
    # and v2, whose gate passed after v1's, is the champion, each move in the history
    await expect(card.locator('tr[data-version="2"] .alias')).to_have_text("champion")
    await expect(card.locator('.alias-history tr[data-move="promote"]')).to_have_count(2)
    # when the operator rolls the champion back from the page, giving a reason
    await card.locator("input[name=reason]").fill("loss went up in production")
    await card.locator('button[data-action="rollback"]').click()
    # then v1 is the champion again, and the history says why
    await expect(card.locator('tr[data-version="1"] .alias')).to_have_text("champion")
    rollback = card.locator('.alias-history tr[data-move="rollback"]')
    await expect(rollback).to_contain_text("loss went up in production")
    await expect(rollback).to_contain_text("v2 → v1")
    await screenshot("models")


async def test_the_models_page_charts_the_gateways_windows(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given windows a gateway published for the scorer's two versions (the test publishes
    # them as `baton serve` does: tests/e2e/test_serve_cli.py has the gateway's own)
    now = time.time()
    windows = [ServingWindow(model="scorer", version=v, role=role, gateway="gw", start=t - 10,
                             end=t, requests=n, errors=0, rows=n,
                             latency_ms={"p50": 0.4, "p95": p95, "p99": 1.0, "max": 2.0})
               for i, t in enumerate((now - 30, now - 20, now - 10))
               for v, role, n, p95 in ((1, "primary", 95, 0.5 + i / 10),
                                       (2, "candidate", 5, 0.7))]
    await served.bus.publish([Outgoing(topics.SERVING, "scorer", encode(envelope(
        w, id=f"gw/v{w.version}/{w.start}", time=w.end, source="test", subject="scorer")))
        for w in windows])
    # when the models page is opened
    await page.goto(f"{served.base}/models")
    # then the scorer's card has its p95 latency and its requests over time, per version
    card = page.locator('section[data-model="scorer"]')
    await expect(card.locator(".serving-latency canvas")).to_have_count(1)
    await expect(card.locator(".serving-requests canvas")).to_have_count(1)
    await expect(card.locator(".serving-latency")).to_contain_text("v2 (candidate)")
    await screenshot("serving")


async def test_a_waiting_approval_is_decided_from_the_run_page(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given a run whose approval step waits, open on its page
    run_id = await served.request("approved")
    await page.goto(f"{served.base}/runs/{run_id}")
    waiting = page.locator('.approval[data-task="approve"]')
    await expect(waiting).to_be_visible()
    await screenshot("approval")
    # when it is approved there, with a reason
    await waiting.locator("input").fill("checked the numbers")
    await waiting.locator('button[data-action="approve"]').click()
    # then the step and the run finish, and the audit says who approved it
    await expect(page.locator('.dag-node[data-task="approve"]')).to_have_attribute(
        "data-state", "succeeded")
    await expect(page.locator('.dag-node[data-task="finish"]')).to_have_attribute(
        "data-state", "succeeded")
    await expect(page.locator("section.card", has_text="Audit")).to_contain_text(
        "approved approve")
    events = await run_to_end(served.bus, run_id)
    (decided,) = [e.data for e in events if isinstance(e.data, ApprovalDecided)]
    assert decided.reason == "checked the numbers" and decided.approved


async def test_a_canarys_release_report_and_pictures_are_on_its_run_page(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given a champion of the scorer, and a run canarying a new version of it
    await run_to_end(served.bus, await served.request("scored", accuracy=0.9))
    run_id = await served.request("canaried", accuracy=0.9)
    runs = Tail(served.bus, [tp_for(served.bus, topics.RUNS, run_id)])
    # when a gateway's windows come in for each step (forwarded as `baton serve` does)
    for step in range(2):
        def at_step(e: CanaryStepStarted, n: int = step) -> bool:
            return e.step == n

        started = await runs.first(CanaryStepStarted, at_step)
        (begun,) = [e.data for e in runs.envelopes() if isinstance(e.data, CanaryStarted)]
        traffic = TrafficSet(model="scorer", candidate=begun.version, percent=started.percent,
                             mirror=None, reason="canary", run_id=run_id)
        now = time.time()
        windows = [ServingWindow(model="scorer", version=v, role=role, gateway="gw",
                                 start=now - 1, end=now + 1, requests=n, errors=0, rows=n,
                                 latency_hist={35 + step: n}, predictions={"1": n})
                   for v, role, n in ((begun.baseline, "primary", 60),
                                      (begun.version, "candidate", 30))]
        await served.bus.publish(forwarded(served.bus, traffic, windows))
    await run_to_end(served.bus, run_id)
    # then its page shows the verdict, a row per step, and both pictures
    await page.goto(f"{served.base}/runs/{run_id}")
    release = page.locator('.release[data-task="canary"]')
    await expect(release).to_contain_text("promoted")
    await expect(release.locator("tr[data-step]")).to_have_count(2)
    await expect(release.locator('tr[data-step="1"]')).to_contain_text("10% passed")
    await expect(page.locator('.canary-share[data-task="canary"] canvas')).to_have_count(1)
    await expect(page.locator('.canary-latency[data-task="canary"] canvas')).to_have_count(1)
    await screenshot("release")


async def test_a_dead_letter_is_redriven_from_its_page(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given a dead letter (bytes the trigger router could not read)
    await served.bus.publish([Outgoing(topics.TRIGGERS, "digits", b"{not json")])
    await Tail(served.bus, [tp_for(served.bus, topics.DLQ, "digits")]).until_records(1)
    await page.goto(f"{served.base}/dead-letters")
    letter = page.locator(".letter").first
    await expect(letter.locator(".preview")).to_contain_text("{not json")
    await expect(letter.locator(".redriven")).to_have_text("not yet")
    # when it is re-driven from the page
    await letter.locator('button[data-action="redrive"]').click()
    # then the page shows where it went, read back from the bus
    await expect(page.locator(".letter .redriven").first).to_contain_text(topics.TRIGGERS)
    await screenshot("dead-letters")


async def test_the_triggers_page_shows_accepted_and_ignored_triggers(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given a dataset version announced twice (the second is ignored as a duplicate)
    data = DataArrived(dataset="digits", version="v1", uri="file:///tmp/digits.csv")
    for event_id in ("arrival-1", "arrival-2"):
        env = envelope(data, id=event_id, time=time.time(), source="test", subject="digits")
        await served.bus.publish([Outgoing(topics.TRIGGERS, "digits", encode(env))])
    await Tail(served.bus, [tp_for(served.bus, topics.TRIGGER_LOG, "fed")]).until_records(2)
    # when the triggers page is open, then both outcomes, the ignored one with its reason
    await page.goto(f"{served.base}/triggers")
    await expect(page.locator('tr[data-outcome="ignored"]')).to_contain_text(
        "duplicate_version", timeout=LIVE)
    await expect(page.locator('tr[data-outcome="accepted"] a')).to_have_count(1)
    await screenshot("triggers")


async def test_the_triggers_page_shows_schedules_and_follows_their_commands_live(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given the triggers page open, the router keeping the pipeline's schedule
    await page.goto(f"{served.base}/triggers")
    schedule = page.locator('tr[data-schedule="fed/yearly"]')
    await expect(schedule).to_have_attribute("data-paused", "false")
    await expect(schedule).to_contain_text("cron 0 3 1 1 * (Europe/Berlin)")
    await expect(schedule.locator(".state")).to_contain_text("next")
    # when it is paused over the API
    paused = await served.client.post("/schedules/fed/yearly/pause", json={"reason": "freeze"})
    assert paused.status_code == 202, paused.text
    # then the page shows it paused, and the command in the feed, without a reload
    await expect(schedule).to_have_attribute("data-paused", "true")
    await expect(page.locator('tr[data-outcome="command"]').first).to_contain_text(
        "pause applied")
    # when a run is asked of it by hand, then its slot appears as accepted, with the run
    now = await served.client.post("/schedules/fed/yearly/trigger-now", json={})
    assert now.status_code == 202, now.text
    fired = page.locator('tr[data-outcome="accepted"][data-type="schedule"]')
    await expect(fired.locator("a")).to_have_count(1)
    await expect(fired).to_contain_text("trigger_now")
    resumed = await served.client.post("/schedules/fed/yearly/resume", json={})
    assert resumed.status_code == 202, resumed.text
    # when a backfill of two past slots runs, one at a time
    plan = slot_plan(FED, FED.schedules[0], 1_700_000_000.0, 1_700_000_000.0 + 2 * 365 * 86400,
                     {}, "bf-page")
    reqs = requests("fed", "bf-page", plan, max_concurrent=1, priority=-10, params={},
                    description="two new years", audit=None)
    records = [router_record(env.data, "fed", env.id)[1]
               for env in request_envelopes(reqs, time.time())]
    assert await told(served.bus, records, plan_taken("bf-page", 1), 30) is not None
    # then the page shows it, and its progress to the end, without a reload
    backfill = page.locator('tr[data-backfill="bf-page"]')
    await expect(backfill).to_have_attribute("data-status", "completed")
    await expect(backfill).to_contain_text("2 / 2")
    await screenshot("schedules")


async def test_an_api_problem_is_shown_as_its_title_and_detail(page: Page, served: Served) -> None:
    # when a run that does not exist is opened
    await page.goto(f"{served.base}/runs/run-nope")
    # then the page says what the API said
    await expect(page.locator(".problem-title")).to_have_text("Not found")
    await expect(page.locator(".problem-detail")).to_contain_text("run 'run-nope' does not exist")


async def test_a_viewer_is_refused_a_run_and_told_why(page: Page, tmp_path: Path) -> None:
    # given an API with tokens, and a viewer's token given to the dashboard
    path = tmp_path / "tokens.yaml"
    viewer = add_token(path, "viewer-1", "viewer")
    apps = Apps(Home(tmp_path / "home"))
    try:
        app, _ = await apps.start(HELD, agents=0, http=True, tokens=Tokens.load(path))
        await page.add_init_script(f"localStorage.setItem('baton.token', {json.dumps(viewer)})")
        await page.goto(api_url(app).removesuffix("/api/v1") + "/runs")
        await expect(page.locator('.request select option[value="held"]')).to_have_count(1)
        # when it requests a run
        await page.locator(".request button").click()
        # then the 403 problem is shown, naming the role it needs
        await expect(page.locator(".request-status .problem-title")).to_have_text("Forbidden")
        await expect(page.locator(".request-status .problem-detail")).to_contain_text("operator")
    finally:
        await apps.close_all()


async def test_an_operator_cancels_a_run_and_runs_it_again_from_its_page(
    page: Page, served: Served, tmp_path: Path
) -> None:
    # given a run whose held task is running, its page open
    params = {"release": str(tmp_path / "never")}
    run_id = await served.request("held", **params)
    await page.goto(f"{served.base}/runs/{run_id}")
    await expect(page.locator('.dag-node[data-task="hold"]')).to_have_attribute(
        "data-state", "running", timeout=LIVE)
    # when Cancel is pressed
    await page.locator('button[data-action="cancel"]').click()
    # then the run is cancelled, the held task too, and Cancel is gone
    await expect(page.locator(".page-head .badge")).to_have_text("cancelled", timeout=LIVE)
    await expect(page.locator('.dag-node[data-task="hold"]')).to_have_attribute(
        "data-state", "cancelled", timeout=LIVE)
    await expect(page.locator('button[data-action="cancel"]')).to_have_count(0)
    run = (await served.client.get(f"/runs/{run_id}")).json()
    assert [a["action"] for a in run["audit"]] == ["requested", "cancelled"]
    # when Re-run is pressed, then a new run of the same pipeline and params is linked
    await page.locator('button[data-action="rerun"]').click()
    again = page.locator(".action-status a")
    await expect(again).to_have_count(1)
    new_id = (await again.text_content() or "").strip()
    assert new_id.startswith("run-") and new_id != run_id
    # and its page opens at once (the link waits for it to be projected); cancel it there too
    await again.click()
    await expect(page).to_have_url(f"{served.base}/runs/{new_id}")
    await page.locator('button[data-action="cancel"]').click()
    await expect(page.locator(".page-head .badge")).to_have_text("cancelled", timeout=LIVE)
    rerun = (await served.client.get(f"/runs/{new_id}")).json()
    assert (rerun["pipeline"], rerun["params"]) == ("held", params)


def held_projector(served: Served, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The app's projector takes nothing until the returned event is set: its projection
    trails the log meanwhile."""
    gate = asyncio.Event()
    projector = served.app.projector
    assert projector is not None
    take = projector.take

    async def trailing(records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        await gate.wait()
        return await take(records, positions)

    monkeypatch.setattr(projector, "take", trailing)
    return gate


async def test_a_run_page_opened_while_the_projection_trails_the_log_shows_the_run_as_it_is(
    page: Page, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a projection that trails the log: the projector takes nothing for now
    gate = held_projector(served, monkeypatch)
    # and a run whose held task has started, every event of it logged before the page opens
    run_id = await served.request("held", release=str(tmp_path / "release"))
    log = Tail(served.bus, [tp_for(served.bus, topics.RUNS, run_id)])
    await log.until(lambda seen: any(e.type == "task_started" and e.subject == run_id
                                     and getattr(e.data, "task", None) == "hold"
                                     for e in seen))
    # when its page opens (the run is not in the projection yet: no row to show)
    await page.goto(f"{served.base}/runs/{run_id}")
    await expect(page.locator(".problem")).to_be_visible()
    # and the projection catches up, with no event of the run left to come
    gate.set()
    # then the page shows the run as the log has it: its held task running
    await expect(page.locator('.dag-node[data-task="hold"]')).to_have_attribute(
        "data-state", "running")
    await expect(page.locator(".problem")).to_have_count(0)


async def test_the_runs_list_opened_while_the_projection_trails_the_log_shows_each_run_as_it_is(
    page: Page, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a projection that trails the log: the projector takes nothing for now
    gate = held_projector(served, monkeypatch)
    # and a run that has started and ended, every event of it logged before the list opens
    release = tmp_path / "release"
    release.touch()
    run_id = await served.request("held", release=str(release))
    await run_to_end(served.bus, run_id)
    # when the list opens on its stream (its first page, from the projection, lacks the run)
    await page.goto(f"{served.base}/runs")
    await page.evaluate("window.sameDocument = true")
    await expect(page.locator('table.runs tbody[data-page="first"]')).to_have_count(1)
    await expect(page.locator("#live")).to_have_attribute("data-mode", "stream")
    row = page.locator(f'tr[data-run="{run_id}"]')
    await expect(row).to_have_count(0)
    # and the projection catches up, with no event of the run left to come
    gate.set()
    # then the list shows the run as the log has it, at its top: succeeded, never reloaded
    await expect(row).to_have_attribute("data-status", "succeeded")
    assert await page.locator("table.runs tbody tr").first.get_attribute("data-run") == run_id
    await expect(row.locator(".tasks")).to_have_text(f"{len(HELD.tasks)}/{len(HELD.tasks)} done")
    await expect(page.locator(".problem")).to_have_count(0)
    assert await page.evaluate("window.sameDocument === true")


async def test_the_dashboard_is_served_beside_the_api(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base) as http:
        # each dashboard path answers the one page; its files have their media types
        for path in ("/", "/runs", "/runs/run-anything", "/agents", "/models", "/dead-letters"):
            answer = await http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"].startswith("text/html")
            assert '<script type="module" src="/static/js/app.js">' in answer.text
        module = await http.get("/static/js/pages/run.js")
        assert module.headers["content-type"].startswith("text/javascript")
        assert module.headers["cache-control"] == "no-cache"
        again = await http.get("/static/js/pages/run.js",
                               headers={"if-none-match": module.headers["etag"]})
        assert again.status_code == 304
        css = await http.get("/static/vendor/uplot/uPlot.min.css")
        assert css.headers["content-type"].startswith("text/css")
        # and what is not the dashboard's stays the API's: a problem document
        for path in ("/static/nope.js", "/runs/a/b", "/api/v1/nope"):
            missing = await http.get(path)
            assert missing.status_code == 404, path
        assert (await http.get("/api/v1/nope")).headers["content-type"] == \
            "application/problem+json"


async def test_the_overview_shows_the_pipeline_metrics_and_charts_them_over_time(
    page: Page, served: Served, screenshot: Any
) -> None:
    # given a run that ended
    await run_to_end(served.bus, await served.request("flaky"))
    # when the overview is opened
    await page.goto(f"{served.base}/overview")
    # then the figures `baton metrics` prints are tiles, the run counted among them
    failed = page.locator('[data-figure="success rate"] .tile-detail')
    await expect(failed).to_contain_text(re.compile(r"[1-9]\d* failed"), timeout=LIVE)
    await expect(page.locator(".tile")).to_have_count(10)
    # and each chart over time has its series, the runs that ended among its points
    await page.wait_for_function("Object.keys(window.baton?.overview ?? {}).length === 4")
    ended = await page.evaluate(
        "window.baton.overview.runs.plot.data[2].filter(v => v > 0).length")
    assert ended >= 1
    await screenshot("overview")


async def test_the_agents_page_shows_capacity_in_use_and_what_runs_there(
    page: Page, served: Served, screenshot: Any, tmp_path: Path
) -> None:
    # given a run whose held task holds one of the agent's two GPUs
    release = tmp_path / "release"
    run_id = await served.request("held", release=str(release))
    await page.goto(f"{served.base}/agents")
    agent = page.locator('.agent[data-agent="gpu-a"]')
    # then the agent's bars: CPU, memory and one per GPU, one GPU in use, the attempt listed
    await expect(agent.locator(".running li")).to_contain_text(f"{run_id}", timeout=LIVE)
    await expect(agent.locator(".running li")).to_contain_text("hold #1 · GPUs")
    await expect(agent.locator(".bar")).to_have_count(4)
    # (use is what the agent's heartbeats say: it may trail the placement by a beat)
    await expect(agent.locator('[data-bar^="GPU"][data-used="1"]')).to_have_count(1,
                                                                               timeout=LIVE)
    await expect(agent.locator('[data-bar="CPU"] .bar-text')).to_contain_text("/ 4 cores")
    await expect(agent).to_have_attribute("data-state", "alive")
    await screenshot("agents")
    # when the task ends, then the page follows: nothing runs there, no GPU in use
    release.touch()
    await expect(agent.locator(".running li")).to_have_count(0, timeout=LIVE)
    await expect(agent.locator('[data-bar^="GPU"][data-used="1"]')).to_have_count(0,
                                                                               timeout=LIVE)


async def test_the_runs_list_filters_and_pages_through_the_api(
    page: Page, served: Served
) -> None:
    # given a failed run and a succeeded one, the succeeded one newest
    failed = await served.request("flaky")
    await run_to_end(served.bus, failed)
    succeeded = await served.request("scored", accuracy=0.5)
    await run_to_end(served.bus, succeeded)
    await projected(served.app, served.bus)
    # when the list is filtered to failed runs
    await page.goto(f"{served.base}/runs?status=failed")
    rows = page.locator("table.runs tbody tr")
    await expect(rows.first).to_have_attribute("data-run", failed)
    # then only failed runs are listed
    assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.status)")) == {"failed"}
    # when the filter is changed on the page to succeeded ones
    await page.locator('select[name="status"]').select_option("succeeded")
    await expect(rows.first).to_have_attribute("data-run", succeeded)
    assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.status)")) == {"succeeded"}
    await expect(page).to_have_url(f"{served.base}/runs?status=succeeded")
    # when pages hold one run, then "Older runs" follows the API's cursor and back again
    await page.goto(f"{served.base}/runs?limit=1")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-run", succeeded)
    await page.get_by_role("button", name="Older runs").click()
    await expect(rows.first).to_have_attribute("data-run", failed)
    await expect(rows).to_have_count(1)
    await page.get_by_role("button", name="Newest runs").click()
    await expect(rows.first).to_have_attribute("data-run", succeeded)


async def test_what_a_task_or_the_api_says_is_shown_as_text_never_as_html(
    page: Page, served: Served
) -> None:
    # given a run whose task failed with a message that is markup
    hostile = '<img src="x" onerror="window.pwned = 1"><b>bold</b>'
    run_id = await served.request("markup", message=hostile)
    await run_to_end(served.bus, run_id)
    await projected(served.app, served.bus)
    # when the list and the run's page show it
    await page.goto(f"{served.base}/runs?pipeline=markup")
    reason = page.locator(f'tr[data-run="{run_id}"] .reason')
    await expect(reason).to_have_text(f"task 'say' failed: {hostile}")
    await page.goto(f"{served.base}/runs/{run_id}")
    await expect(page.locator('.attempt[data-status="failed"] .error')).to_have_text(hostile)
    await expect(page.locator(".params, pre.json")).to_contain_text('"message": "<img')
    # then it is the literal text: no element came of it, nothing ran
    assert await page.evaluate("document.querySelectorAll('img, main b').length") == 0
    assert await page.evaluate("window.pwned === undefined")
