// The colours of task and attempt states, named as orchestrator/core/state.py names them.
//
// TaskStatus: pending ready scheduled running retry_wait succeeded failed upstream_failed
// cancelled. AttemptStatus: scheduled accepted rejected running succeeded failed timed_out
// lost interrupted cancelled. A state the dashboard does not know (a newer server) is drawn
// grey and still labelled with its name, never dropped.

export const TASK_COLOURS = Object.freeze({
  pending: "#d0d5dd",
  ready: "#b8d4f5",
  scheduled: "#93c0f0",
  running: "#2f80ed",
  retry_wait: "#f2c94c",
  succeeded: "#27ae60",
  failed: "#eb5757",
  upstream_failed: "#f2a7a7",
  cancelled: "#828282",
});

export const ATTEMPT_COLOURS = Object.freeze({
  scheduled: "#93c0f0",
  accepted: "#93c0f0",
  running: "#2f80ed",
  succeeded: "#27ae60",
  failed: "#eb5757",
  timed_out: "#c0392b",
  rejected: "#bdbdbd",
  lost: "#f2994a",
  interrupted: "#f2994a",
  cancelled: "#828282",
});

/** Attempts that ended because of their agent, not their code: drawn hatched. */
export const LOST_ATTEMPTS = Object.freeze(new Set(["lost", "interrupted", "rejected"]));

export const UNKNOWN_COLOUR = "#9e9e9e";

/** Text that reads on a state's colour: white on the dark ones, near-black on the light. */
export function textColour(fill) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(fill.slice(i, i + 2), 16));
  return 0.299 * r + 0.587 * g + 0.114 * b < 150 ? "#ffffff" : "#1d2433";
}

export function taskColour(state) {
  return Object.hasOwn(TASK_COLOURS, state) ? TASK_COLOURS[state] : UNKNOWN_COLOUR;
}

export function attemptColour(status) {
  return Object.hasOwn(ATTEMPT_COLOURS, status) ? ATTEMPT_COLOURS[status] : UNKNOWN_COLOUR;
}
