// Keeping a page current: the log's events as Server-Sent Events (GET /api/v1/events), each
// applied to what the page shows (deltas, not reloads).
//
// The browser's EventSource resends the last `id:` (an opaque cursor over the log) as
// Last-Event-ID when it reconnects, so the server resumes exactly after it. A `resync` event
// (the subscriber fell too far behind) means: reload what the page shows through the REST API,
// then continue from the cursor it names. EventSource cannot send a bearer header, so a token
// goes as `access_token` (the API takes it on stream requests alone). Where the stream cannot
// be had, the page is reloaded through the REST API every POLL_MS instead, and the header
// says so.

import { API, query, token } from "./api.js";

export const POLL_MS = 2000;

/** Every envelope type the dashboard applies (events/*.py TYPE values). */
export const EVENT_TYPES = Object.freeze([
  "run_created", "run_succeeded", "run_failed", "run_cancelled",
  "task_ready", "task_scheduled", "task_accepted", "task_rejected", "task_waiting",
  "task_started", "task_progress", "task_succeeded", "task_failed", "task_retry_scheduled",
  "task_timed_out", "task_lost", "task_upstream_failed", "task_cancelled",
  "gate_check", "gate_evaluated", "input_ignored",
  "approval_requested", "approval_decided", "approval_refused",
  "canary_started", "canary_traffic_requested", "canary_step_started", "canary_window_observed",
  "canary_analysed", "canary_promotion_requested", "canary_ended",
  "trigger_accepted", "trigger_ignored", "model_registered", "alias_moved",
  "model_request_refused",
  "agent_advertised", "agent_draining", "agent_stopped",
]);

/** What the header says of how the page stays current. */
export function say(mode, text) {
  window.baton = { ...(window.baton ?? {}), live: mode };
  const badge = document.getElementById("live");
  if (badge) {
    badge.textContent = text;
    badge.dataset.mode = mode;
  }
}

/**
 * Follows the log for one page: `onEvent(envelope)` for each event of `types` (those the
 * page applies), `reload()` when the page must read afresh (a resync; each poll without a
 * stream), `onReady(position)` once the stream has taken its place in the log: a page that
 * reads what it shows with `min_position` = position then misses nothing between its read
 * and the stream's first event. `filters`: {run_id, pipeline}.
 */
export class Live {
  constructor({ filters = {}, types = EVENT_TYPES, onEvent, reload, onReady = null }) {
    this.filters = filters;
    this.types = types;
    this.onEvent = onEvent;
    this.reload = reload;
    this.onReady = onReady;
    this.source = null;
    this.timer = null;
    this.stopped = false;
  }

  start(after = null) {
    this.close();
    if (this.stopped) return this;
    // EventSource cannot send a bearer header: the stream takes the token as access_token.
    const access_token = token() || null;
    const url = `${API}/events${query({ ...this.filters, types: this.types.join(","), after,
                                        access_token })}`;
    let source;
    try {
      source = new EventSource(url);
    } catch {
      return this.poll();
    }
    this.source = source;
    say("connecting", "connecting…");
    source.addEventListener("open", () => say("stream", "live"));
    source.addEventListener("error", () => {
      if (this.source !== source) return;
      // CLOSED: the server refused the stream (no such endpoint, a token needed): poll.
      // CONNECTING: the browser reconnects by itself, resuming with Last-Event-ID.
      if (source.readyState === EventSource.CLOSED) this.poll();
      else say("reconnecting", "reconnecting…");
    });
    source.addEventListener("ready", (message) => {
      let position = null;
      try {
        position = JSON.parse(message.data).position ?? null;
      } catch { /* an older server: no position */ }
      this.onReady?.(position);
    });
    source.addEventListener("resync", (message) => {
      let cursor = null;
      try {
        cursor = JSON.parse(message.data).cursor ?? null;
      } catch { /* no cursor: start from now */ }
      this.reload();
      this.start(cursor);
    });
    for (const type of this.types) {
      source.addEventListener(type, (message) => {
        let envelope;
        try {
          envelope = JSON.parse(message.data);
        } catch {
          return;
        }
        this.onEvent(envelope);
      });
    }
    return this;
  }

  poll() {
    this.close();
    say("polling", `polling every ${POLL_MS / 1000} s`);
    this.timer = setInterval(() => {
      if (document.visibilityState !== "hidden") this.reload();
    }, POLL_MS);
    return this;
  }

  close() {
    this.source?.close();
    this.source = null;
    clearInterval(this.timer);
    this.timer = null;
  }

  stop() {
    this.stopped = true;
    this.close();
  }
}

/** Calls `fn` once, `ms` after the last of a burst of calls (a run's burst of task events). */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
