// Dead letters: what a consumer refused, which consumer, why, where it came from, a preview
// of the bytes, and a button that re-drives it to its topic (the admin role). Letters are
// read from the bus itself (no projection), so after a re-drive the list is read again.

import { get, post } from "../api.js";
import { el } from "../dom.js";
import { say } from "../live.js";
import { epochOf } from "../attempts.js";
import { empty, problemBox, when } from "../ui.js";

function letterCard(letter, redrive) {
  const redriven = letter.redriven_to?.length ? letter.redriven_to.join(", ") : null;
  const status = el("div", { class: "action-status" });
  const button = el("button", { type: "button", "data-action": "redrive" }, redriven ? "Re-drive again" : "Re-drive");
  button.addEventListener("click", () => redrive(letter, button, status, Boolean(redriven)));
  return el("article", { class: "card letter", "data-letter": letter.id },
    el("div", { class: "page-head" }, el("h2", {}, el("code", {}, letter.id)), button),
    el("dl", { class: "facts" },
      el("dt", {}, "Reason"), el("dd", { class: "error" }, letter.reason ?? "–"),
      el("dt", {}, "Consumer"), el("dd", {}, letter.consumer ?? "–"),
      el("dt", {}, "When"), el("dd", {}, when(epochOf(letter.time))),
      el("dt", {}, "From"), el("dd", {}, letter.from ?? "–", letter.key ? ` (key ${letter.key})` : ""),
      el("dt", {}, "Re-driven to"), el("dd", { class: "redriven" }, redriven ?? "not yet")),
    el("pre", { class: "preview" }, letter.preview ?? ""),
    status);
}

export function render(view) {
  const list = el("div", { class: "letters" });
  const problem = el("div");
  const refresh = el("button", { type: "button", class: "secondary" }, "Refresh");
  view.replaceChildren(el("div", { class: "page-head" }, el("h1", {}, "Dead letters"), refresh), problem, list);

  async function load() {
    try {
      const { items } = await get("/dead-letters");
      list.replaceChildren(...(items.length ? items.map((l) => letterCard(l, redrive)) : [empty("No dead letter.")]));
      problem.replaceChildren();
    } catch (err) {
      problem.replaceChildren(problemBox(err));
    }
  }

  async function redrive(letter, button, status, again) {
    button.disabled = true;
    status.replaceChildren("re-driving…");
    try {
      const done = await post(`/dead-letters/${encodeURIComponent(letter.id)}/redrive${again ? "?again=true" : ""}`);
      status.replaceChildren(`Re-driven to ${[].concat(done.redriven_to ?? []).join(", ")}.`);
      await load();
    } catch (err) {
      status.replaceChildren(problemBox(err));
      button.disabled = false;
    }
  }

  refresh.addEventListener("click", load);
  say("static", "read on Refresh");
  load();
  return { stop() {} };
}
