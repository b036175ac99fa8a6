/* zmr dashboard: polls the coordinator's JSON API and draws it with plain DOM and SVG.
   The same file runs inside a self-contained report (window.ZMR_REPORT), where it makes no request.
   Rule: server data only ever reaches the page as text nodes or attribute values, never as markup. */
(() => {
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "zmr-token";
const AUTH_TEXT = "This dashboard needs its token: open the URL that zmr printed (it ends in ?token=...).";
const JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled"];
const WORKER_STATES = ["idle", "busy", "dead", "awaited"];
const OUTCOMES = ["running", "ok", "failed", "lost", "cancelled"];

/* ---------- DOM helpers ---------- */

function build(ns, tag, attrs, kids) {
  const n = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (typeof v === "function") n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat(Infinity)) {
    if (k == null || k === false) continue;
    n.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return n;
}
const h = (tag, attrs, ...kids) => build(null, tag, attrs, kids);
const s = (tag, attrs, ...kids) => build(SVGNS, tag, attrs, kids);

// Server strings end up in class names; keep them to a known set so CSS stays predictable.
const known = (v, list) => (list.includes(v) ? v : "other");

/* Rebuilding everything each second would drop text selections (tracebacks are copied from here),
   open <details> and focus. keep() reuses a node while its inputs are unchanged, and patch() only
   touches children that really changed. */
function keeper() {
  const memo = new Map();
  return (key, deps, make) => {
    const sig = JSON.stringify(deps);
    const old = memo.get(key);
    if (old && old.sig === sig) return old.node;
    const node = make();
    memo.set(key, { sig, node });
    return node;
  };
}
function patch(parent, nodes) {
  nodes = nodes.filter(Boolean);
  nodes.forEach((n, i) => {
    const cur = parent.childNodes[i];
    if (cur !== n) cur ? parent.insertBefore(n, cur) : parent.appendChild(n);
  });
  while (parent.childNodes.length > nodes.length) parent.removeChild(parent.lastChild);
}

/* ---------- formatting ---------- */

const pad = (n) => String(n).padStart(2, "0");
const num = (n) => Number(n || 0).toLocaleString("en-US");

function fmtBytes(n) {
  n = Number(n) || 0;
  if (n < 1000) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB", "PB"];
  let i = -1;
  do { n /= 1000; i++; } while (n >= 1000 && i < units.length - 1);
  return `${n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)} ${units[i]}`;
}
function fmtDur(t) {
  if (t == null || !isFinite(t)) return "—";
  t = Math.max(0, t);
  if (t < 10) return `${t.toFixed(1)} s`;
  if (t < 60) return `${Math.floor(t)} s`;
  if (t < 3600) return `${Math.floor(t / 60)}m ${pad(Math.floor(t % 60))}s`;
  return `${Math.floor(t / 3600)}h ${pad(Math.floor((t % 3600) / 60))}m`;
}
const fmtPrecise = (t) => (t < 10 ? `${Math.max(0, t).toFixed(2)} s` : fmtDur(t));
function fmtClock(ep) {
  const d = new Date(ep * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fmtDate(ep) {
  if (ep == null) return "—";
  const d = new Date(ep * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(ep)}`;
}
const fmtVal = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v));
const natural = (a, b) => String(a).localeCompare(String(b), undefined, { numeric: true });

/* ---------- job arithmetic (all ages use the server's `now`, never the browser clock) ---------- */

function elapsedOf(job, now) {
  if (job.started == null) return null;
  return Math.max(0, (job.finished ?? now) - job.started);
}
function elapsedText(job, now) {
  const e = elapsedOf(job, now);
  return e != null ? fmtDur(e) : job.state === "queued" ? "queued" : "—";
}
function etaText(job, now) {
  if (job.state !== "running") return "";
  const total = (job.maps_total || 0) + (job.reduces_total || 0);
  const f = total ? ((job.maps_done || 0) + (job.reduces_done || 0)) / total : 0;
  const e = elapsedOf(job, now);
  return f > 0 && e != null ? fmtDur((e * (1 - f)) / f) : "—";
}
// x = 0 on every chart: the job's start, or failing that the first thing that happened.
function jobT0(job) {
  if (job.started != null) return job.started;
  const ts = [...(job.attempts || []).map((a) => a.started), ...(job.timeline || []).map((p) => p.t)]
    .filter((t) => t != null);
  return ts.length ? Math.min(...ts) : job.submitted || 0;
}

/* ---------- small widgets ---------- */

const badge = (state, list) => h("span", { class: `badge st-${known(state, list)}` }, state);

function progress(kind, done, total) {
  done = done || 0; total = total || 0;
  const fill = h("div", { class: "fill" });
  fill.style.width = `${total > 0 ? Math.min(100, (done / total) * 100).toFixed(1) : 0}%`;
  return h("div", { class: `pbar pbar-${kind}` },
    h("span", { class: "plabel" }, kind),
    h("div", { class: "bar", role: "progressbar", "aria-label": `${kind} tasks done`,
      "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": done }, fill),
    h("span", { class: `ptext progress-${kind}s` }, `${done}/${total}`));
}
const progressPair = (j) => [progress("map", j.maps_done, j.maps_total),
  progress("reduce", j.reduces_done, j.reduces_total)];

const card = (title, cls, ...body) => h("section", { class: `card ${cls || ""}` }, title && h("h2", null, title), body);
const tableWrap = (head, rows) => h("div", { class: "table-wrap" },
  h("table", null, h("thead", null, h("tr", null, head.map((c) => h("th", null, c)))), h("tbody", null, rows)));
const jobLink = (id) => h("a", { href: `#/jobs/${encodeURIComponent(id)}` }, id);

function warningItem(w) {
  const lvl = known(w.level, ["warning", "error"]);
  const when = new Date(w.t * 1000);
  return h("li", { class: `warn lvl-${lvl}` },
    h("time", { datetime: isNaN(when) ? null : when.toISOString() }, fmtClock(w.t)),
    h("span", { class: `badge lv-${lvl}` }, w.level),
    h("strong", null, w.event),
    Object.entries(w.fields || {}).map(([k, v]) => h("code", { class: "kv" }, `${k}=${fmtVal(v)}`)));
}

/* ---------- overview ---------- */

// A multi-step job counts the tasks, bytes and leases of all its steps, as `zmr status` does.
const COUNTED = ["maps_done", "maps_total", "reduces_done", "reduces_total", "bytes_shuffled", "leases"];
function overall(j) {
  if (!j.steps || !j.steps.length) return j;
  const sums = Object.fromEntries(COUNTED.map((k) => [k, j.steps.reduce((n, st) => n + (st[k] || 0), 0)]));
  return { ...j, ...sums };
}

function jobsTable(jobs, now) {
  if (!jobs.length) return h("p", { class: "note" }, "No jobs submitted yet.");
  const rows = [...jobs].sort((a, b) => (b.submitted || 0) - (a.submitted || 0)).map(overall).map((j) =>
    h("tr", { class: "job-row", "data-job": j.job_id, "data-state": j.state },
      h("td", null, jobLink(j.job_id)),
      h("td", null, j.app_name, stepsNote(j)),
      h("td", null, badge(j.state, JOB_STATES)),
      h("td", { class: "progress-cell" }, progressPair(j)),
      h("td", { class: "num" }, fmtBytes(j.bytes_shuffled)),
      h("td", { class: "num" }, elapsedText(j, now)),
      h("td", { class: "num" }, etaText(j, now)),
      h("td", { class: "num" }, num(j.records_out))));
  return tableWrap(["Job", "App", "State", "Progress", "Shuffled", "Elapsed", "Time left", "Records out"], rows);
}

// A multi-step job is listed once, as its last step (the job its client knows); its steps are its page's.
const stepsNote = (j) => (j.steps && j.steps.length ? h("span", { class: "muted steps-note" }, ` · ${j.steps.length} steps`) : null);

function stepsTable(steps) {
  const rows = steps.map((st) => h("tr", { class: "step-row", "data-step": st.name, "data-job": st.job_id, "data-state": st.state },
    h("td", null, st.name),
    h("td", { class: "num" }, st.wave),
    h("td", null, jobLink(st.job_id)),
    h("td", null, badge(st.state, JOB_STATES)),
    h("td", { class: "progress-cell" }, progressPair(st)),
    h("td", { class: "num" }, fmtBytes(st.bytes_shuffled)),
    h("td", { class: "num" }, num(st.leases))));
  return tableWrap(["Step", "Wave", "Job", "State", "Progress", "Shuffled", "Leases"], rows);
}

function workerTask(task) {
  if (!task) return h("span", { class: "muted" }, "—");
  const cut = task.indexOf("/");
  return cut > 0 ? [jobLink(task.slice(0, cut)), task.slice(cut)] : task;
}

function workersTable(workers, now) {
  if (!workers.length) return h("p", { class: "note" }, "No workers have registered.");
  const rows = [...workers].sort((a, b) => natural(a.worker_id, b.worker_id)).map((w) => {
    const age = Math.max(0, now - (w.last_heartbeat || 0));
    return h("tr", { class: "worker-row", "data-worker": w.worker_id, "data-state": w.state },
      h("td", null, w.worker_id),
      h("td", null, h("code", null, w.data_addr)),
      h("td", null, badge(w.state, WORKER_STATES)),
      h("td", { class: "num" }, w.last_heartbeat == null ? "—" : age < 60 ? `${age.toFixed(1)} s ago` : `${fmtDur(age)} ago`),
      h("td", null, workerTask(w.task)),
      h("td", { class: "num" }, num(w.leases)),
      h("td", { class: "num" }, fmtBytes(w.rss)),
      h("td", { class: "num" }, fmtBytes(w.bytes_in)),
      h("td", { class: "num" }, fmtBytes(w.bytes_out)));
  });
  return tableWrap(["Worker", "Address", "State", "Heartbeat", "Task", "Leases", "Memory", "Bytes in", "Bytes out"], rows);
}

function overviewView(st, keep) {
  if (!st) return [h("p", { class: "note" }, "Waiting for the coordinator…")];
  const jobs = st.jobs || [], workers = st.workers || [], warns = st.warnings || [];
  const dead = workers.filter((w) => w.state === "dead").length;
  return [
    keep("jobs", [jobs, st.now], () => card(`Jobs (${jobs.length})`, "", jobsTable(jobs, st.now))),
    keep("workers", [workers, st.now], () => card(
      `Workers (${workers.length}${dead ? `, ${dead} dead` : ""})`, "", workersTable(workers, st.now))),
    keep("warnings", [warns], () => card("Recent warnings", "",
      warns.length ? null : h("p", { class: "note" }, "Nothing to report."),
      h("ul", { id: "warnings", class: "warn-list" }, [...warns].reverse().map(warningItem)))),
  ];
}

/* ---------- charts ---------- */

const r1 = (v) => Math.round(v * 10) / 10;
const TSTEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
function niceStep(span, n) {
  const raw = span / Math.max(1, n);
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}
function timeStep(span, n) {
  const raw = span / Math.max(1, n);
  return raw < 1 ? niceStep(span, n) : TSTEPS.find((x) => x >= raw) || niceStep(span, n);
}
function tickLabel(v, st) {
  if (st >= 60) { const m = Math.round(v / 60); return m >= 60 && m % 60 === 0 ? `${m / 60}h` : `${m}m`; }
  const d = st < 1 ? Math.max(0, -Math.floor(Math.log10(st) + 1e-9)) : 0;
  return `${v.toFixed(d)}s`;
}
// Vertical grid lines with second labels under the plot; shared by both charts so they line up.
function xAxis(sx, lo, hi, yTop, yBot, plotW) {
  const st = timeStep(hi - lo, Math.max(2, Math.floor(plotW / 90)));
  const out = [];
  for (let i = Math.ceil(lo / st - 1e-9); i * st <= hi + st * 1e-6; i++) {
    const x = r1(sx(i * st));
    out.push(s("line", { class: "grid", x1: x, x2: x, y1: yTop, y2: yBot }),
      s("text", { class: "tick", x, y: yBot + 14, "text-anchor": "middle" }, tickLabel(i * st, st)));
  }
  return out;
}
function stripes(id, bg, fg, w) {
  return s("pattern", { id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
    s("rect", { width: 6, height: 6, fill: bg }), s("rect", { width: w, height: 6, fill: fg }));
}
const swatch = (cls, label) => h("span", { class: "lg" }, h("i", { class: `sw ${cls}` }), label);

function timelineView(job, now, width) {
  const atts = job.attempts || [];
  const out = [];
  if (!atts.length) out.push(h("p", { class: "note" }, "no attempts yet"));
  else {
    const t0 = jobT0(job);
    // A finished job's unterminated attempts stop at its end, so the chart does not keep growing.
    const stop = job.finished ?? now;
    const end = (a) => a.ended ?? stop;
    const workers = [...new Set(atts.map((a) => a.worker || "?"))].sort(natural);
    const labelW = Math.min(150, Math.max(48, Math.max(...workers.map((w) => w.length)) * 7 + 14));
    const lane = 24, top = 6, W = width, plotW = W - labelW - 14, H = top + workers.length * lane + 22;
    const lo = Math.min(0, ...atts.map((a) => a.started - t0));
    let hi = Math.max(...atts.map((a) => end(a) - t0));
    if (job.finished == null && job.state === "running") hi = Math.max(hi, now - t0);
    if (hi <= lo) hi = lo + 0.001;
    const sx = (t) => labelW + ((t - lo) / (hi - lo)) * plotW;
    const yBot = top + workers.length * lane;
    const kids = [s("defs", null, stripes("zmr-run-map", "#93c5fd", "#dbeafe", 3),
      stripes("zmr-run-reduce", "#c4b5fd", "#ede9fe", 3), stripes("zmr-failed", "#fee2e2", "#dc2626", 2))];
    workers.forEach((w, i) => {
      const y = top + i * lane;
      if (i % 2 === 0) kids.push(s("rect", { class: "lane", x: labelW, y, width: plotW, height: lane }));
      kids.push(s("text", { class: "lane-label", x: labelW - 8, y: y + lane / 2 + 4, "text-anchor": "end" },
        w.length > 20 ? `${w.slice(0, 19)}…` : w, s("title", null, w)));
    });
    kids.push(...xAxis(sx, lo, hi, top, yBot, plotW));
    kids.push(s("line", { class: "axis", x1: labelW, x2: labelW + plotW, y1: yBot, y2: yBot }));
    for (const a of atts) {
      const kind = known(a.kind, ["map", "reduce"]), outcome = known(a.outcome, OUTCOMES);
      const x = sx(a.started - t0), wdt = Math.max(2, sx(end(a) - t0) - x);
      const y = top + workers.indexOf(a.worker || "?") * lane + 5, bh = lane - 10;
      const tip = `${a.kind}-${a.task} attempt ${a.number} on ${a.worker}: ${fmtPrecise(end(a) - a.started)}, ${a.outcome}${a.backup ? ", backup" : ""}`;
      kids.push(s("rect", { class: `attempt attempt-${kind} outcome-${outcome}${a.backup ? " backup" : ""}`,
        x: r1(x), y, width: r1(wdt), height: bh, rx: 2 }, s("title", null, tip)));
      // Backups carry an amber cap (and a "B" when there is room) so speculation is visible at a glance.
      if (a.backup) {
        kids.push(s("rect", { class: "backup-mark", x: r1(x), y: y - 3, width: r1(wdt), height: 3 }, s("title", null, tip)));
        if (wdt >= 14) kids.push(s("text", { class: "backup-b", x: r1(x + 3), y: y + bh - 3 }, "B"));
      }
    }
    if (job.finished == null && job.state === "running") {
      const x = r1(sx(now - t0));
      kids.push(s("line", { class: "now-line", x1: x, x2: x, y1: top, y2: yBot }));
    }
    out.push(h("div", { class: "chart-wrap" }, s("svg", { id: "timeline", class: "chart", viewBox: `0 0 ${W} ${H}`,
      width: W, height: H, role: "img", "aria-label": `Task attempts of ${job.job_id} by worker` }, kids)));
    out.push(h("div", { class: "legend" }, swatch("sw-map", "map"), swatch("sw-reduce", "reduce"),
      swatch("sw-running", "running"), swatch("sw-failed", "failed"), swatch("sw-lost", "lost"),
      swatch("sw-cancelled", "cancelled"), swatch("sw-backup", "backup attempt")));
  }
  if (job.attempts_dropped > 0) out.push(h("p", { class: "note" }, `${num(job.attempts_dropped)} later attempts not shown`));
  return card("Task timeline", "", out);
}

function stepPath(pts, sx, sy, xEnd) {
  let d = `M${r1(sx(pts[0].x))} ${r1(sy(pts[0].v))}`;
  for (const p of pts.slice(1)) d += `H${r1(sx(p.x))}V${r1(sy(p.v))}`;
  return `${d}H${r1(sx(xEnd))}`;
}

function leaseView(job, now, width) {
  const tl = job.timeline || [];
  const title = "Live leases (intermediate data held)";
  if (!tl.length) return card(title, "", h("p", { class: "note" }, "no lease samples yet"));
  const t0 = jobT0(job);
  const peak = Math.max(0, ...tl.map((p) => p.leases || 0)), last = tl[tl.length - 1].leases || 0;
  const lo = Math.min(0, tl[0].t - t0);
  let hi = tl[tl.length - 1].t - t0;
  if (job.finished == null && job.state === "running") hi = Math.max(hi, now - t0);
  if (hi <= lo) hi = lo + 1;
  const W = width, H = 240, L = 46, R = 48, T = 22, B = 28, plotW = W - L - R, yBot = H - B;
  const yMax = Math.max(1, peak);
  const sx = (t) => L + ((t - lo) / (hi - lo)) * plotW;
  const sy = (v) => yBot - (v / yMax) * (yBot - T);
  const sp = (f) => yBot - f * (yBot - T);
  const kids = [];

  // Map phase: from 0 to the last map's finish, or still open while maps are outstanding.
  const maps = (job.tasks || []).filter((t) => t.kind === "map");
  if (maps.length) {
    const allDone = maps.every((t) => t.finished != null);
    const endT = allDone ? Math.max(...maps.map((t) => t.finished)) - t0 : hi;
    const x0 = sx(Math.max(lo, 0)), x1 = sx(Math.min(hi, Math.max(0, endT)));
    if (x1 > x0) kids.push(s("rect", { class: "map-phase", x: r1(x0), y: T, width: r1(x1 - x0), height: yBot - T }),
      s("text", { class: "phase-label", x: r1(x0 + 4), y: T + 12 }, "map phase"));
  }
  kids.push(...xAxis(sx, lo, hi, T, yBot, plotW));
  const yst = Math.max(1, Math.round(niceStep(yMax, 4)));
  for (let v = 0; v <= yMax + 1e-9; v += yst) {
    kids.push(s("line", { class: "grid", x1: L, x2: L + plotW, y1: r1(sy(v)), y2: r1(sy(v)) }),
      s("text", { class: "tick", x: L - 6, y: r1(sy(v)) + 4, "text-anchor": "end" }, v));
  }
  for (const f of [0, 0.5, 1]) {
    kids.push(s("text", { class: "tick tick-pct", x: L + plotW + 6, y: r1(sp(f)) + 4 }, `${f * 100}%`));
  }
  kids.push(s("line", { class: "axis", x1: L, x2: L, y1: T, y2: yBot }),
    s("line", { class: "axis", x1: L + plotW, x2: L + plotW, y1: T, y2: yBot }),
    s("line", { class: "axis", x1: L, x2: L + plotW, y1: yBot, y2: yBot }),
    s("text", { class: "axis-title", x: L, y: T - 8, "text-anchor": "middle" }, "leases"),
    s("text", { class: "axis-title", x: L + plotW, y: T - 8, "text-anchor": "middle" }, "done"));

  const pts = (key, scale) => tl.map((p) => ({ x: p.t - t0, v: scale(p[key] || 0) }));
  for (const [key, total, cls] of [["maps_done", job.maps_total, "pct-maps"], ["reduces_done", job.reduces_total, "pct-reduces"]]) {
    if (total > 0) kids.push(s("path", { class: `pct-line ${cls}`, d: stepPath(pts(key, (v) => v / total), sx, sp, hi) }));
  }
  const lp = pts("leases", (v) => v);
  const line = stepPath(lp, sx, sy, hi);
  kids.push(s("path", { class: "lease-area", d: `${line}V${yBot}H${r1(sx(lp[0].x))}Z` }),
    s("path", { class: "lease-line", d: line }));

  return card(title, "",
    h("div", { class: "chart-wrap" }, s("svg", { id: "lease-graph", class: "chart", viewBox: `0 0 ${W} ${H}`,
      width: W, height: H, role: "img", "aria-label": title, "data-last-leases": last, "data-peak-leases": peak }, kids)),
    h("div", { class: "legend" }, swatch("sw-leases", "leases held"), swatch("sw-pmaps", "maps done %"),
      swatch("sw-preduces", "reduces done %"), maps.length ? swatch("sw-phase", "map phase") : null),
    h("p", { class: "lease-summary" }, `peak ${num(peak)} leases, ${num(last)} now`));
}

/* ---------- job page: (document) -> DOM, shared by the live page and the static report ---------- */

function jobView(doc, opts, keep) {
  const job = (doc.jobs || [])[0];
  if (!job) return h("p", { class: "note" }, "This document holds no job.");
  const now = doc.now;
  const live = job.finished == null ? now : 0; // finished jobs stop depending on the clock
  const root = keep("root", [job.job_id], () => h("section", { id: "job" }));
  root.setAttribute("data-job", job.job_id);
  root.setAttribute("data-state", job.state);

  const head = keep("head", [job.job_id], () => h("div", { class: "job-head" }));
  const cancellable = !opts.report && opts.canCancel && (job.state === "queued" || job.state === "running");
  const cr = opts.cancel && opts.cancel.jobId === job.job_id ? opts.cancel : null;
  patch(head, [
    keep("title", [job.job_id, job.app_name, job.state, job.head], () => h("div", { class: "job-title" },
      h("h1", null, job.job_id), badge(job.state, JOB_STATES), h("span", { class: "muted" }, job.app_name),
      job.head ? h("span", { id: "step-of", class: "muted" }, "a step of ", jobLink(job.head)) : null)),
    opts.report ? null : keep("actions", [cancellable, cr], () => h("div", { class: "actions" },
      cancellable ? h("button", { id: "cancel-job", type: "button", disabled: !!(cr && cr.pending),
        onclick: () => opts.onCancel(job.job_id) }, "Cancel job") : null,
      cr ? h("span", { id: "cancel-result", class: cr.error ? "bad" : "muted" }, cr.text) : null)),
  ]);

  const fact = (k, v) => [h("dt", null, k), h("dd", null, v)];
  // The summary depends on the scalar fields and, for a multi-step job, on its steps' counts (`overall`);
  // the long lists have their own sections.
  const { tasks, partitions, timeline, attempts, steps, ...scalars } = job;
  const whole = overall(job);
  const warns = (doc.warnings || []).filter((w) => w.fields && w.fields.job === job.job_id);
  patch(root, [
    opts.report
      ? keep("rnote", [now], () => h("p", { class: "report-note" }, `Report made ${fmtDate(now)}`))
      : keep("back", [], () => h("a", { class: "back", href: "#/" }, "← All jobs")),
    head,
    keep("summary", [scalars, live, steps], () => card(null, "job-summary",
        h("dl", { class: "facts" },
          fact("Output", h("code", null, job.output_dir || "—")),
          fact("Format", `${job.output_format || "—"}${job.compressed_inputs ? `, ${job.compressed_inputs} compressed inputs` : ""}`),
          fact("Submitted", fmtDate(job.submitted)),
          fact("Started", fmtDate(job.started)),
          fact("Finished", fmtDate(job.finished))),
        h("div", { class: "job-progress" }, progressPair(whole),
          h("dl", { class: "facts" },
            fact("Elapsed", elapsedText(job, now)),
            job.state === "running" ? fact("Time left", etaText(whole, now)) : null,
            fact("Shuffled", fmtBytes(whole.bytes_shuffled)),
            fact("Records out", num(job.records_out)),
            fact("Leases held", num(whole.leases)))))),
    steps && steps.length ? keep("steps", [steps], () => card(`Steps (${steps.length})`, "steps",
      h("p", { class: "note" }, "Each step runs as a job of its own, streamed into the steps that read it; "
        + "this page's charts are the last step's."),
      stepsTable(steps))) : null,
    job.state === "failed" ? keep("error", [job.error], () => card("Why it failed", "error-box",
      h("pre", { id: "job-error" }, job.error || "(the coordinator recorded no error message)"))) : null,
    keep("timeline", [job.attempts, job.attempts_dropped, job.started, job.state, live, opts.width],
      () => timelineView(job, now, opts.width)),
    keep("leases", [job.timeline, job.tasks, job.state, job.maps_total, job.reduces_total, live, opts.width],
      () => leaseView(job, now, opts.width)),
    keep("parts", [job.partitions], () => {
      const parts = job.partitions || [];
      const d = h("details", { class: "card parts", open: !!opts.ui.partsOpen },
        h("summary", null, `Partitions (${parts.length})`),
        parts.length ? tableWrap(["Partition", "Owner", "Bytes in", "Batches"], parts.map((p) =>
          h("tr", null, h("td", { class: "num" }, p.partition), h("td", null, p.owner),
            h("td", { class: "num" }, fmtBytes(p.bytes_in)), h("td", { class: "num" }, num(p.batches_in)))))
          : h("p", { class: "note" }, "No partition data yet."));
      // Remember the reader's choice: the table is rebuilt whenever bytes arrive.
      d.addEventListener("toggle", () => { opts.ui.partsOpen = d.open; });
      return d;
    }),
    warns.length ? keep("jwarn", [warns], () => card("Coordinator warnings for this job", "",
      h("ul", { class: "warn-list" }, [...warns].reverse().map(warningItem)))) : null,
  ]);
  return root;
}

/* ---------- page shell ---------- */

function start() {
  const app = document.getElementById("app") || document.body.appendChild(h("main", { id: "app" }));
  const top = document.getElementById("topbar") || document.body.insertBefore(h("header", { id: "topbar", class: "topbar" }), app);
  const banners = document.getElementById("banners") || document.body.insertBefore(h("div", { id: "banners" }), app);
  const ui = { partsOpen: false };
  const report = window.ZMR_REPORT;
  let keep = keeper();

  // The chart's drawing width follows the page; below it the wrapper scrolls instead of shrinking text.
  const chartWidth = () => Math.max(560, Math.floor(app.clientWidth - parseFloat(getComputedStyle(app).paddingLeft) * 2 - 34));
  const bar = { brand: h(report ? "span" : "a", { class: "brand", href: report ? null : "#/" }, "zmr"),
    bind: h("span", { class: "bind" }), updated: h("span", { id: "updated", class: "updated" }) };
  patch(top, [bar.brand, bar.bind, bar.updated]);
  const setBind = (c) => { bar.bind.textContent = c && c.bind ? `${c.bind}${c.pid ? ` · pid ${c.pid}` : ""}` : ""; };

  if (report) {
    const draw = () => {
      setBind(report.coordinator);
      bar.updated.textContent = "static report";
      const job = (report.jobs || [])[0];
      document.title = `zmr report · ${job ? job.job_id : "job"}`;
      patch(app, [jobView(report, { report: true, width: chartWidth(), ui }, keep)]);
      document.body.dataset.updated = String(report.now);
    };
    draw();
    let rt = 0;
    window.addEventListener("resize", () => { clearTimeout(rt); rt = setTimeout(draw, 150); });
    return; // a report never touches the network
  }

  let token = null;
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { /* storage may be disabled */ }
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    token = params.get("token");
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* keep it in memory then */ }
    // Keep the secret out of the address bar, history and screenshots.
    params.delete("token");
    const q = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${q ? `?${q}` : ""}${location.hash}`);
  }

  const S = { status: null, job: null, missing: null, lastOk: 0, failed: false, auth: false, cancel: null };
  const route = () => {
    const m = /^#\/jobs\/(.+)$/.exec(location.hash);
    if (!m) return null;
    try { return decodeURIComponent(m[1]); } catch (e) { return m[1]; }
  };
  let jobId = route();

  async function api(path, method) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    // A hung server must not freeze the poll loop.
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 5000);
    try {
      const r = await fetch(path, { method: method || "GET", headers, cache: "no-store", signal: ctl.signal });
      let body = null;
      try { body = await r.json(); } catch (e) { /* not JSON */ }
      return { status: r.status, ok: r.ok, body };
    } finally { clearTimeout(t); }
  }

  async function cancelJob(id) {
    if (!confirm(`Cancel job ${id}? Its running tasks will be stopped.`)) return;
    S.cancel = { jobId: id, text: "cancelling…", pending: true };
    render();
    try {
      const r = await api(`/api/jobs/${encodeURIComponent(id)}/cancel`, "POST");
      S.cancel = r.ok ? { jobId: id, text: `done: job is ${(r.body && r.body.state) || "cancelled"}` }
        : { jobId: id, error: true, text: r.status === 401 ? "refused: this page has no valid token"
          : (r.body && r.body.error) || `failed (HTTP ${r.status})` };
    } catch (e) {
      S.cancel = { jobId: id, error: true, text: `could not reach the coordinator (${e.message || e})` };
    }
    render();
    kick();
  }

  function renderBanners() {
    patch(banners, [
      S.auth ? keep("b-auth", [], () => h("div", { id: "auth-banner", class: "banner banner-error", role: "alert" }, AUTH_TEXT)) : null,
      S.failed && !S.auth ? keep("b-conn", [S.lastOk], () => h("div", { id: "conn-banner", class: "banner banner-warn", role: "status" },
        "Lost contact with the coordinator; retrying every second.",
        S.lastOk ? ` The page shows data from ${fmtClock(S.lastOk / 1000)}.` : "")) : null,
    ]);
  }

  function renderUpdated() {
    const el = bar.updated;
    el.classList.toggle("bad", S.failed);
    if (S.failed) el.textContent = "disconnected";
    else if (!S.lastOk) el.textContent = "connecting…";
    else el.textContent = `updated ${Math.max(0, Math.round((Date.now() - S.lastOk) / 1000))}s ago`;
    el.title = S.lastOk ? `last update at ${fmtClock(S.lastOk / 1000)}` : "";
  }

  function render() {
    const coord = (S.job && S.job.coordinator) || (S.status && S.status.coordinator) || null;
    setBind(coord);
    renderBanners();
    renderUpdated();
    if (jobId == null) {
      const running = S.status ? (S.status.jobs || []).filter((j) => j.state === "running").length : 0;
      document.title = running ? `zmr · ${running} running` : "zmr dashboard";
      patch(app, overviewView(S.status, keep));
      return;
    }
    const back = keep("back0", [], () => h("a", { class: "back", href: "#/" }, "← All jobs"));
    if (S.missing) {
      patch(app, [back, keep("missing", [S.missing], () => h("p", { class: "note bad" }, S.missing))]);
    } else if (!S.job) {
      patch(app, [back, keep("loading", [], () => h("p", { class: "note" }, "Loading job…"))]);
    } else {
      const j = (S.job.jobs || [])[0];
      document.title = j ? `zmr · ${j.job_id} (${j.state})` : "zmr dashboard";
      patch(app, [jobView(S.job, { width: chartWidth(), ui, cancel: S.cancel, onCancel: cancelJob,
        canCancel: !!(coord && coord.can_cancel) }, keep)]);
    }
  }

  async function poll() {
    const id = jobId;
    const [st, jb] = await Promise.allSettled([api("/api/status"), id != null ? api(`/api/jobs/${encodeURIComponent(id)}`) : null]);
    const res = (p) => (p.status === "fulfilled" ? p.value : { status: 0, ok: false, body: null });
    const a = res(st), b = id != null ? res(jb) : null;
    S.auth = a.status === 401 || (b != null && b.status === 401);
    S.failed = !a.ok || (b != null && !b.ok && b.status !== 404);
    let now = null;
    if (a.ok && a.body) { S.status = a.body; now = a.body.now; }
    if (b != null && id === jobId) { // ignore answers for a page the reader already left
      if (b.ok && b.body) { S.job = b.body; S.missing = null; if (b.body.now > now) now = b.body.now; }
      else if (b.status === 404) { S.job = null; S.missing = (b.body && b.body.error) || `no job ${id}`; }
    }
    if (!S.failed) S.lastOk = Date.now();
    render();
    // Set last, so a test waiting on it sees the DOM of this very poll.
    if (!S.failed && now != null) document.body.dataset.updated = String(now);
  }

  let timer = 0, busy = false, again = false;
  async function kick() {
    clearTimeout(timer);
    if (busy) { again = true; return; }
    busy = true;
    try { await poll(); } catch (e) { console.error("zmr dashboard:", e); }
    busy = false;
    if (again) { again = false; kick(); return; }
    timer = setTimeout(kick, 1000);
  }

  window.addEventListener("hashchange", () => {
    const id = route();
    if (id === jobId) return;
    jobId = id;
    S.job = null; S.missing = null; ui.partsOpen = false;
    keep = keeper();
    window.scrollTo(0, 0);
    render();
    kick();
  });
  let rt = 0;
  window.addEventListener("resize", () => { clearTimeout(rt); rt = setTimeout(render, 150); });
  setInterval(renderUpdated, 500);
  render();
  kick();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
})();
