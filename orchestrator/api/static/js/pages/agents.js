// Agents: what each advertises and uses (a bar for CPU, one for memory, one per GPU), the
// attempts running on it, and its state (alive, draining, stopped, lost with the evidence).
// Use changes with every placement and heartbeat: the page reads GET /agents again after the
// events that change it (placements, ends, agents advertising, draining, stopping), at most
// once per burst, and every 2 s for the heartbeats (free capacity) the stream does not carry.

import { get } from "../api.js";
import { el } from "../dom.js";
import { Live, debounce } from "../live.js";
import { badge, empty, problemBox, runLink } from "../ui.js";

const HEARTBEAT_MS = 2000;
const STATE_COLOUR = { alive: "succeeded", draining: "retry_wait", stopped: "cancelled", lost: "failed" };

function bar(label, used, total, unit) {
  const share = total > 0 ? Math.min(1, Math.max(0, used / total)) : 0;
  return el("div", { class: "bar", "data-bar": label, "data-used": used, "data-total": total },
    el("span", { class: "bar-label" }, label),
    el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: `width:${(share * 100).toFixed(1)}%` })),
    el("span", { class: "bar-text" }, `${used} / ${total} ${unit}`));
}

function card(agent) {
  const caps = agent.capabilities ?? {};
  const usedGpus = new Set(agent.used?.gpus ?? []);
  const gpuBars = (caps.gpus ?? []).map((g) => bar(`GPU ${g.index}${g.model ? ` ${g.model}` : ""}`,
    usedGpus.has(g.index) ? 1 : 0, 1, usedGpus.has(g.index) ? "in use" : "free"));
  const labels = Object.entries(caps.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return el("article", { class: "card agent", "data-agent": agent.agent_id, "data-state": agent.state },
    el("h2", {}, agent.agent_id, " ", badge(agent.state, STATE_COLOUR[agent.state] ?? "pending"), labels ? el("span", { class: "muted small" }, ` ${labels}`) : null),
    bar("CPU", Number(agent.used?.cpus ?? 0), Number(caps.cpus ?? 0), "cores"),
    bar("Memory", agent.used?.memory_mb ?? 0, caps.memory_mb ?? 0, "MiB"),
    ...gpuBars,
    agent.lost_evidence ? el("p", { class: "error" }, agent.lost_evidence) : null,
    el("p", { class: "muted small" }, agent.seen_s_ago == null ? "not heard from yet" : `heard from ${agent.seen_s_ago} s ago`),
    agent.running?.length
      ? el("ul", { class: "running" }, agent.running.map((r) => el("li", {},
        runLink(r.run_id), ` ${r.pipeline} / ${r.task} #${r.number}`, r.gpus?.length ? ` · GPUs ${r.gpus.join(", ")}` : "", ` · ${r.status}`)))
      : el("p", { class: "muted small" }, "nothing running"));
}

export function render(view) {
  const list = el("div", { class: "agents" });
  const problem = el("div");
  view.replaceChildren(el("h1", {}, "Agents"), problem, list);

  async function load() {
    try {
      const { items } = await get("/agents");
      list.replaceChildren(...(items.length ? items.map(card) : [empty("No agent has advertised yet.")]));
      problem.replaceChildren();
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }

  const soon = debounce(load, 300);
  const live = new Live({
    types: ["task_scheduled", "task_started", "task_succeeded", "task_failed", "task_lost",
      "task_timed_out", "task_cancelled", "agent_advertised", "agent_draining", "agent_stopped"],
    onEvent: soon, reload: load,
  });
  const beats = setInterval(load, HEARTBEAT_MS);
  live.start();
  load();
  return {
    stop() {
      live.stop();
      soon.cancel();
      clearInterval(beats);
    },
  };
}
