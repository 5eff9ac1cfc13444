// The presenter page (主课堂): camera or screen + microphone, sent over WHIP;
// the invited sub-classrooms (分课堂) and whether they are in.
// The publish token comes in the URL fragment (#token=...), never in a request for the page.
import { init, t } from "/static/i18n.js";
import { EventsClient } from "/static/events-client.js";
import { loadIceServers, publish, view } from "/static/whip-client.js";
import { isRefusal, KeptConnection } from "/static/kept-connection.js";

const PRESETS = {
  "720p": { width: 1280, height: 720, maxBitrate: 2_500_000 },
  "480p": { width: 854, height: 480, maxBitrate: 1_000_000 },
  "360p": { width: 640, height: 360, maxBitrate: 500_000 },
};
const RETRY_DELAYS = [1, 2, 5, 10]; // seconds; the last one repeats
const DISCONNECTED_GRACE_MS = 3000; // "disconnected" often heals by itself
const PRESENCE_INTERVAL_MS = 2000;

const $ = (id) => document.getElementById(id);
const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";

// What the test harness and a curious operator can read.
const zhixing = { state: "idle", error: null, pc: null, presence: null, attempts: 0,
                  discussion: null, stagePc: null };
window.zhixing = zhixing;

let stream = null; // the local MediaStream (preview and what is sent)
let current = null; // {pc, stop()} of the running publish
let publishing = null; // KeptConnection: the operator pressed 开始直播 and not yet 结束直播
let opening = null; // the openMedia() in progress
let iceServers = null;
let status = { key: "presenter.state.idle", values: {}, state: "idle" };
let error = null; // {key, values}
let lastPresence = null;
let presenceError = null;

// ---------------------------------------------------------------- texts

function setStatus(state, key, values = {}) {
  status = { state, key, values };
  zhixing.state = state;
  renderStatus();
}

function renderStatus() {
  const el = $("status");
  el.dataset.state = status.state;
  el.textContent = t(status.key, status.values);
}

function showError(key, values = {}) {
  error = key ? { key, values } : null;
  zhixing.error = key ? t(key, values) : null;
  renderError();
}

function renderError() {
  const el = $("error");
  el.hidden = !error;
  el.textContent = error ? t(error.key, error.values) : "";
}

function renderAll() {
  renderStatus();
  renderError();
  renderSites();
  fillDevices(lastDevices);
  renderDiscussion();
}

async function setLanguage(lang) {
  document.cookie = `zhixing_lang=${lang}; path=/; max-age=31536000; SameSite=Lax`;
  const url = new URL(location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.delete("lang");
    history.replaceState(null, "", url.toString());
  }
  // No reload: a broadcast in progress goes on.
  const now = await init();
  $("lang").dataset.lang = now;
  renderAll();
}

// ---------------------------------------------------------------- devices

let lastDevices = [];

function fillSelect(select, devices, kind) {
  const chosen = select.value;
  select.replaceChildren();
  const mine = devices.filter((d) => d.kind === kind);
  if (!mine.length || mine.every((d) => !d.deviceId)) {
    select.append(new Option(t("presenter.device.default"), ""));
    return;
  }
  mine.forEach((d, i) => {
    select.append(new Option(d.label || t("presenter.device.unnamed", { n: i + 1 }), d.deviceId));
  });
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function fillDevices(devices) {
  lastDevices = devices;
  fillSelect($("camera"), devices, "videoinput");
  fillSelect($("microphone"), devices, "audioinput");
}

async function refreshDevices() {
  try {
    fillDevices(await navigator.mediaDevices.enumerateDevices());
  } catch (e) {
    fillDevices([]);
  }
}

function selectedTrack(stream) {
  // Keep the selects on the devices actually opened.
  for (const track of stream.getTracks()) {
    const id = track.getSettings().deviceId;
    const select = track.kind === "audio" ? $("microphone") : $("camera");
    if (id && track.kind === "audio" && [...select.options].some((o) => o.value === id)) {
      select.value = id;
    }
    if (id && track.kind === "video" && $("source").value === "camera"
        && [...select.options].some((o) => o.value === id)) {
      select.value = id;
    }
  }
}

function mediaErrorKey(e) {
  switch (e && e.name) {
    case "NotAllowedError":
    case "SecurityError":
      return ["presenter.error.permission", {}];
    case "NotFoundError":
    case "OverconstrainedError":
      return ["presenter.error.no_device", {}];
    case "NotReadableError":
    case "AbortError":
      return ["presenter.error.device_busy", {}];
    default:
      return ["presenter.error.media", { error: (e && e.message) || String(e) }];
  }
}

function videoConstraints() {
  const preset = PRESETS[$("preset").value];
  const video = { width: { ideal: preset.width }, height: { ideal: preset.height },
                  frameRate: { ideal: 25 } };
  const camera = $("camera").value;
  if (camera) video.deviceId = { exact: camera };
  return video;
}

function audioConstraints() {
  const microphone = $("microphone").value;
  const audio = { echoCancellation: true, noiseSuppression: true };
  if (microphone) audio.deviceId = { exact: microphone };
  return audio;
}

async function openScreen() {
  const preset = PRESETS[$("preset").value];
  const screen = await navigator.mediaDevices.getDisplayMedia({
    video: { width: { ideal: preset.width }, height: { ideal: preset.height },
             frameRate: { ideal: 15 } },
    audio: false,
  });
  const track = screen.getVideoTracks()[0];
  track.contentHint = "detail";
  // The operator stops sharing in the browser's own bar: back to the camera.
  track.addEventListener("ended", () => {
    if ($("source").value === "screen" && stream && stream.getVideoTracks()[0] === track) {
      $("source").value = "camera";
      media().catch(() => {});
    }
  });
  return track;
}

// Open the chosen camera (or screen) and microphone; the preview shows them and,
// when live, the senders switch to them without a new negotiation.
async function openMedia() {
  let video;
  let audio;
  try {
    if ($("source").value === "screen") {
      try {
        video = await openScreen();
      } catch (e) {
        $("source").value = "camera";
        showError("presenter.error.screen", { error: e.message || e.name || String(e) });
        return openMedia();
      }
      const mic = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints() });
      audio = mic.getAudioTracks()[0];
    } else {
      const both = await navigator.mediaDevices.getUserMedia({
        video: videoConstraints(), audio: audioConstraints() });
      video = both.getVideoTracks()[0];
      audio = both.getAudioTracks()[0];
    }
  } catch (e) {
    if (video) video.stop();
    const [key, values] = mediaErrorKey(e);
    showError(key, values);
    throw e;
  }
  const old = stream;
  stream = new MediaStream([video, audio].filter(Boolean));
  $("preview").srcObject = stream;
  if (error && error.key.startsWith("presenter.error.") && error.key !== "presenter.error.screen"
      && error.key !== "presenter.error.rejected") {
    showError(null);
  }
  await refreshDevices();
  selectedTrack(stream);
  if (current) {
    for (const sender of current.pc.getSenders()) {
      const track = sender.track || null;
      const kind = track ? track.kind : null;
      const next = kind === "audio" ? audio : kind === "video" ? video : null;
      if (next) await sender.replaceTrack(next);
    }
    await applyBitrate(current.pc);
  }
  if (old) for (const track of old.getTracks()) track.stop();
  return stream;
}

// One opening at a time (the first preview and 开始直播 may overlap).
function media() {
  const run = (opening || Promise.resolve()).catch(() => {}).then(openMedia);
  opening = run.finally(() => {
    if (opening === pending) opening = null;
  });
  const pending = opening;
  return run;
}

// A new preset: the same devices at another size, and the new bitrate.
async function changePreset() {
  const video = stream && stream.getVideoTracks()[0];
  if (!video) return media();
  const preset = PRESETS[$("preset").value];
  try {
    await video.applyConstraints({ width: { ideal: preset.width },
                                   height: { ideal: preset.height } });
  } catch (e) {
    return media();
  }
  if (current) await applyBitrate(current.pc);
  return stream;
}

async function applyBitrate(pc) {
  const preset = PRESETS[$("preset").value];
  for (const sender of pc.getSenders()) {
    if (!sender.track || sender.track.kind !== "video") continue;
    const parameters = sender.getParameters();
    if (!parameters.encodings || !parameters.encodings.length) parameters.encodings = [{}];
    for (const encoding of parameters.encodings) encoding.maxBitrate = preset.maxBitrate;
    try {
      await sender.setParameters(parameters);
    } catch (e) {
      console.warn("setParameters", e);
    }
  }
}

// ---------------------------------------------------------------- publishing

function serverText(e) {
  // whip-client throws "status: body"; our server's body is {"error": "..."}.
  const text = String((e && e.message) || e);
  const body = text.replace(/^\d{3}: /, "");
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch (_) {
    // plain text
  }
  return body;
}

// 开始直播 keeps the WHIP publish up until 结束直播: a refused or dropped one
// is published again with backoff; a "no" from the server (4xx) or no camera
// stops it.
class MediaFailed extends Error {} // openMedia has said what is wrong

function keepPublishing() {
  return new KeptConnection({
    delays: RETRY_DELAYS,
    graceMs: DISCONNECTED_GRACE_MS,
    async open() {
      setStatus("connecting", "presenter.state.connecting");
      try {
        if (opening) await opening;
        if (!stream) await media();
      } catch (e) {
        throw new MediaFailed(String(e));
      }
      if (iceServers === null) iceServers = await loadIceServers();
      return publish(`/whip/${encodeURIComponent(sessionId)}`, token, stream, iceServers);
    },
    giveUp: (e) => e instanceof MediaFailed || isRefusal(e),
    onGiveUp(e) {
      publishing = null;
      // The server said no (bad or revoked token, ended session): retrying won't help.
      if (!(e instanceof MediaFailed)) showError("presenter.error.rejected", { error: serverText(e) });
      setStatus("failed", "presenter.state.failed");
      updateButtons();
    },
    async onUp(result) {
      current = result;
      zhixing.pc = result.pc;
      await applyBitrate(result.pc);
      if (current === result && result.pc.connectionState === "connected") {
        setStatus("live", "presenter.state.live");
      }
    },
    onDown() {
      current = null;
      zhixing.pc = null;
    },
    // The network may be down: no DELETE on a retry; the next WHIP POST
    // replaces the old publisher on the server anyway.
    drop: (result) => result.pc.close(),
    onState(state) {
      if (state !== "connected") return;
      if (error && error.key === "presenter.error.network") showError(null);
      setStatus("live", "presenter.state.live");
    },
    onRetry({ seconds, attempt, error: e }) {
      if (e) console.warn("publish", e); // the network, or the server is restarting
      zhixing.attempts = attempt;
      showError("presenter.error.network");
      setStatus("reconnecting", "presenter.state.reconnecting", { seconds, attempt });
    },
  });
}

function updateButtons() {
  $("start").disabled = !!publishing;
  $("stop").disabled = !publishing;
}

function start() {
  if (publishing) return;
  publishing = keepPublishing();
  showError(null);
  updateButtons();
  publishing.start();
}

async function stop() {
  const old = publishing;
  publishing = null;
  updateButtons();
  if (old) await old.stop();
  setStatus("stopped", "presenter.state.stopped");
}

// ---------------------------------------------------------------- presence

function renderSites() {
  const list = $("sites");
  const presence = lastPresence;
  const errorEl = $("sites-error");
  errorEl.hidden = !presenceError;
  errorEl.textContent = presenceError
    ? t("presenter.sites.unavailable", { error: presenceError }) : "";
  if (!presence) return;
  const sites = [...presence.sites].sort((a, b) =>
    (b.connected - a.connected) || a.org_path.localeCompare(b.org_path, "zh-CN")
    || a.site_name.localeCompare(b.site_name, "zh-CN"));
  const connected = sites.filter((s) => s.connected).length;
  $("site-count").textContent = t("presenter.sites.count",
                                  { connected, invited: sites.length });
  $("viewer-count").textContent = t("presenter.sites.viewers", { count: presence.viewer_count });
  const items = sites.map((site) => {
    const li = document.createElement("li");
    li.dataset.invitation = site.invitation_id;
    li.dataset.connected = String(site.connected);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = site.site_name;
    const badge = document.createElement("span");
    badge.className = "badge";
    const parts = [t(site.connected ? "presenter.sites.connected" : "presenter.sites.offline")];
    if (site.headcount !== null && site.headcount !== undefined) {
      parts.push(t("presenter.sites.headcount", { count: site.headcount }));
    }
    badge.textContent = parts.join(" · ");
    const path = document.createElement("span");
    path.className = "path";
    path.textContent = site.org_path;
    li.append(name, badge, path);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = t("presenter.sites.none");
    items.push(li);
  }
  list.replaceChildren(...items);
}

async function pollPresence() {
  try {
    const response = await fetch(`/api/v1/sessions/${encodeURIComponent(sessionId)}/presence`, {
      headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      presenceError = body.error || String(response.status);
    } else {
      presenceError = null;
      lastPresence = body;
      zhixing.presence = body;
      if (body.title) $("session-title").textContent = body.title;
      if (body.view_token && body.view_token !== viewToken) {
        viewToken = body.view_token;
        updateStageViewer();
      }
    }
  } catch (e) {
    presenceError = e.message || String(e);
  }
  renderSites();
  setTimeout(pollPresence, PRESENCE_INTERVAL_MS);
}

// ---------------------------------------------------------------- 研讨 (discussion)

// The room-events socket with the publish token (as a subprotocol): hands,
// questions and uplinks of every room; what we send changes the stage.
const STAGE_BACKOFF_S = [1, 2, 5, 10, 30];
const ERROR_SHOWN_MS = 6000;
const KNOWN_ERRORS = ["rate_limited", "unavailable", "not_found", "too_long", "empty",
                      "forbidden"];

let events = null; // EventsClient
let eventsOpen = false;
let discussion = null;
let discussError = null; // {key, values}
let discussErrorTimer = null;
const questionItems = new Map(); // question id -> its <li> (kept: a typed answer survives)
let viewToken = null;
let stageViewer = null; // {pc, stageStream, stop()} while someone is on stage
let stageKeeper = null; // KeptConnection of the stage viewer while someone is on stage

function connectEvents() {
  events = new EventsClient({
    sessionId, token,
    onState: (state) => {
      discussion = state;
      zhixing.discussion = discussion;
      renderDiscussion();
      updateStageViewer();
    },
    onError: showDiscussError,
    onStatus: (status) => {
      eventsOpen = status === "open";
      renderDiscussion();
    },
  });
  events.start();
}

function sendEvent(type, fields = {}, onAck = null) {
  if (events) events.send(type, fields, onAck);
  else showDiscussError("offline");
}

function showDiscussError(code) {
  const key = code === "offline" || KNOWN_ERRORS.includes(code)
    ? `presenter.discuss.error.${code}` : "presenter.discuss.error.other";
  discussError = { key, values: { code: String(code || "") } };
  clearTimeout(discussErrorTimer);
  discussErrorTimer = setTimeout(() => {
    discussError = null;
    renderDiscussError();
  }, ERROR_SHOWN_MS);
  renderDiscussError();
}

function renderDiscussError() {
  const el = $("discuss-error");
  el.hidden = !discussError;
  el.textContent = discussError ? t(discussError.key, discussError.values) : "";
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString(document.documentElement.lang || "zh-CN",
                                                     { hour12: false });
}

function button(key, onClick, className = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = t(key);
  b.dataset.action = key.split(".").pop();
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function uplinkOf(invitationId) {
  return discussion ? discussion.uplinks.find((u) => u.invitation_id === invitationId) : null;
}

// A room may go on stage when its camera is up and not muted.
function canStage(invitationId) {
  const u = uplinkOf(invitationId);
  return !!(u && u.present && !u.muted);
}

function none(key) {
  const li = document.createElement("li");
  li.className = "none";
  li.textContent = t(key);
  return li;
}

function renderHands() {
  const items = discussion.hands.map((hand) => {
    const li = document.createElement("li");
    li.dataset.invitation = hand.invitation_id;
    const stage = button("presenter.action.stage",
                         () => sendEvent("stage", { invitation_id: hand.invitation_id }));
    stage.disabled = !canStage(hand.invitation_id);
    if (stage.disabled) stage.title = t("presenter.uplinks.no_camera");
    li.append(span("name", hand.name), span("time", clock(hand.raised_at)), stage,
              button("presenter.action.lower", () => lowerHand(hand.invitation_id)));
    return li;
  });
  $("hands").replaceChildren(...(items.length ? items : [none("presenter.hands.none")]));
}

function lowerHand(invitationId) {
  if (discussion) sendEvent("lower_hand", { invitation_id: invitationId });
}

function questionItem(q) {
  let li = questionItems.get(q.id);
  if (li) return li;
  li = document.createElement("li");
  li.dataset.id = String(q.id);
  const head = document.createElement("div");
  head.className = "q-head";
  head.append(span("name", ""), span("time", ""), span("q-status", ""));
  const text = document.createElement("p");
  text.className = "q-text";
  const answer = document.createElement("p");
  answer.className = "q-answer";
  const form = document.createElement("form");
  form.className = "q-form";
  const input = document.createElement("input");
  input.type = "text";
  input.maxLength = 1000;
  input.className = "q-input";
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.dataset.action = "answer";
  form.append(input, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      showDiscussError("empty");
      return;
    }
    sendEvent("answer", { question_id: q.id, text: value }, () => { input.value = ""; });
  });
  const dismiss = button("presenter.action.dismiss",
                         () => sendEvent("dismiss", { question_id: q.id }));
  const stage = button("presenter.action.stage",
                       () => sendEvent("stage", { invitation_id: q.invitation_id }));
  const actions = document.createElement("div");
  actions.className = "q-actions";
  actions.append(dismiss, stage);
  li.append(head, text, answer, form, actions);
  questionItems.set(q.id, li);
  return li;
}

function renderQuestions() {
  const seen = new Set();
  const items = discussion.questions.map((q) => {
    seen.add(q.id);
    const li = questionItem(q);
    li.dataset.status = q.status;
    const [head, text, answer, form, actions] = li.children;
    head.children[0].textContent = q.name;
    head.children[1].textContent = clock(q.asked_at);
    head.children[2].textContent = t(`presenter.questions.status.${q.status}`);
    text.textContent = q.text;
    answer.hidden = !q.answer;
    answer.textContent = q.answer ? t("presenter.questions.answer", { text: q.answer }) : "";
    const input = form.querySelector("input");
    input.placeholder = t("presenter.questions.answer_placeholder");
    form.querySelector("button").textContent = t("presenter.action.answer");
    const [dismiss, stage] = actions.children;
    dismiss.textContent = t("presenter.action.dismiss");
    dismiss.disabled = q.status === "dismissed";
    stage.textContent = t("presenter.action.stage");
    stage.disabled = !canStage(q.invitation_id)
      || (discussion.stage && discussion.stage.invitation_id === q.invitation_id);
    return li;
  });
  for (const id of [...questionItems.keys()]) if (!seen.has(id)) questionItems.delete(id);
  // Open questions first, each group in the order asked.
  items.sort((a, b) => (a.dataset.status !== "open") - (b.dataset.status !== "open"));
  const list = $("questions");
  if (!items.length) {
    list.replaceChildren(none("presenter.questions.none"));
    return;
  }
  // Move the kept items into place without re-creating them (focus stays).
  if ([...list.children].some((el, i) => el !== items[i]) || list.children.length !== items.length) {
    const focused = document.activeElement;
    list.replaceChildren(...items);
    if (focused && list.contains(focused)) focused.focus();
  }
}

function renderUplinks() {
  const stageId = discussion.stage ? discussion.stage.invitation_id : null;
  const items = discussion.uplinks.map((u) => {
    const li = document.createElement("li");
    li.dataset.invitation = u.invitation_id;
    li.dataset.onStage = String(u.on_stage);
    const parts = [t(u.present ? (u.connected ? "presenter.uplinks.connected"
                                              : "presenter.uplinks.connecting")
                               : "presenter.uplinks.absent")];
    if (u.muted) parts.push(t("presenter.uplinks.muted"));
    if (u.on_stage) parts.push(t("presenter.uplinks.on_stage"));
    const stage = u.invitation_id === stageId
      ? button("presenter.stage.off", () => sendEvent("stage", { invitation_id: null }))
      : button("presenter.action.stage",
               () => sendEvent("stage", { invitation_id: u.invitation_id }));
    if (u.invitation_id !== stageId) stage.disabled = !u.present || u.muted;
    const mute = button(u.muted ? "presenter.action.unmute" : "presenter.action.mute",
                        () => sendEvent("mute", { invitation_id: u.invitation_id,
                                                  muted: !u.muted }));
    li.append(span("name", u.name), span("badge", parts.join(" · ")), stage, mute);
    return li;
  });
  $("uplinks").replaceChildren(...(items.length ? items : [none("presenter.uplinks.none")]));
}

function renderDiscussion() {
  $("discuss").hidden = !discussion;
  $("discuss-offline").hidden = eventsOpen || !discussion;
  renderDiscussError();
  if (!discussion) return;
  const stage = discussion.stage;
  $("on-stage").textContent = stage ? stage.name : t("presenter.stage.nobody");
  $("stage-off").hidden = !stage;
  $("stage-video").hidden = !(stage && stageViewer);
  $("lock").textContent = t(discussion.locked ? "presenter.questions.unlock"
                                              : "presenter.questions.lock");
  $("lock").dataset.locked = String(discussion.locked);
  $("lower-all").disabled = !discussion.hands.length;
  renderHands();
  renderQuestions();
  renderUplinks();
}

// See and hear the stage while someone is on it (the program pair is not
// offered: this page makes the program). Between turns nothing is open.
function updateStageViewer() {
  const wanted = !!(discussion && discussion.stage && viewToken);
  if (!wanted) {
    if (stageKeeper) {
      stageKeeper.stop();
      stageKeeper = null;
    }
    renderDiscussion();
    return;
  }
  if (stageKeeper) return;
  stageKeeper = new KeptConnection({
    delays: STAGE_BACKOFF_S,
    giveUp: () => false,
    async open() {
      if (iceServers === null) iceServers = await loadIceServers();
      return view(`/whep/${encodeURIComponent(sessionId)}`, viewToken, iceServers,
                  { program: false });
    },
    onUp(result) {
      stageViewer = result;
      zhixing.stagePc = result.pc;
      const stageVideo = $("stage-video");
      stageVideo.srcObject = result.stageStream;
      stageVideo.play().catch(() => {});
      renderDiscussion();
    },
    onDown() {
      stageViewer = null;
      zhixing.stagePc = null;
      $("stage-video").srcObject = null;
      renderDiscussion();
    },
  });
  stageKeeper.start();
}

function setupDiscussion() {
  $("stage-off").addEventListener("click", () => sendEvent("stage", { invitation_id: null }));
  $("lower-all").addEventListener("click", () => sendEvent("lower_all_hands"));
  $("lock").addEventListener("click", () =>
    sendEvent("lock_questions", { locked: !(discussion && discussion.locked) }));
  connectEvents();
}

// ---------------------------------------------------------------- start-up

const lang = await init();
$("lang").dataset.lang = lang;
$("lang").addEventListener("click", () =>
  setLanguage($("lang").dataset.lang === "zh-CN" ? "en" : "zh-CN"));
renderAll();
if (!token) {
  showError("presenter.no_token");
  $("start").disabled = true;
} else {
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  for (const id of ["source", "camera", "microphone"]) {
    $(id).addEventListener("change", () => media().catch(() => {}));
  }
  $("preset").addEventListener("change", () => changePreset().catch(() => {}));
  navigator.mediaDevices?.addEventListener?.("devicechange", refreshDevices);
  pollPresence();
  setupDiscussion();
  // Preview at once (this also asks for the permission the device names need).
  if (navigator.mediaDevices) media().catch(() => {});
  else showError("presenter.error.permission");
}
