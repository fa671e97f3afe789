// The ibconn dashboard: polls /api/ib/dashboard every 2 s and /api/ib/pool/history every 10 s
// from the server that served this file, and renders them with plain DOM and one canvas chart.
// The bearer token (when the server has one) comes from a `#token=` fragment, which is removed
// from the address bar at once, or from the form shown after a 401; it is kept in sessionStorage
// (this tab only) and sent as an Authorization header.
"use strict";

const POLL_MS = 2000;
const HISTORY_MS = 10000;
const TOKEN_KEY = "ibconn-token";

const $ = (id) => document.getElementById(id);
let token = null;
let tier = "hour";
let updates = 0;
let lastHistory = null;

function readToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  token = sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) throw new Unauthorized("the token is missing or wrong");
  const body = await r.json();
  if (!body.success) throw new Error(body.error ? body.error.message : "HTTP " + r.status);
  return body.data;
}

// An element with attributes and children (strings become text: nothing is parsed as HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, String(v));
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function fill(tbody, rows, columns, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colSpan: columns }, empty))]));
}

function pad(n) { return String(n).padStart(2, "0"); }
function clock(ms) { const d = new Date(ms); return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }
function age(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function rtt(us) { return us === null || us === undefined ? "–" : (us / 1000).toFixed(us < 10000 ? 2 : 1) + " ms"; }
// A pacing window in words; the configured safety margin (a fraction of a second) is left out.
function secs(s) { return s >= 60 ? Math.round(s / 60) + " min" : Math.max(1, Math.round(s)) + " s"; }

function gauge(name, value, max) {
  const g = $("gauge-" + name);
  $(name + "-value").textContent = value;
  $(name + "-value").dataset.value = value;
  $(name + "-max").textContent = max;
  const frac = max > 0 ? Math.min(1, value / max) : 0;
  g.querySelector(".fill").style.width = (frac * 100).toFixed(1) + "%";
  g.classList.toggle("warn", frac >= 0.6 && frac < 0.85);
  g.classList.toggle("bad", frac >= 0.85);
}

function render(d) {
  $("gateway").textContent = d.gateway;
  const lim = d.limits;
  document.querySelector('[data-field="historical-window"]').textContent = secs(lim.historical_window_secs);
  document.querySelector('[data-field="messages-window"]').textContent = secs(lim.messages_window_secs);
  // The gauges: the fullest gateway (serve has one), from the shared pacing book.
  const pacers = d.pace.gateways.map((g) => g.pacer);
  const most = (f) => pacers.reduce((m, p) => Math.max(m, p[f]), 0);
  gauge("historical", most("historical_weight_in_window"), pacers.length ? pacers[0].historical_weight_max : lim.historical_max);
  gauge("open", most("open_requests"), pacers.length ? pacers[0].open_max : lim.open_max);
  gauge("messages", most("messages_in_window"), lim.messages_max);
  const paused = d.pace.gateways.filter((g) => g.paused);
  // Owners whose claim on the book has not lapsed (a finished process's lapses after its TTL).
  const owners = d.pace.gateways.reduce((n, g) => n + g.shared.owners.filter((o) => o.alive_for_ms > 0).length, 0);
  const st = d.pace_stats;
  $("pace-note").textContent =
    (paused.length ? "PAUSED after a violation: " + paused.map((g) => g.addr + " " + Math.ceil(g.pacer.paused_for_ms / 1000) + " s").join(", ") + ". " : "") +
    "Pacing book: " + d.pace.gateways.map((g) => g.shared.store).join(", ") + ", claims held by " + owners + " process(es). " +
    "This process: requests " + st.requests + ", waited for pacing " + st.pacing_waits + " (" + (st.pacing_wait_ms / 1000).toFixed(1) + " s), " +
    "violations " + st.pacing_violations + ", rate limits " + st.rate_limited + ".";

  // Health pill: ready sessions first; an open breaker (nothing is dialed) is bad, a half-open
  // one (recovering) a warning.
  const ready = d.status.connections_ready;
  const breakers = d.status.gateways.map((g) => g.breaker.state);
  const pill = $("health");
  const level = breakers.includes("open") || ready === 0 && breakers.includes("half_open") ? "bad"
    : ready === 0 || breakers.includes("half_open") ? "warn" : "ok";
  pill.className = "pill " + level;
  pill.textContent = (ready > 0 ? ready + " session(s) ready" : "no session ready") +
    (breakers.includes("open") ? ", breaker open" : breakers.includes("half_open") ? ", breaker half-open" : "");
  $("updated").textContent = "updated " + clock(d.now_ms);

  const extra = new Map(d.gateways.map((g) => [g.addr, g]));
  fill($("gateways").tBodies[0], d.status.gateways.map((g) => {
    const x = extra.get(g.addr) || {};
    const b = g.breaker.state;
    return el("tr", { "data-gateway": g.addr },
      el("td", {}, g.addr),
      el("td", { title: x.version_error || "" }, x.server_version ? "v" + x.server_version : x.version_error ? "unknown" : "–"),
      el("td", {}, el("span", { class: "pill " + (b === "closed" ? "ok" : b === "open" ? "bad" : "warn") }, b.replace("_", "-")),
        g.breaker.consecutive_failures ? " " + g.breaker.consecutive_failures + " failures" : ""),
      el("td", { class: "r" }, g.established),
      el("td", { class: "r" }, g.failed));
  }), 5, "no gateway");

  const cx = new Map(d.connections.map((c) => [c.client_id, c]));
  const gws = d.status.gateways.map((g) => g.addr);
  fill($("connections").tBodies[0], d.status.connections.map((c) => {
    const x = cx.get(c.client_id) || {};
    return el("tr", { class: "conn", "data-client-id": c.client_id, "data-state": c.state, title: gws[c.gateway] || "" },
      el("td", {}, c.client_id),
      el("td", {}, c.purpose),
      el("td", {}, el("span", { class: "pill " + (c.state === "ready" ? "ok" : "warn") }, c.state)),
      el("td", {}, x.ready_since_ms ? age(d.now_ms - x.ready_since_ms) : "–"),
      el("td", { class: "r" }, rtt(x.last_probe_rtt_us)),
      el("td", { class: "r" }, c.leases),
      el("td", { class: "r" }, x.answered ?? 0));
  }), 7, "no connection (the pool dials on demand)");

  const L = d.leases;
  $("lease-store").textContent = "(" + L.store + (L.shared ? ", every process sharing it" : ", this process only") + ")";
  const leaseRows = L.leases.map((l) => el("tr", { class: l.mine ? "mine" : "", "data-client-id": l.id },
    el("td", {}, l.id),
    el("td", {}, l.purpose),
    el("td", {}, (l.holder || "–") + (l.mine ? " (this process)" : "")),
    el("td", { class: "r" }, l.pid),
    el("td", {}, l.liveness),
    el("td", {}, l.expired ? "expired" : age(l.expires_at_ms - d.now_ms))));
  for (const f of L.foreign) leaseRows.push(el("tr", {}, el("td", {}, f.id), el("td", { colSpan: 5 }, "in use outside the registry (326), avoided until " + clock(f.until_ms))));
  if (!L.shared) {
    for (const c of d.status.connections) leaseRows.push(el("tr", { class: "mine", "data-client-id": c.client_id },
      el("td", {}, c.client_id), el("td", {}, c.purpose), el("td", {}, "this process"), el("td", {}, ""), el("td", {}, "alive"), el("td", {}, "–")));
  }
  fill($("leases").tBodies[0], leaseRows, 6, L.error ? "registry unreadable: " + L.error : "no lease");

  fill($("errors").tBodies[0], d.errors.slice().sort((a, b) => b.count - a.count).map((e) =>
    el("tr", { "data-class": e.class }, el("td", {}, e.class), el("td", {}, e.detail || "–"), el("td", { class: "r" }, e.count))), 3, "none");
  $("counters").textContent = d.established + " sessions established, " + d.failed + " failed dials, " + d.disconnects +
    " disconnects, " + d.reconnects + " reconnects, " + d.client_id_conflicts + " client-id conflicts (326).";

  const events = d.events.map((e) => el("li", { class: e.level, "data-kind": e.kind },
    el("span", { class: "lvl" }), el("time", {}, clock(e.at_ms)),
    el("span", {}, e.text + (e.client_id !== null ? " · client " + e.client_id : "") + (e.gateway ? " · " + e.gateway : "")),
    e.count > 1 ? el("span", { class: "count" }, "×" + e.count + " since " + clock(e.first_ms)) : ""));
  $("events").replaceChildren(...(events.length ? events : [el("li", { class: "empty" }, "nothing yet")]));
}

function drawChart(h) {
  const t = h.tiers[0];
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 1200;
  const ht = canvas.clientHeight || 220;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(ht * ratio);
  const c = canvas.getContext("2d");
  c.setTransform(ratio, 0, 0, ratio, 0, 0);
  c.clearRect(0, 0, w, ht);
  const css = getComputedStyle(document.documentElement);
  const color = (n) => css.getPropertyValue("--c-" + n).trim();
  const left = 34, right = 10, top = 8, bottom = 20;
  const x1 = h.now_ms, x0 = x1 - t.span_ms;
  const peak = Math.max(h.limits.historical_max, ...t.historical, ...t.open, ...t.messages, 1);
  const ymax = Math.ceil(peak / 10) * 10;
  const X = (ms) => left + ((ms - x0) / (x1 - x0)) * (w - left - right);
  const Y = (v) => top + (1 - v / ymax) * (ht - top - bottom);
  c.font = "11px system-ui, sans-serif";
  c.fillStyle = "#6b7280";
  c.strokeStyle = "#e3e6eb";
  c.lineWidth = 1;
  for (let v = 0; v <= ymax; v += ymax / 4) {
    c.beginPath(); c.moveTo(left, Y(v)); c.lineTo(w - right, Y(v)); c.stroke();
    c.fillText(String(Math.round(v)), 4, Y(v) + 4);
  }
  const ticks = 6;
  for (let i = 0; i <= ticks; i++) {
    const ms = x0 + (i * (x1 - x0)) / ticks;
    c.fillText(clock(ms).slice(0, 5), Math.min(X(ms) - 14, w - right - 30), ht - 5);
  }
  c.setLineDash([4, 4]);
  c.strokeStyle = color("limit");
  c.beginPath(); c.moveTo(left, Y(h.limits.historical_max)); c.lineTo(w - right, Y(h.limits.historical_max)); c.stroke();
  c.setLineDash([]);
  c.lineWidth = 2;
  // A gap longer than two intervals (serve was stopped, the host slept) breaks the line.
  for (const name of ["messages", "open", "historical"]) {
    c.strokeStyle = color(name);
    c.beginPath();
    let prev = null;
    t.at_ms.forEach((ms, i) => {
      const v = t[name][i];
      if (prev === null || ms - prev > 2 * t.interval_ms) c.moveTo(X(ms), Y(v));
      else c.lineTo(X(ms), Y(v));
      prev = ms;
    });
    c.stroke();
  }
  canvas.dataset.points = t.len;
  canvas.dataset.tier = t.name;
}

function showError(e) {
  if (e instanceof Unauthorized) {
    $("login").hidden = false;
    $("banner").hidden = true;
    document.body.dataset.state = "unauthorized";
    $("token").focus();
    return;
  }
  $("banner").textContent = "Cannot update: " + e.message;
  $("banner").hidden = false;
  document.body.dataset.state = "error";
}

async function poll() {
  try {
    const d = await api("/api/ib/dashboard");
    render(d);
    updates += 1;
    document.body.dataset.updates = updates;
    document.body.dataset.state = "live";
    $("banner").hidden = true;
    if (lastHistory === null || Date.now() - lastHistory >= HISTORY_MS) await pollHistory();
  } catch (e) {
    showError(e);
  }
  if (document.body.dataset.state !== "unauthorized") setTimeout(poll, POLL_MS);
}

async function pollHistory() {
  lastHistory = Date.now();
  drawChart(await api("/api/ib/pool/history?tier=" + tier));
}

function start() {
  readToken();
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    lastHistory = null;
    poll();
  });
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => {
      tier = b.dataset.tier;
      for (const o of document.querySelectorAll(".tabs button")) o.classList.toggle("on", o === b);
      pollHistory().catch(showError);
    });
  }
  window.addEventListener("resize", () => { lastHistory = null; });
  poll();
}

start();
