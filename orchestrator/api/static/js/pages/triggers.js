// Triggers: what the trigger router decided for each trigger, newest first: accepted (with
// the run it started) or ignored (with the reason: duplicate, duplicate_version, cooldown...).
// Live: a trigger_accepted / trigger_ignored event puts its outcome at the top.

import { get, query } from "../api.js";
import { el } from "../dom.js";
import { epochOf } from "../attempts.js";
import { Live } from "../live.js";
import { badge, empty, problemBox, runLink, when } from "../ui.js";

const LIMIT = 50;

function row(t) {
  return el("tr", { "data-outcome": t.outcome, "data-trigger": t.trigger_event_id ?? "" },
    el("td", {}, when(t.time)),
    el("td", {}, badge(t.outcome, t.outcome === "accepted" ? "succeeded" : "cancelled")),
    el("td", {}, t.pipeline),
    el("td", {}, t.trigger_type ?? "–"),
    el("td", {}, el("code", {}, t.trigger_event_id ?? "–")),
    el("td", {}, t.run_id ? runLink(t.run_id) : [t.reason ?? "", t.detail ? ` — ${t.detail}` : ""]),
    el("td", {}, t.data_version ?? ""));
}

function outcomeOf(envelope) {
  const d = envelope.data ?? {};
  return { ...d, time: epochOf(envelope.time), outcome: envelope.type === "trigger_accepted" ? "accepted" : "ignored" };
}

export function render(view, _params, search) {
  const outcome = search.get("outcome") ?? "";
  const body = el("tbody");
  const problem = el("div");
  const more = el("button", { type: "button", class: "secondary", hidden: "" }, "Older");
  const filter = el("select", { name: "outcome" }, ["", "accepted", "ignored"].map((o) =>
    el("option", { value: o, selected: o === outcome ? "" : null }, o || "any")));
  let next = null;
  let onFirstPage = true;
  view.replaceChildren(el("h1", {}, "Triggers"),
    el("form", { class: "filters" }, el("label", {}, "Outcome ", filter)), problem,
    el("table", { class: "grid triggers" },
      el("thead", {}, el("tr", {}, ["When", "Outcome", "Pipeline", "Type", "Event id", "Run / reason", "Data version"].map((h) => el("th", {}, h)))),
      body),
    el("div", { class: "pager" }, more));

  async function load(cursor = null) {
    try {
      const page = await get(`/triggers${query({ outcome: filter.value, limit: LIMIT, cursor })}`);
      if (cursor === null) body.replaceChildren();
      onFirstPage = cursor === null;
      body.append(...page.items.map(row));
      next = page.next;
      more.hidden = next === null;
      problem.replaceChildren(body.children.length ? "" : empty("No trigger yet."));
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }

  filter.addEventListener("change", () => {
    history.replaceState(null, "", `/triggers${query({ outcome: filter.value })}`);
    load(null);
  });
  more.addEventListener("click", () => load(next));
  const live = new Live({
    types: ["trigger_accepted", "trigger_ignored"],
    onEvent: (envelope) => {
      const t = outcomeOf(envelope);
      if (!onFirstPage || (filter.value && filter.value !== t.outcome)) return;
      body.prepend(row(t));
      problem.replaceChildren();
    },
    reload: () => (onFirstPage ? load(null) : null),
  });
  live.start();
  load(null);
  return { stop: () => live.stop() };
}
