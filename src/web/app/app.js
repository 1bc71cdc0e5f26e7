// Convoy phone app: renders the node's Snapshot (pushed over /api/ws) and sends commands
// to the REST API. Plain JS, no build step. A 401 opens the PIN sheet and retries.
"use strict";
const $ = (s) => document.querySelector(s);
const PATTERNS = ["off", "solid", "rainbow", "pulse", "strobe", "chase", "sparkle", "vu", "beatflash"];
const SWATCHES = [[255, 138, 61], [255, 40, 60], [255, 210, 60], [60, 220, 120], [40, 200, 255], [70, 90, 255], [200, 80, 255]];
let snap = null;
let seeking = false;

function fmtTime(ms) {
  if (ms == null || !isFinite(ms)) return "0:00";
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
function fmtMs(v) {
  if (v == null) return "—";
  return `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(2)} ms`;
}
function errClass(v) {
  if (v == null) return "";
  const a = Math.abs(v);
  return a < 1 ? "good" : a < 5 ? "warn" : "bad";
}
function toast(msg, info) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast" + (info ? " info" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), 3500);
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// ---- API with PIN handling ----
let pinWaiters = [];
function askPin() {
  $("#pin-sheet").classList.remove("hidden");
  $("#pin-input").value = "";
  setTimeout(() => $("#pin-input").focus(), 50);
  return new Promise((resolve) => pinWaiters.push(resolve));
}
function closePin(ok) {
  $("#pin-sheet").classList.add("hidden");
  pinWaiters.splice(0).forEach((w) => w(ok));
}
async function request(method, path, body, raw) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (raw) opts.body = raw;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["content-type"] = "application/json"; }
  return fetch(path, opts);
}
async function api(path, body, raw) {
  let r = await request("POST", path, body, raw);
  if (r.status === 401) {
    if (!(await askPin())) throw new Error("PIN needed");
    r = await request("POST", path, body, raw);
  }
  const data = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) { toast(data.error || `HTTP ${r.status}`); throw new Error(data.error); }
  return data;
}
$("#pin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await request("POST", "/api/login", { pin: $("#pin-input").value });
  if (r.ok) { setLocked(false); closePin(true); connect(); toast("Unlocked", true); return; }
  const e = await r.json().catch(() => ({}));
  toast(e.error || "Wrong PIN");
  $("#pin-input").value = "";
});
$("#pin-cancel").addEventListener("click", () => closePin(false));
$("#lock").addEventListener("click", async () => {
  if ($("#lock").classList.contains("unlocked")) {
    await request("POST", "/api/logout");
    const info = await (await fetch("/api/info")).json();
    setLocked(info.pin_required && !info.authorized);
  } else askPin();
});
function setLocked(locked) {
  $("#lock").classList.toggle("unlocked", !locked);
  $("#shackle").setAttribute("d", locked ? "M8 11V8a4 4 0 0 1 8 0v3" : "M8 11V8a4 4 0 0 1 8 0");
}

// ---- live state ----
let ws = null;
let retry = null;
function connect() {
  if (ws && ws.readyState <= 1) return;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/api/ws`);
  ws.onopen = () => $("#conn").classList.add("ok");
  ws.onmessage = (m) => { try { render(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  ws.onclose = () => {
    $("#conn").classList.remove("ok");
    clearTimeout(retry);
    retry = setTimeout(connect, 1000);
  };
}

function render(s) {
  const prevBeat = snap && snap.meters.beat;
  snap = s;
  $("#me-id").textContent = s.id || "—";
  const role = $("#me-role");
  role.textContent = s.role || "?";
  role.className = "pill" + (s.role === "leader" ? " leader" : "");
  $("#track").textContent = s.track || "No track";
  $("#state-text").textContent = s.playing ? "playing" : (s.position_ms ? "paused" : "stopped");
  $("#tempo").textContent = s.tempo_bpm ? `${s.tempo_bpm.toFixed(1)} BPM` : "— BPM";
  $("#show").textContent = s.show || "—";
  $("#pos").textContent = fmtTime(s.position_ms);
  $("#dur").textContent = fmtTime(s.duration_ms);
  const frac = s.duration_ms ? Math.min(1, (s.position_ms || 0) / s.duration_ms) : 0;
  $("#progress").style.width = `${(frac * 100).toFixed(2)}%`;
  if (!seeking) $("#seek").value = Math.round(frac * 1000);
  const play = $("#play");
  play.textContent = s.playing ? "❚❚" : "▶";
  play.setAttribute("aria-label", s.playing ? "pause" : "play");
  // meters
  const bands = s.meters.bands || [];
  for (let i = 0; i < 3; i++) $(`#band-${i}`).style.height = `${Math.max(2, (bands[i] || 0) * 100)}%`;
  $("#beat").textContent = s.meters.beat;
  document.querySelectorAll(".beats i").forEach((d, i) =>
    d.classList.toggle("on", s.playing && s.meters.beat_in_bar === i + 1 && prevBeat !== null));
  renderFleet(s);
  renderLights(s.light);
}

function bikeRow(b) {
  const li = el("li", "bike" + (b.leader ? " leader" : ""));
  li.append(el("div", "avatar", b.leader ? "★" : (b.id.match(/\d+$/) || [b.id.slice(0, 1).toUpperCase()])[0]));
  const name = el("div", "name", b.id + (b.self ? " (this bike)" : ""));
  const off = el("div", "off " + errClass(b.error), fmtMs(b.error));
  off.append(el("small", null, b.self ? "playback error" : "sync offset"));
  const meta = el("div", "meta");
  const lock = el("span", "chip " + (b.locked ? "good" : "bad"), b.locked ? "locked" : "unlocked");
  meta.append(lock);
  if (b.led) meta.append(el("span", "chip" + (b.led === "connected" || b.led === "sim" ? " good" : ""), `LED ${b.led}`));
  meta.append(document.createTextNode(b.detail));
  li.append(name, off, meta);
  return li;
}
function renderFleet(s) {
  const rows = [{
    id: s.id, self: true, leader: s.role === "leader", error: s.sync.playback_error_ms,
    locked: s.sync.locked, led: s.light.link,
    detail: s.sync.offset_ms != null ? `clock ${fmtMs(s.sync.offset_ms)}` : "",
  }];
  for (const p of s.peers) {
    rows.push({
      id: p.id, leader: p.role === "leader" || p.id === s.leader, error: p.playback_error_ms,
      locked: p.playback_error_ms != null && Math.abs(p.playback_error_ms) < 1,
      detail: `${p.role} · heard ${p.last_heard_ms} ms ago`,
    });
  }
  const ul = $("#bikes");
  ul.replaceChildren(...rows.map(bikeRow));
  $("#fleet-count").textContent = `${rows.length} bike${rows.length === 1 ? "" : "s"}`;
}

function renderLights(l) {
  const c = `rgb(${l.color.join(",")})`;
  document.querySelectorAll(".pattern").forEach((b) => {
    b.classList.toggle("active", b.dataset.pattern === l.pattern);
    b.style.setProperty("--c", c);
  });
  document.querySelectorAll(".swatch[data-rgb]").forEach((b) =>
    b.classList.toggle("active", b.dataset.rgb === l.color.join(",")));
  if (document.activeElement !== $("#hue")) $("#hue").value = l.hue;
  if (document.activeElement !== $("#bright")) $("#bright").value = Math.round(l.bright * 100);
  $("#hue-val").textContent = `${l.hue}°`;
  $("#bright-val").textContent = `${Math.round(l.bright * 100)}%`;
}

// ---- controls ----
const quiet = (p) => p.catch(() => {});
$("#play").addEventListener("click", () =>
  quiet(api(snap && snap.playing ? "/api/transport/pause" : "/api/transport/play")));
$("#stop").addEventListener("click", () => quiet(api("/api/transport/stop")));
$("#next").addEventListener("click", () => quiet(api("/api/transport/next")));
const seek = $("#seek");
seek.addEventListener("input", () => { seeking = true; });
seek.addEventListener("change", () => {
  seeking = false;
  if (snap && snap.duration_ms) quiet(api("/api/transport/seek", { position_ms: (seek.value / 1000) * snap.duration_ms }));
});
$("#show-load").addEventListener("click", () => {
  const name = $("#show-name").value.trim();
  if (name) quiet(api("/api/show/load", { name }).then(() => toast(`Show ${name} loaded`, true)));
});
$("#track-play").addEventListener("click", () => {
  const track = $("#track-name").value.trim();
  if (track) quiet(api("/api/transport/play", { track }));
});

const patterns = $("#patterns");
for (const p of PATTERNS) {
  const b = el("button", `pattern p-${p}`);
  b.dataset.pattern = p;
  b.append(el("span", null, p));
  b.addEventListener("click", () => quiet(api("/api/light/pattern", { name: p })));
  patterns.append(b);
}
const swatches = $("#swatches");
for (const [r, g, b] of SWATCHES) {
  const s = el("button", "swatch");
  s.style.background = `rgb(${r},${g},${b})`;
  s.dataset.rgb = `${r},${g},${b}`;
  s.setAttribute("aria-label", `colour ${r},${g},${b}`);
  s.addEventListener("click", () => quiet(api("/api/light/color", { r, g, b })));
  swatches.append(s);
}
const custom = el("label", "swatch custom");
const picker = el("input");
picker.type = "color";
picker.addEventListener("change", () => {
  const v = parseInt(picker.value.slice(1), 16);
  quiet(api("/api/light/color", { r: v >> 16, g: (v >> 8) & 255, b: v & 255 }));
});
custom.append(picker);
swatches.append(custom);
$("#hue").addEventListener("change", (e) => quiet(api("/api/light/hue", { degrees: Number(e.target.value) })));
$("#bright").addEventListener("change", (e) => quiet(api("/api/light/bright", { level: Number(e.target.value) / 100 })));

document.querySelectorAll(".tabs button").forEach((b) =>
  b.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.id === `tab-${b.dataset.tab}`));
    if (b.dataset.tab === "upload") loadLibrary();
  }));

// ---- upload ----
function upload(file) {
  const show = /\.toml$/i.test(file.name);
  const url = show ? `/api/upload?kind=show&name=${encodeURIComponent(file.name)}` : "/api/upload?kind=track";
  const bar = $("#up-progress");
  bar.classList.remove("hidden");
  return new Promise((resolve) => {
    const x = new XMLHttpRequest();
    x.open("POST", url);
    // Never a form type (text/plain…): the server refuses those on uploads (cross-site guard).
    x.setRequestHeader("content-type", "application/octet-stream");
    x.upload.onprogress = (e) => { if (e.lengthComputable) bar.firstElementChild.style.width = `${(100 * e.loaded) / e.total}%`; };
    x.onload = async () => {
      bar.classList.add("hidden");
      let data = {};
      try { data = JSON.parse(x.responseText); } catch (e) { data = { error: x.statusText }; }
      if (x.status === 401 && (await askPin())) return resolve(upload(file));
      if (x.status >= 400) { toast(data.error || `HTTP ${x.status}`); return resolve(); }
      $("#up-result").textContent = data.kind === "show"
        ? `Show ${data.name} stored (${data.bytes} bytes)`
        : `Track stored: ${data.format}, ${(data.bytes / 1048576).toFixed(1)} MiB, sha256 ${data.sha256.slice(0, 12)}…`;
      loadLibrary();
      resolve();
    };
    x.onerror = () => { bar.classList.add("hidden"); toast("Upload failed"); resolve(); };
    x.send(file);
  });
}
$("#file").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ""; });
async function loadLibrary() {
  const r = await fetch("/api/tracks", { credentials: "same-origin" });
  if (!r.ok) return;
  const { tracks } = await r.json();
  const ul = $("#library");
  ul.replaceChildren(...tracks.map((t) => {
    const li = el("li");
    li.append(el("code", null, `${t.sha256.slice(0, 16)}… ${t.format}`), el("span", "sub", `${(t.bytes / 1048576).toFixed(1)} MiB`));
    const play = el("button", null, "Play");
    play.addEventListener("click", () => quiet(api("/api/transport/play", { track: t.sha256 })));
    li.append(play);
    return li;
  }));
  if (!tracks.length) ul.append(el("li", "sub", "No tracks yet"));
}

// ---- start ----
(async () => {
  try {
    const info = await (await fetch("/api/info", { credentials: "same-origin" })).json();
    setLocked(info.pin_required && !info.authorized);
    if (!info.open_reads && !info.authorized) await askPin();
  } catch (e) { toast("Cannot reach the bike"); }
  connect();
})();
