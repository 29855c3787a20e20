// A canary step's release report on the run page: its verdict and why, one row per step
// (split, verdict, how long, both versions' traffic), and two pictures over the canary's
// windows: the candidate's share of the traffic with both versions' error rates, and both
// versions' p95 latency. Drawn from the run's canary events (events/canary.py) and the
// canary task's metadata (orchestrator/core/canary_state.py `summary`).

import { timeSeriesChart } from "./chart.js";
import { el } from "./dom.js";
import { badge, table } from "./ui.js";

/** The upper bound of latency bucket i (events/serving.py `bucket_upper_ms`). */
export function bucketUpperMs(i) {
  return 0.01 * 2 ** (Number(i) / 8);
}

/** The q-quantile of a latency histogram {bucket: count} (nearest rank), or null. */
export function histQuantile(hist, q) {
  const buckets = Object.keys(hist ?? {}).map(Number).sort((a, b) => a - b);
  const total = buckets.reduce((sum, b) => sum + hist[b], 0);
  if (!total) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const b of buckets) {
    seen += hist[b];
    if (seen >= rank) return bucketUpperMs(b);
  }
  return bucketUpperMs(buckets[buckets.length - 1]);
}

function rate(figures) {
  return figures?.requests ? (100 * figures.errors) / figures.requests : null;
}

/** The canary's windows as chart series: {share, latency} of {times, series}. */
export function canarySeries(events, task, canary) {
  const candidate = `v${canary.version}`;
  const holder = `v${canary.baseline}`;
  let percent = 0;
  const times = [];
  const share = { [`${candidate} share %`]: [], [`${candidate} errors %`]: [], [`${holder} errors %`]: [] };
  const latency = { [`${candidate} p95 ms`]: [], [`${holder} p95 ms`]: [] };
  for (const e of events) {
    if (e.data?.task !== task) continue;
    if (e.type === "canary_step_started") percent = e.data.percent;
    if (e.type === "canary_ended") percent = 0;
    if (e.type !== "canary_window_observed" && e.type !== "canary_ended") continue;
    const d = e.data;
    times.push(e.type === "canary_ended" ? Date.parse(e.time) / 1000 : d.end);
    share[`${candidate} share %`].push(percent);
    share[`${candidate} errors %`].push(e.type === "canary_ended" ? null : rate(d.candidate));
    share[`${holder} errors %`].push(e.type === "canary_ended" ? null : rate(d.baseline));
    latency[`${candidate} p95 ms`].push(e.type === "canary_ended" ? null : histQuantile(d.candidate?.latency_hist, 0.95));
    latency[`${holder} p95 ms`].push(e.type === "canary_ended" ? null : histQuantile(d.baseline?.latency_hist, 0.95));
  }
  return { share: { times, series: share }, latency: { times, series: latency } };
}

/** One canary task's report: verdict, reason, a row per step (its metadata's lines). */
function report(t) {
  const m = t.metadata;
  const steps = Object.keys(m).filter((k) => /^canary\.step\d+$/.test(k))
    .sort((a, b) => Number(a.slice(11)) - Number(b.slice(11)));
  const verdict = m.canary === "promoted" ? "succeeded" : m.canary === "rolled back" ? "failed" : "running";
  return el("div", { class: "release", "data-task": t.name },
    el("p", {}, el("strong", {}, t.name), " ", badge(m.canary, verdict),
      ` v${m["canary.version"]} against v${m["canary.baseline"]}`),
    m["canary.reason"] ? el("p", { class: verdict === "failed" ? "error" : "muted" }, m["canary.reason"]) : null,
    table(["Step", "Report"], steps.map((k) => el("tr", { "data-step": k.slice(11) },
      el("td", {}, k.slice(11)), el("td", {}, m[k])))));
}

/**
 * The release section's content for a run's canary tasks, with charts drawn from `events`;
 * returns {nodes, charts} (the charts to destroy when redrawn).
 */
export function releaseSection(run, events) {
  const nodes = [];
  const charts = [];
  const later = [];
  for (const t of run.tasks.filter((task) => task.metadata?.canary)) {
    const shareBox = el("div", { class: "chart canary-share", "data-task": t.name });
    const latencyBox = el("div", { class: "chart canary-latency", "data-task": t.name });
    nodes.push(report(t), shareBox, latencyBox);
    const canary = { version: t.metadata["canary.version"], baseline: t.metadata["canary.baseline"] };
    later.push([shareBox, latencyBox, canarySeries(events, t.name, canary)]);
  }
  return {
    nodes,
    draw() {
      for (const [shareBox, latencyBox, series] of later) {
        if (!series.share.times.length) continue;
        const width = Math.min(900, Math.max(360, shareBox.clientWidth || 700));
        charts.push(timeSeriesChart(shareBox, series.share, { title: "candidate's share and error rates (%) per window", width, height: 200 }));
        charts.push(timeSeriesChart(latencyBox, series.latency, { title: "p95 latency (ms) per window", width, height: 200 }));
      }
      return charts;
    },
  };
}
