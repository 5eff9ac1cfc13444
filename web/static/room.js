// The sub-classroom's room page (分课堂): one big picture with sound, over WHEP
// with the room's invitation token. Waits for the lecture without reloading,
// reconnects by itself, shows the link quality and reports the headcount.
import { init, language, t, switchLanguage } from "/static/i18n.js";
import { loadIceServers, view } from "/static/whip-client.js";

const POLL_MS = 4000;
const STATS_MS = 2000;
const BACKOFF_S = [1, 2, 5, 10];
const DISCONNECTED_GRACE_MS = 5000; // "disconnected" often heals by itself
const DEFAULT_MAX_HEADCOUNT = 500; // the server's limit comes with the room (max_headcount)

const token = document.body.dataset.token || "";
const $ = (id) => document.getElementById(id);
const video = $("program");
const stage = $("stage");

// For tests and for a person at the console: never holds the token.
const state = { state: "connecting", error: null, pc: null, room: null, quality: null,
                timeshift: "live" };
window.zhixing = state;

let viewer = null;
let iceServers = [];
let attempt = 0;
let reconnectTimer = null;
let disconnectTimer = null;
let finished = false; // ended or link gone: nothing more to connect to
let statusKey = "room.status.connecting";
let statusValues = {};

function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
  return fetch(path, { ...options, headers, cache: "no-store" });
}

function setStatus(key, values = {}) {
  statusKey = key;
  statusValues = values;
  $("status").textContent = t(key, values);
}

function show(screen) {
  for (const id of ["waiting", "ended", "gone", "failed"]) $(id).hidden = id !== screen;
}

function formatTime(seconds) {
  if (seconds == null) return t("room.waiting.unscheduled");
  const when = new Date(seconds * 1000);
  const text = new Intl.DateTimeFormat(language(), {
    year: "numeric", month: "long", day: "numeric", weekday: "short",
    hour: "2-digit", minute: "2-digit",
  }).format(when);
  return t("room.waiting.scheduled", { time: text });
}

// ------------------------------------------------------------------ room info

function showRoom(room) {
  state.room = room;
  $("site").textContent = room.site_name || t("room.site");
  $("org").textContent = room.org_path || "";
  $("lecture").textContent = room.course_title && room.course_title !== room.title
    ? `${room.course_title} · ${room.title}` : room.title;
  $("lecturer").textContent = room.lecturer ? t("room.lecturer", { name: room.lecturer }) : "";
  document.title = `${room.site_name || t("room.site")} · ${t("room.title")}`;
  const input = $("headcount-count");
  if (room.max_headcount) input.max = String(room.max_headcount);
  if (room.headcount != null && input.value === "" && document.activeElement !== input) {
    input.value = String(room.headcount);
  }
  showTimeshift();
  if (room.state === "ended") {
    finish("ended");
  } else if (room.program_failed) {
    show("failed");
  } else if (room.publisher_connected) {
    show(null);
  } else {
    $("waiting-time").textContent = formatTime(room.scheduled_start);
    show("waiting");
  }
}

// ------------------------------------------------------------- timeshift

// A room that joined late may watch from the beginning (时移) while the
// lecture is recorded, then go back to live. Only this room's picture changes.
function showTimeshift() {
  const room = state.room;
  const shifted = state.timeshift === "timeshift";
  const offered = shifted || !!(room && room.timeshift_available && viewer);
  $("timeshift").hidden = !offered || finished;
  $("timeshift-start").hidden = shifted;
  $("timeshift-live").hidden = !shifted;
  $("timeshift-badge").hidden = !shifted;
}

async function setTimeshift(mode) {
  if (!viewer || !viewer.resourceUrl) return;
  const resource = viewer.resourceUrl.split("/").pop();
  for (const id of ["timeshift-start", "timeshift-live"]) $(id).disabled = true;
  try {
    const response = await api("/api/v1/room/timeshift", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ mode, resource }),
    });
    if (response.ok) state.timeshift = (await response.json()).mode;
  } catch (e) {
    // Unreachable for now: the button stays as it was.
  } finally {
    for (const id of ["timeshift-start", "timeshift-live"]) $(id).disabled = false;
    showTimeshift();
  }
}

function finish(screen) {
  if (finished) return;
  finished = true;
  state.state = screen;
  show(screen);
  clearTimeout(reconnectTimer);
  clearTimeout(disconnectTimer);
  $("unmute").hidden = true;
  setStatus(screen === "ended" ? "room.ended.title" : "room.gone.title");
  if (viewer) {
    const old = viewer;
    viewer = null;
    old.stop();
  }
}

async function poll() {
  try {
    const response = await api("/api/v1/room");
    if (response.status === 401 || response.status === 403 || response.status === 410) {
      finish("gone");
      return;
    }
    if (response.ok) showRoom(await response.json());
  } catch (e) {
    // The server is unreachable for now: the next poll tries again.
  }
}

// -------------------------------------------------------------- the picture

async function play() {
  try {
    video.muted = false;
    await video.play();
    $("unmute").hidden = true;
  } catch (e) {
    if (e && e.name === "NotAllowedError") {
      // Autoplay with sound was blocked: play muted, offer one click for sound.
      video.muted = true;
      try { await video.play(); } catch (ignored) { /* shown on the click */ }
      $("unmute").hidden = false;
    }
  }
}

async function connect() {
  if (finished || !state.room) return;
  reconnectTimer = null;
  state.state = "connecting";
  setStatus("room.status.connecting");
  let current;
  try {
    current = await view(`/whep/${encodeURIComponent(state.room.session_id)}`, token, iceServers);
  } catch (e) {
    state.error = String(e && e.message || e);
    if (e && (e.status === 401 || e.status === 403 || e.status === 410)) {
      await poll(); // ended, or the link is gone
    }
    scheduleReconnect();
    return;
  }
  if (finished) {
    current.stop();
    return;
  }
  viewer = current;
  state.pc = current.pc;
  state.error = null;
  state.timeshift = "live"; // a new connection starts live
  showTimeshift();
  video.srcObject = current.stream;
  play();
  current.pc.addEventListener("connectionstatechange", () => onConnectionState(current));
  onConnectionState(current);
}

function onConnectionState(current) {
  if (current !== viewer) return;
  const pcState = current.pc.connectionState;
  state.state = pcState;
  clearTimeout(disconnectTimer);
  if (pcState === "connected") {
    attempt = 0;
    setStatus("room.status.connected");
  } else if (pcState === "failed" || pcState === "closed") {
    poll().then(() => scheduleReconnect());
  } else if (pcState === "disconnected") {
    disconnectTimer = setTimeout(() => {
      if (current === viewer && current.pc.connectionState === "disconnected") {
        scheduleReconnect();
      }
    }, DISCONNECTED_GRACE_MS);
  }
}

function scheduleReconnect() {
  if (finished || reconnectTimer) return;
  if (viewer) {
    const old = viewer;
    viewer = null;
    old.stop(); // closes the pc and ends the server's resource
  }
  const seconds = BACKOFF_S[Math.min(attempt, BACKOFF_S.length - 1)];
  attempt += 1;
  state.state = "reconnecting";
  setStatus("room.status.reconnecting", { seconds });
  reconnectTimer = setTimeout(connect, seconds * 1000);
}

// ---------------------------------------------------------- link quality

let previous = null;

async function measure() {
  const pc = viewer && viewer.pc;
  if (!pc || pc.connectionState !== "connected") {
    showQuality(null);
    previous = null;
    return;
  }
  let stats;
  try {
    stats = await pc.getStats();
  } catch (e) {
    return;
  }
  let received = 0, lost = 0, jitter = null, fps = null, rtt = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      received = s.packetsReceived || 0;
      lost = Math.max(0, s.packetsLost || 0);
      if (s.jitter != null) jitter = s.jitter * 1000;
      if (s.framesPerSecond != null) fps = s.framesPerSecond;
    } else if (s.type === "candidate-pair" && (s.nominated || s.selected)
               && s.currentRoundTripTime != null) {
      rtt = s.currentRoundTripTime * 1000;
    }
  });
  const now = { received, lost };
  let loss = 0;
  if (previous) {
    const got = now.received - previous.received, missed = now.lost - previous.lost;
    loss = got + missed > 0 ? (100 * Math.max(0, missed)) / (got + missed) : 0;
  }
  previous = now;
  const live = !!(state.room && state.room.publisher_connected) && received > 0;
  let level = "good";
  if (loss > 5 || (rtt ?? 0) > 400 || (jitter ?? 0) > 80 || (live && fps != null && fps < 10)) {
    level = "poor";
  } else if (loss > 1 || (rtt ?? 0) > 200 || (jitter ?? 0) > 30
             || (live && fps != null && fps < 20)) {
    level = "fair";
  }
  showQuality({ level, loss, jitter, rtt, fps });
}

function showQuality(q) {
  state.quality = q;
  const el = $("quality");
  el.className = `quality ${q ? q.level : "unknown"}`;
  $("quality-text").textContent = t(q ? `room.quality.${q.level}` : "room.quality.unknown");
  const round = (v, digits = 0) => (v == null ? "–" : v.toFixed(digits));
  el.title = q ? t("room.quality.details", {
    loss: round(q.loss, 1), jitter: round(q.jitter), rtt: round(q.rtt), fps: round(q.fps),
  }) : "";
}

// --------------------------------------------------------- controls

function fullscreenElement() {
  return document.fullscreenElement || document.webkitFullscreenElement || null;
}

function toggleFullscreen() {
  if (fullscreenElement()) {
    (document.exitFullscreen || document.webkitExitFullscreen).call(document);
  } else if (stage.requestFullscreen) {
    stage.requestFullscreen().catch(() => {});
  } else if (stage.webkitRequestFullscreen) {
    stage.webkitRequestFullscreen();
  } else if (video.webkitEnterFullscreen) {
    video.webkitEnterFullscreen(); // iPhone Safari: only the video itself
  }
}

function onFullscreenChange() {
  $("fullscreen").textContent = t(fullscreenElement() ? "room.fullscreen.exit" : "room.fullscreen");
}

async function reportHeadcount(event) {
  event.preventDefault();
  const input = $("headcount-count"), note = $("headcount-note");
  const raw = input.value.trim();
  const count = Number(raw);
  note.classList.remove("error");
  const limit = (state.room && state.room.max_headcount) || DEFAULT_MAX_HEADCOUNT;
  if (!/^\d+$/.test(raw) || count > limit) {
    note.textContent = t("room.headcount.invalid");
    note.classList.add("error");
    return;
  }
  try {
    const response = await api("/api/v1/room/headcount", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ count }),
    });
    if (response.status !== 204) throw new Error(String(response.status));
    note.textContent = t("room.headcount.saved", { count });
  } catch (e) {
    note.textContent = t("room.headcount.failed");
    note.classList.add("error");
  }
}

// ------------------------------------------------------------------- start

async function main() {
  await init();
  setStatus(statusKey, statusValues);
  $("lang").addEventListener("click", () => switchLanguage(language() === "zh-CN" ? "en" : "zh-CN"));
  $("fullscreen").addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", onFullscreenChange);
  document.addEventListener("webkitfullscreenchange", onFullscreenChange);
  video.addEventListener("dblclick", toggleFullscreen);
  $("unmute").addEventListener("click", () => {
    video.muted = false;
    video.play().then(() => { $("unmute").hidden = true; }, () => {});
  });
  $("headcount").addEventListener("submit", reportHeadcount);
  $("timeshift-start").addEventListener("click", () => setTimeshift("start"));
  $("timeshift-live").addEventListener("click", () => setTimeshift("live"));
  video.addEventListener("playing", () => { if (!video.muted) $("unmute").hidden = true; });

  await poll();
  setInterval(poll, POLL_MS);
  setInterval(measure, STATS_MS);
  if (finished) return;
  try {
    iceServers = await loadIceServers();
  } catch (e) {
    iceServers = [];
  }
  if (state.room) {
    connect();
  } else {
    // The first poll failed (network): keep trying until the room is known.
    const wait = setInterval(() => {
      if (finished) clearInterval(wait);
      else if (state.room) { clearInterval(wait); connect(); }
    }, 1000);
  }
}

main().catch((e) => { state.error = String(e); });
