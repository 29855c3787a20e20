// Charts on uPlot: a model's metrics across its versions, and metrics over time.
//
// uPlot draws on a canvas (fast for long series) and writes its legend with textContent, so a
// metric or version name from the API is never parsed as HTML. The page links
// vendor/uplot/uPlot.min.css for the legend's layout.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { metric } from "./format.js";

export const SERIES_COLOURS = Object.freeze(
  ["#2f80ed", "#eb5757", "#27ae60", "#f2994a", "#9b51e0", "#00a3a3", "#6b7685", "#d4a000"]);

function colour(i) {
  return SERIES_COLOURS[i % SERIES_COLOURS.length];
}

function seriesOptions(name, i, everyPoint, colours) {
  // a version chart marks every version; a time series lets uPlot hide points when dense
  const stroke = colours?.[name] ?? colour(i);
  const points = everyPoint ? { show: true, size: 9, fill: stroke, stroke } : {};
  return { label: name, stroke, width: 2, spanGaps: true, points,
    value: (_, v) => metric(v) };
}

function sizeOf(container, options) {
  return { width: options.width ?? Math.max(320, container.clientWidth || 640), height: options.height ?? 260 };
}

/** A drawn chart: `plot` is the uPlot instance, `update` redraws it with new data. */
class ChartView {
  constructor(container, toData, makeOptions, input, options, everyPoint) {
    this.container = container;
    this.everyPoint = everyPoint;
    this.toData = toData;
    this.makeOptions = makeOptions;
    this.options = options;
    this.plot = null;
    this.update(input);
  }

  update(input) {
    const { names, data, extra } = this.toData(input);
    if (this.plot && this.names?.join("\u0000") === names.join("\u0000")) {
      this.extra = extra;
      this.plot.setData(data);
      return this;
    }
    this.plot?.destroy();
    this.names = names;
    this.extra = extra;
    const { x, ...made } = this.makeOptions(this);
    const opts = {
      ...sizeOf(this.container, this.options), ...made,
      series: [x ?? {}, ...names.map((name, i) =>
        seriesOptions(name, i, this.everyPoint, this.options.colours))],
    };
    this.plot = new uPlot(opts, data, this.container);
    return this;
  }

  /** Where each drawn point is, in device pixels of the canvas: {series, index, x, y}. */
  pointPixels() {
    const u = this.plot;
    const points = [];
    for (let s = 1; s < u.series.length; s++) {
      u.data[s].forEach((value, index) => {
        if (value === null || value === undefined) return;
        points.push({ series: u.series[s].label, index,
          x: u.valToPos(u.data[0][index], "x", true), y: u.valToPos(value, u.series[s].scale ?? "y", true) });
      });
    }
    return points;
  }

  destroy() {
    this.plot?.destroy();
    this.plot = null;
  }
}

function metricsByVersion(versions) {
  const names = [];
  for (const v of versions) {
    for (const name of Object.keys(v.metrics ?? {})) if (!names.includes(name)) names.push(name);
  }
  const data = [versions.map((_, i) => i),
    ...names.map((name) => versions.map((v) => v.metrics?.[name] ?? null))];
  return { names, data, extra: versions.map((v) => String(v.version)) };
}

/**
 * A model's metrics across its versions, oldest first: `versions` is [{version, metrics:
 * {name: value}}]; one series per metric, one point per version that reported it.
 */
export function versionChart(container, versions, options = {}) {
  return new ChartView(container, metricsByVersion, (view) => ({
    title: options.title,
    x: { label: "version", value: (_, i) => (i === null ? "–" : view.extra[i] ?? "–") },
    scales: { x: { time: false, range: () => [-0.5, Math.max(0.5, view.extra.length - 0.5)] } },
    axes: [{
      splits: () => view.extra.map((_, i) => i),
      values: (_, splits) => splits.map((i) => view.extra[i] ?? ""),
    }, { values: (_, splits) => splits.map(metric) }],
  }), versions, options, true);
}

function aligned(input) {
  const names = Object.keys(input.series ?? {});
  return { names, data: [input.times ?? [], ...names.map((n) => input.series[n])], extra: null };
}

/**
 * Metrics over time: `input` is {times: [epoch s, ...], series: {name: [value|null, ...]}},
 * every series as long as `times`. `update` takes the same shape (for a live overview).
 * `options.colours` ({name: "#rrggbb"}) fixes a series' colour (a state's, say).
 */
export function timeSeriesChart(container, input, options = {}) {
  return new ChartView(container, aligned, () => ({
    title: options.title,
    axes: [{}, { values: (_, splits) => splits.map(metric) }],
  }), input, options, false);
}
