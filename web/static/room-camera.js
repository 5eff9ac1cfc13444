// This room's camera (本会场画面): its picture and sound sent to the server
// over WHIP for the discussion, kept up by a KeptConnection per turn.
import { t } from "/static/i18n.js";
import { publish } from "/static/whip-client.js";
import { KeptConnection } from "/static/kept-connection.js";
import { $, flashError, mine, page, poll, state, token } from "/static/room-page.js";

let uplink = null; // {pc, stop()} of this room's camera on its way to the server
let cameraStream = null;

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

export function renderCamera() {
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
                     cameraStream, page.iceServers);
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
  if (state.camera !== "off" || page.finished || !state.room) return;
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

export function stopCamera() {
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
  flashError(t(key, { error: (e && (e.message || e.name)) || "" }));
}


export function setupCamera() {
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  window.addEventListener("pagehide", () => { if (uplink) uplink.stop(); });
}
