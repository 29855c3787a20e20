// Runs: newest first, filtered by status, pipeline and trigger type, paged with the API's
// keyset cursor (`next`). Live: a run_created event puts the new run at the top of the first
// page, a run's end event changes its row's state, task events refresh its row's task
// counts (one GET per run per burst), all without reloading the page.
//
// The page is read from the projection, which trails the log; the stream starts at the log's
// end. Once the stream says where it started, the page is read again as of there at least
// (min_position), or a run that began and ended between the two would be in neither. What a
// read answers is merged with what the stream gave meanwhile: each row carries its run's
// `sequence` (the last of its events it reflects), and the further along of two wins.

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
export function summaryOf(envelope) {
  const d = envelope.data ?? {};
  const count = d.spec?.tasks?.length ?? 0;
  return { run_id: d.run_id ?? envelope.subject, pipeline: d.pipeline, pipeline_version: d.pipeline_version,
    trigger_type: d.trigger?.type ?? null, created_at: epochOf(envelope.time), finished_at: null,
    status: "running", reason: null, task_count: count, task_states: { pending: count },
    sequence: envelope.sequence ?? 1 };
}

/** The summary GET /runs/{id} gives, its tasks counted by status as GET /runs has them. */
export function summaryOfRow(run) {
  const { tasks = [], ...summary } = run;
  const task_states = {};
  for (const t of tasks) task_states[t.status] = (task_states[t.status] ?? 0) + 1;
  return { ...summary, task_count: tasks.length, task_states };
}

/** Whether `summary` has the run further along than `other` (a missing sequence: it can't
 * say, so it is not: what the page has stays until something surely newer comes). */
export function furtherAlong(summary, other) {
  return (summary?.sequence ?? 0) > (other?.sequence ?? 0);
}

/** The run's summary once one of its later events is applied: an end event ends it now, any
 * event moves its sequence on (the task counts follow with a read of the row), and an event
 * it already reflects (the stream may repeat what a read had) changes nothing: null. */
export function withEvent(summary, envelope) {
  if (envelope.sequence != null && envelope.sequence <= (summary.sequence ?? 0)) return null;
  const next = { ...summary, sequence: envelope.sequence ?? summary.sequence };
  const ended = ENDED[envelope.type];
  return ended ? { ...next, status: ended, finished_at: epochOf(envelope.time) } : next;
}

const newestFirst = (a, b) => (b.created_at - a.created_at)
  || (a.run_id < b.run_id ? 1 : a.run_id > b.run_id ? -1 : 0);

/**
 * What the list shows after a read answered `items`: each run as the read has it unless the
 * page has it further along (`shown`, by run id: a stream event applied while the read was
 * under way), then `streamed` (runs only the stream gave, which the read may lack: the
 * projection had not taken them yet) that the read lacks, all newest first as the API sorts.
 */
export function merged(items, shown, streamed) {
  const read = new Set(items.map((run) => run.run_id));
  const kept = items.map((run) => (furtherAlong(shown.get(run.run_id), run) ? shown.get(run.run_id) : run));
  return [...kept, ...streamed.filter((run) => !read.has(run.run_id))].sort(newestFirst);
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
  const shown = new Map(); // run id -> the summary its row shows
  let streamed = new Set(); // runs on the first page that the stream gave and no read yet had
  let stopped = false;

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
    shown.set(run.run_id, run);
    rows.set(run.run_id, drawn);
    if (old) old.replaceWith(drawn);
    else if (atTop) body.prepend(drawn);
    else body.append(drawn);
  }

  // Reads race each other (the first page, the one the stream's place asks for, a filter
  // changed meanwhile): an answer is drawn only if no read begun after it has been drawn, and
  // none begun before the view (filters, page) last changed is drawn at all.
  let asked = 0; // reads begun
  let drawnRead = 0; // the read whose answer the list shows
  let viewFrom = 0; // the first read of the view last asked for
  let viewCursor = null; // that view's page
  let streamAt = null; // where the stream started: every read once it has waits for it
  const stale = (mine) => stopped || mine < viewFrom || mine < drawnRead;

  async function load(cursor = null, { newView = false } = {}) {
    const mine = ++asked;
    if (newView) [viewFrom, viewCursor] = [mine, cursor];
    try {
      const page = await get(`/runs${query({ ...filters, limit, cursor, min_position: streamAt })}`);
      if (stale(mine)) return;
      drawnRead = mine;
      // a page replaces the one shown (the list stays one page long however far back), but
      // for what the stream moved or added while the read was under way
      const firstPage = cursor === null;
      const fromStream = firstPage ? [...streamed].map((id) => shown.get(id)).filter((run) => run && matches(run)) : [];
      const list = merged(page.items, shown, fromStream);
      const read = new Set(page.items.map((run) => run.run_id));
      streamed = new Set(fromStream.map((run) => run.run_id).filter((id) => !read.has(id)));
      rows.clear();
      shown.clear();
      body.replaceChildren();
      onFirstPage = firstPage;
      list.forEach((run) => put(run));
      body.dataset.page = cursor ?? "first";
      next = page.next;
      more.hidden = next === null;
      first.hidden = onFirstPage;
      status.replaceChildren(rows.size ? "" : empty("No runs match."));
    } catch (err) {
      if (stale(mine)) return;
      status.replaceChildren(problemBox(err));
      // the projection has not reached the stream's place yet: ask again, as it says
      if (err.status === 503 && streamAt) setTimeout(() => mine === asked && !stopped && load(cursor), 1000);
    }
  }

  async function reloadFirstPage() {
    if (onFirstPage) await load(null);
  }

  function onReady(position) {
    streamAt = position;
    load(viewCursor);
  }

  const touched = new Map(); // run id -> the position of the last event of it heard
  const refreshTouched = debounce(async () => {
    const ids = [...touched];
    touched.clear();
    for (const [id, position] of ids) {
      if (!shown.has(id)) continue;
      try {
        // as of that event at least: the projection may not have it yet
        const run = summaryOfRow(await get(`/runs/${encodeURIComponent(id)}${query({ min_position: position })}`));
        if (rows.has(id) && !furtherAlong(shown.get(id), run)) put(run);
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError && err.status === 503) {
          if (!touched.has(id)) touched.set(id, position);
          setTimeout(() => !stopped && refreshTouched(), 1000);
        } else if (!(err instanceof ApiError && err.status === 404)) {
          status.replaceChildren(problemBox(err));
        }
      }
    }
  }, 250);

  function apply(envelope) {
    const runId = envelope.data?.run_id ?? envelope.subject;
    if (envelope.type === "run_created") {
      const run = summaryOf(envelope);
      if (onFirstPage && matches(run) && !rows.has(run.run_id)) {
        streamed.add(run.run_id);
        put(run, true);
        status.replaceChildren();
      }
      return;
    }
    const now = shown.get(runId);
    const moved = now && withEvent(now, envelope);
    if (!moved) return;
    put(moved);
    touched.set(runId, envelope.position ?? null);
    refreshTouched();
  }

  form.addEventListener("change", () => {
    const data = new FormData(form);
    for (const key of Object.keys(filters)) filters[key] = data.get(key) ?? "";
    history.replaceState(null, "", `/runs${query({ ...filters, limit: limit === LIMIT ? null : limit })}`);
    load(null, { newView: true });
  });
  more.addEventListener("click", () => load(next, { newView: true }));
  first.addEventListener("click", () => load(null, { newView: true }));
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
    onEvent: apply, reload: reloadFirstPage, onReady,
  });
  live.start(); // before the first page, so no run created meanwhile is missed
  load(null, { newView: true });
  return {
    stop() {
      stopped = true;
      live.stop();
      refreshTouched.cancel();
      clearInterval(ticker);
    },
  };
}
