// Triggers: the schedules the routers keep (when each fires, paused or its next slot, the last
// slot fired, its policies), and what the trigger router decided, newest first: accepted (with
// the run it started), ignored (with the reason: duplicate, cooldown, a schedule's slot
// skipped by overlap or expired past its catch-up window...), buffered, and the commands given
// to schedules (who paused or resumed them).
// Backfills with their progress as bars.
// Live: a decision event puts its outcome at the top; a schedule's or a backfill's event
// refreshes its rows.

import { get, query } from "../api.js";
import { el } from "../dom.js";
import { epochOf } from "../attempts.js";
import { Live } from "../live.js";
import { badge, empty, problemBox, runLink, when } from "../ui.js";

const LIMIT = 50;
const DECISIONS = ["trigger_accepted", "trigger_ignored", "schedule_slot", "schedule_commanded",
  "match_advanced", "match_filtered", "match_expired", "match_waiting", "match_fired",
  "escalated", "escalation_acknowledged"];
const MATCH_OUTCOMES = { match_advanced: "waiting", match_waiting: "waiting", match_fired: "accepted",
  match_filtered: "ignored", match_expired: "ignored" };
const SCHEDULE_EVENTS = ["schedule_tracked", "schedule_slot", "schedule_commanded",
  "schedule_run_ended"];
const BACKFILL_EVENTS = ["backfill_planned", "backfill_item_started", "backfill_run_ended",
  "backfill_commanded", "backfill_finished"];
const COLOURS = { accepted: "succeeded", buffered: "running", waiting: "running",
  command: "queued", escalated: "failed" };
const BACKFILL_COLOURS = { running: "running", paused: "queued", cancelling: "cancelled",
  completed: "succeeded", cancelled: "cancelled", planning: "queued" };

function row(t) {
  const slots = t.count > 1 ? ` (${t.count} slots, to ${t.through})` : "";
  return el("tr", { "data-outcome": t.outcome, "data-trigger": t.trigger_event_id ?? "",
    "data-type": t.trigger_type ?? "" },
    el("td", {}, when(t.time)),
    el("td", {}, badge(t.outcome, COLOURS[t.outcome] ?? "cancelled")),
    el("td", {}, t.pipeline),
    el("td", {}, t.trigger_type ?? "–"),
    el("td", {}, el("code", {}, t.trigger_event_id ?? "–")),
    el("td", {}, t.run_id ? [runLink(t.run_id), t.reason ? ` ${t.reason}` : ""]
      : [t.reason ?? "", t.detail ? ` — ${t.detail}` : "", slots]),
    el("td", {}, t.data_version ?? ""));
}

/** A decision event as the row the API's feed gives for it. */
function outcomeOf(envelope) {
  const d = envelope.data ?? {};
  const base = { ...d, time: epochOf(envelope.time) };
  if (envelope.type === "schedule_slot") {
    const outcome = d.outcome === "fired" ? "accepted" : d.outcome === "buffered" ? "buffered"
      : d.outcome === "passed" ? "passed" : "ignored";
    return { ...base, outcome, trigger_type: "schedule",
      trigger_event_id: `schedule:${d.pipeline}:${d.schedule}@${d.slot}` };
  }
  if (envelope.type === "schedule_commanded") {
    return { ...base, outcome: "command", trigger_type: "schedule",
      trigger_event_id: d.command_id, reason: `${d.command} ${d.applied ? "applied" : "refused"}` };
  }
  if (envelope.type in MATCH_OUTCOMES) {
    const causes = d.causes ?? (d.cause ? [d.cause] : []);
    const detail = envelope.type === "match_advanced" ? `${d.have} met; still missing: ${d.need}`
      : envelope.type === "match_fired" ? `fired with ${causes.map((c) => c.summary).join(", ")}`
      : d.detail ?? d.reason;
    return { ...base, outcome: MATCH_OUTCOMES[envelope.type], trigger_type: "condition",
      trigger_event_id: causes[0]?.event_id ?? d.event_id, detail,
      reason: envelope.type === "match_filtered" ? "filtered" : envelope.type === "match_expired" ? "timed_out" : d.reason };
  }
  if (envelope.type === "escalated") {
    return { ...base, outcome: "escalated", trigger_type: "drift_detected",
      trigger_event_id: `escalation:${d.pipeline}:${d.model}`, reason: "escalated", detail: d.reason };
  }
  if (envelope.type === "escalation_acknowledged") {
    return { ...base, outcome: "command", trigger_type: "drift_detected",
      trigger_event_id: d.command_id, reason: `acknowledge ${d.applied ? "applied" : "refused"}` };
  }
  return { ...base, outcome: envelope.type === "trigger_accepted" ? "accepted" : "ignored" };
}

function scheduleRow(s) {
  const state = s.paused ? badge("paused", "cancelled")
    : el("span", {}, "next ", el("code", {}, s.next_slot ?? "none (ended)"));
  return el("tr", { "data-schedule": `${s.pipeline}/${s.schedule}`, "data-paused": String(s.paused) },
    el("td", {}, s.pipeline),
    el("td", {}, s.schedule),
    el("td", {}, s.when),
    el("td", { class: "state" }, state),
    el("td", {}, s.last_fired ?? "never"),
    el("td", {}, `${s.overlap} · catch-up ${s.catchup.policy}`),
    el("td", { class: "counts" }, `${s.fired} fired, ${s.skipped} skipped`
      + (s.running.length ? `, ${s.running.length} running` : "")
      + (s.buffered.length ? `, ${s.buffered.length} buffered` : "")));
}

// A backfill's progress: done of total as a bar, and what it is made of.
function backfillRow(b) {
  const share = b.total ? b.done / b.total : 0;
  return el("tr", { "data-backfill": b.backfill_id, "data-status": b.status },
    el("td", {}, el("code", {}, b.backfill_id)),
    el("td", {}, b.pipeline),
    el("td", {}, badge(b.status, BACKFILL_COLOURS[b.status] ?? "queued")),
    el("td", {}, el("div", { class: "bar" },
      el("span", { class: "bar-label" }, `${b.done} / ${b.total}`),
      el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: `width:${(share * 100).toFixed(1)}%` })),
      el("span", { class: "bar-text" }, `${b.succeeded} ok, ${b.failed} failed, ${b.cancelled} cancelled, ${b.running.length} running`))),
    el("td", {}, b.description));
}

export function render(view, _params, search) {
  const outcome = search.get("outcome") ?? "";
  const body = el("tbody");
  const schedules = el("tbody");
  const schedulesBox = el("section", { class: "card schedules", hidden: "" },
    el("h2", {}, "Schedules"),
    el("table", { class: "grid schedules" },
      el("thead", {}, el("tr", {}, ["Pipeline", "Schedule", "When", "State", "Last fired", "Policy", "Slots"].map((h) => el("th", {}, h)))),
      schedules));
  const backfills = el("tbody");
  const backfillsBox = el("section", { class: "card backfills", hidden: "" },
    el("h2", {}, "Backfills"),
    el("table", { class: "grid backfills" },
      el("thead", {}, el("tr", {}, ["Backfill", "Pipeline", "Status", "Progress", "What"].map((h) => el("th", {}, h)))),
      backfills));
  const problem = el("div");
  const more = el("button", { type: "button", class: "secondary", hidden: "" }, "Older");
  const filter = el("select", { name: "outcome" }, ["", "accepted", "ignored", "waiting", "buffered", "passed", "escalated", "command"].map((o) =>
    el("option", { value: o, selected: o === outcome ? "" : null }, o || "any")));
  let next = null;
  let onFirstPage = true;
  view.replaceChildren(el("h1", {}, "Triggers"), schedulesBox, backfillsBox,
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

  // A schedule's rows come from the projection: after its event, read at the event's position.
  async function loadSchedules(position = null) {
    try {
      const page = await get(`/schedules${query({ min_position: position })}`);
      schedules.replaceChildren(...page.items.map(scheduleRow));
      if (!page.items.length) schedulesBox.setAttribute("hidden", ""); else schedulesBox.removeAttribute("hidden");
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }

  async function loadBackfills(position = null) {
    try {
      const page = await get(`/backfills${query({ min_position: position })}`);
      backfills.replaceChildren(...page.items.map(backfillRow));
      if (!page.items.length) backfillsBox.setAttribute("hidden", ""); else backfillsBox.removeAttribute("hidden");
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
    types: [...new Set([...DECISIONS, ...SCHEDULE_EVENTS, ...BACKFILL_EVENTS])],
    onEvent: (envelope) => {
      if (SCHEDULE_EVENTS.includes(envelope.type)) loadSchedules(envelope.position ?? null);
      if (BACKFILL_EVENTS.includes(envelope.type)) loadBackfills(envelope.position ?? null);
      if (!DECISIONS.includes(envelope.type)) return;
      const t = outcomeOf(envelope);
      if (!onFirstPage || (filter.value && filter.value !== t.outcome)) return;
      body.prepend(row(t));
      problem.replaceChildren();
    },
    reload: () => { loadSchedules(); loadBackfills(); return onFirstPage ? load(null) : null; },
  });
  live.start();
  loadSchedules();
  loadBackfills();
  load(null);
  return { stop: () => live.stop() };
}
