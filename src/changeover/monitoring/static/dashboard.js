// changeover dashboard: reads the management API with the token kept in localStorage and
// redraws every 2 s. No libraries: charts are inline SVG built here.
"use strict";

const TOKEN_KEY = "changeover.token";
const MODEL_KEY = "changeover.model";
const RANGE_KEY = "changeover.range";
const REFRESH_MS = 2000;
const SLOW_EVERY = 5; // drift is heavier: every 5th refresh (10 s)
const LONG_RANGES = new Set(["6h", "24h"]); // their charts move slowly: redrawn with drift
const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#ff7b72", "#39c5cf", "#e3b341"];

const S = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  model: localStorage.getItem(MODEL_KEY) || null,
  range: localStorage.getItem(RANGE_KEY) || "15m",
  tick: 0,
  timer: null,
  busy: false,
  open: new Set(), // <details> left open by the person, kept across redraws
  drift: null,
  driftHistory: null,
  series: null,
  driftModel: null,
};

class AuthFailed extends Error {
  constructor(status) { super(status === 401 ? "a token is needed" : "the token was refused"); this.status = status; }
}

// ---- helpers ------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return esc(value);
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(2);
  return String(Number(value.toFixed(digits)));
}

function pct(value) { return value === null || value === undefined ? "–" : `${fmt(value * 100, 2)}%`; }

function time(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "–"; }

function stamp(t) { return t ? new Date(t * 1000).toLocaleString() : "–"; }

function colour(version) { return PALETTE[(Number(version) - 1 + PALETTE.length * 100) % PALETTE.length] || PALETTE[0]; }

function badge(text, cls) { return `<span class="badge ${esc(cls || text)}">${esc(text)}</span>`; }

async function api(path) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${S.token}` }, cache: "no-store" });
  if (response.status === 401 || response.status === 403) throw new AuthFailed(response.status);
  if (!response.ok) {
    const error = new Error(`${path}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

async function optional(path) {
  try { return await api(path); } catch (error) {
    if (error instanceof AuthFailed) throw error;
    return { __error: error.status || String(error) };
  }
}

function details(key, summary, body) {
  const open = S.open.has(key) ? " open" : "";
  return `<details data-key="${esc(key)}"${open}><summary>${summary}</summary>${body}</details>`;
}

function json(value) { return `<pre>${esc(JSON.stringify(value, null, 2))}</pre>`; }

// ---- token --------------------------------------------------------------------------------

function askToken(message) {
  stop();
  $("token-dialog").hidden = false;
  const error = $("token-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("token-input").value = "";
  $("token-input").focus();
  $("conn").textContent = "no token";
}

function onTokenSubmit(event) {
  event.preventDefault();
  S.token = $("token-input").value.trim();
  if (!S.token) return;
  localStorage.setItem(TOKEN_KEY, S.token);
  $("token-dialog").hidden = true;
  start();
}

// ---- loop ---------------------------------------------------------------------------------

function stop() { if (S.timer) clearTimeout(S.timer); S.timer = null; }

function start() { stop(); S.tick = 0; refresh(); }

async function refresh() {
  if (S.busy) return;
  S.busy = true;
  try {
    await load();
    $("conn").textContent = `live · ${new Date().toLocaleTimeString()}`;
    $("conn").className = "muted";
  } catch (error) {
    if (error instanceof AuthFailed) {
      S.busy = false;
      askToken(`${error.message} (HTTP ${error.status}); enter the management token`);
      return;
    }
    $("conn").textContent = `error: ${error.message || error}`;
    $("conn").className = "error";
  }
  S.busy = false;
  S.tick += 1;
  S.timer = setTimeout(refresh, REFRESH_MS);
}

async function load() {
  const status = await api("/api/status");
  const models = (status.models || []).map((m) => m.model);
  $("empty").hidden = models.length > 0;
  if (!models.includes(S.model)) S.model = models[0] || null;
  renderModels(models);
  if (!S.model) return;
  const m = encodeURIComponent(S.model);
  const entry = status.models.find((x) => x.model === S.model);
  const slow = S.tick % SLOW_EVERY === 0 || S.driftModel !== S.model;
  const [detail, rollouts, series, events, alerts, online, drift, history] = await Promise.all([
    optional(`/api/models/${m}`),
    optional(`/api/rollouts?model=${m}`),
    slow || !LONG_RANGES.has(S.range) ? optional(`/api/models/${m}/timeseries?since=${encodeURIComponent(S.range)}`)
      : Promise.resolve(S.series),
    optional(`/api/events?model=${m}&limit=40`),
    optional("/api/alerts"),
    optional(`/api/models/${m}/online?window=1h`),
    slow ? optional(`/api/models/${m}/drift?window=1h`) : Promise.resolve(S.drift),
    slow ? optional(`/api/models/${m}/drift/history?since=${encodeURIComponent(S.range)}`) : Promise.resolve(S.driftHistory),
  ]);
  if (slow) { S.drift = drift; S.driftHistory = history; S.driftModel = S.model; }
  S.series = series;
  renderTraffic(entry);
  renderVersions(detail, entry);
  renderRollout(rollouts, events);
  renderCharts(series, history);
  renderDrift(drift);
  renderOnline(online);
  renderAlerts(alerts);
  renderEvents(events);
}

// ---- sections -----------------------------------------------------------------------------

function renderModels(models) {
  const nav = $("models");
  const html = models.map((name) =>
    `<button type="button" data-model="${esc(name)}" class="${name === S.model ? "active" : ""}">${esc(name)}</button>`).join("");
  if (nav.innerHTML !== html) nav.innerHTML = html;
}

function renderTraffic(entry) {
  const policy = entry && entry.policy;
  const aliases = (entry && entry.aliases) || {};
  $("generation").textContent = policy ? `generation ${policy.generation}` : "";
  if (!policy) {
    $("traffic").innerHTML = `<p class="muted">No traffic policy yet${aliases.champion ? "" : ": set a champion"}.</p>`;
    return;
  }
  const weights = Object.entries(policy.weights || {}).map(([v, w]) => [Number(v), Number(w)]).filter(([, w]) => w > 0);
  const candidates = weights.reduce((sum, [, w]) => sum + w, 0);
  const parts = [];
  if (policy.champion !== null && policy.champion !== undefined) parts.push([policy.champion, 100 - candidates, "champion"]);
  for (const [v, w] of weights) parts.push([v, w, v === aliases.candidate ? "candidate" : ""]);
  let x = 0;
  const rects = parts.map(([v, w, role]) => {
    const width = Math.max(0, w) * 6;
    const label = width > 60 ? `<text x="${x + 6}" y="22">v${esc(v)} ${fmt(w, 2)}%</text>` : "";
    const out = `<rect x="${x}" y="4" width="${width}" height="28" rx="3" fill="${colour(v)}"><title>v${esc(v)} ${esc(role)} ${fmt(w, 2)}%</title></rect>${label}`;
    x += width;
    return out;
  }).join("");
  const rows = parts.map(([v, w, role]) =>
    `<tr><td>${swatch(colour(v))} v${esc(v)}</td><td>${role ? badge(role, role === "champion" ? "good" : "info") : ""}</td><td class="num split-weight" data-version="${esc(v)}">${fmt(w, 2)}%</td></tr>`).join("");
  const shadows = (policy.shadows || []).map((s) =>
    `<tr><td>${swatch(colour(s.version))} v${esc(s.version)}</td><td>${badge("shadow", "warn")}</td><td class="num">mirrors ${pct(s.sample)}</td></tr>`).join("");
  const warm = (policy.warm || []).length ? `<p class="muted">kept warm: ${policy.warm.map((v) => `v${esc(v)}`).join(", ")}</p>` : "";
  $("traffic").innerHTML = `<svg class="bar" viewBox="0 0 600 36" preserveAspectRatio="none" role="img" aria-label="traffic split">${rects}</svg>
    <table><tbody>${rows}${shadows}</tbody></table>${warm}`;
}

function swatch(fill) { return `<svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" rx="2" fill="${fill}"></rect></svg>`; }

function renderVersions(detail, entry) {
  if (!detail || detail.__error) { $("versions").innerHTML = `<p class="muted">Versions unavailable.</p>`; return; }
  const policy = entry && entry.policy;
  const rows = [...(detail.versions || [])].reverse().slice(0, 12).map((v) => {
    const gate = v.gate || null;
    const verdict = gate ? (gate.verdict || gate.outcome || (gate.passed === true ? "pass" : gate.passed === false ? "fail" : "run")) : "";
    const serving = policy && (policy.champion === v.version || Number((policy.weights || {})[v.version] || 0) > 0);
    return `<tr><td>${swatch(colour(v.version))} v${esc(v.version)}</td>
      <td>${(v.aliases || []).map((a) => badge(a, a === "champion" ? "good" : "info")).join("")}${serving ? badge("serving", "good") : ""}</td>
      <td>${esc(v.runtime)}</td><td><code>${esc((v.sha256 || "").slice(0, 12))}</code></td>
      <td>${verdict ? badge(verdict) : ""}</td><td class="muted">${stamp(v.created_at)}</td></tr>`;
  }).join("");
  $("versions").innerHTML = `<table><thead><tr><th>version</th><th>aliases</th><th>runtime</th><th>sha256</th><th>gate</th><th>pushed</th></tr></thead><tbody>${rows}</tbody></table>`;
}

const ROLLOUT_EVENT = /^(gate|shadow|step|bake|promote|watch|rollout|command)\./;

function stages(rollout) {
  const spec = rollout.spec || {};
  const status = rollout.status || {};
  const steps = ((spec.canary || {}).steps || []).map((w) => ({ name: `${w}%`, kind: "step" }));
  const list = [];
  if (spec.gate) list.push({ name: "gate", kind: "gate" });
  if (spec.shadow) list.push({ name: "shadow", kind: "shadow" });
  if (spec.interleave) list.push({ name: "interleave", kind: "interleave" });
  list.push(...steps, { name: "promote", kind: "promote" });
  if (spec.watch && (spec.watch.duration ?? spec.watch)) list.push({ name: "watch", kind: "watch" });
  const phase = status.phase || "pending";
  const phaseFor = { pending: -1, gating: "gate", shadowing: "shadow", interleaving: "interleave", promoting: "promote",
    watching: "watch" };
  let current = -1;
  if (phase === "progressing" || (phase === "paused" && status.step_index >= 0)) {
    current = list.findIndex((s) => s.kind === "step") + Math.max(0, status.step_index);
  } else if (phase === "promoted") {
    current = list.length;
  } else if (phaseFor[phase] !== undefined && phaseFor[phase] !== -1) {
    current = list.findIndex((s) => s.kind === phaseFor[phase]);
  } else if (phase === "paused" && status.paused_from) {
    current = list.findIndex((s) => s.kind === phaseFor[status.paused_from]);
  } else if (["rolled_back", "aborted", "failed"].includes(phase)) {
    const last = [...(rollout.analyses || [])].pop();
    const firstStep = list.findIndex((s) => s.kind === "step");
    const failedKind = (last && last.kind) || "gate";
    current = status.step_index >= 0 ? firstStep + status.step_index : list.findIndex((s) => s.kind === failedKind);
    if (last && last.kind === "watch") current = list.findIndex((s) => s.kind === "watch");
    if (current < 0) current = 0;
  }
  const failed = ["rolled_back", "aborted", "failed"].includes(phase);
  return list.map((s, i) => ({ ...s, state: i < current ? "done" : i === current ? (failed ? "failed" : "current") : "todo" }));
}

function renderRollout(rollouts, events) {
  const box = $("rollout");
  const eventList = Array.isArray(events) ? events : [];
  if (!rollouts || rollouts.__error) {
    const note = rollouts && rollouts.__error === 404 ? "the rollout API is not available on this server" : "rollouts unavailable";
    const timeline = eventList.filter((e) => ROLLOUT_EVENT.test(e.kind || "")).reverse();
    box.innerHTML = `<p class="muted">${esc(note)}; rollout events from the audit log:</p>${timelineHtml([], timeline)}`;
    return;
  }
  const list = Array.isArray(rollouts) ? rollouts : rollouts.rollouts || [];
  if (!list.length) { box.innerHTML = `<p class="muted">No rollout for this model.</p>`; return; }
  const rollout = [...list].sort((a, b) => (b.id || 0) - (a.id || 0))[0];
  const spec = rollout.spec || {};
  const status = rollout.status || {};
  const chips = stages(rollout).map((s) => `<span class="step ${s.state}" data-stage="${esc(s.name)}">${esc(s.name)}</span>`)
    .join(`<span class="arrow">→</span>`);
  const own = (rollout.events || eventList.filter((e) => ROLLOUT_EVENT.test(e.kind || ""))).slice().reverse();
  box.innerHTML = `<div id="rollout-head">${badge(status.phase || "pending")}
      <strong>rollout #${esc(rollout.id)}</strong> · candidate <strong>${status.candidate_version ? `v${esc(status.candidate_version)}` : esc(spec.candidate)}</strong>
      · weight <strong id="rollout-weight">${fmt(status.weight || 0, 2)}%</strong>
      ${status.pause_reason ? badge(`paused: ${status.pause_reason}`, "paused") : ""}
      <span class="muted">${esc(status.message || "")}</span></div>
    <div class="steps" id="rollout-steps">${chips}</div>
    ${timelineHtml(rollout.analyses || [], own)}`;
}

function timelineHtml(analyses, events) {
  const items = [
    ...analyses.map((a) => ({ at: a.at, html: `<li class="analysis"><span class="muted">${time(a.at)}</span> ${badge(a.kind, "info")} ${badge(a.outcome)}
        ${details(`a-${a.kind}-${a.at}`, "evidence", json(a.evidence))}</li>` })),
    ...events.map((e) => ({ at: e.at, html: `<li><span class="muted">${time(e.at)}</span> <code>${esc(e.kind)}</code> ${esc(e.message)}
        ${e.evidence ? details(`e-${e.id}`, "evidence", json(e.evidence)) : ""}</li>` })),
  ].sort((a, b) => (b.at || 0) - (a.at || 0));
  if (!items.length) return `<p class="muted">No steps yet.</p>`;
  return `<ul class="timeline" id="rollout-timeline">${items.map((i) => i.html).join("")}</ul>`;
}

// ---- charts -------------------------------------------------------------------------------

function chart(id, title, xs, series, opts = {}) {
  const W = 460, H = 170, L = 46, R = 10, T = 8, B = 22;
  const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined && Number.isFinite(v)));
  const legend = `<div class="legend">${series.map((s) => `<span>${swatch(s.colour)}${esc(s.name)}</span>`).join("")}</div>`;
  if (!values.length || !xs.length) {
    return `<article class="card" id="chart-${id}"><h2>${esc(title)}</h2><svg class="chart" viewBox="0 0 ${W} ${H}"><text x="${W / 2 - 30}" y="${H / 2}">no data yet</text></svg>${legend}</article>`;
  }
  let lo = opts.min !== undefined ? Math.min(opts.min, ...values) : Math.min(...values);
  let hi = opts.max !== undefined ? Math.max(opts.max, ...values) : Math.max(...values);
  if (hi === lo) { hi = lo + (Math.abs(lo) || 1); }
  const x0 = xs[0], x1 = xs[xs.length - 1] === x0 ? x0 + 1 : xs[xs.length - 1];
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const yfmt = opts.percent ? (v) => `${fmt(v * 100, 1)}%` : (v) => fmt(v, 2);
  const grid = [lo, (lo + hi) / 2, hi].map((v) =>
    `<line class="grid" x1="${L}" x2="${W - R}" y1="${py(v)}" y2="${py(v)}"></line><text x="2" y="${py(v) + 3}">${esc(yfmt(v))}</text>`).join("");
  const ticks = [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]].map(([x, anchor]) =>
    `<text x="${px(x)}" y="${H - 6}" text-anchor="${anchor}">${esc(time(x))}</text>`).join("");
  const lines = series.map((s) => {
    const segments = [];
    let current = [];
    s.values.forEach((v, i) => {
      if (v === null || v === undefined || !Number.isFinite(v)) { if (current.length) segments.push(current); current = []; return; }
      current.push([px(xs[i]), py(v), v, xs[i]]);
    });
    if (current.length) segments.push(current);
    const dash = s.dashed ? ' stroke-dasharray="4 3"' : "";
    return segments.map((seg) => seg.length === 1
      ? `<circle cx="${seg[0][0]}" cy="${seg[0][1]}" r="2.5" fill="${s.colour}"><title>${esc(s.name)} ${esc(yfmt(seg[0][2]))} at ${esc(time(seg[0][3]))}</title></circle>`
      : `<polyline fill="none" stroke="${s.colour}" stroke-width="1.8"${dash} points="${seg.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" ")}"><title>${esc(s.name)}</title></polyline>`).join("");
  }).join("");
  const threshold = opts.threshold !== undefined
    ? `<line x1="${L}" x2="${W - R}" y1="${py(opts.threshold)}" y2="${py(opts.threshold)}" stroke="#f85149" stroke-dasharray="2 3"></line>` : "";
  return `<article class="card" id="chart-${id}"><h2>${esc(title)}</h2><svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${grid}${ticks}${threshold}${lines}</svg>${legend}</article>`;
}

function perVersion(series, key, extra = {}) {
  return Object.entries((series && series.versions) || {}).filter(([, s]) => s[key]).map(([v, s]) => ({
    name: `v${v}${extra.suffix || ""}`, colour: colour(v), values: s[key], dashed: extra.dashed,
  }));
}

function renderCharts(series, history) {
  const box = $("charts");
  if (!series || series.__error) { box.innerHTML = `<article class="card"><p class="muted">Charts unavailable.</p></article>`; return; }
  const mids = (series.buckets || []).map((b) => b + series.step / 2);
  const shadows = Object.entries(series.shadows || {}).map(([v, s]) => ({ name: `v${v} vs champion`, colour: colour(v), values: s.agreement }));
  const onlineTitle = series.online_metric ? `Online ${series.online_metric.replaceAll("_", " ")}` : "Online metric";
  const driftSeries = [];
  let driftX = [];
  if (history && !history.__error && history.available) {
    driftX = (history.buckets || []).map((b) => b + history.step / 2);
    driftSeries.push({ name: `v${history.version} inputs drifted`, colour: "#f778ba", values: history.drift_share });
    driftSeries.push({ name: `v${history.version} prediction statistic`, colour: "#d29922", values: history.prediction_statistic, dashed: true });
  }
  box.innerHTML = [
    chart("requests", "Requests / s", mids, perVersion(series, "rps"), { min: 0 }),
    chart("errors", "Error rate", mids, perVersion(series, "error_rate"), { min: 0, percent: true }),
    chart("latency", "Latency ms (p99 solid, p50 dashed)", mids,
      [...perVersion(series, "latency_p99_ms", { suffix: " p99" }), ...perVersion(series, "latency_p50_ms", { suffix: " p50", dashed: true })], { min: 0 }),
    chart("agreement", "Shadow agreement", mids, shadows, { min: 0, max: 1, percent: true }),
    chart("drift", history && history.available === false ? "Drift (no reference profile)" : "Drift", driftX, driftSeries, { min: 0 }),
    chart("online", onlineTitle, mids, perVersion(series, "online"), series.online_metric === "accuracy" ? { percent: true, min: 0, max: 1 } : {}),
  ].join("");
}

// ---- tables -------------------------------------------------------------------------------

function renderDrift(drift) {
  const box = $("drift");
  if (!drift || drift.__error) { box.innerHTML = `<p class="muted">Drift unavailable.</p>`; $("drift-meta").textContent = ""; return; }
  $("drift-meta").textContent = `v${drift.version}, last hour` + (drift.n_requests !== undefined ? `, ${drift.n_requests} recorded requests` : "");
  if (!drift.available) { box.innerHTML = `<p class="muted">${esc(drift.reason)}</p>`; return; }
  const rows = (drift.columns || []).map((c) => `<tr><td>${esc(c.feature || c.name)}</td><td><code>${esc(c.test)}</code></td>
    <td class="num">${fmt(c.statistic)}</td><td class="num">${fmt(c.p_value)}</td><td class="num">${fmt(c.threshold)}</td>
    <td>${c.test === "no_data" ? badge("no data", "muted") : c.drifted ? badge("drift", "bad") : badge("ok", "good")}</td>
    <td class="num">${fmt(c.psi)}${c.psi_threshold !== null && c.psi_threshold !== undefined ? ` / ${fmt(c.psi_threshold)}` : ""}</td>
    <td class="num">${esc(c.n_current)}</td></tr>`).join("");
  box.innerHTML = `${drift.reason ? `<p class="muted">${esc(drift.reason)}</p>` : ""}
    <p>${drift.drifted_any ? badge("drift detected", "bad") : badge("no drift", "good")}
    <span class="muted">alpha ${fmt(drift.alpha)} (${esc(drift.correction)}), ${esc(drift.drifted_columns ?? 0)} input(s) drifted</span></p>
    <table><thead><tr><th>column</th><th>test</th><th class="num">statistic</th><th class="num">p</th><th class="num">threshold</th><th></th><th class="num">PSI / limit</th><th class="num">n</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// a ranker's online figures (monitoring/online.py): means over scored requests, per version and segment
const RANKING_SHOWN = [["ndcg_at_10", "NDCG@10"], ["ctr_at_10", "CTR@10"], ["precision_at_10", "P@10"],
  ["recall_at_10", "R@10"], ["mrr", "MRR"]];

function interval(ci) { return ci ? ` <span class="muted">[${fmt(ci[0])}, ${fmt(ci[1])}]</span>` : ""; }

function rankingMain(v, f) {
  const m = f.metrics || {};
  const r = f.ranking || {};
  if (!f.compared) {
    return `<span class="muted">no ranking feedback scored yet${r.unscored ? ` (${esc(r.unscored)} label(s) name no items)` : ""}</span>`;
  }
  const ci = r.intervals || {};
  return `<span class="online-ranking" data-version="${esc(v)}">NDCG@10 ${fmt(m.ndcg_at_10)}${interval(ci.ndcg_at_10)}
    · CTR@10 ${fmt(m.ctr_at_10)}${interval(ci.ctr_at_10)}</span>`;
}

// below the table, one block per ranker version: every headline metric, overall and per segment
function rankingDetails(v, f) {
  const r = f.ranking || {};
  const segments = Object.entries(f.segments || {});
  const note = `<p class="muted">${esc(f.compared)} scored request(s), ${esc(r.with_relevant ?? 0)} with a relevant item;
    ${esc(r.relevant_not_served ?? 0)} relevant item(s) not in the served list${r.unscored ? `; ${esc(r.unscored)} label(s) name no items` : ""}.
    CTR@10 is clicks per request in the top 10.</p>`;
  const cols = RANKING_SHOWN.map(([, name]) => `<th class="num">${esc(name)}</th>`).join("");
  const line = (name, s) => `<tr><td>${esc(name)}</td><td class="num">${esc(s.compared)} / ${esc(s.requests)}</td>
    ${RANKING_SHOWN.map(([key]) => `<td class="num">${fmt((s.metrics || {})[key])}</td>`).join("")}</tr>`;
  const table = `<table class="online-segments" data-version="${esc(v)}"><thead><tr><th>segment</th><th class="num">scored</th>${cols}</tr></thead>
    <tbody>${line("all", f)}${segments.map(([name, s]) => line(name, s)).join("")}</tbody></table>`;
  const title = `v${esc(v)} ranking metrics${segments.length ? ` by segment (${segments.length})` : ""}`;
  return details(`online-${v}`, title, note + table);
}

function renderOnline(online) {
  const box = $("online");
  if (!online || online.__error) { box.innerHTML = `<p class="muted">Online metrics unavailable.</p>`; return; }
  const versions = Object.entries(online.versions || {});
  if (!versions.length) { box.innerHTML = `<p class="muted">No served requests in the window.</p>`; return; }
  const rows = versions.map(([v, f]) => {
    const m = f.metrics || {};
    const main = f.task === "classification" ? `accuracy ${pct(m.accuracy)}${m.accuracy_ci ? ` <span class="muted">[${pct(m.accuracy_ci[0])}, ${pct(m.accuracy_ci[1])}]</span>` : ""}`
      : f.task === "regression" ? `MAE ${fmt(m.mae)} · RMSE ${fmt(m.rmse)}`
      : f.task === "ranking" ? rankingMain(v, f) : `<span class="muted">no labels yet</span>`;
    return `<tr><td>${swatch(colour(v))} v${esc(v)}</td><td>${esc(f.task || "–")}</td><td class="num">${esc(f.labelled)} / ${esc(f.requests)}</td>
      <td>${main}</td><td class="num">${fmt(f.mean_reward)}</td></tr>`;
  }).join("");
  const ranking = versions.filter(([, f]) => f.task === "ranking" && f.compared).map(([v, f]) => rankingDetails(v, f)).join("");
  box.innerHTML = `<table><thead><tr><th>version</th><th>task</th><th class="num">labelled</th><th>metric</th><th class="num">mean reward</th></tr></thead><tbody>${rows}</tbody></table>${ranking}`;
}

function renderAlerts(alerts) {
  const box = $("alerts");
  if (!alerts || alerts.__error) { box.innerHTML = `<p class="muted">Alerts unavailable.</p>`; return; }
  if (!alerts.enabled) { box.innerHTML = `<p class="muted">${esc(alerts.reason || "No alert rules.")}</p>`; return; }
  const mine = (alerts.instances || []).filter((i) => i.model === S.model);
  const rows = mine.map((i) => `<tr><td>${esc(i.rule)}</td><td>${badge(i.state)}</td>
    <td>${esc(i.metric)} ${esc(i.condition)} ${fmt(i.threshold)}</td><td class="num">${fmt(i.value)}</td>
    <td class="muted">${i.state === "firing" ? `since ${time(i.fired_at)}` : i.state === "pending" ? `since ${time(i.since)}` : i.resolved_at ? `resolved ${time(i.resolved_at)}` : ""}</td>
    <td>${i.rollback ? badge("rollback", "warn") : ""}${i.error ? `<span class="error">${esc(i.error)}</span>` : ""}</td></tr>`).join("");
  box.innerHTML = `<p class="muted">${esc(alerts.rules.length)} rule(s), ${esc(alerts.firing)} firing; evaluated ${time(alerts.last_evaluated)}</p>
    ${mine.length ? `<table><thead><tr><th>rule</th><th>state</th><th>condition</th><th class="num">value</th><th></th><th></th></tr></thead><tbody>${rows}</tbody></table>` : ""}`;
}

function renderEvents(events) {
  const box = $("events");
  if (!Array.isArray(events)) { box.innerHTML = `<p class="muted">Audit log unavailable.</p>`; return; }
  const rows = [...events].reverse().map((e) => `<tr><td class="muted">${time(e.at)}</td><td>${esc(e.actor)}</td>
    <td><code>${esc(e.kind)}</code></td><td>${esc(e.message)}${e.evidence ? details(`log-${e.id}`, "evidence", json(e.evidence)) : ""}</td></tr>`).join("");
  box.innerHTML = `<table id="events-table"><thead><tr><th>time</th><th>who</th><th>what</th><th>why</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// ---- wiring -------------------------------------------------------------------------------

function init() {
  $("token-form").addEventListener("submit", onTokenSubmit);
  $("forget").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); S.token = ""; askToken(""); });
  $("models").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-model]");
    if (!button) return;
    S.model = button.dataset.model;
    localStorage.setItem(MODEL_KEY, S.model);
    start();
  });
  $("range").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-range]");
    if (!button) return;
    S.range = button.dataset.range;
    localStorage.setItem(RANGE_KEY, S.range);
    markRange();
    S.driftModel = null;
    start();
  });
  // remember which evidence a person opened, so the 2 s redraw keeps it open
  document.addEventListener("toggle", (event) => {
    const key = event.target && event.target.dataset && event.target.dataset.key;
    if (!key) return;
    if (event.target.open) S.open.add(key); else S.open.delete(key);
  }, true);
  markRange();
  if (S.token) start(); else askToken("");
}

function markRange() {
  for (const b of document.querySelectorAll("#range button")) b.classList.toggle("active", b.dataset.range === S.range);
}

document.addEventListener("DOMContentLoaded", init);
