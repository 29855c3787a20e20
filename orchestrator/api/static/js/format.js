// How the dashboard writes durations, times and numbers: one place, so every page agrees.

/** A duration in seconds as people read it: "850 ms", "4.2 s", "3 min 05 s", "2 h", "2 h 04 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.round(s);
  if (whole < 3600) return join(`${Math.floor(whole / 60)} min`, whole % 60, "s");
  return join(`${Math.floor(whole / 3600)} h`, Math.floor((whole % 3600) / 60), "min");
}

/** An epoch time in seconds as a local clock time, "14:03:07". */
export function clock(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "–";
  const d = new Date(epochSeconds * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A metric value: up to four significant digits, no trailing noise ("0.9731", "1204"). */
export function metric(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(4)));
}

function join(whole, rest, unit) {
  return rest ? `${whole} ${pad(rest)} ${unit}` : whole;
}

function pad(n) {
  return String(n).padStart(2, "0");
}
