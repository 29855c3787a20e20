// One run: its DAG coloured by state, the timeline of its attempts, each task's state,
// waiting reason, attempts (agent, GPUs, queue time, errors with tracebacks), metrics and
// artifacts, the lineage from its trigger to the models it registered, who requested or
// cancelled it, and the cancel and re-run buttons.
//
// The run's row has it all (attempts with their times, params, lineage); the DAG's spec is
// the pipeline version's (GET /pipelines/{name}). A server whose rows lack the attempts'
// times gets its timeline from the run's events instead (attempts.js), as does a run whose
// pipeline version is not listed get its spec from its run_created event.
//
// Live: each of the run's events recolours its task's node in place (and, without row times,
// extends the timeline); the row is read again once per burst for the rest.

import { get, post, query } from "../api.js";
import { attemptsFromEvents, fromRow, timelineAttempts } from "../attempts.js";
import { renderDag } from "../dag.js";
import { el } from "../dom.js";
import { duration, metric } from "../format.js";
import { Live, debounce } from "../live.js";
import { releaseSection } from "../release.js";
import { renderTimeline } from "../timeline.js";
import { badge, empty, facts, json, link, problemBox, runLink, section, table, when } from "../ui.js";

const EVENT_STATE = Object.freeze({
  task_ready: "ready", task_waiting: "ready", task_rejected: "ready", task_scheduled: "scheduled",
  task_accepted: "scheduled", task_started: "running", task_succeeded: "succeeded",
  task_retry_scheduled: "retry_wait", task_timed_out: "retry_wait", task_lost: "ready",
  task_upstream_failed: "upstream_failed", task_cancelled: "cancelled",
});
const ENDED = { run_succeeded: "succeeded", run_failed: "failed", run_cancelled: "cancelled" };

/** The task state an event moves its task to, or null (an event that moves none). */
export function stateAfter(envelope) {
  if (envelope.type === "task_failed") return envelope.data?.final ? "failed" : "retry_wait";
  return EVENT_STATE[envelope.type] ?? null;
}

async function allEvents(runId) {
  const found = [];
  let cursor = null;
  do {
    const page = await get(`/runs/${encodeURIComponent(runId)}/events${query({ cursor })}`);
    found.push(...page.items);
    cursor = page.next;
  } while (cursor);
  return found;
}

function artifact(ref) {
  if (!ref) return "–";
  const name = ref.uri?.split("/").pop() ?? "";
  return el("span", { class: "artifact", title: ref.uri ?? "" },
    el("code", {}, ref.sha256 ? `sha256:${ref.sha256.slice(0, 12)}` : name),
    ` ${ref.size ?? "?"} B`, ref.media_type ? ` · ${ref.media_type}` : "");
}

function metricsText(values) {
  const entries = Object.entries(values ?? {});
  return entries.length ? entries.map(([k, v]) => `${k} = ${metric(v)}`).join(", ") : "–";
}

function taskRows(run) {
  return run.tasks.map((t) => el("tr", { "data-task": t.name, id: `task-${t.name}` },
    el("td", {}, el("strong", {}, t.name)),
    el("td", {}, badge(t.status, "task")),
    el("td", { class: "waiting" }, t.waiting ?? (t.progress_message || "")),
    el("td", {}, String(t.attempts ?? 0)),
    el("td", {}, t.agent_id ?? "–"),
    el("td", { class: "metrics" }, metricsText(t.metrics)),
    el("td", {}, artifact(t.output))));
}

function attemptBlocks(run) {
  const blocks = [];
  for (const t of run.tasks) {
    for (const a of t.attempt_history ?? []) {
      const gpus = a.gpus?.length ? `GPUs ${a.gpus.join(", ")}` : "no GPU";
      blocks.push(el("div", { class: "attempt", "data-status": a.status, "data-attempt": a.attempt_id },
        el("div", { class: "attempt-head" },
          el("strong", {}, `${t.name} #${a.number}`), " ", badge(a.status, "task"),
          el("span", { class: "muted" }, ` on ${a.agent_id ?? "–"} · ${gpus} · queued ${duration(a.queued_s)}`)),
        a.error ? el("div", { class: "error" }, a.error) : null,
        a.traceback ? el("details", {}, el("summary", {}, "traceback"), el("pre", { class: "traceback" }, a.traceback)) : null));
    }
  }
  return blocks.length ? blocks : [empty("No attempt yet.")];
}

function lineage(run, created) {
  const l = run.lineage ?? {};
  const trigger = created?.data?.trigger ?? {};
  const payload = run.trigger_payload ?? trigger.payload ?? {};
  const name = l.dataset ?? payload.dataset ?? null;
  const dataset = name ? `${name}@${l.dataset_version ?? payload.version ?? "?"}` : null;
  const step = (label, ...body) => el("div", { class: "step", "data-step": label },
    el("div", { class: "muted" }, label), ...body);
  const steps = [step("trigger", el("div", {}, run.trigger_type ?? trigger.type ?? "–"),
    el("code", { class: "small" }, run.trigger_event_id ?? trigger.event_id ?? "–"))];
  if (dataset) {
    steps.push(step("dataset version", el("div", {}, dataset),
      l.dataset_sha256 ? el("code", { class: "small" }, `sha256:${l.dataset_sha256.slice(0, 12)}`) : null));
  }
  steps.push(step("pipeline", el("div", {}, run.pipeline),
    el("code", { class: "small" }, run.pipeline_version ?? "")));
  const models = l.models ?? run.models ?? [];
  steps.push(step("models", models.length
    ? models.map((m) => el("div", {}, link(`/models?name=${encodeURIComponent(m.name ?? m.model)}`,
      `${m.name ?? m.model} v${m.version}`)))
    : el("div", { class: "muted" }, "none registered")));
  return el("div", { class: "lineage" }, steps.flatMap((s, i) => (i ? [el("span", { class: "arrow" }, "→"), s] : [s])));
}

function audit(run) {
  const entries = run.audit ?? [];
  if (!entries.length) return empty("No request recorded (a trigger started it).");
  return table(["Action", "Who", "Via", "Request id", "When"], entries.map((a) => el("tr", {},
    el("td", {}, a.action), el("td", {}, a.actor ?? "–"), el("td", {}, a.via ?? "–"),
    el("td", {}, el("code", {}, a.request_id ?? "–")), el("td", {}, when(a.at)))));
}

export function render(view, [runId], search) {
  // a link made by a write waits for the run to be projected (then the URL forgets it)
  let minPosition = search.get("min_position");
  const head = el("div", { class: "page-head" });
  const actions = el("div", { class: "actions" });
  const actionStatus = el("div", { class: "action-status" });
  const summary = el("div");
  const dagBox = el("div", { class: "dag-box-wrap" });
  const timelineBox = el("div", { class: "timeline-wrap" });
  const tasksBox = el("div");
  const attemptsBox = el("div");
  const lineageBox = el("div");
  const auditBox = el("div");
  const paramsBox = el("div");
  const releaseBox = el("div");
  const releaseCard = section("Release", releaseBox);
  releaseCard.hidden = true;
  const problem = el("div");
  view.replaceChildren(head, problem, actionStatus, summary,
    section("DAG", dagBox), section("Timeline", timelineBox), releaseCard, section("Tasks", tasksBox),
    section("Attempts and errors", attemptsBox), section("Lineage", lineageBox),
    section("Audit", auditBox), section("Params", paramsBox));

  let run = null;
  let spec = null;
  let events = [];
  let needEvents = false;
  const seen = new Set();
  let dag = null;
  let dagVersion = null;
  let timeline = null;

  function drawTimeline() {
    const attempts = run ? timelineAttempts(run, events) : attemptsFromEvents(events);
    if (!attempts.length) {
      timelineBox.replaceChildren(empty("No attempt yet."));
      timeline = null;
      return;
    }
    const ended = run?.finished_at ?? null;
    const now = ended ?? Date.now() / 1000;
    if (!timeline) timeline = renderTimeline(timelineBox, attempts, { now, width: Math.max(640, timelineBox.clientWidth || 900) });
    else timeline.update(attempts, now);
  }

  function drawDag() {
    const created = events.find((e) => e.type === "run_created");
    const drawn = spec ?? created?.data?.spec;
    const version = run?.pipeline_version ?? created?.data?.pipeline_version;
    if (!drawn) return;
    if (!dag || dagVersion !== version) {
      dag = renderDag(dagBox, drawn, { onSelect: (task) => document.getElementById(`task-${task}`)?.scrollIntoView({ block: "center" }) });
      dagVersion = version;
    }
    if (run) {
      for (const t of run.tasks) dag.setState(t.name, t.status, t.waiting ?? null);
    }
  }

  function drawHead() {
    const created = events.find((e) => e.type === "run_created");
    head.replaceChildren(el("h1", {}, "Run ", el("code", {}, runId)), run ? badge(run.status) : null, actions);
    const awaiting = run?.status === "running"
      ? run.tasks.filter((t) => t.metadata?.approval === "waiting") : [];
    actions.replaceChildren(...[
      ...awaiting.flatMap((t) => [
        el("span", { class: "approval", "data-task": t.name }, `${t.name} waits for a decision `,
          el("input", { name: "approval-reason", "data-task": t.name, placeholder: "reason", size: 24 }), " ",
          el("button", { type: "button", "data-action": "approve", "data-task": t.name }, "Approve"), " ",
          el("button", { type: "button", class: "danger", "data-action": "reject", "data-task": t.name }, "Reject"))]),
      run?.status === "running" ? el("button", { type: "button", class: "danger", "data-action": "cancel" }, "Cancel") : null,
      run ? el("button", { type: "button", "data-action": "rerun" }, "Re-run") : null].filter(Boolean));
    if (!run) return;
    summary.replaceChildren(facts([
      ["Pipeline", el("span", {}, link(`/runs?pipeline=${encodeURIComponent(run.pipeline)}`, run.pipeline), " ", el("code", { class: "small" }, run.pipeline_version ?? ""))],
      ["Trigger", `${run.trigger_type ?? "–"} · ${run.trigger_subject ?? ""}`],
      ["Created", when(run.created_at)],
      ["Finished", when(run.finished_at)],
      ["Took", duration((run.finished_at ?? Date.now() / 1000) - run.created_at)],
      ["Priority", String(run.priority ?? 0)],
      run.reason ? ["Reason", el("span", { class: "error" }, run.reason)] : null,
    ]));
    tasksBox.replaceChildren(table(["Task", "State", "Waiting / progress", "Attempts", "Agent", "Metrics", "Artifact"], taskRows(run), { class: "grid tasks" }));
    attemptsBox.replaceChildren(...attemptBlocks(run));
    lineageBox.replaceChildren(lineage(run, created));
    auditBox.replaceChildren(audit(run));
    paramsBox.replaceChildren(json(run.params ?? created?.data?.params ?? {}));
  }

  let releaseCharts = [];
  // a canary's report and pictures come from its events: read once per burst of them
  const drawRelease = debounce(async () => {
    if (!run?.tasks.some((t) => t.metadata?.canary)) return;
    try {
      const found = needEvents ? events : await allEvents(runId);
      releaseCharts.forEach((c) => c.destroy());
      const made = releaseSection(run, found);
      releaseCard.hidden = false;
      releaseBox.replaceChildren(...made.nodes);
      releaseCharts = made.draw();
      window.baton = { ...(window.baton ?? {}), releaseCharts };
    } catch (err) {
      releaseBox.replaceChildren(problemBox(err));
    }
  }, 300);

  function drawAll() {
    drawHead();
    drawDag();
    drawTimeline();
    drawRelease();
  }

  /** The spec of the run's pipeline version, or null (then its run_created event's). */
  async function specOf(row) {
    try {
      const found = await get(`/pipelines/${encodeURIComponent(row.pipeline)}`);
      return found.versions.find((v) => v.version === row.pipeline_version)?.spec ?? null;
    } catch {
      return null;
    }
  }

  let loads = 0; // a read the stream's place asked for supersedes one made before it
  async function load(streamAt = null) {
    const mine = ++loads;
    try {
      // the row first: events read after it reach at least as far (an ended row's events are
      // then all there, and the page stops reading); once the stream has its place, the row
      // again, as of that place at least: what happened between is in neither otherwise
      const wait = [minPosition, streamAt].filter(Boolean).join(",") || null;
      const row = await get(`/runs/${encodeURIComponent(runId)}${query({ min_position: wait })}`);
      if (mine !== loads) return;
      run = row;
      if (minPosition) {
        minPosition = null;
        history.replaceState(null, "", `/runs/${encodeURIComponent(runId)}`);
      }
      if (!spec) spec = await specOf(run);
      needEvents = fromRow(run) === null || spec === null;
      if (needEvents) {
        events = await allEvents(runId);
        seen.clear();
        for (const e of events) seen.add(e.id);
      }
      problem.replaceChildren();
      drawAll();
    } catch (err) {
      if (mine !== loads) return;
      problem.replaceChildren(problemBox(err));
      // the projection has not reached the stream's place yet: ask again, as it says
      if (err.status === 503 && streamAt) setTimeout(() => mine === loads && load(streamAt), 1000);
    }
  }

  let lastPosition = null; // of the newest event applied: the row read waits for it
  const reloadRow = debounce(async () => {
    try {
      const wait = lastPosition ? `?min_position=${encodeURIComponent(lastPosition)}` : "";
      run = await get(`/runs/${encodeURIComponent(runId)}${wait}`);
      drawAll();
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }, 200);

  function apply(envelope) {
    if (envelope.subject !== runId && envelope.data?.run_id !== runId) return;
    if (seen.has(envelope.id)) return;
    seen.add(envelope.id);
    if (envelope.position) lastPosition = envelope.position;
    if (needEvents) events.push(envelope);
    if (envelope.type === "run_created") drawDag();
    const state = stateAfter(envelope);
    if (state && dag) dag.setState(envelope.data.task, state, envelope.data.reason ?? null);
    if (ENDED[envelope.type] && run) run = { ...run, status: ENDED[envelope.type] };
    if (needEvents) drawTimeline();
    reloadRow();
  }

  actions.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !run) return;
    button.disabled = true;
    actionStatus.replaceChildren({ cancel: "cancelling…", approve: "approving…", reject: "rejecting…" }[button.dataset.action] ?? "requesting…");
    try {
      if (button.dataset.action === "approve" || button.dataset.action === "reject") {
        const task = button.dataset.task;
        const reason = actions.querySelector(`input[data-task="${CSS.escape(task)}"]`)?.value || "decided from the dashboard";
        const decided = await post(`/runs/${encodeURIComponent(runId)}/approvals`,
          { approve: button.dataset.action === "approve", reason, task });
        actionStatus.replaceChildren(`${decided.task} ${decided.outcome}.`);
        reloadRow();
      } else if (button.dataset.action === "cancel") {
        await post(`/runs/${encodeURIComponent(runId)}/cancel`, { reason: "cancelled from the dashboard" });
        actionStatus.replaceChildren("Cancelled.");
        reloadRow();
      } else {
        const created = events.find((e) => e.type === "run_created");
        const params = run.params ?? created?.data?.params ?? {};
        const made = await post("/runs", { pipeline: run.pipeline, params, priority: run.priority ?? 0 });
        actionStatus.replaceChildren("Re-run requested: ", runLink(made.run_id, made.position));
      }
    } catch (err) {
      actionStatus.replaceChildren(problemBox(err));
    } finally {
      button.disabled = false;
    }
  });

  const ticker = setInterval(() => {
    if (run && run.status === "running" && timeline) drawTimeline();
  }, 1000);
  const live = new Live({
    filters: { run_id: runId },
    onEvent: apply,
    reload: () => (run && run.status !== "running" ? null : load()),
    onReady: (position) => (run && run.status !== "running" ? null : load(position)),
  });
  drawHead();
  live.start();
  load();
  return {
    stop() {
      live.stop();
      reloadRow.cancel();
      drawRelease.cancel();
      releaseCharts.forEach((c) => c.destroy());
      clearInterval(ticker);
    },
  };
}
