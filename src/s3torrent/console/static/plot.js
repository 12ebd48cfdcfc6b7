// A line chart as inline SVG: time on x, one line per series, a legend. Enough for the
// console's few plots; no library to keep up to date.

const NS = "http://www.w3.org/2000/svg";
const PER_ROW = 3;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// series: [{name, points: [[epochMillis, value], ...]}]; format: value -> label.
export function lineChart(series, { width = 640, height: plotHeight = 220, format = String } = {}) {
  // The legend wraps, PER_ROW entries a row, below the plot.
  const legendRows = Math.max(1, Math.ceil(series.length / PER_ROW));
  const height = plotHeight + (legendRows - 1) * 16;
  const pad = { left: 80, right: 10, top: 10, bottom: 24 + legendRows * 16 };
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const points = series.flatMap((s) => s.points);
  if (points.length === 0) {
    svg.appendChild(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no data yet"));
    return svg;
  }
  const xs = points.map((p) => p[0]);
  // One instant only: give it an hour either side, so the point sits in the middle.
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const x0 = hi === lo ? lo - 3600_000 : lo;
  const x1 = hi === lo ? hi + 3600_000 : hi;
  const y1 = Math.max(1, ...points.map((p) => p[1]));
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const sx = (t) => pad.left + ((t - x0) / (x1 - x0)) * w;
  const sy = (v) => pad.top + h - (v / y1) * h;
  svg.appendChild(el("line", { x1: pad.left, y1: pad.top + h, x2: pad.left + w, y2: pad.top + h, class: "axis" }));
  svg.appendChild(el("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: pad.top + h, class: "axis" }));
  for (const v of [0, y1 / 2, y1]) {
    svg.appendChild(el("text", { x: pad.left - 4, y: sy(v) + 4, "text-anchor": "end" }, format(v)));
  }
  for (const [t, anchor] of [[x0, "start"], [x1, "end"]]) {
    const label = new Date(t).toISOString().slice(5, 16).replace("T", " ") + " UTC";
    svg.appendChild(el("text", { x: sx(t), y: pad.top + h + 16, "text-anchor": anchor }, label));
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const sorted = [...s.points].sort((a, b) => a[0] - b[0]);
    const d = sorted.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`);
    svg.appendChild(el("path", { d: d.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of sorted) {
      svg.appendChild(el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color }));
    }
    const lx = pad.left + (i % PER_ROW) * 180;
    const ly = height - 14 - (legendRows - 1 - Math.floor(i / PER_ROW)) * 16;
    svg.appendChild(el("rect", { x: lx, y: ly, width: 10, height: 10, fill: color }));
    svg.appendChild(el("text", { x: lx + 14, y: ly + 9 }, s.name));
  });
  return svg;
}
