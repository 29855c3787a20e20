// The dashboard's shell: a router over real paths (/runs, /runs/{id}, /agents, /triggers,
// /models, /dead-letters, /overview; the server answers each with this page), the API token
// form, and the page in view. Each page module exports `render(view, params)` and returns an
// object with `stop()`, called when the user leaves it (it closes the page's event stream).

import { setToken, token } from "./api.js";
import { el } from "./dom.js";

const ROUTES = [
  [/^\/(?:runs\/?)?$/, "runs", () => import("./pages/runs.js")],
  [/^\/runs\/([^/]+)$/, "runs", () => import("./pages/run.js")],
  [/^\/agents\/?$/, "agents", () => import("./pages/agents.js")],
  [/^\/triggers\/?$/, "triggers", () => import("./pages/triggers.js")],
  [/^\/models\/?$/, "models", () => import("./pages/models.js")],
  [/^\/dead-letters\/?$/, "dead-letters", () => import("./pages/letters.js")],
  [/^\/overview\/?$/, "overview", () => import("./pages/overview.js")],
];

let current = null;
let generation = 0;

async function show(path) {
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  const view = document.getElementById("view");
  current?.stop?.();
  current = null;
  const mine = ++generation;
  if (!found) {
    view.replaceChildren(el("h1", {}, "Not found"),
      el("p", {}, `No dashboard page at ${path}. `, el("a", { href: "/runs", "data-nav": "" }, "See the runs.")));
    return;
  }
  const [pattern, nav, load] = found;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === nav);
  }
  const params = pattern.exec(path).slice(1).map(decodeURIComponent);
  const page = await load();
  if (mine !== generation) return;
  current = page.render(view, params, new URLSearchParams(location.search));
}

export function navigate(href, replace = false) {
  const url = new URL(href, location.href);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  show(url.pathname);
}

document.addEventListener("click", (event) => {
  const a = event.target.closest?.("a[data-nav]");
  if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", () => show(location.pathname));

function tokenForm(reason) {
  const banner = document.getElementById("banner");
  const input = el("input", { type: "password", name: "token", placeholder: "baton_…",
    autocomplete: "off", size: 40 });
  const form = el("form", { class: "token-form" },
    el("span", {}, reason ?? "The API needs a token (make one with 'baton tokens add').", " "),
    input, el("button", { type: "submit" }, "Use token"),
    el("button", { type: "button", class: "secondary", "data-forget": "" }, "Forget token"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    banner.hidden = true;
    show(location.pathname);
  });
  form.querySelector("[data-forget]").addEventListener("click", () => {
    setToken(null);
    banner.hidden = true;
    show(location.pathname);
  });
  banner.replaceChildren(form);
  banner.hidden = false;
  input.focus();
}

document.addEventListener("baton:unauthorized", (event) => {
  if (document.getElementById("banner").hidden) tokenForm(`${event.detail.title}: ${event.detail.detail}`);
});
document.getElementById("token-button").addEventListener("click", () =>
  tokenForm(token() ? "A token is set for this browser." : null));

show(location.pathname);
