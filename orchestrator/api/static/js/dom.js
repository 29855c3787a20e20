// Building DOM and SVG nodes with every string inserted as text, never parsed as HTML.
//
// Everything the dashboard shows comes from the API: task names, agent ids, error messages,
// tracebacks, dataset names. None of it may reach innerHTML, so these helpers are the one way
// the dashboard's components create nodes: children that are strings become text nodes, and
// attributes are set one by one with setAttribute (an attribute value is never markup).

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) throw new Error(`dom: no event handlers as attributes (${key})`);
    node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: el("td", {class: "agent"}, agentId). */
export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element: svg("rect", {x: 0, y: 0, width: 10, height: 10}). */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Remove every child of a node (what a component does before it draws afresh). */
export function clear(node) {
  node.replaceChildren();
  return node;
}

/** Set a node's text, the only way to change what a node says. */
export function setText(node, text) {
  node.textContent = text === null || text === undefined ? "" : String(text);
  return node;
}

let lastId = 0;

/** A document-unique id prefix for SVG defs (markers, patterns) of one drawing. */
export function uniqueId(prefix) {
  lastId += 1;
  return `${prefix}-${lastId}`;
}
