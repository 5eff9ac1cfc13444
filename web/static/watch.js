// The player page (播放录像): one recording with the browser's own controls,
// keyboard shortcuts, a speed choice, and resume where this browser stopped
// last time (saved every few seconds, on pause and when the page goes away).
import { init, t, switchLanguage } from "/static/i18n.js";
import { forgetPosition, formatDate, formatDuration, savedPosition, savePosition, withLanguage } from "/static/library-shared.js";
import { el } from "/static/dom.js";

const SAVE_EVERY_MS = 4000;
const SKIP_S = 10;
const RESUME_MIN_S = 2; // not worth resuming a few seconds in
const RESUME_TAIL_S = 10; // stopped in the last seconds: start again from the top
const SPEEDS = [0.75, 1, 1.25, 1.5, 2];
const SPEED_KEY = "zhixing.speed";

const $ = (id) => document.getElementById(id);
const itemId = document.body.dataset.itemId || "";
const video = $("video");

// For tests: the item, where playback resumed from (or null), readiness, the
// turn on stage now (index into item.stage, or null).
const state = { item: null, resumedFrom: null, ready: false, error: null, turn: null };
window.zhixingPlayer = state;

let decided = false; // resume decided: from then on the position may be saved
let lastSaved = 0;


// ------------------------------------------------------------------ position

function save() {
  if (!decided || !Number.isFinite(video.duration)) return;
  lastSaved = Date.now();
  if (video.ended) forgetPosition(itemId);
  else savePosition(itemId, video.currentTime, video.duration);
}

function decideResume() {
  if (decided) return;
  decided = true;
  const saved = savedPosition(itemId);
  const duration = video.duration;
  if (!saved || !Number.isFinite(duration)) return;
  if (saved.position < RESUME_MIN_S || saved.position > duration - RESUME_TAIL_S) return;
  video.currentTime = saved.position;
  state.resumedFrom = saved.position;
  $("resume-text").textContent = t("library.watch.resumed", { time: formatDuration(saved.position) });
  $("resume").hidden = false;
}

function restart() {
  video.currentTime = 0;
  $("resume").hidden = true;
  state.resumedFrom = null;
  save();
  video.play().catch(() => {});
}

// ------------------------------------------------------------------ controls

function seekBy(seconds) {
  const end = Number.isFinite(video.duration) ? video.duration : Infinity;
  video.currentTime = Math.min(end, Math.max(0, video.currentTime + seconds));
}

function togglePlay() {
  if (video.paused || video.ended) video.play().catch(() => {});
  else video.pause();
}

function onKey(event) {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target instanceof Element ? event.target : null;
  // Typing or choosing (a select's arrows change its value): keys are theirs.
  if (target && (target.isContentEditable || target.closest("input, textarea, select"))) return;
  if (event.key === " " || event.code === "Space") {
    if (target && target.closest("button, a")) return; // Space presses the focused button
    event.preventDefault(); // also the video's own handling: one toggle, not two
    togglePlay();
  } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    event.preventDefault();
    seekBy(event.key === "ArrowLeft" ? -SKIP_S : SKIP_S);
  }
}

function setSpeed(value) {
  const speed = SPEEDS.includes(value) ? value : 1;
  video.defaultPlaybackRate = speed;
  video.playbackRate = speed;
  $("speed").value = String(speed);
  try { localStorage.setItem(SPEED_KEY, String(speed)); } catch { /* a convenience */ }
}

// ------------------------------------------------------------------ the stage
// The rooms brought on stage (研讨): their sound is in the lecture itself,
// their pictures in a second file, turn after turn. While the lecture is
// inside a turn, that picture shows in the corner, kept in step with it.

const STAGE_DRIFT_S = 0.3; // re-seek the picture when it is further off than this
const stageVideo = $("stage-video");
let turns = [];

function turnAt(seconds) {
  const index = turns.findIndex((turn) => seconds >= turn.at && seconds < turn.at + turn.duration);
  return index >= 0 ? index : null;
}

function followStage() {
  if (!turns.length) return;
  const index = turnAt(video.currentTime);
  if (index === null) {
    if (state.turn !== null) {
      state.turn = null;
      $("stage").hidden = true;
      stageVideo.pause();
    }
    return;
  }
  const turn = turns[index];
  if (state.turn !== index) {
    state.turn = index;
    $("stage-name").textContent = t("library.watch.on_stage", { name: roomName(turn) });
    $("stage").hidden = false;
  }
  const target = turn.offset + (video.currentTime - turn.at);
  if (Math.abs(stageVideo.currentTime - target) > STAGE_DRIFT_S) stageVideo.currentTime = target;
  stageVideo.playbackRate = video.playbackRate;
  if (video.paused || video.seeking) stageVideo.pause();
  else if (stageVideo.paused) stageVideo.play().catch(() => {});
}

function roomName(turn) {
  return turn.site_name || t("library.watch.unknown_room");
}

function showTurns(item) {
  turns = Array.isArray(item.stage) ? item.stage : [];
  if (!item.stage_url || !turns.length) return;
  stageVideo.src = item.stage_url;
  const entries = turns.map((turn) => {
    const button = el("button", {
      type: "button",
      textContent: t("library.watch.turn", {
        time: formatDuration(turn.at), name: roomName(turn), length: formatDuration(turn.duration),
      }),
    });
    button.addEventListener("click", () => {
      video.currentTime = turn.at;
      video.play().catch(() => {});
    });
    return el("li", {}, button);
  });
  $("turn-list").replaceChildren(...entries);
  $("turns").hidden = false;
  for (const event of ["timeupdate", "seeked", "seeking", "play", "pause", "ratechange", "ended"]) {
    video.addEventListener(event, followStage);
  }
  // timeupdate comes every 250 ms at best: check a little more often while playing.
  setInterval(() => { if (!video.paused) followStage(); }, 200);
}

// ------------------------------------------------------------------ the item

function showFailure(message) {
  state.error = String(message || "error");
  $("unavailable").textContent = t("library.watch.play_failed", { message: state.error });
  $("unavailable").hidden = false;
}

function showItem(item) {
  state.item = item;
  document.title = `${item.title || t("library.untitled")} · ${t("library.title")}`;
  $("title").textContent = item.title || t("library.untitled");
  const course = [item.unit_name, item.course_title].filter(Boolean).join(" · ");
  const lines = [
    item.lecturer ? t("library.lecturer", { name: item.lecturer }) : null,
    course ? t("library.watch.course", { name: course }) : null,
    item.recorded_at != null ? t("library.watch.recorded_at", { time: formatDate(item.recorded_at, true) }) : null,
    item.duration ? t("library.watch.duration", { time: formatDuration(item.duration) }) : null,
  ];
  $("meta").replaceChildren(...lines.filter(Boolean).map((line) => el("li", { textContent: line })));
  $("description").textContent = item.description || "";
  if (!item.media_url) {
    const stateText = t(`library.watch.state.${item.state}`);
    $("unavailable").textContent = t("library.watch.not_ready", { state: stateText });
    $("unavailable").hidden = false;
    video.hidden = true;
    document.querySelector(".player .tools").hidden = true;
    return;
  }
  if (item.poster_url) video.poster = item.poster_url;
  const source = el("source", { src: item.media_url, type: item.mime_type || "" });
  // A <source> that cannot be played reports on itself, not on the video.
  source.addEventListener("error", () => showFailure(video.error?.message || item.mime_type));
  video.append(source);
  video.load();
  showTurns(item);
}

async function main() {
  const lang = await init();
  $("lang").onclick = () => switchLanguage(lang === "en" ? "zh-CN" : "en");
  $("back").href = withLanguage("/library");
  let stored = 1;
  try { stored = Number(localStorage.getItem(SPEED_KEY) || 1); } catch { /* default */ }
  $("speed").addEventListener("change", () => { setSpeed(Number($("speed").value)); $("speed").blur(); });
  $("restart").addEventListener("click", restart);
  document.addEventListener("keydown", onKey);

  video.addEventListener("loadedmetadata", () => { setSpeed(stored); decideResume(); });
  video.addEventListener("timeupdate", () => { if (Date.now() - lastSaved >= SAVE_EVERY_MS) save(); });
  video.addEventListener("pause", save);
  video.addEventListener("seeked", () => { if (video.paused) save(); });
  video.addEventListener("ended", save);
  window.addEventListener("pagehide", save);
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") save(); });

  const response = await fetch(`/api/v1/archive/${encodeURIComponent(itemId)}`, { cache: "no-store" });
  if (response.status === 401 || response.status === 404) {
    location.reload(); // the server's page says why (link gone, item deleted)
    return;
  }
  if (!response.ok) {
    showFailure(response.status);
    return;
  }
  showItem(await response.json());
  state.ready = true;
  document.body.dataset.ready = "true";
}

main();
