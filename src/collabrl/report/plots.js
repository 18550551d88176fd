"use strict";
/* Inline SVG charts: bars with error bars, lines by x with intervals, and histograms.
 * The numbers come ready from Python (report/data.py, report/series.py); this file only maps
 * them to pixels. Every label is a text node (see dom.js), hovering a mark shows its values. */

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948",
  "#9c755f", "#ff9da7", "#bab0ac"];
const CHART = {width: 380, height: 230, left: 52, right: 14, top: 34, bottom: 42};

function colorFor(names) {
  const index = new Map(names.map((n, i) => [n, i]));
  return (name) => PALETTE[(index.has(name) ? index.get(name) : 0) % PALETTE.length];
}

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toFixed(10));
  return ticks;
}

function linear(domain, range) {
  const [d0, d1] = domain[1] > domain[0] ? domain : [domain[0] - 1, domain[0] + 1];
  return (v) => range[0] + ((v - d0) / (d1 - d0)) * (range[1] - range[0]);
}

function tickLabel(t) {
  return Math.abs(t) >= 1000 ? `${+(t / 1000).toFixed(1)}k` : String(+t.toFixed(3));
}

/* The frame every chart shares: title, y axis with grid lines, x axis label; returns the svg
 * and the y scale so the chart adds its marks. */
function frame(title, yDomain, xLabel, yLabel) {
  const {width, height, left, right, top, bottom} = CHART;
  const y = linear(yDomain, [height - bottom, top]);
  const root = svg("svg", {class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img"},
    svg("title", null, title),
    svg("text", {x: left, y: 16, class: "chart-title"}, title));
  for (const t of niceTicks(yDomain[0], yDomain[1])) {
    root.append(svg("line", {x1: left, x2: width - right, y1: y(t), y2: y(t), class: "grid"}),
      svg("text", {x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end"}, tickLabel(t)));
  }
  if (xLabel) root.append(svg("text", {x: (left + width - right) / 2, y: height - 6,
    class: "axis-label", "text-anchor": "middle"}, xLabel));
  if (yLabel) root.append(svg("text", {x: 12, y: (top + height - bottom) / 2, class: "axis-label",
    "text-anchor": "middle", transform: `rotate(-90 12 ${(top + height - bottom) / 2})`}, yLabel));
  return {root, y};
}

/* A y domain with headroom; a flat series (all values equal) gets a band around its value. */
function padded(lo, hi) {
  const span = hi - lo;
  if (span > 1e-9 * Math.max(1, Math.abs(hi))) return [lo, hi + span * 0.08];
  const pad = Math.abs(hi) * 0.1 || 1;
  return [lo - pad, hi + pad];
}

function legend(root, names, color) {
  let x = CHART.width - CHART.right;
  for (const name of [...names].reverse()) {
    const label = name.length > 18 ? `${name.slice(0, 17)}…` : name;
    x -= label.length * 6 + 20;
    root.append(svg("rect", {x, y: 22, width: 9, height: 9, fill: color(name)}),
      svg("text", {x: x + 12, y: 30, class: "legend"}, label));
  }
}

function errorBar(root, x, y0, y1, cap = 5) {
  root.append(svg("line", {x1: x, x2: x, y1: y0, y2: y1, class: "err"}),
    svg("line", {x1: x - cap, x2: x + cap, y1: y0, y2: y0, class: "err"}),
    svg("line", {x1: x - cap, x2: x + cap, y1: y1, y2: y1, class: "err"}));
}

/* bars: [{name, mean, low, high, n}] -> one bar per system with its 95% interval */
function barChart(title, bars, color) {
  const lows = bars.map((b) => Math.min(b.low, b.mean, 0));
  const highs = bars.map((b) => Math.max(b.high, b.mean, 0));
  const [lo, hi] = padded(Math.min(...lows), Math.max(...highs));
  const {root, y} = frame(title, [Math.min(...lows) >= 0 ? Math.max(lo, 0) : lo, hi], null, null);
  const {width, left, right, height, bottom} = CHART;
  const slot = (width - left - right) / bars.length;
  const barWidth = Math.min(56, slot * 0.6);
  bars.forEach((b, i) => {
    const cx = left + slot * (i + 0.5);
    const [top, base] = [y(Math.max(b.mean, 0)), y(Math.min(b.mean, 0))];
    root.append(svg("rect", {x: cx - barWidth / 2, y: top, width: barWidth,
      height: Math.max(base - top, 1), fill: color(b.name), class: "bar"},
    svg("title", null, `${b.name}: ${fmt(b.mean)} [${fmt(b.low)}, ${fmt(b.high)}], n=${b.n}`)));
    errorBar(root, cx, y(b.low), y(b.high));
    const name = b.name.length > 16 ? `${b.name.slice(0, 15)}…` : b.name;
    root.append(svg("text", {x: cx, y: height - bottom + 14, class: "tick", "text-anchor": "middle"}, name),
      svg("text", {x: cx + barWidth / 2 + 3, y: y(b.mean) - 3, class: "value"}, fmt(b.mean)));
  });
  return root;
}

/* diffs: [{a, b, mean, low, high, n, within_noise}] -> one row per system: its paired difference
 * against the base with the 95% interval, and the line at 0 (no effect) */
function differenceChart(title, diffs, color, digits) {
  const {width, left, right, top} = CHART;
  const row = 34;
  const height = top + row * diffs.length + 30;
  const lo = Math.min(0, ...diffs.map((d) => d.low));
  const hi = Math.max(0, ...diffs.map((d) => d.high));
  const [x0, x1] = padded(lo - (hi - lo) * 0.05, hi);
  const labelWidth = 110;
  const x = linear([x0, x1], [left + labelWidth, width - right]);
  const root = svg("svg", {class: "chart difference-chart", viewBox: `0 0 ${width} ${height}`, role: "img"},
    svg("title", null, title), svg("text", {x: left, y: 16, class: "chart-title"}, title));
  for (const t of niceTicks(x0, x1, 4)) {
    root.append(svg("text", {x: x(t), y: height - 8, class: "tick", "text-anchor": "middle"}, tickLabel(t)));
  }
  root.append(svg("line", {x1: x(0), x2: x(0), y1: top - 6, y2: height - 22, class: "zero"}));
  diffs.forEach((d, i) => {
    const cy = top + row * (i + 0.5);
    const name = `${d.a} − ${d.b}`;
    root.append(svg("text", {x: left + labelWidth - 8, y: cy + 4, class: "tick", "text-anchor": "end"},
      name.length > 22 ? `${name.slice(0, 21)}…` : name),
    svg("line", {x1: x(d.low), x2: x(d.high), y1: cy, y2: cy, class: "err"}),
    svg("circle", {cx: x(d.mean), cy, r: 4.5, fill: color(d.a), class: "difference"},
      svg("title", null, `${name}: ${fmt(d.mean)} [${fmt(d.low)}, ${fmt(d.high)}], n=${d.n}`)),
    svg("text", {x: x(d.mean), y: cy - 8, class: "value", "text-anchor": "middle"},
      `${d.mean >= 0 ? "+" : ""}${fmt(d.mean, digits)}`));
  });
  return root;
}

/* spec: {x: [...], series: [{name, points: [{mean, low, high, n} | null]}]} */
function lineChart(title, spec, color, xLabel, yLabel) {
  const points = spec.series.flatMap((s) => s.points.filter(Boolean));
  const lo = Math.min(...points.map((p) => p.low));
  const hi = Math.max(...points.map((p) => p.high));
  const {root, y} = frame(title, padded(lo, hi), xLabel, yLabel);
  const {width, left, right, height, bottom} = CHART;
  const xs = spec.x;
  const x = linear([xs[0] - 0.5, xs[xs.length - 1] + 0.5], [left, width - right]);
  xs.forEach((v) => root.append(svg("text", {x: x(v), y: height - bottom + 14, class: "tick",
    "text-anchor": "middle"}, tickLabel(v))));
  spec.series.forEach((s, k) => {
    const offset = (k - (spec.series.length - 1) / 2) * 4;
    const path = s.points.map((p, i) => (p ? `${x(xs[i]) + offset},${y(p.mean)}` : null)).filter(Boolean);
    if (path.length > 1) root.append(svg("polyline", {points: path.join(" "), class: "line",
      stroke: color(s.name)}));
    s.points.forEach((p, i) => {
      if (!p) return;
      errorBar(root, x(xs[i]) + offset, y(p.low), y(p.high), 3);
      root.append(svg("circle", {cx: x(xs[i]) + offset, cy: y(p.mean), r: 3.5, fill: color(s.name)},
        svg("title", null, `${s.name} @ ${xs[i]}: ${fmt(p.mean)} [${fmt(p.low)}, ${fmt(p.high)}], n=${p.n}`)));
    });
  });
  legend(root, spec.series.map((s) => s.name), color);
  return root;
}

/* spec: {edges: [...], series: [{name, counts, total}]}; several series are shown as shares
 * (% of each series) so a small series can be compared with a large one. */
function histChart(title, spec, color, xLabel) {
  const share = spec.series.length > 1;
  const heights = spec.series.map((s) => s.counts.map((c) => (share ? (100 * c) / Math.max(s.total, 1) : c)));
  const top = Math.max(...heights.flat(), 1);
  const {root, y} = frame(title, [0, top * 1.08], xLabel, share ? "% of replies" : "count");
  const {width, left, right, height, bottom} = CHART;
  const edges = spec.edges;
  const x = linear([edges[0], edges[edges.length - 1]], [left, width - right]);
  const per = spec.series.length;
  heights.forEach((values, k) => values.forEach((v, i) => {
    const w = (x(edges[i + 1]) - x(edges[i])) / per;
    const s = spec.series[k];
    root.append(svg("rect", {x: x(edges[i]) + k * w + 0.5, y: y(v), width: Math.max(w - 1, 0.5),
      height: Math.max(y(0) - y(v), 0), fill: color(s.name), class: "bar"},
    svg("title", null, `${s.name}: ${s.counts[i]} in [${fmt(edges[i], 3)}, ${fmt(edges[i + 1], 3)})`)));
  }));
  for (const t of niceTicks(edges[0], edges[edges.length - 1], 6)) {
    root.append(svg("text", {x: x(t), y: height - bottom + 14, class: "tick", "text-anchor": "middle"},
      tickLabel(t)));
  }
  if (per > 1) legend(root, spec.series.map((s) => s.name), color);
  return root;
}

/* A figure card: the chart, or a note when there is nothing to plot. */
function chartCard(make, spec) {
  return h("figure", {class: "card chart-card"}, spec ? make(spec) : h("p", {class: "muted"}, "no data"));
}
