// A Gantt of a run's attempts: one row per attempt, its queue part and its run part.
//
// An attempt is {task, attempt, agent, status, queued_at, started_at, ended_at} (epoch seconds;
// started_at null until it starts, ended_at null while it is active). The queue part runs from
// queued_at (ready) to started_at, or to its end if it never started (rejected, lost before
// starting); the run part from started_at to ended_at, or to `now` while open. Retries show as
// the task's next rows; attempts lost to their agent (lost, interrupted, rejected) are hatched.

import { svg, uniqueId } from "./dom.js";
import { clock, duration } from "./format.js";
import { LOST_ATTEMPTS, attemptColour } from "./states.js";

const ROW = 24;
const BAR = 14;
const AXIS = 26;
const GAP = 10;
const DETAIL = 190;
const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
const NICE_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
  7200, 14400, 43200, 86400];

let measureContext = null;

function textWidth(text) {
  measureContext ??= document.createElement("canvas").getContext("2d");
  measureContext.font = FONT;
  return measureContext.measureText(text).width;
}

function ordered(attempts) {
  const firstSeen = new Map();
  attempts.forEach((a) => firstSeen.has(a.task) || firstSeen.set(a.task, firstSeen.size));
  return [...attempts].sort((a, b) =>
    firstSeen.get(a.task) - firstSeen.get(b.task) || a.attempt - b.attempt);
}

function span(attempts, now) {
  const starts = attempts.map((a) => a.queued_at ?? a.started_at).filter(Number.isFinite);
  const ends = attempts.map((a) => a.ended_at ?? now).filter(Number.isFinite);
  const t0 = starts.length ? Math.min(...starts) : now;
  const t1 = Math.max(t0, ...ends, ...starts);
  return { t0, t1: Math.max(t1, t0 + 1) };
}

function tickStep(seconds, pixels) {
  const wanted = seconds / Math.max(1, Math.floor(pixels / 90));
  return NICE_STEPS.find((s) => s >= wanted) ?? NICE_STEPS[NICE_STEPS.length - 1];
}

function tickLabel(t) {
  return t === 0 ? "0" : `+${duration(t)}`;
}

function hatch(defs, colour, cache) {
  if (!cache.has(colour)) {
    const id = uniqueId("tl-hatch");
    defs.append(svg("pattern", {
      id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)",
    }, svg("rect", { width: 6, height: 6, fill: "#ffffff" }),
    svg("rect", { width: 3, height: 6, fill: colour })));
    cache.set(colour, `url(#${id})`);
  }
  return cache.get(colour);
}

function describe(a, now) {
  const from = a.queued_at ?? a.started_at ?? now;
  const queued = (a.started_at ?? a.ended_at ?? now) - from;
  const ran = a.started_at == null ? null : (a.ended_at ?? now) - a.started_at;
  return `${a.task} attempt ${a.attempt} on ${a.agent ?? "no agent"}: ${a.status}\n`
    + `queued ${duration(queued)} from ${clock(from)}`
    + (ran == null ? ", never started" : `, ran ${duration(ran)}${a.ended_at == null ? " so far" : ""}`);
}

function drawRow(a, i, scale, defs, patterns, now) {
  const y = AXIS + i * ROW + (ROW - BAR) / 2;
  const colour = attemptColour(a.status);
  const queueEnd = a.started_at ?? a.ended_at ?? now;
  const runEnd = a.ended_at ?? now;
  const queued = a.queued_at ?? a.started_at ?? queueEnd;
  const parts = [svg("rect", {
    class: "tl-queue", x: scale(queued), y: y + BAR / 4, height: BAR / 2, rx: 2,
    width: Math.max(1, scale(queueEnd) - scale(queued)), fill: "#e3e8ef", stroke: colour,
    "stroke-width": 1,
  })];
  if (a.started_at != null) {
    const lost = LOST_ATTEMPTS.has(a.status);
    parts.push(svg("rect", {
      class: "tl-run", x: scale(a.started_at), y, height: BAR, rx: 2,
      width: Math.max(2, scale(runEnd) - scale(a.started_at)),
      fill: lost ? hatch(defs, colour, patterns) : colour, stroke: lost ? colour : null,
      "data-open": a.ended_at == null ? "true" : null,
    }));
  }
  const label = svg("text", {
    class: "tl-label", x: -GAP, y: y + BAR - 3, "text-anchor": "end", style: `font: ${FONT}`,
  }, `${a.task} #${a.attempt}`);
  const detail = svg("text", {
    class: "tl-detail", x: scale(Math.max(runEnd, queueEnd)) + 6, y: y + BAR - 3,
    fill: "#4f5b6b", style: `font: ${FONT}`,
  }, `${a.agent ?? "–"} · ${a.status}`);
  return svg("g", {
    class: "tl-row", "data-task": a.task, "data-attempt": a.attempt, "data-status": a.status,
    "data-agent": a.agent ?? "",
  }, svg("title", {}, describe(a, now)), label, ...parts, detail);
}

function drawAxis(t0, t1, scale, plotWidth, height) {
  const step = tickStep(t1 - t0, plotWidth);
  const ticks = [];
  for (let t = 0; t0 + t <= t1 + 1e-9; t += step) {
    const x = scale(t0 + t);
    ticks.push(svg("line", { x1: x, x2: x, y1: AXIS - 4, y2: height, stroke: "#eef1f5" }),
      svg("text", { x, y: AXIS - 8, "text-anchor": "middle", fill: "#6b7685",
        style: `font: ${FONT}` }, tickLabel(Math.round(t * 10) / 10)));
  }
  return svg("g", { class: "tl-axis" }, ticks);
}

function draw(attempts, now, width) {
  const rows = ordered(attempts);
  const labelWidth = Math.ceil(Math.max(40, ...rows.map((a) => textWidth(`${a.task} #${a.attempt}`))));
  const plotWidth = Math.max(100, width - labelWidth - GAP - DETAIL);
  const { t0, t1 } = span(rows, now);
  const scale = (t) => ((t - t0) / (t1 - t0)) * plotWidth;
  const height = AXIS + rows.length * ROW + 4;
  const defs = svg("defs");
  const patterns = new Map();
  const drawn = rows.map((a, i) => drawRow(a, i, scale, defs, patterns, now));
  const open = rows.some((a) => a.ended_at == null);
  const nowLine = open ? svg("line", { class: "tl-now", x1: scale(now), x2: scale(now), y1: AXIS - 4,
    y2: height, stroke: "#2f80ed", "stroke-dasharray": "3 3" }) : null;
  return svg("svg", {
    class: "baton-timeline", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${rows.length} attempts`, style: "max-width: 100%; height: auto",
  }, defs, svg("g", { transform: `translate(${labelWidth + GAP},0)` },
    drawAxis(t0, t1, scale, plotWidth, height), nowLine, ...drawn));
}

/** A drawn timeline; update redraws it for new attempts or a later `now` (cheap: no layout). */
export class TimelineView {
  constructor(container, width) {
    this.container = container;
    this.width = width;
    this.element = null;
  }

  update(attempts, now = Date.now() / 1000) {
    this.element = draw(attempts ?? [], now, this.width);
    this.container.replaceChildren(this.element);
    return this;
  }
}

/** Draw `attempts` into `container`; options: now (epoch s, default the clock), width (px). */
export function renderTimeline(container, attempts, options = {}) {
  const width = options.width ?? Math.max(480, container.clientWidth || 900);
  return new TimelineView(container, width).update(attempts, options.now);
}
