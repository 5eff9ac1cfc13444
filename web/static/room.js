// The sub-classroom's room page (分课堂): one big picture with sound, over WHEP
// with the room's invitation token. Waits for the lecture without reloading,
// reconnects by itself, shows the link quality and reports the headcount.
import { init, language, t, switchLanguage } from "/static/i18n.js";
import { CLOSE_ENDED, CLOSE_REVOKED, EventsClient } from "/static/events-client.js";
import { loadIceServers, publish, view } from "/static/whip-client.js";
import { KeptConnection } from "/static/kept-connection.js";

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
                timeshift: "live", discussion: null, events: "closed", uplinkPc: null,
                camera: "off", cameraRetryIn: null, cameraRetries: 0 };
window.zhixing = state;

let viewer = null; // {pc, stream, stageStream, resourceUrl, stop()} of the picture
let watching = null; // KeptConnection of the picture
let iceServers = [];
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
  if (watching) watching.stop();
  $("unmute").hidden = true;
  setStatus(screen === "ended" ? "room.ended.title" : "room.gone.title");
  stopDiscussion();
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

// The picture is kept up until the session ends or the link is gone: a
// failed or dropped connection is opened again with backoff; a refusal
// (401/403/410) first asks the room whether it has ended.
function connect() {
  if (finished || !state.room || watching) return;
  watching = new KeptConnection({
    delays: BACKOFF_S,
    graceMs: DISCONNECTED_GRACE_MS,
    giveUp: () => false,
    open() {
      state.state = "connecting";
      setStatus("room.status.connecting");
      return view(`/whep/${encodeURIComponent(state.room.session_id)}`, token, iceServers);
    },
    async beforeRetry(e) {
      if (e) state.error = String(e && e.message || e);
      // Dropped, or refused: ended, or the link is gone?
      if (!e || e.status === 401 || e.status === 403 || e.status === 410) await poll();
    },
    onUp(current) {
      viewer = current;
      state.pc = current.pc;
      state.error = null;
      state.timeshift = "live"; // a new connection starts live
      showTimeshift();
      video.srcObject = current.stream;
      $("stage-video").srcObject = current.stageStream;
      play();
      renderStage();
    },
    onDown() {
      viewer = null; // stop() closes the pc and ends the server's resource
    },
    onState(pcState) {
      state.state = pcState;
      if (pcState === "connected") setStatus("room.status.connected");
    },
    onRetry({ seconds }) {
      state.state = "reconnecting";
      setStatus("room.status.reconnecting", { seconds });
    },
  });
  watching.start();
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
    if (s.type === "inbound-rtp" && s.kind === "video"
        && (s.mid == null || s.mid === viewer.programVideoMid)) {
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

// ------------------------------------------------------------ 研讨 (discussion)

// The room-events socket: this room's hand, its questions and their answers,
// who is on stage.
const QUESTION_MAX = 500;
const ERROR_SHOWN_MS = 6000;
const KNOWN_ERRORS = ["rate_limited", "locked", "too_long", "empty", "full", "unavailable",
                      "forbidden", "not_found", "too_large"];

let events = null; // EventsClient
let errorTimer = null;
let uplink = null; // {pc, stop()} of this room's camera on its way to the server
let cameraStream = null;

function mine() {
  const d = state.discussion;
  return d && d.you ? d.you.invitation_id : null;
}

function connectEvents() {
  if (finished || events || !state.room) return;
  events = new EventsClient({
    sessionId: state.room.session_id, token,
    onState: (discussion) => {
      state.discussion = discussion;
      renderDiscussion();
    },
    onError: showDiscussError,
    onStatus: (status) => {
      state.events = status;
      renderDiscussion();
    },
    onClose: (code) => {
      if (code === CLOSE_ENDED || code === CLOSE_REVOKED) poll(); // the end, or the link gone
      return !finished;
    },
  });
  events.start();
}

function stopDiscussion() {
  if (events) {
    events.stop();
    events = null;
  }
  stopCamera();
  state.discussion = null;
  renderDiscussion();
}

// Send one message; onAck runs when the server accepted it.
function send(type, fields = {}, onAck = null) {
  if (events) return events.send(type, fields, onAck);
  showDiscussError("offline");
  return false;
}

function showDiscussError(code) {
  const el = $("discuss-error");
  const key = code === "offline" || KNOWN_ERRORS.includes(code)
    ? `room.discuss.error.${code}` : "room.discuss.error.other";
  el.textContent = t(key, { code: String(code || "") });
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { el.hidden = true; }, ERROR_SHOWN_MS);
}

function statusText(question) {
  return t(`room.question.status.${question.status}`);
}

function renderQuestions(questions) {
  const items = questions.slice().reverse().map((q) => {
    const li = document.createElement("li");
    li.dataset.status = q.status;
    li.dataset.id = String(q.id);
    const text = document.createElement("p");
    text.className = "q-text";
    text.textContent = q.text;
    const status = document.createElement("span");
    status.className = "q-status";
    status.textContent = statusText(q);
    li.append(status, text);
    if (q.answer) {
      const answer = document.createElement("p");
      answer.className = "q-answer";
      answer.textContent = t("room.question.answer", { text: q.answer });
      li.append(answer);
    }
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = t("room.question.none");
    items.push(li);
  }
  $("my-questions").replaceChildren(...items);
}

function renderDiscussion() {
  const d = state.discussion;
  // A replay has nobody to answer: no camera, hand or questions (its stage
  // still shows the rooms of the recorded discussion).
  $("discuss").hidden = !d || finished || !!(state.room && state.room.replay);
  renderStage();
  renderCamera();
  if (!d) return;
  const me = mine();
  const raised = d.hands.some((h) => h.invitation_id === me);
  const hand = $("hand");
  hand.textContent = t(raised ? "room.hand.lower" : "room.hand.raise");
  hand.dataset.raised = String(raised);
  $("hand-note").textContent = state.events !== "open" ? t("room.discuss.offline")
    : raised ? t("room.hand.raised") : "";
  $("question-submit").disabled = d.locked;
  $("question").disabled = d.locked;
  $("question").placeholder = t(d.locked ? "room.question.locked" : "room.question.placeholder");
  renderQuestions(d.questions);
}

function countQuestion() {
  const length = $("question").value.length;
  const el = $("question-count");
  el.textContent = t("room.question.count", { count: length, max: QUESTION_MAX });
  el.classList.toggle("error", length > QUESTION_MAX);
}

function ask(event) {
  event.preventDefault();
  const text = $("question").value.trim();
  if (!text) {
    showDiscussError("empty");
    return;
  }
  if (text.length > QUESTION_MAX) {
    showDiscussError("too_long");
    return;
  }
  send("question", { text }, () => {
    $("question").value = "";
    countQuestion();
  });
}

function toggleHand() {
  const d = state.discussion;
  if (!d) return;
  const raised = d.hands.some((h) => h.invitation_id === mine());
  send("hand", { raised: !raised });
}

// ------------------------------------------------------------ the stage

// Someone on stage: their picture over the program, with their sound. This
// room's own turn shows its picture as the others see it, without its sound
// (it would come back into its own microphone).
function renderStage() {
  const d = state.discussion;
  const on = d && d.stage ? d.stage : null;
  const box = $("stage-box");
  const stageVideo = $("stage-video");
  const show = !!(on && viewer && !finished);
  box.hidden = !show;
  state.stage = show ? on.invitation_id : null;
  if (!show) {
    stageVideo.pause();
    return;
  }
  $("stage-name").textContent = t("room.stage.label", { name: on.name });
  stageVideo.muted = (on.invitation_id !== null && on.invitation_id === mine()) || video.muted;
  if (stageVideo.paused) stageVideo.play().catch(() => {});
}

// ------------------------------------------------------------ this room's camera

// Once turned on, the camera stays wanted until the room turns it off or the
// session ends: a refused or dropped uplink is published again with the
// presenter page's backoff (a KeptConnection per turn). Only a "no" from the server (4xx: the link
// revoked, the session over, a codec it cannot take) or no camera at all
// stops it. state.camera: "off", "starting" (opening the camera),
// "connecting", "retrying" (waiting cameraRetryIn seconds) or "on".
const CAMERA_RETRY_S = [1, 2, 5, 10]; // seconds; the last one repeats
const CAMERA_GRACE_MS = 3000; // "disconnected" often heals by itself

let cameraKeeper = null; // KeptConnection of this turn of the camera, on to off

function setCamera(camera) {
  state.camera = camera;
  renderCamera();
}

function renderCamera() {
  const d = state.discussion;
  const me = mine();
  const on = state.camera !== "off";
  $("camera-start").hidden = on;
  $("camera-stop").hidden = !on;
  $("camera-preview").hidden = !on;
  const onAir = $("on-air");
  const uplinkState = d ? d.uplinks.find((u) => u.invitation_id === me) : null;
  let key = null;
  let values = {};
  if (state.camera === "starting") key = "room.camera.starting";
  else if (state.camera === "connecting") key = "room.camera.connecting";
  else if (state.camera === "retrying") {
    key = "room.camera.retrying";
    values = { seconds: state.cameraRetryIn };
  } else if (state.camera === "on" && d && d.stage && d.stage.invitation_id === me) {
    key = "room.camera.onstage";
  } else if (state.camera === "on" && uplinkState && uplinkState.muted) key = "room.camera.muted";
  else if (state.camera === "on") key = "room.camera.on";
  onAir.hidden = !key;
  onAir.textContent = key ? t(key, values) : "";
  onAir.dataset.state = key ? key.split(".").pop() : "";
}

function keepCamera() {
  return new KeptConnection({
    delays: CAMERA_RETRY_S,
    graceMs: CAMERA_GRACE_MS,
    open() {
      setCamera("connecting");
      return publish(`/whip/${encodeURIComponent(state.room.session_id)}`, token,
                     cameraStream, iceServers);
    },
    onGiveUp(e) {
      // The server said no: trying again would not change its mind.
      stopCamera();
      showCameraError("room.camera.rejected", e);
      if (e.status === 401 || e.status === 403 || e.status === 410) poll(); // ended, or gone
    },
    onUp(result) {
      uplink = result;
      state.uplinkPc = result.pc;
    },
    onDown() {
      uplink = null;
      state.uplinkPc = null;
    },
    // No DELETE on a retry: the next POST replaces this uplink on the server
    // and keeps the room's place on stage; ending it first would empty the stage.
    drop: (result) => result.pc.close(),
    onState(pcState) {
      if (pcState === "connected") setCamera("on");
    },
    onRetry({ seconds }) {
      state.cameraRetries = (state.cameraRetries || 0) + 1;
      state.cameraRetryIn = seconds;
      setCamera("retrying");
    },
  });
}

async function startCamera() {
  if (state.camera !== "off" || finished || !state.room) return;
  const keeper = keepCamera();
  cameraKeeper = keeper;
  setCamera("starting");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 25 } },
      audio: { echoCancellation: true, noiseSuppression: true },
    });
  } catch (e) {
    if (keeper !== cameraKeeper) return;
    cameraKeeper = null;
    setCamera("off");
    showCameraError("room.camera.failed", e);
    return;
  }
  if (keeper !== cameraKeeper) {
    // Turned off (or the session ended) while the browser was opening it.
    for (const track of stream.getTracks()) track.stop();
    return;
  }
  cameraStream = stream;
  $("camera-preview").srcObject = stream;
  keeper.start();
}

function stopCamera() {
  const wasOn = state.camera !== "off";
  const keeper = cameraKeeper;
  cameraKeeper = null;
  state.camera = "off";
  if (keeper) keeper.stop(); // ends the uplink (a DELETE: off the stage)
  state.uplinkPc = null;
  if (cameraStream) {
    for (const track of cameraStream.getTracks()) track.stop();
    cameraStream = null;
  }
  $("camera-preview").srcObject = null;
  if (wasOn) renderCamera();
}

function showCameraError(key, e) {
  const el = $("discuss-error");
  el.textContent = t(key, { error: (e && (e.message || e.name)) || "" });
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { el.hidden = true; }, ERROR_SHOWN_MS);
}

function setupDiscussion() {
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("hand").addEventListener("click", toggleHand);
  $("ask").addEventListener("submit", ask);
  $("question").addEventListener("input", countQuestion);
  countQuestion();
  video.addEventListener("volumechange", renderStage); // 点击开启声音 covers the stage too
  window.addEventListener("pagehide", () => { if (uplink) uplink.stop(); });
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

  setupDiscussion();
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
    connectEvents();
  } else {
    // The first poll failed (network): keep trying until the room is known.
    const wait = setInterval(() => {
      if (finished) clearInterval(wait);
      else if (state.room) { clearInterval(wait); connect(); connectEvents(); }
    }, 1000);
  }
}

main().catch((e) => { state.error = String(e); });
