// A run's attempts as the timeline draws them ({task, attempt, agent, gpus, status,
// queued_at, started_at, ended_at}, epoch seconds), from the run's events on the log.
//
// The log is exact: an attempt is queued from its task's task_ready (the ready before its
// first placement), starts at task_started, ends at its task_succeeded / task_failed /
// task_timed_out / task_lost, or at the task's task_cancelled. A run row whose
// attempt_history carries queued_at/started_at/ended_at is used as it is instead
// (`fromRow`). Pure functions: no DOM, no clock.

/** "2026-12-06T05:04:41.699006Z" as epoch seconds, keeping the microseconds Date drops. */
export function epochOf(iso) {
  if (typeof iso === "number") return iso;
  if (typeof iso !== "string") return null;
  const match = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$/.exec(iso);
  if (!match) {
    const ms = Date.parse(iso);
    return Number.isFinite(ms) ? ms / 1000 : null;
  }
  const whole = Date.parse(`${match[1]}${match[3] ?? "Z"}`);
  if (!Number.isFinite(whole)) return null;
  return whole / 1000 + (match[2] ? Number(match[2]) : 0);
}

const ENDS = Object.freeze({
  task_succeeded: "succeeded", task_failed: "failed", task_timed_out: "timed_out",
  task_lost: "lost",
});

/** `events`: the run's envelopes in log order (GET /runs/{id}/events, with SSE ones after). */
export function attemptsFromEvents(events) {
  const attempts = new Map();
  const readyAt = new Map();
  const key = (task, n) => `${task}\u0000${n}`;
  const open = (task) => [...attempts.values()].filter((a) => a.task === task && a.ended_at === null);
  for (const env of events ?? []) {
    const data = env.data ?? {};
    const at = epochOf(env.time);
    const task = data.task;
    if (task === undefined) continue;
    const id = key(task, data.attempt);
    let a = data.attempt === undefined ? null : attempts.get(id);
    switch (env.type) {
      case "task_ready":
        readyAt.set(task, at);
        break;
      case "task_scheduled":
      case "task_accepted":
        if (!a) {
          a = { task, attempt: data.attempt, agent: data.agent_id ?? null, gpus: data.gpus ?? [],
            status: "scheduled", queued_at: readyAt.get(task) ?? at, started_at: null, ended_at: null };
          attempts.set(id, a);
          readyAt.delete(task);
        }
        a.agent = data.agent_id ?? a.agent;
        a.gpus = data.gpus ?? a.gpus;
        if (a.ended_at === null && a.started_at === null) a.status = env.type === "task_accepted" ? "accepted" : "scheduled";
        break;
      case "task_rejected":
        if (a && a.started_at === null) a.status = "rejected";
        break;
      case "task_started":
        if (!a) {
          const queued = Number.isFinite(data.queued_s) ? at - data.queued_s : at;
          a = { task, attempt: data.attempt, agent: null, gpus: [], status: "running",
            queued_at: readyAt.get(task) ?? queued, started_at: null, ended_at: null };
          attempts.set(id, a);
          readyAt.delete(task);
        }
        a.agent = data.agent_id ?? a.agent;
        a.gpus = data.gpus ?? a.gpus;
        a.started_at = at;
        a.status = "running";
        break;
      case "task_cancelled":
        for (const o of open(task)) Object.assign(o, { ended_at: at, status: "cancelled" });
        break;
      default:
        if (ENDS[env.type] && a) {
          a.ended_at = at;
          a.status = env.type === "task_failed" && data.reason === "interrupted" ? "interrupted" : ENDS[env.type];
          a.agent = data.agent_id ?? a.agent;
        }
    }
  }
  return [...attempts.values()];
}

/** The row's own times, when the server records them on each attempt; else null. */
export function fromRow(run) {
  const out = [];
  for (const task of run?.tasks ?? []) {
    for (const a of task.attempt_history ?? []) {
      if (!("started_at" in a) || !("queued_at" in a)) return null;
      out.push({ task: task.name, attempt: a.number, agent: a.agent_id ?? null, gpus: a.gpus ?? [],
        status: a.status, queued_at: a.queued_at ?? null, started_at: a.started_at ?? null,
        ended_at: a.ended_at ?? null });
    }
  }
  return out;
}

/** What the run page draws: the row's times when it has them, else the log's. */
export function timelineAttempts(run, events) {
  return fromRow(run) ?? attemptsFromEvents(events);
}
