// Models: each registered model's versions with their metrics, lineage and the gate that
// admitted each, a chart of each metric across its versions (chart.js), where its aliases
// point and every move of them (who, why, citing what), and the operator's buttons: promote a
// gated version to champion, roll an alias back. The registry decides each (a refusal shows
// its reason). Live: a registration, an alias move or a refusal reads the models again.

import { get, post } from "../api.js";
import { timeSeriesChart, versionChart } from "../chart.js";
import { el } from "../dom.js";
import { metric } from "../format.js";
import { Live, debounce } from "../live.js";
import { empty, problemBox, runLink, section, table, when } from "../ui.js";

function byModel(items) {
  const models = new Map();
  for (const v of items) {
    if (!models.has(v.model)) models.set(v.model, []);
    models.get(v.model).push(v);
  }
  for (const versions of models.values()) versions.sort((a, b) => a.version - b.version);
  return models;
}

const CHAMPION = "champion";

function aliasTags(aliases) {
  return (aliases ?? []).map((a) => el("span", { class: "alias", "data-alias": a }, a));
}

function gateCell(v) {
  if (!v.gate) return el("span", { class: "muted" }, "no gate");
  return el("span", { class: `gate ${v.gate.passed ? "passed" : "failed"}`, title: v.gate.event_id },
    v.gate.passed ? "passed" : "failed");
}

function promoteButton(v) {
  if (v.status === "archived") return el("span", { class: "muted archived" }, "archived");
  if (!(v.gate?.passed || (v.approval?.approved && v.approval?.by)) || (v.aliases ?? []).includes(CHAMPION)) return null;
  return el("button", { type: "button", class: "secondary", "data-action": "promote",
    "data-version": v.version }, `Make ${CHAMPION}`);
}

function versionRow(v) {
  const l = v.lineage ?? {};
  const data = l.dataset ? `${l.dataset}@${l.dataset_version ?? "?"}` : "–";
  return el("tr", { "data-version": v.version },
    el("td", {}, `v${v.version} `, ...aliasTags(v.aliases)),
    el("td", {}, gateCell(v)),
    el("td", {}, Object.entries(v.metrics ?? {}).map(([k, val]) => `${k} = ${metric(val)}`).join(", ") || "–"),
    el("td", {}, data),
    el("td", {}, `${l.trigger?.type ?? "–"}`),
    el("td", {}, l.pipeline ? `${l.pipeline} ${l.pipeline_version ?? ""}` : "–"),
    el("td", {}, v.run_id ? runLink(v.run_id) : "–"),
    el("td", {}, v.registered_at ? when(v.registered_at) : ""),
    el("td", {}, promoteButton(v)));
}

function historyRow(h) {
  const who = h.actor ?? (h.run_id ? runLink(h.run_id) : "–");
  const what = h.move === "refused" ? `${h.request} refused`
    : `${h.previous ? `v${h.previous}` : "nothing"} → v${h.version}`;
  return el("tr", { "data-move": h.move, "data-alias": h.alias },
    el("td", {}, when(h.at)), el("td", {}, h.alias), el("td", {}, h.move), el("td", {}, what),
    el("td", {}, who), el("td", {}, h.reason), el("td", {}, h.cites ? el("code", {}, h.cites) : "–"));
}

function aliasLine(name, versions) {
  const held = versions.flatMap((v) => (v.aliases ?? []).map((a) => [a, v.version])).sort();
  if (!held.length) return el("p", { class: "muted aliases-now" }, "No alias points at a version yet.");
  return el("p", { class: "aliases-now" }, ...held.flatMap(([alias, version]) => [
    el("span", { class: "alias", "data-alias": alias }, alias), ` → v${version} `,
    el("button", { type: "button", class: "danger", "data-action": "rollback", "data-alias": alias },
      `Roll back ${alias}`), " "]));
}

/** The gateways' windows as two time series per version: p95 latency and requests. Windows
 * of several gateways ending in the same second add up (requests) or take the worst (p95). */
function servingSeries(windows) {
  const at = (w) => Math.round(w.end);
  const times = [...new Set(windows.map(at))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const latency = {};
  const requests = {};
  for (const w of windows) {
    const name = `v${w.version}${w.role === "primary" ? "" : ` (${w.role})`}`;
    latency[name] ??= times.map(() => null);
    requests[name] ??= times.map(() => null);
    const i = index.get(at(w));
    if (w.latency_ms?.p95 !== undefined) latency[name][i] = Math.max(latency[name][i] ?? 0, w.latency_ms.p95);
    requests[name][i] = (requests[name][i] ?? 0) + w.requests;
  }
  return { latency: { times, series: latency }, requests: { times, series: requests } };
}

export function render(view, _params, search) {
  const chosen = search.get("name");
  const list = el("div");
  const problem = el("div");
  view.replaceChildren(el("h1", {}, "Models"), problem, list);
  const charts = [];

  async function load() {
    try {
      const { items } = await get("/models");
      charts.splice(0).forEach((c) => c.destroy());
      const models = byModel(items);
      if (!models.size) {
        list.replaceChildren(empty("No model registered yet."));
        return;
      }
      const names = [...models.keys()];
      const histories = await Promise.all(names.map((name) =>
        get(`/models/${encodeURIComponent(name)}/history`)));
      const served = await Promise.all(names.map((name) =>
        get(`/models/${encodeURIComponent(name)}/serving`)));
      const sections = [];
      const servingCharts = [];
      for (const [i, name] of names.entries()) {
        const versions = models.get(name);
        const history = histories[i].items;
        const windows = served[i].items;
        const latencyBox = el("div", { class: "chart serving-latency", "data-model": name });
        const requestsBox = el("div", { class: "chart serving-requests", "data-model": name });
        const chartBox = el("div", { class: "chart", "data-model": name });
        const hasMetrics = versions.some((v) => Object.keys(v.metrics ?? {}).length);
        const card = section(`${name} (${versions.length} version${versions.length === 1 ? "" : "s"})`,
          aliasLine(name, versions),
          el("label", { class: "reason" }, "Reason for a move ",
            el("input", { name: "reason", value: "from the dashboard", size: 40 })),
          el("div", { class: "action-status" }),
          hasMetrics ? chartBox : el("p", { class: "muted" }, "No metric reported by its versions."),
          table(["Version", "Gate", "Metrics", "Dataset", "Trigger", "Pipeline", "Run", "", ""], versions.map(versionRow)),
          windows.length ? el("h3", {}, "Serving (the gateways' windows)") : null,
          windows.length ? latencyBox : null,
          windows.length ? requestsBox : null,
          history.length ? el("h3", {}, "Alias history") : null,
          history.length ? table(["When", "Alias", "Move", "", "By", "Reason", "Cites"],
            history.map(historyRow), { class: "grid alias-history" }) : null);
        card.dataset.model = name;
        sections.push([card, chartBox, versions, hasMetrics]);
        if (windows.length) servingCharts.push([latencyBox, requestsBox, servingSeries(windows)]);
        anyWindows ||= windows.length > 0;
      }
      list.replaceChildren(...sections.map(([card]) => card));
      for (const [, box, versions, hasMetrics] of sections) {
        if (hasMetrics) charts.push(versionChart(box, versions, { title: "metrics by version", width: Math.min(900, Math.max(360, box.clientWidth || 700)), height: 240 }));
      }
      for (const [latencyBox, requestsBox, series] of servingCharts.splice(0)) {
        const width = Math.min(900, Math.max(360, latencyBox.clientWidth || 700));
        charts.push(timeSeriesChart(latencyBox, series.latency, { title: "p95 latency (ms) by version", width, height: 200 }));
        charts.push(timeSeriesChart(requestsBox, series.requests, { title: "requests per window by version", width, height: 200 }));
      }
      window.baton = { ...(window.baton ?? {}), charts };
      if (chosen) list.querySelector(`[data-model="${CSS.escape(chosen)}"]`)?.scrollIntoView();
      problem.replaceChildren();
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }

  list.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    const card = button?.closest("[data-model]");
    if (!button || !card) return;
    const name = encodeURIComponent(card.dataset.model);
    const reason = card.querySelector("input[name=reason]")?.value || "from the dashboard";
    const status = card.querySelector(".action-status");
    button.disabled = true;
    try {
      if (button.dataset.action === "promote") {
        await post(`/models/${name}/aliases/${CHAMPION}`, { version: Number(button.dataset.version), reason });
      } else {
        await post(`/models/${name}/aliases/${encodeURIComponent(button.dataset.alias)}/rollback`, { reason });
      }
      await load();
    } catch (err) {
      status?.replaceChildren(problemBox(err));
      button.disabled = false;
    }
  });

  const soon = debounce(load, 300);
  // the gateways' windows are not on the event stream (they are periodic by nature: one per
  // version every `baton serve --window`); their charts are read again at that pace
  let anyWindows = false;
  const windowsTick = setInterval(() => { if (anyWindows && !document.hidden) soon(); }, 10_000);
  const live = new Live({ types: ["model_registered", "alias_moved", "model_request_refused"],
    onEvent: soon, reload: load });
  live.start();
  load();
  return {
    stop() {
      clearInterval(windowsTick);
      live.stop();
      soon.cancel();
      charts.forEach((c) => c.destroy());
    },
  };
}
