// Models: each registered model's versions with their metrics and lineage, and a chart of
// each metric across its versions (chart.js). Live: a model_registered event reads the
// models again.

import { get } from "../api.js";
import { versionChart } from "../chart.js";
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

function versionRow(v) {
  const l = v.lineage ?? {};
  const data = l.dataset ? `${l.dataset}@${l.dataset_version ?? "?"}` : "–";
  return el("tr", { "data-version": v.version },
    el("td", {}, `v${v.version}`),
    el("td", {}, Object.entries(v.metrics ?? {}).map(([k, val]) => `${k} = ${metric(val)}`).join(", ") || "–"),
    el("td", {}, data),
    el("td", {}, `${l.trigger?.type ?? "–"}`),
    el("td", {}, l.pipeline ? `${l.pipeline} ${l.pipeline_version ?? ""}` : "–"),
    el("td", {}, v.run_id ? runLink(v.run_id) : "–"),
    el("td", {}, v.registered_at ? when(v.registered_at) : ""));
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
      const sections = [];
      for (const [name, versions] of models) {
        const chartBox = el("div", { class: "chart", "data-model": name });
        const hasMetrics = versions.some((v) => Object.keys(v.metrics ?? {}).length);
        const card = section(`${name} (${versions.length} version${versions.length === 1 ? "" : "s"})`,
          hasMetrics ? chartBox : el("p", { class: "muted" }, "No metric reported by its versions."),
          table(["Version", "Metrics", "Dataset", "Trigger", "Pipeline", "Run", ""], versions.map(versionRow)));
        card.dataset.model = name;
        sections.push([card, chartBox, versions, hasMetrics]);
      }
      list.replaceChildren(...sections.map(([card]) => card));
      for (const [, box, versions, hasMetrics] of sections) {
        if (hasMetrics) charts.push(versionChart(box, versions, { title: "metrics by version", width: Math.min(900, Math.max(360, box.clientWidth || 700)), height: 240 }));
      }
      window.baton = { ...(window.baton ?? {}), charts };
      if (chosen) list.querySelector(`[data-model="${CSS.escape(chosen)}"]`)?.scrollIntoView();
      problem.replaceChildren();
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }

  const soon = debounce(load, 300);
  const live = new Live({ types: ["model_registered"], onEvent: soon, reload: load });
  live.start();
  load();
  return {
    stop() {
      live.stop();
      soon.cancel();
      charts.forEach((c) => c.destroy());
    },
  };
}
