// The picture (节目): the program over WHEP with its sound, kept up until the
// session ends; 时移 (watching from the start); the link quality; fullscreen.
import { t } from "/static/i18n.js";
import { view } from "/static/whip-client.js";
import { KeptConnection } from "/static/kept-connection.js";
import { $, api, page, poll, setStatus, state, token, video } from "/static/room-page.js";
import { renderStage } from "/static/room-discussion.js";

const BACKOFF_S = [1, 2, 5, 10];
const DISCONNECTED_GRACE_MS = 5000; // "disconnected" often heals by itself
// Watching through a district edge (the origin redirected the offer there):
// an edge that dies goes silent without a word, and the browser would
// notice only when ICE consent fails and the grace above runs out (≈ 12 s
// measured). While the lecture is on air, this long without a byte of it
// means the edge is gone: retry at once, and the origin, whose directory
// forgets a dead edge within 2.5 s, answers the retry itself.
const EDGE_SILENCE_MS = 1500;
const stage = $("stage");

let watching = null; // KeptConnection of the picture
// The last try failed on the network (no answer at all): an edge the origin
// sent us to is unreachable from here, or this page's policy predates it.
// The next try asks the origin to answer itself.
let direct = false;
// 时移 was asked while watching through an edge: the recording is at the
// origin, so the page connects there (?direct=1) and asks once it is up.
let shiftWhenUp = false;

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
export function connectPicture() {
  if (page.finished || !state.room || watching) return;
  watching = new KeptConnection({
    delays: BACKOFF_S,
    graceMs: DISCONNECTED_GRACE_MS,
    giveUp: () => false,
    open() {
      state.state = "connecting";
      setStatus("room.status.connecting");
      const query = direct ? "?direct=1" : "";
      return view(`/whep/${encodeURIComponent(state.room.session_id)}${query}`, token,
                  page.iceServers);
    },
    async beforeRetry(e) {
      if (e) state.error = String(e && e.message || e);
      direct = (Boolean(e) && e.status === undefined) || shiftWhenUp;
      // Dropped, or refused: ended, or the link is gone?
      if (!e || e.status === 401 || e.status === 403 || e.status === 410) await poll();
    },
    onUp(current) {
      page.viewer = current;
      watchEdge(current);
      state.pc = current.pc;
      state.error = null;
      state.timeshift = "live"; // a new connection starts live
      showTimeshift();
      if (shiftWhenUp) {
        shiftWhenUp = false;
        if (!onEdge(current)) setTimeshift("start");
      }
      video.srcObject = current.stream;
      $("stage-video").srcObject = current.stageStream;
      play();
      renderStage();
    },
    onDown() {
      page.viewer = null; // stop() closes the pc and ends the server's resource
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

// Whether this connection is served by a district edge (or a worker).
function onEdge(current) {
  return !!current.resourceUrl && new URL(current.resourceUrl).origin !== location.origin;
}

function watchEdge(current) {
  if (!onEdge(current)) return;
  let bytes = -1;
  let since = performance.now();
  const timer = setInterval(async () => {
    if (page.viewer !== current || !watching) {
      clearInterval(timer);
      return;
    }
    let now = 0;
    try {
      (await current.pc.getStats()).forEach((report) => {
        if (report.type === "inbound-rtp") now += report.bytesReceived || 0;
      });
    } catch (e) {
      return; // closed meanwhile: the connection's own state says so
    }
    const at = performance.now();
    if (now !== bytes || !state.room?.publisher_connected) {
      bytes = now;
      since = at;
    } else if (at - since >= EDGE_SILENCE_MS) {
      clearInterval(timer);
      watching.lost(current);
    }
  }, 500);
}

export function stopPicture() {
  if (watching) watching.stop();
}

// ------------------------------------------------------------- timeshift

// A room that joined late may watch from the beginning (时移) while the
// lecture is recorded, then go back to live. Only this room's picture changes.
export function showTimeshift() {
  const room = state.room;
  const shifted = state.timeshift === "timeshift";
  const offered = shifted || !!(room && room.timeshift_available && page.viewer);
  $("timeshift").hidden = !offered || page.finished;
  $("timeshift-start").hidden = shifted;
  $("timeshift-live").hidden = !shifted;
  $("timeshift-badge").hidden = !shifted;
}

async function setTimeshift(mode) {
  if (!page.viewer || !page.viewer.resourceUrl) return;
  if (mode === "start" && onEdge(page.viewer) && watching) {
    // The edge has no recording: watch from the origin, which serves 时移
    // (about a second without picture while the page reconnects). The room
    // stays there, back to live too, until its next reconnection.
    shiftWhenUp = true;
    watching.lost(page.viewer);
    return;
  }
  const resource = page.viewer.resourceUrl.split("/").pop();
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

// ------------------------------------------------------ 高清 / 仅声音

// What the relay sends this room (its reading of the room's link, or the
// room's own choice of sound only) comes with the room's poll (room.js).
export function showLevel() {
  const level = state.level;
  const shown = !!level && !page.finished && !!page.viewer;
  $("level").hidden = !shown;
  const audio = shown && level.level === "audio";
  $("audio-screen").hidden = !audio;
  if (!shown) return;
  const badge = $("level-badge");
  badge.textContent = t(`room.level.${level.level}`);
  badge.className = `badge ${level.level}`;
  $("audio-only").hidden = level.audio_only;
  $("picture-back").hidden = !level.audio_only;
  $("audio-reason").textContent = t(level.audio_only ? "room.level.reason_chosen"
                                                     : "room.level.reason_link");
}

// A room watching through an edge (or a worker) asks it, not the origin,
// which does not know that viewer: the edge answers on the WHEP resource.
export async function refreshEdgeLevel() {
  const current = page.viewer;
  if (!current || !onEdge(current)) return;
  try {
    const response = await api(`${current.resourceUrl}/quality`);
    if (response.ok && page.viewer === current) {
      state.level = await response.json();
      showLevel();
    }
  } catch (e) {
    // The edge is gone: the connection's own watch reconnects.
  }
}

async function chooseAudioOnly(audioOnly) {
  const current = page.viewer;
  const resource = current && current.resourceUrl && current.resourceUrl.split("/").pop();
  if (!resource) return;
  for (const id of ["audio-only", "picture-back"]) $(id).disabled = true;
  try {
    const json = { "Content-Type": "application/json" };
    const response = onEdge(current)
      ? await api(`${current.resourceUrl}/quality`, {
        method: "POST", headers: json, body: JSON.stringify({ audio_only: audioOnly }),
      })
      : await api("/api/v1/room/quality", {
        method: "POST", headers: json, body: JSON.stringify({ resource, audio_only: audioOnly }),
      });
    if (response.ok) state.level = await response.json();
  } finally {
    for (const id of ["audio-only", "picture-back"]) $(id).disabled = false;
    showLevel();
  }
}

// ---------------------------------------------------------- link quality

let previous = null;

export async function measure() {
  const pc = page.viewer && page.viewer.pc;
  if (!pc || pc.connectionState !== "connected") {
    showQuality(null);
    previous = null;
    state.level = null;
    showLevel();
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
        && (s.mid == null || s.mid === page.viewer.programVideoMid)) {
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

// ------------------------------------------------------------ fullscreen

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

export function setupPicture() {
  $("fullscreen").addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", onFullscreenChange);
  document.addEventListener("webkitfullscreenchange", onFullscreenChange);
  video.addEventListener("dblclick", toggleFullscreen);
  $("unmute").addEventListener("click", () => {
    video.muted = false;
    video.play().then(() => { $("unmute").hidden = true; }, () => {});
  });
  $("audio-only").addEventListener("click", () => chooseAudioOnly(true));
  $("picture-back").addEventListener("click", () => chooseAudioOnly(false));
  $("timeshift-start").addEventListener("click", () => setTimeshift("start"));
  $("timeshift-live").addEventListener("click", () => setTimeshift("live"));
  video.addEventListener("playing", () => { if (!video.muted) $("unmute").hidden = true; });
}
