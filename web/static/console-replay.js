// Replays (重播) on the 场次 tab: the session form's program source and its
// picker of ready archive items, and a replay's state cell (start, pause,
// resume, seek) in its session row.
import { t } from "/static/i18n.js";
import { el } from "/static/dom.js";
import { $, api, formatClock, formatTime, notify, refresh, schedulePoll, state } from "/static/console-shared.js";
import { fillRecordingCell } from "/static/console-recording.js";

const REPLAY_FILTER_FROM = 8; // ready items from which the replay picker offers a filter

const readyItems = () => state.archive.filter((item) => item.state === "ready");
const replayLabel = (item) => [item.title || "—", item.lecturer, formatClock(item.duration)].filter(Boolean).join(" · ");

// The form's program source: a live publisher, or an archive item replayed.
export function showSource() {
  const form = $("#sessions-form");
  const replay = form.elements.source.value === "replay";
  $(".replay-pick", form).hidden = !replay;
  $("label.codec", form).hidden = replay;
  $(".replay-start-hint", form).hidden = !replay;
  const item = replay && readyItems().find((row) => row.id === form.elements.replay_item_id.value);
  form.elements.title.placeholder = item ? item.title : "";
}

// Ready items, narrowed by the filter; the chosen one always stays listed.
// Rebuilt only when the list changes, so a poll never closes an open picker.
export function fillReplayPicker() {
  const form = $("#sessions-form");
  if (form.dataset.editing) return;
  const select = form.elements.replay_item_id;
  const filter = form.elements.replay_filter;
  const items = readyItems();
  const long = items.length >= REPLAY_FILTER_FROM;
  $(".replay-filter", form).hidden = !long;
  if (!long) filter.value = "";
  $(".replay-none", form).hidden = items.length > 0;
  const words = filter.value.trim().toLowerCase();
  const current = select.value;
  const shown = items.filter((item) => item.id === current || !words
    || [item.title, item.lecturer, item.course_title].some((text) => (text || "").toLowerCase().includes(words)));
  const first = t(shown.length || !words ? "console.sessions.replay_pick" : "console.sessions.replay_no_match");
  const shape = JSON.stringify([first, ...shown.map((item) => [item.id, replayLabel(item)])]);
  if (select.dataset.shape === shape) return;
  select.dataset.shape = shape;
  select.replaceChildren(el("option", { value: "", textContent: first }),
    ...shown.map((item) => el("option", { value: item.id, textContent: replayLabel(item) })));
  select.value = current;
  showSource();
}

// "12:30", "1:02:03" (a full-width colon too) → seconds; anything else → null.
function parseClock(text) {
  const match = text.trim().replaceAll("：", ":").match(/^(?:(\d{1,2}):([0-5]\d)|(\d{1,3})):([0-5]\d)$/);
  if (!match) return null;
  const [, hours, minutes, bareMinutes, seconds] = match;
  return hours != null ? Number(hours) * 3600 + Number(minutes) * 60 + Number(seconds)
    : Number(bareMinutes) * 60 + Number(seconds);
}

// A session ended by hand before its replay started keeps "waiting" in its row.
const replayState = (s) => (s.state === "ended" && ["waiting", "playing", "paused"].includes(s.replay.state)
  ? "ended" : s.replay.state);
export const replayRunning = (s) => s.replay && s.state !== "ended" && ["playing", "paused"].includes(s.replay.state);

// The state cell of a session row; a replay's controls keep their identity
// across polls (like the recording button), so focus and typing survive.
export function fillStateCell(cell, s) {
  if (!s.replay) {
    cell.replaceChildren(el("span", { className: `state state-${s.state}`, textContent: t(`console.state.${s.state}`) }));
    return cell;
  }
  let box = $(".replay", cell);
  if (!box) {
    box = replayBox(s.id);
    cell.replaceChildren(box);
  }
  fillReplay(box, s);
  return cell;
}

function replayBox(id) {
  const error = el("span", { className: "field-error seek-error", id: `seek-error-${id}`, role: "alert" });
  const input = el("input", { className: "seek-to", name: "position", autocomplete: "off",
    placeholder: t("console.replay.seek_placeholder"), "aria-label": t("console.replay.seek_label"),
    "aria-describedby": error.id });
  const seek = el("form", { className: "replay-seek", noValidate: true,
    onsubmit: (event) => { event.preventDefault(); seekReplay(id, input, error); } },
  input, el("button", { type: "submit", className: "replay-seek-go", textContent: t("console.replay.seek") }), error);
  return el("div", { className: "replay" },
    el("p", { className: "replay-head" },
      el("span", { className: "state badge-replay", textContent: t("console.replay.badge") }),
      el("span", { className: "replay-item" })),
    el("p", { className: "replay-status" },
      el("span", { className: "state replay-state" }), el("small", { className: "replay-detail" })),
    el("p", { className: "replay-progress" },
      el("progress", { "aria-label": t("console.replay.progress") }), el("span", { className: "replay-clock" })),
    el("div", { className: "replay-controls" },
      el("button", { type: "button", className: "replay-start", textContent: t("console.replay.start"),
        onclick: () => replayAction(id, "start") }),
      el("button", { type: "button", className: "replay-toggle",
        onclick: (event) => replayAction(id, event.currentTarget.dataset.action) }),
      seek));
}

function fillReplay(box, s) {
  const replay = s.replay;
  const now = replayState(s);
  $(".replay-item", box).textContent = replay.item_title || "—";
  const pill = $(".replay-state", box);
  pill.className = `state replay-state replay-${now}`;
  pill.textContent = t(`console.replay.state.${now}`);
  const detail = $(".replay-detail", box);
  detail.classList.toggle("failure", now === "failed");
  if (now === "waiting") {
    detail.textContent = replay.starts_at == null ? t("console.replay.manual")
      : t("console.replay.starts_at", { time: formatTime(replay.starts_at) });
  } else detail.textContent = now === "failed" ? replay.error || "" : "";
  const duration = replay.duration || 0;
  const bar = $("progress", box);
  bar.max = duration || 1;
  bar.value = Math.min(replay.position || 0, duration);
  $(".replay-clock", box).textContent = `${formatClock(replay.position)} / ${duration ? formatClock(duration) : "--:--"}`;
  // Controls are hidden, not rebuilt; one that disappears under the keyboard
  // (立即开始 once playing) hands the focus to the next one.
  const focused = box.contains(document.activeElement) ? document.activeElement : null;
  const canStart = now === "waiting" || now === "failed";
  const running = now === "playing" || now === "paused";
  $(".replay-start", box).hidden = !canStart;
  const toggle = $(".replay-toggle", box);
  toggle.hidden = !running;
  toggle.dataset.action = now === "paused" ? "resume" : "pause";
  toggle.textContent = t(`console.replay.${toggle.dataset.action}`);
  $(".replay-seek", box).hidden = !running;
  $(".replay-controls", box).hidden = !canStart && !running;
  if (focused && focused.closest("[hidden]")) {
    [...box.querySelectorAll(".replay-controls button")].find((button) => !button.closest("[hidden]"))?.focus();
  }
}

// The cells of a row that change while a session runs, updated in place.
export function fillSessionRow(row, s) {
  const stateCell = $("td.col-state", row);
  if (stateCell) fillStateCell(stateCell, s);
  const recording = $("td.recording", row);
  if (recording) fillRecordingCell(recording, s);
}

async function replayAction(id, action, position) {
  const s = state.sessions.find((row) => row.id === id);
  if (!s) return false;
  if (action === "start" && !confirm(t("console.confirm.start_replay", { name: s.title }))) return false;
  const path = `/sessions/${encodeURIComponent(id)}`;
  try {
    s.replay = await api("POST", `${path}/replay`, position == null ? { action } : { action, position });
    if (action === "start") Object.assign(s, await api("GET", path)); // scheduled → live
  } catch (error) {
    notify(t("console.error", { message: error.message }));
    await refresh();
    return false;
  }
  const row = document.querySelector(`#sessions-table tbody tr[data-id="${CSS.escape(id)}"]`);
  if (row) fillSessionRow(row, s);
  schedulePoll();
  return true;
}

async function seekReplay(id, input, error) {
  const s = state.sessions.find((row) => row.id === id);
  const position = parseClock(input.value);
  const limit = s?.replay?.duration || 24 * 3600;
  let problem = "";
  if (position == null) problem = t("console.replay.bad_time");
  else if (position >= limit) problem = t("console.replay.beyond_end", { duration: formatClock(limit) });
  error.textContent = problem;
  input.setAttribute("aria-invalid", String(Boolean(problem)));
  if (problem) { input.focus(); return; }
  if (await replayAction(id, "seek", position)) {
    input.value = "";
    notify(t("console.replay.seeked", { position: formatClock(position) }));
  }
}

// The form's source radios and the picker's filter.
export function setupReplayPicker() {
  const form = $("#sessions-form");
  for (const radio of form.elements.source) radio.addEventListener("change", showSource);
  form.elements.replay_item_id.addEventListener("change", showSource);
  form.elements.replay_filter.addEventListener("input", fillReplayPicker);
  form.elements.replay_filter.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.preventDefault(); // filtering, not saving
  });
}
