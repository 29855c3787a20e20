// A pipeline's DAG as SVG, laid out once by dagre, each task coloured by its state.
//
// The spec is a PipelineSpec as the API serialises it (events/pipeline.py): {name, tasks:
// [{name, kind, deps: [name, ...], ...}]}. Layout runs once per spec; a state change only
// recolours one node (DagView.setState), so a live run's stream of task events never moves
// the picture or pays for a layout.

import dagre from "../vendor/dagre/dagre.esm.js";
import { svg, uniqueId } from "./dom.js";
import { taskColour, textColour } from "./states.js";

const FONT = "13px system-ui, -apple-system, 'Segoe UI', sans-serif";
const SMALL_FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";
const NODE_HEIGHT = 42;
const PADDING = 14;
const MARGIN = 12;

let measureContext = null;

function textWidth(text, font) {
  measureContext ??= document.createElement("canvas").getContext("2d");
  measureContext.font = font;
  return measureContext.measureText(text).width;
}

function stateLine(task, state) {
  return task.kind && task.kind !== "function" ? `${task.kind} · ${state}` : state;
}

function layout(tasks) {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 46, marginx: MARGIN, marginy: MARGIN });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const task of tasks) {
    // the widest state line a node may show, so a state change never outgrows its box
    const widest = Math.max(textWidth(task.name, FONT),
      textWidth(stateLine(task, "upstream_failed"), SMALL_FONT));
    graph.setNode(task.name, { width: Math.ceil(widest) + 2 * PADDING, height: NODE_HEIGHT });
  }
  for (const task of tasks) {
    for (const dep of task.deps ?? []) {
      if (graph.hasNode(dep)) graph.setEdge(dep, task.name);
    }
  }
  dagre.layout(graph);
  return graph;
}

function uniqueTasks(spec) {
  const seen = new Set();
  return (spec.tasks ?? []).filter((task) => !seen.has(task.name) && seen.add(task.name));
}

function edgePath(points) {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

function drawEdges(graph, markerId) {
  return svg("g", { class: "dag-edges" }, graph.edges().map((e) => svg("path", {
    class: "dag-edge", "data-from": e.v, "data-to": e.w, d: edgePath(graph.edge(e).points),
    fill: "none", stroke: "#8792a2", "stroke-width": 1.4, "marker-end": `url(#${markerId})`,
  })));
}

function drawNode(task, box, onSelect) {
  // a coordinator-side step (gate, register) is dashed: it runs on no agent
  const step = task.kind !== undefined && task.kind !== "function";
  const title = svg("title");
  const rect = svg("rect", {
    class: "dag-box", width: box.width, height: box.height, rx: task.kind === "gate" ? 14 : 6,
    stroke: "#1d2433", "stroke-opacity": 0.25, "stroke-dasharray": step ? "4 2" : null,
  });
  const name = svg("text", {
    class: "dag-name", x: box.width / 2, y: 17, "text-anchor": "middle",
    style: `font: 600 ${FONT}`,
  }, task.name);
  const state = svg("text", {
    class: "dag-state", x: box.width / 2, y: 33, "text-anchor": "middle",
    style: `font: ${SMALL_FONT}`,
  });
  const group = svg("g", {
    class: "dag-node", "data-task": task.name, "data-kind": task.kind ?? "function",
    transform: `translate(${box.x - box.width / 2},${box.y - box.height / 2})`,
    tabindex: onSelect ? 0 : null, style: onSelect ? "cursor: pointer" : null,
  }, title, rect, name, state);
  if (onSelect) {
    group.addEventListener("click", () => onSelect(task.name));
    group.addEventListener("keydown", (e) => e.key === "Enter" && onSelect(task.name));
  }
  return { task, group, rect, name, state, title };
}

/** A drawn DAG; setState recolours one task's node in place. */
export class DagView {
  constructor(element, nodes) {
    this.element = element;
    this.nodes = nodes;
  }

  /** Show a task's new state (and, optionally, why it waits); false for an unknown task. */
  setState(taskName, state, detail = null) {
    const node = this.nodes.get(taskName);
    if (!node) return false;
    const fill = taskColour(state);
    node.group.setAttribute("data-state", state);
    node.rect.setAttribute("fill", fill);
    node.name.setAttribute("fill", textColour(fill));
    node.state.setAttribute("fill", textColour(fill));
    node.state.textContent = stateLine(node.task, state);
    node.title.textContent = detail ? `${taskName}: ${state} (${detail})` : `${taskName}: ${state}`;
    return true;
  }

  /** Several at once: {task: state} or {task: {state, detail}}. */
  setStates(states) {
    for (const [task, value] of Object.entries(states ?? {})) {
      if (typeof value === "string") this.setState(task, value);
      else this.setState(task, value.state, value.detail ?? null);
    }
  }

  state(taskName) {
    return this.nodes.get(taskName)?.group.getAttribute("data-state") ?? null;
  }
}

/**
 * Draw `spec`'s DAG into `container` (replacing what it held), every task "pending" unless
 * `options.states` says otherwise; `options.onSelect(taskName)` is called on a node's click.
 */
export function renderDag(container, spec, options = {}) {
  const tasks = uniqueTasks(spec);
  const graph = layout(tasks);
  const { width, height } = graph.graph();
  const markerId = uniqueId("dag-arrow");
  const marker = svg("marker", {
    id: markerId, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse",
  }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8792a2" }));
  const nodes = new Map(tasks.map((t) => [t.name, drawNode(t, graph.node(t.name), options.onSelect)]));
  const element = svg("svg", {
    class: "baton-dag", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `pipeline ${spec.name ?? ""}`, style: "max-width: 100%; height: auto",
  }, svg("defs", {}, marker), drawEdges(graph, markerId),
  svg("g", { class: "dag-nodes" }, [...nodes.values()].map((n) => n.group)));
  const view = new DagView(element, nodes);
  for (const task of tasks) view.setState(task.name, "pending");
  view.setStates(options.states);
  container.replaceChildren(element);
  return view;
}
