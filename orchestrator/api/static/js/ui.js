// Pieces every page draws with: links the router follows, state badges, tables, the box that
// shows an API problem's title and detail. All through dom.js: API strings are text.

import { el } from "./dom.js";
import { clock } from "./format.js";
import { taskColour, textColour } from "./states.js";

const RUN_COLOURS = Object.freeze({
  running: "#2f80ed", succeeded: "#27ae60", failed: "#eb5757", cancelled: "#828282",
});

/** A link inside the dashboard: the router follows it without reloading the page. */
export function link(href, ...children) {
  return el("a", { href, "data-nav": "" }, ...children);
}

/** A run's page; `position` (what a write answered) makes its first read wait for the run. */
export function runLink(runId, position = null) {
  const wait = position ? `?min_position=${encodeURIComponent(position)}` : "";
  return link(`/runs/${encodeURIComponent(runId)}${wait}`, el("code", {}, runId));
}

/** A coloured state label; `kind` "run" or "task", or the state whose colour it takes. */
export function badge(state, kind = "run") {
  const fill = kind === "run" ? (RUN_COLOURS[state] ?? taskColour(state))
    : taskColour(kind === "task" ? state : kind);
  return el("span", { class: "badge", "data-state": state,
    style: `background:${fill};color:${textColour(fill)}` }, state ?? "–");
}

export function table(headers, rows, attrs = {}) {
  return el("table", { class: "grid", ...attrs },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

export function section(title, ...children) {
  return el("section", { class: "card" }, el("h2", {}, title), ...children);
}

/** An API error (ApiError) as its problem's title and detail. */
export function problemBox(err) {
  return el("div", { class: "problem", role: "alert" },
    el("strong", { class: "problem-title" }, err?.title ?? "Error"), " ",
    el("span", { class: "problem-detail" }, err?.detail ?? String(err?.message ?? err)));
}

export function when(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "–";
  const d = new Date(epochSeconds * 1000);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? clock(epochSeconds) : `${d.toISOString().slice(0, 10)} ${clock(epochSeconds)}`;
}

export function empty(text) {
  return el("p", { class: "muted empty" }, text);
}

/** A key/value list: [[label, value-node-or-text], ...]. */
export function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(Boolean).flatMap(([k, v]) =>
    [el("dt", {}, k), el("dd", {}, v ?? "–")]));
}

export function json(value) {
  return el("pre", { class: "json" }, JSON.stringify(value, null, 2));
}
