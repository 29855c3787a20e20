// Runs: newest first, filtered by status, pipeline and trigger type, paged with the API's
// keyset cursor (`next`). Live: a run_created event puts the new run at the top of the first
// page, a run's end event changes its row's state, task events refresh its row's task
// counts (one GET per run per burst), all without reloading the page.

import { ApiError, get, post, query } from "../api.js";
import { el } from "../dom.js";
import { duration } from "../format.js";
import { Live, debounce } from "../live.js";
import { epochOf } from "../attempts.js";
import { badge, empty, problemBox, runLink, when } from "../ui.js";

const STATUSES = ["running", "succeeded", "failed", "cancelled"];
const TRIGGERS = ["manual", "data_arrived", "drift_detected", "schedule", "condition"];
const ENDED = { run_succeeded: "succeeded", run_failed: "failed", run_cancelled: "cancelled" };
/** Rows per page; `?limit=N` in the URL changes it (1 to 500, as the API allows). */
const LIMIT = 25;

function tasksText(run) {
  const states = run.task_states ?? {};
  const done = states.succeeded ?? 0;
  const rest = Object.entries(states).filter(([s]) => s !== "succeeded" && s !== "pending")
    .map(([s, n]) => `${n} ${s}`);
  return [`${done}/${run.task_count ?? "?"} done`, ...rest].join(", ");
}

function runDuration(run) {
  if (run.finished_at == null) return el("span", { class: "ticking", "data-since": run.created_at }, duration(Date.now() / 1000 - run.created_at));
  return duration(run.finished_at - run.created_at);
}

function row(run) {
  return el("tr", { "data-run": run.run_id, "data-status": run.status },
    el("td", { class: "status" }, badge(run.status)),
    el("td", {}, runLink(run.run_id)),
    el("td", {}, run.pipeline),
    el("td", {}, run.trigger_type ?? "–"),
    el("td", { class: "tasks" }, tasksText(run)),
    el("td", {}, when(run.created_at)),
    el("td", { class: "took" }, runDuration(run)),
    el("td", { class: "reason" }, run.reason ?? ""));
}

/** The summary a run_created event gives, as GET /runs would list it. */
function summaryOf(envelope) {
  const d = envelope.data ?? {};
  const count = d.spec?.tasks?.length ?? 0;
  return { run_id: d.run_id ?? envelope.subject, pipeline: d.pipeline, pipeline_version: d.pipeline_version,
    trigger_type: d.trigger?.type ?? null, created_at: epochOf(envelope.time), finished_at: null,
    status: "running", reason: null, task_count: count, task_states: { pending: count } };
}

function select(name, label, values, chosen) {
  return el("label", {}, `${label} `, el("select", { name },
    el("option", { value: "" }, "any"),
    values.map((v) => el("option", { value: v, selected: v === chosen ? "" : null }, v))));
}

export function render(view, _params, search) {
  const filters = { status: search.get("status") ?? "", pipeline: search.get("pipeline") ?? "",
    trigger_type: search.get("trigger_type") ?? "" };
  const limit = Math.min(500, Math.max(1, Number(search.get("limit")) || LIMIT));
  const rows = new Map();
  const body = el("tbody");
  const status = el("div", { class: "list-status" });
  const more = el("button", { type: "button", class: "secondary", hidden: "" }, "Older runs");
  const first = el("button", { type: "button", class: "secondary", hidden: "" }, "Newest runs");
  const pipelines = el("select", { name: "pipeline" }, el("option", { value: "" }, "any"));
  const form = el("form", { class: "filters" },
    select("status", "Status", STATUSES, filters.status),
    el("label", {}, "Pipeline ", pipelines),
    select("trigger_type", "Trigger", TRIGGERS, filters.trigger_type));
  const request = el("form", { class: "request" },
    el("select", { name: "pipeline", "aria-label": "pipeline to run" }),
    el("button", { type: "submit" }, "Request a run"));
  const requestStatus = el("span", { class: "request-status" });
  let next = null;
  let onFirstPage = true;

  view.replaceChildren(
    el("div", { class: "page-head" }, el("h1", {}, "Runs"), request, requestStatus),
    form, status,
    el("table", { class: "grid runs" },
      el("thead", {}, el("tr", {}, ["", "Run", "Pipeline", "Trigger", "Tasks", "Created", "Took", "Reason"].map((h) => el("th", {}, h)))),
      body),
    el("div", { class: "pager" }, first, more));

  const matches = (run) => (!filters.status || run.status === filters.status)
    && (!filters.pipeline || run.pipeline === filters.pipeline)
    && (!filters.trigger_type || run.trigger_type === filters.trigger_type);

  function put(run, atTop = false) {
    const drawn = row(run);
    const old = rows.get(run.run_id);
    rows.set(run.run_id, drawn);
    if (old) old.replaceWith(drawn);
    else if (atTop) body.prepend(drawn);
    else body.append(drawn);
  }

  async function load(cursor = null) {
    try {
      const page = await get(`/runs${query({ ...filters, limit, cursor })}`);
      // a page replaces the one shown (the list stays one page long however far back)
      rows.clear();
      body.replaceChildren();
      onFirstPage = cursor === null;
      page.items.forEach((run) => put(run));
      body.dataset.page = cursor ?? "first";
      next = page.next;
      more.hidden = next === null;
      first.hidden = onFirstPage;
      status.replaceChildren(rows.size ? "" : empty("No runs match."));
    } catch (err) {
      status.replaceChildren(problemBox(err));
    }
  }

  async function reloadFirstPage() {
    if (onFirstPage) await load(null);
  }

  const touched = new Set();
  const refreshTouched = debounce(async () => {
    const ids = [...touched];
    touched.clear();
    for (const id of ids) {
      if (!rows.has(id)) continue;
      try {
        const run = await get(`/runs/${encodeURIComponent(id)}`);
        const { tasks: _tasks, ...summary } = run;
        summary.task_count = run.tasks.length;
        summary.task_states = {};
        for (const t of run.tasks) summary.task_states[t.status] = (summary.task_states[t.status] ?? 0) + 1;
        put(summary);
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) status.replaceChildren(problemBox(err));
      }
    }
  }, 250);

  function apply(envelope) {
    const runId = envelope.data?.run_id ?? envelope.subject;
    if (envelope.type === "run_created") {
      const run = summaryOf(envelope);
      if (onFirstPage && matches(run) && !rows.has(run.run_id)) {
        put(run, true);
        status.replaceChildren();
      }
      return;
    }
    const drawn = rows.get(runId);
    if (!drawn) return;
    if (ENDED[envelope.type]) {
      drawn.dataset.status = ENDED[envelope.type];
      drawn.querySelector(".status").replaceChildren(badge(ENDED[envelope.type]));
    }
    touched.add(runId);
    refreshTouched();
  }

  form.addEventListener("change", () => {
    const data = new FormData(form);
    for (const key of Object.keys(filters)) filters[key] = data.get(key) ?? "";
    history.replaceState(null, "", `/runs${query({ ...filters, limit: limit === LIMIT ? null : limit })}`);
    load(null);
  });
  more.addEventListener("click", () => load(next));
  first.addEventListener("click", () => load(null));
  request.addEventListener("submit", async (event) => {
    event.preventDefault();
    const pipeline = new FormData(request).get("pipeline");
    requestStatus.replaceChildren("requesting…");
    try {
      const made = await post("/runs", { pipeline });
      requestStatus.replaceChildren("requested ", runLink(made.run_id, made.position));
    } catch (err) {
      requestStatus.replaceChildren(problemBox(err));
    }
  });

  get("/pipelines").then((found) => {
    const names = found.items.map((p) => p.name);
    pipelines.append(...names.map((n) => el("option", { value: n, selected: n === filters.pipeline ? "" : null }, n)));
    request.querySelector("select").replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }).catch((err) => status.replaceChildren(problemBox(err)));

  const ticker = setInterval(() => {
    for (const span of body.querySelectorAll(".ticking")) {
      span.textContent = duration(Date.now() / 1000 - Number(span.dataset.since));
    }
  }, 1000);
  const live = new Live({
    types: ["run_created", "run_succeeded", "run_failed", "run_cancelled", "task_ready",
      "task_started", "task_succeeded", "task_failed", "task_cancelled", "task_upstream_failed"],
    // no server-side filter: the list's filters change while the stream stays (matches())
    onEvent: apply, reload: reloadFirstPage,
  });
  live.start(); // before the first page, so no run created meanwhile is missed
  load(null);
  return {
    stop() {
      live.stop();
      refreshTouched.cancel();
      clearInterval(ticker);
    },
  };
}
