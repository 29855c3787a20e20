// Overview: the pipeline metrics (GET /metrics: the figures `baton metrics` prints, over the
// last hour) as tiles, and the same figures per window over time (GET /metrics/series) as
// charts. Read again when a run ends (once per burst) and every REFRESH_MS, since the windows
// move with the clock.

import { get, query } from "../api.js";
import { timeSeriesChart } from "../chart.js";
import { el } from "../dom.js";
import { duration } from "../format.js";
import { Live, debounce } from "../live.js";
import { problemBox, section } from "../ui.js";
import { epochOf } from "../attempts.js";
import { TASK_COLOURS } from "../states.js";

const WINDOWS = { "1 h": [3600, 60], "6 h": [21600, 300], "24 h": [86400, 900] };
const REFRESH_MS = 15000;
const COLOURS = { succeeded: TASK_COLOURS.succeeded, failed: TASK_COLOURS.failed,
  cancelled: TASK_COLOURS.cancelled };

function percent(value) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
}

function tile(name, value, detail) {
  return el("div", { class: "tile", "data-figure": name },
    el("div", { class: "tile-name" }, name), el("div", { class: "tile-value" }, value),
    el("div", { class: "tile-detail muted" }, detail ?? ""));
}

function tiles(f) {
  const runs = f.runs ?? {};
  const lag = Object.values(f.consumer_lag ?? {}).reduce((sum, g) => sum + (g.total ?? 0), 0);
  const agents = f.agents ?? {};
  const pair = (d) => `p50 ${duration(d?.p50)} · p95 ${duration(d?.p95)}`;
  return [
    tile("success rate", percent(runs.success_rate), `${runs.succeeded ?? 0} succeeded, ${runs.failed ?? 0} failed, ${runs.running ?? 0} running`),
    tile("run time p95", duration(f.run_duration_s?.p95), pair(f.run_duration_s)),
    tile("queue time p95", duration(f.queue_time_s?.p95), pair(f.queue_time_s)),
    tile("trigger → started p95", duration(f.trigger_latency_s?.p95), pair(f.trigger_latency_s)),
    tile("retry rate", percent(f.retries?.rate), "attempts after the first"),
    tile("gate pass rate", percent(f.gates?.pass_rate), `${f.gates?.passed ?? 0} passed, ${f.gates?.rejected ?? 0} rejected`),
    tile("lineage", percent(f.lineage?.completeness), `${f.lineage?.traceable ?? 0} of ${f.lineage?.models ?? 0} models traceable`),
    tile("dead letters", String(f.dead_letters?.count ?? 0), `${f.dead_letters?.redriven ?? 0} re-driven`),
    tile("consumer lag", String(lag), "records not yet consumed"),
    tile("agents", String(agents.alive ?? 0), `alive (${agents.busy ?? 0} busy), ${agents.draining ?? 0} draining, ${agents.lost ?? 0} lost`),
  ];
}

/** The series' points as the charts take them: {times, series: {name: [...]}}. */
export function chartsOf(points) {
  const times = points.map((p) => epochOf(p.window?.until));
  const pick = (fn) => points.map((p) => {
    const v = fn(p);
    return v === undefined ? null : v;
  });
  return {
    runs: { times, series: {
      succeeded: pick((p) => p.runs?.succeeded), failed: pick((p) => p.runs?.failed),
      cancelled: pick((p) => p.runs?.cancelled) } },
    runTime: { times, series: {
      "p50 s": pick((p) => p.run_duration_s?.p50), "p95 s": pick((p) => p.run_duration_s?.p95) } },
    queueTime: { times, series: {
      "p50 s": pick((p) => p.queue_time_s?.p50), "p95 s": pick((p) => p.queue_time_s?.p95) } },
    rates: { times, series: {
      "success rate": pick((p) => p.runs?.success_rate), "retry rate": pick((p) => p.retries?.rate),
      "gate pass rate": pick((p) => p.gates?.pass_rate) } },
  };
}

export function render(view, _params, search) {
  let span = WINDOWS[search.get("window")] ? search.get("window") : "1 h";
  const problem = el("div");
  const note = el("p", { class: "muted small" });
  const tileBox = el("div", { class: "tiles" });
  const boxes = { runs: el("div", { class: "chart", "data-chart": "runs" }),
    runTime: el("div", { class: "chart", "data-chart": "run-time" }),
    queueTime: el("div", { class: "chart", "data-chart": "queue-time" }),
    rates: el("div", { class: "chart", "data-chart": "rates" }) };
  const picker = el("select", { name: "window" }, Object.keys(WINDOWS).map((w) =>
    el("option", { value: w, selected: w === span ? "" : null }, `last ${w}`)));
  view.replaceChildren(el("div", { class: "page-head" }, el("h1", {}, "Overview"), picker),
    problem, note, tileBox,
    section("Runs ended per window", boxes.runs), section("Run time", boxes.runTime),
    section("Queue time (ready → started)", boxes.queueTime), section("Rates", boxes.rates));
  const charts = {};

  async function load() {
    const [seconds, step] = WINDOWS[span];
    try {
      const [now, over] = await Promise.all([get(`/metrics${query({ since: seconds })}`),
        get(`/metrics/series${query({ window: seconds, step })}`)]);
      tileBox.replaceChildren(...tiles(now));
      note.textContent = `${now.caught_up ? "" : "Still reading the log: figures are partial. "}Figures over the last ${span}; charts one point per ${duration(step)}.`;
      const data = chartsOf(over.points ?? []);
      for (const [name, box] of Object.entries(boxes)) {
        if (charts[name]) charts[name].update(data[name]);
        else {
          charts[name] = timeSeriesChart(box, data[name], { colours: COLOURS,
            width: Math.min(1100, Math.max(480, box.clientWidth || 900)), height: 200 });
        }
      }
      window.baton = { ...(window.baton ?? {}), overview: charts };
      problem.replaceChildren();
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }

  picker.addEventListener("change", () => {
    span = picker.value;
    history.replaceState(null, "", `/overview${query({ window: span })}`);
    load();
  });
  const soon = debounce(load, 1000);
  const live = new Live({ types: ["run_succeeded", "run_failed", "run_cancelled", "run_created"],
    onEvent: soon, reload: load });
  const timer = setInterval(load, REFRESH_MS);
  live.start();
  load();
  return {
    stop() {
      live.stop();
      soon.cancel();
      clearInterval(timer);
      Object.values(charts).forEach((c) => c.destroy());
    },
  };
}
