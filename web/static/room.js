// The sub-classroom's room page (分课堂): one big picture with sound, over WHEP
// with the room's invitation token. Waits for the lecture without reloading,
// reconnects by itself, shows the link quality and reports the headcount.
// This is the entry point: the room's info and screens, the headcount; the
// picture is room-player.js's, 研讨 room-discussion.js's, the room's camera
// room-camera.js's, and what they share room-page.js's.
import { init, language, t, switchLanguage } from "/static/i18n.js";
import { loadIceServers } from "/static/whip-client.js";
import { $, api, hooks, page, renderStatus, setStatus, state, token } from "/static/room-page.js";
import { connectPicture, measure, refreshEdgeLevel, setupPicture, showLevel, showTimeshift,
         stopPicture }
  from "/static/room-player.js";
import { connectEvents, setupDiscussion, stopDiscussion } from "/static/room-discussion.js";
import { setupCamera } from "/static/room-camera.js";

const POLL_MS = 4000;
const STATS_MS = 2000;
const DEFAULT_MAX_HEADCOUNT = 500; // the server's limit comes with the room (max_headcount)

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
  state.level = room.quality ?? null;
  showLevel();
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

function finish(screen) {
  if (page.finished) return;
  page.finished = true;
  state.state = screen;
  show(screen);
  stopPicture();
  $("unmute").hidden = true;
  setStatus(screen === "ended" ? "room.ended.title" : "room.gone.title");
  stopDiscussion();
}

async function poll() {
  try {
    // With this page's WHEP resource, the answer also says what it gets (高清 / 流畅 / 仅声音).
    const resource = page.viewer && page.viewer.resourceUrl && page.viewer.resourceUrl.split("/").pop();
    const response = await api(resource ? `/api/v1/room?resource=${encodeURIComponent(resource)}`
                                        : "/api/v1/room");
    if (response.status === 401 || response.status === 403 || response.status === 410) {
      finish("gone");
      return;
    }
    if (response.ok) {
      showRoom(await response.json());
      await refreshEdgeLevel();
    }
  } catch (e) {
    // The server is unreachable for now: the next poll tries again.
  }
}

hooks.poll = poll;

// ------------------------------------------------------------- headcount

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
  renderStatus();
  $("lang").addEventListener("click", () => switchLanguage(language() === "zh-CN" ? "en" : "zh-CN"));
  setupPicture();
  $("headcount").addEventListener("submit", reportHeadcount);
  setupDiscussion();
  setupCamera();
  await poll();
  setInterval(poll, POLL_MS);
  setInterval(measure, STATS_MS);
  if (page.finished) return;
  try {
    page.iceServers = await loadIceServers(token);
  } catch (e) {
    page.iceServers = [];
  }
  if (state.room) {
    connectPicture();
    connectEvents();
  } else {
    // The first poll failed (network): keep trying until the room is known.
    const wait = setInterval(() => {
      if (page.finished) clearInterval(wait);
      else if (state.room) { clearInterval(wait); connectPicture(); connectEvents(); }
    }, 1000);
  }
}

main().catch((e) => { state.error = String(e); });
