// The admin console (管理后台): sessions (and their recording), invitations,
// units, courses, sites, the lecture archive and library links.
// Talks to /api/v1/ with the login cookie; every unsafe call sends X-CSRF-Token.
import { init, t, apply, language, switchLanguage } from "/static/i18n.js";
import { ApiError, clearErrors, fieldErrors } from "/static/forms.js";
import { el } from "/static/dom.js";

const $ = (selector, root = document) => root.querySelector(selector);
const state = { csrf: null, units: [], courses: [], sites: [], sessions: [], detail: null,
                archive: [], links: [] };
const LIVE_POLL_MS = 2000; // while a session is recorded, a replay runs or an item finished
const MAX_TIMER_MS = 3600 * 1000; // a far replay start is looked at again hourly (setTimeout caps at 24.8 days)
const REPLAY_FILTER_FROM = 8; // ready items from which the replay picker offers a filter
window.zhixingConsole = state;


async function api(method, path, body, contentType = "application/json") {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  let data;
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    data = contentType === "application/json" ? JSON.stringify(body) : body;
  }
  const response = await fetch(`/api/v1${path}`, { method, headers, body: data });
  if (response.status === 401) { location.href = "/login"; throw new ApiError(401, ""); }
  if (response.status === 204) return null;
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, reply.error || String(response.status));
  return reply;
}

function showErrors(form, error) {
  const fields = error.status === 422 ? fieldErrors(error.message) : {};
  let placed = false;
  for (const [name, key] of Object.entries(fields)) {
    const slot = form.querySelector(`.field-error[data-field="${CSS.escape(name)}"]`);
    if (slot) { slot.textContent = t(key); placed = true; }
  }
  if (!placed) $(".form-error", form).textContent = t("console.error", { message: error.message });
}

function notify(text) {
  const notice = $("#notice");
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { notice.hidden = true; }, 4000);
}

const locale = () => (language() === "en" ? "en-GB" : "zh-CN");
const formatTime = (seconds) => seconds == null ? "" : new Date(seconds * 1000).toLocaleString(locale(), {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
const toLocalInput = (seconds) => {
  if (seconds == null) return "";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
};
const fromLocalInput = (value) => (value ? Math.round(new Date(value).getTime() / 1000) : null);
const batchText = (batch) => ({ "第一批": t("console.batch.first"), "第二批": t("console.batch.second") })[batch] ?? (batch || "");

// ---------------------------------------------------------------- tabs
function showTab(name) {
  for (const button of document.querySelectorAll("#tabs [data-tab]")) {
    const on = button.dataset.tab === name;
    button.setAttribute("aria-selected", String(on));
    $(`#panel-${button.dataset.tab}`).hidden = !on;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `${location.pathname}${location.search}#${name}`);
}

// ------------------------------------------------- units, courses, sites
const EDITORS = {
  units: {
    singular: "unit",
    fields: [{ name: "name", required: true }, { name: "description", textarea: true, optional: true }],
    columns: [(row) => row.name, (row) => row.description],
  },
  courses: {
    singular: "course",
    fields: [{ name: "title", required: true }, { name: "lecturer", optional: true },
             { name: "unit_id", ref: "units", label: (row) => row.name }],
    columns: [(row) => row.title, (row) => row.lecturer, (row) => row.unit_name || ""],
  },
  sites: {
    singular: "site",
    fields: [{ name: "name", required: true }, { name: "org_path", optional: true }],
    columns: [(row) => row.name, (row) => row.org_path],
  },
};

function buildEditor(kind) {
  const spec = EDITORS[kind];
  const root = kind === "sites" ? $("#sites-editor") : $(`#panel-${kind}`);
  const heads = spec.fields.map((f) => el("th", { dataset: { i18n: `console.${kind}.${f.name}` } }));
  root.append(
    el("h2", { dataset: { i18n: `console.tab.${kind}` } }),
    el("table", { id: `${kind}-table`, className: "list" },
      el("thead", {}, el("tr", {}, ...heads, el("th", { dataset: { i18n: "console.actions" } }))),
      el("tbody")),
    el("p", { className: "empty", id: `${kind}-empty`, hidden: true, dataset: { i18n: "console.empty" } }));
  const form = el("form", { id: `${kind}-form`, className: "editor", noValidate: true });
  form.append(el("h3", { id: `${kind}-form-heading` }));
  for (const field of spec.fields) {
    let input;
    if (field.ref) input = el("select", { name: field.name });
    else if (field.textarea) input = el("textarea", { name: field.name, rows: 2 });
    else input = el("input", { name: field.name, maxLength: 200 });
    form.append(el("label", {}, el("span", { dataset: { i18n: `console.${kind}.${field.name}` } }), input,
      el("span", { className: "field-error", dataset: { field: field.name } })));
  }
  form.append(el("p", { className: "form-error", role: "alert" }),
    el("p", { className: "buttons" },
      el("button", { type: "submit", dataset: { i18n: "console.save" } }),
      el("button", { type: "button", className: "cancel", hidden: true, dataset: { i18n: "console.cancel" },
        onclick: () => resetEditor(kind) })));
  form.addEventListener("submit", (event) => { event.preventDefault(); saveRow(kind); });
  root.append(form);
  apply(root);
  resetEditor(kind);
}

function resetEditor(kind) {
  const form = $(`#${kind}-form`);
  form.reset();
  delete form.dataset.editing;
  clearErrors(form);
  $(`#${kind}-form-heading`).textContent = t(`console.${kind}.new`);
  $(".cancel", form).hidden = true;
}

function fillSelect(select, rows, label, allowNone = true) {
  const current = select.value;
  select.replaceChildren();
  if (allowNone) select.append(el("option", { value: "", textContent: t("console.none") }));
  for (const row of rows) select.append(el("option", { value: String(row.id), textContent: label(row) }));
  select.value = current;
}

function renderEditor(kind) {
  const spec = EDITORS[kind];
  const rows = state[kind];
  const body = $(`#${kind}-table tbody`);
  body.replaceChildren(...rows.map((row) => el("tr", { dataset: { id: String(row.id) } },
    ...spec.columns.map((column) => el("td", { textContent: column(row) ?? "" })),
    el("td", { className: "actions" },
      el("button", { type: "button", textContent: t("console.edit"), onclick: () => editRow(kind, row) }),
      el("button", { type: "button", className: "danger", textContent: t("console.delete"),
        onclick: () => deleteRow(kind, row) })))));
  $(`#${kind}-empty`).hidden = rows.length > 0;
  for (const field of spec.fields.filter((f) => f.ref)) {
    fillSelect($(`#${kind}-form [name="${field.name}"]`), state[field.ref], field.label);
  }
}

function editRow(kind, row) {
  const form = $(`#${kind}-form`);
  clearErrors(form);
  form.dataset.editing = String(row.id);
  for (const field of EDITORS[kind].fields) form.elements[field.name].value = row[field.name] ?? "";
  $(`#${kind}-form-heading`).textContent = t(`console.${kind}.editing`);
  $(".cancel", form).hidden = false;
  form.scrollIntoView({ block: "nearest" });
}

async function saveRow(kind) {
  const form = $(`#${kind}-form`);
  clearErrors(form);
  const data = {};
  for (const field of EDITORS[kind].fields) {
    const value = form.elements[field.name].value;
    if (field.ref) data[field.name] = value ? Number(value) : null;
    else if (value.trim() || !field.optional || form.dataset.editing) data[field.name] = value;
  }
  try {
    if (form.dataset.editing) await api("PATCH", `/${kind}/${form.dataset.editing}`, data);
    else await api("POST", `/${kind}`, data);
  } catch (error) { showErrors(form, error); return; }
  notify(t("console.saved"));
  resetEditor(kind);
  await refresh();
}

async function deleteRow(kind, row) {
  const name = row.name ?? row.title;
  if (!confirm(t("console.confirm.delete", { name }))) return;
  try { await api("DELETE", `/${kind}/${row.id}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  notify(t("console.deleted"));
  await refresh();
}

// ---------------------------------------------------------------- sessions
function renderSessions() {
  const body = $("#sessions-table tbody");
  body.replaceChildren(...state.sessions.map((s) => {
    const actions = el("td", { className: "actions" },
      el("button", { type: "button", textContent: t("console.sessions.invitations"), onclick: () => openDetail(s.id) }),
      el("a", { className: "button", href: `/admin/wall/${encodeURIComponent(s.id)}`,
        textContent: t("console.sessions.wall") }),
      el("a", { className: "button", href: `/admin/reports?session=${encodeURIComponent(s.id)}`,
        textContent: t("console.sessions.attendance") }));
    if (s.state !== "ended") {
      actions.append(el("button", { type: "button", textContent: t("console.edit"), onclick: () => editSession(s) }));
      // A replay starts with its program (立即开始 in its state cell), never as a bare live session.
      if (s.state === "scheduled" && !s.replay) {
        actions.append(el("button", { type: "button", className: "start", textContent: t("console.sessions.start_now"),
          onclick: () => startSession(s) }));
      }
      actions.append(el("button", { type: "button", className: "danger", textContent: t("console.sessions.end_now"),
        onclick: () => endSession(s) }));
    }
    const when = [formatTime(s.scheduled_start), formatTime(s.scheduled_end)].filter(Boolean).join(" – ");
    return el("tr", { dataset: { id: s.id }, className: state.detail === s.id ? "selected" : "" },
      el("td", { textContent: s.title }),
      el("td", { textContent: s.course_title || "" }),
      el("td", { textContent: batchText(s.batch) }),
      el("td", { textContent: when }),
      fillStateCell(el("td", { className: "col-state" }), s),
      fillRecordingCell(el("td", { className: "recording" }), s),
      actions);
  }));
  $("#sessions-empty").hidden = state.sessions.length > 0;
  fillSelect($("#sessions-form [name=course_id]"), state.courses, (c) => c.title);
}

function resetSessionForm() {
  const form = $("#sessions-form");
  form.reset();
  delete form.dataset.editing;
  clearErrors(form);
  form.elements.video_codec.disabled = false;
  $("fieldset.source", form).disabled = false;
  form.elements.replay_item_id.disabled = false;
  delete form.elements.replay_item_id.dataset.shape; // drop an option editSession added
  fillReplayPicker();
  showSource();
  $("#sessions-form-heading").textContent = t("console.sessions.new");
  $(".cancel", form).hidden = true;
}

function editSession(s) {
  const form = $("#sessions-form");
  clearErrors(form);
  form.dataset.editing = s.id;
  form.elements.title.value = s.title;
  form.elements.course_id.value = s.course_id == null ? "" : String(s.course_id);
  form.elements.batch.value = s.batch || "";
  form.elements.scheduled_start.value = toLocalInput(s.scheduled_start);
  form.elements.scheduled_end.value = toLocalInput(s.scheduled_end);
  form.elements.video_codec.value = s.video_codec;
  form.elements.video_codec.disabled = true;
  // The program's source is fixed once created: shown, not editable.
  form.elements.source.value = s.replay ? "replay" : "live";
  $("fieldset.source", form).disabled = true;
  const picker = form.elements.replay_item_id;
  if (s.replay) {
    if (![...picker.options].some((option) => option.value === s.replay.item_id)) {
      picker.append(el("option", { value: s.replay.item_id, textContent: s.replay.item_title || s.replay.item_id }));
      picker.dataset.shape = "editing";
    }
    picker.value = s.replay.item_id;
  }
  picker.disabled = true;
  $(".replay-filter", form).hidden = true;
  showSource();
  $("#sessions-form-heading").textContent = t("console.sessions.editing");
  $(".cancel", form).hidden = false;
  form.scrollIntoView({ block: "nearest" });
}

async function saveSession(event) {
  event.preventDefault();
  const form = $("#sessions-form");
  clearErrors(form);
  const f = form.elements;
  const data = {
    title: f.title.value,
    course_id: f.course_id.value ? Number(f.course_id.value) : null,
    batch: f.batch.value,
    scheduled_start: fromLocalInput(f.scheduled_start.value),
    scheduled_end: fromLocalInput(f.scheduled_end.value),
  };
  // A replay takes its codec (and, when left empty, its title and course) from the item.
  const replay = !form.dataset.editing && f.source.value === "replay";
  if (replay && !f.replay_item_id.value) {
    $('.field-error[data-field="replay_item_id"]', form).textContent = t("console.sessions.replay_pick_item");
    f.replay_item_id.focus();
    return;
  }
  let saved;
  try {
    if (form.dataset.editing) saved = await api("PATCH", `/sessions/${form.dataset.editing}`, data);
    else if (replay) saved = await api("POST", "/sessions", { ...data, replay_item_id: f.replay_item_id.value });
    else saved = await api("POST", "/sessions", { ...data, video_codec: f.video_codec.value });
  } catch (error) { showErrors(form, error); return; }
  notify(t("console.saved"));
  resetSessionForm();
  state.detail = saved.id;
  await refresh();
}

async function startSession(s) {
  if (!confirm(t("console.confirm.start", { name: s.title }))) return;
  try { await api("POST", `/sessions/${s.id}/start`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

async function endSession(s) {
  if (!confirm(t("console.confirm.end", { name: s.title }))) return;
  try { await api("DELETE", `/sessions/${s.id}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

// --------------------------------------------------------------- recording
const formatClock = (seconds) => {
  const total = Math.max(0, Math.floor(seconds || 0));
  const pad = (n) => String(n).padStart(2, "0");
  const h = Math.floor(total / 3600);
  return `${h ? `${h}:` : ""}${pad(Math.floor((total % 3600) / 60))}:${pad(total % 60)}`;
};
const formatBytes = (bytes) => {
  if (bytes == null) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${unit && value < 100 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
};

// The recording cell of a session row: its button keeps its identity across
// polls, so a click is never lost to a re-render.
function fillRecordingCell(cell, s) {
  const recording = s.recording;
  let button = $("button.record", cell);
  if (s.state === "ended" && !recording) {
    cell.replaceChildren(el("span", { className: "muted", textContent: "—" }));
    return cell;
  }
  if (!button) {
    button = el("button", { type: "button", className: "record", onclick: () => toggleRecording(cell.closest("tr").dataset.id) });
    cell.replaceChildren(button, el("div", { className: "recording-info" }));
  }
  button.textContent = t(recording ? "console.recording.stop" : "console.recording.start");
  button.classList.toggle("danger", Boolean(recording));
  const info = $(".recording-info", cell);
  if (!recording) { info.replaceChildren(); return cell; }
  info.replaceChildren(
    el("span", { className: "state state-recording", textContent: `● ${t("console.recording.live")}` }),
    " ",
    el("span", { className: "stats", textContent: t("console.recording.stats", {
      duration: formatClock(recording.duration), size: formatBytes(recording.bytes),
      segments: recording.segments, restarts: recording.restarts }) }),
    ...recording.notices.slice(-3).reverse().map((notice) => el("small", {
      className: `notice notice-${notice.kind}`, title: notice.message,
      textContent: `${new Date(notice.at * 1000).toLocaleTimeString(locale())} ${t(`console.recording.notice.${notice.kind}`)}` })));
  return cell;
}

async function toggleRecording(id) {
  const s = state.sessions.find((row) => row.id === id);
  if (!s) return;
  try {
    if (s.recording) {
      if (!confirm(t("console.confirm.stop_recording", { name: s.title }))) return;
      await api("DELETE", `/sessions/${s.id}/recording`);
      notify(t("console.recording.stopped"));
    } else {
      await api("POST", `/sessions/${s.id}/recording`);
      notify(t("console.recording.started"));
    }
  } catch (error) {
    notify(t("console.error", { message: error.message }));
  }
  await refresh();
}

// ------------------------------------------------------------ replay (重播)
const readyItems = () => state.archive.filter((item) => item.state === "ready");
const replayLabel = (item) => [item.title || "—", item.lecturer, formatClock(item.duration)].filter(Boolean).join(" · ");

// The form's program source: a live publisher, or an archive item replayed.
function showSource() {
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
function fillReplayPicker() {
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
const replayRunning = (s) => s.replay && s.state !== "ended" && ["playing", "paused"].includes(s.replay.state);

// The state cell of a session row; a replay's controls keep their identity
// across polls (like the recording button), so focus and typing survive.
function fillStateCell(cell, s) {
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
function fillSessionRow(row, s) {
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

// ----------------------------------------------------------------- archive
const ARCHIVE_COLUMNS = ["title", "course", "recorded_at", "state", "duration", "size", "actions"];

function archiveRow(id) {
  return el("tr", { dataset: { id } }, ...ARCHIVE_COLUMNS.map((name) => el("td", { className: `col-${name}` })));
}

function archiveState(item, live) {
  const pill = el("span", { className: `state item-${item.state}`, textContent: t(`console.archive.state.${item.state}`) });
  if (item.state === "finishing") {
    const share = Math.max(0, Math.min(1, item.progress || 0));
    return [pill, el("progress", { max: 1, value: share }),
      el("small", { textContent: t("console.archive.progress", { percent: Math.round(share * 100) }) })];
  }
  if (item.state === "failed") return [pill, el("small", { className: "failure", textContent: item.failure || "" })];
  if (item.state === "recording" && live) return [pill, el("small", { textContent: formatClock(live.duration) })];
  return [pill];
}

function archiveActions(item) {
  const busy = item.state === "recording" || item.state === "finishing";
  const actions = [];
  if (item.state === "ready") {
    actions.push(el("a", { className: "button play", href: `/library/watch/${encodeURIComponent(item.id)}`,
      target: "_blank", rel: "noopener", textContent: t("console.archive.play") }));
  }
  actions.push(
    el("button", { type: "button", className: "edit", textContent: t("console.edit"), onclick: () => editItem(item.id) }),
    el("button", { type: "button", className: "danger delete", textContent: t("console.delete"), disabled: busy,
      title: busy ? t("console.archive.cannot_delete") : "", onclick: () => deleteItem(item.id) }));
  return actions;
}

function fillArchiveRow(row, item, live) {
  const cell = (name) => $(`.col-${name}`, row);
  const turns = Array.isArray(item.stage) ? item.stage.length : 0;
  cell("title").replaceChildren(item.title || "—", item.lecturer ? el("small", { textContent: ` ${item.lecturer}` }) : "",
    turns ? el("small", { className: "discussion", textContent: ` · ${t("console.archive.discussion", { count: turns })}` }) : "");
  cell("course").textContent = [item.unit_name, item.course_title].filter(Boolean).join(" · ");
  cell("recorded_at").textContent = formatTime(item.recorded_at);
  cell("state").replaceChildren(...archiveState(item, live));
  cell("duration").textContent = item.state === "ready" ? formatClock(item.duration) : live ? formatClock(live.duration) : "";
  cell("size").textContent = item.state === "ready" ? formatBytes(item.size) : live ? formatBytes(live.bytes) : "";
  // The buttons are rebuilt only when what they can do changes.
  if (row.dataset.state !== item.state) {
    cell("actions").replaceChildren(...archiveActions(item));
    row.dataset.state = item.state;
  }
}

function renderArchive() {
  const body = $("#archive-table tbody");
  const live = new Map(state.sessions.filter((s) => s.recording).map((s) => [s.recording.item_id, s.recording]));
  const existing = new Map([...body.children].map((row) => [row.dataset.id, row]));
  const rows = state.archive.map((item) => {
    const row = existing.get(item.id) || archiveRow(item.id);
    fillArchiveRow(row, item, live.get(item.id));
    return row;
  });
  if (rows.length !== body.children.length || rows.some((row, i) => body.children[i] !== row)) body.replaceChildren(...rows);
  $("#archive-empty").hidden = rows.length > 0;
  fillSelect($("#archive-form [name=course_id]"), state.courses, (c) => c.title);
  fillReplayPicker();
}

function editItem(id) {
  const item = state.archive.find((row) => row.id === id);
  if (!item) return;
  const form = $("#archive-form");
  clearErrors(form);
  form.dataset.editing = id;
  form.elements.title.value = item.title || "";
  form.elements.lecturer.value = item.lecturer || "";
  form.elements.description.value = item.description || "";
  form.elements.course_id.value = item.course_id == null ? "" : String(item.course_id);
  form.hidden = false;
  form.elements.title.focus();
  form.scrollIntoView({ block: "nearest" });
}

function closeItemEditor() {
  const form = $("#archive-form");
  form.reset();
  delete form.dataset.editing;
  clearErrors(form);
  form.hidden = true;
}

async function saveItem(event) {
  event.preventDefault();
  const form = $("#archive-form");
  clearErrors(form);
  const f = form.elements;
  const data = { title: f.title.value, lecturer: f.lecturer.value, description: f.description.value,
    course_id: f.course_id.value ? Number(f.course_id.value) : null };
  try { await api("PATCH", `/archive/${encodeURIComponent(form.dataset.editing)}`, data); } catch (error) {
    showErrors(form, error); return;
  }
  notify(t("console.saved"));
  closeItemEditor();
  await refresh();
}

async function deleteItem(id) {
  const item = state.archive.find((row) => row.id === id);
  if (!item || !confirm(t("console.confirm.delete_item", { name: item.title || id }))) return;
  try { await api("DELETE", `/archive/${encodeURIComponent(id)}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  if ($("#archive-form").dataset.editing === id) closeItemEditor();
  notify(t("console.deleted"));
  await refresh();
}

// ------------------------------------------------------------ library links
function linkStatus(link) {
  if (link.revoked_at != null) return "revoked";
  if (link.expires_at != null && link.expires_at * 1000 <= Date.now()) return "expired";
  return "active";
}

function renderLinks() {
  $("#links-table tbody").replaceChildren(...state.links.map((link) => {
    const status = linkStatus(link);
    const actions = el("td", { className: "actions" });
    if (status === "active") {
      actions.append(el("button", { type: "button", className: "danger", textContent: t("console.links.revoke"),
        onclick: () => revokeLink(link) }));
    }
    return el("tr", { dataset: { id: link.id } },
      el("td", { textContent: link.label }),
      el("td", { textContent: formatTime(link.created_at) }),
      el("td", { textContent: link.expires_at == null ? t("console.links.never") : formatTime(link.expires_at) }),
      el("td", {}, el("span", { className: `status status-${status}`, textContent: t(`console.links.${status}`) })),
      actions);
  }));
  $("#links-empty").hidden = state.links.length > 0;
}

async function createLink(event) {
  event.preventDefault();
  const form = $("#links-form");
  clearErrors(form);
  const data = { label: form.elements.label.value };
  const expires = fromLocalInput(form.elements.expires_at.value);
  if (expires != null) data.expires_at = expires;
  let link;
  try { link = await api("POST", "/library-links", data); } catch (error) { showErrors(form, error); return; }
  form.reset();
  // The token is shown once: only its digest is kept on the server.
  $("#new-link-label").textContent = link.label;
  $("#new-link-url").value = link.url;
  $("#new-link").hidden = false;
  await refresh();
}

async function revokeLink(link) {
  if (!confirm(t("console.confirm.revoke_link", { name: link.label }))) return;
  try { await api("DELETE", `/library-links/${encodeURIComponent(link.id)}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

// ---------------------------------------------------------- live updates
const somethingLive = () => state.sessions.some((s) => s.recording || replayRunning(s))
  || state.archive.some((item) => item.state === "recording" || item.state === "finishing");

// A waiting replay starts by itself: look again just after its start time.
function nextReplayStart() {
  const starts = state.sessions.filter((s) => s.state !== "ended" && s.replay?.state === "waiting"
    && s.replay.starts_at != null).map((s) => s.replay.starts_at * 1000);
  return starts.length ? Math.min(...starts) : null;
}

function schedulePoll() {
  clearTimeout(schedulePoll.timer);
  let delay = somethingLive() ? LIVE_POLL_MS : null;
  const start = nextReplayStart();
  if (start != null) delay = Math.min(delay ?? MAX_TIMER_MS, Math.max(start - Date.now() + 500, LIVE_POLL_MS));
  if (delay != null) schedulePoll.timer = setTimeout(pollLive, delay);
}

// Recording stats and finishing progress, without rebuilding what a click may be on.
async function pollLive() {
  let sessions, archive;
  try {
    [sessions, archive] = await Promise.all([api("GET", "/sessions"), api("GET", "/archive")]);
  } catch {
    schedulePoll();
    return;
  }
  const shape = (list) => list.map((s) => `${s.id}:${s.state}`).join(",");
  const reshaped = shape(sessions.sessions) !== shape(state.sessions);
  Object.assign(state, { sessions: sessions.sessions, archive: archive.items });
  if (reshaped) renderSessions();
  else {
    for (const row of document.querySelectorAll("#sessions-table tbody tr")) {
      const s = state.sessions.find((item) => item.id === row.dataset.id);
      if (s) fillSessionRow(row, s);
    }
  }
  renderArchive();
  schedulePoll();
}

// ------------------------------------------------------------- invitations
async function openDetail(id) {
  state.detail = id;
  renderSessions();
  await renderDetail();
  $("#session-detail").scrollIntoView({ block: "nearest" });
}

async function copyLink(input) {
  try { await navigator.clipboard.writeText(input.value); } catch {
    input.select();
    document.execCommand("copy");
  }
  notify(t("console.invitations.copied"));
}

function invitationStatus(item) {
  if (item.revoked_at != null) return ["revoked", t("console.invitations.revoked")];
  if (item.expires_at * 1000 <= Date.now()) return ["expired", t("console.invitations.expired")];
  if (item.connected) return ["connected", t("console.invitations.connected")];
  return ["waiting", t("console.invitations.not_connected")];
}

async function renderDetail() {
  const session = state.sessions.find((s) => s.id === state.detail);
  $("#session-detail").hidden = !session;
  if (!session) return;
  $("#detail-title").textContent = session.title;
  // The main classroom's link (it carries the session's publish token). A
  // replay has no presenter: its program is the recorded lecture.
  $("#presenter-row").hidden = !!session.replay;
  $("#presenter-link").value = session.replay ? "" : session.presenter_url || "";
  $("#presenter-open").href = session.replay ? "#" : session.presenter_url || "#";
  const { invitations } = await api("GET", `/sessions/${session.id}/invitations`);
  const invited = new Set(invitations.filter((i) => i.revoked_at == null).map((i) => i.site_id));
  $("#invite-sites .checks").replaceChildren(...state.sites.map((site) => el("label", { className: "check" },
    el("input", { type: "checkbox", value: String(site.id) }),
    ` ${site.name}`, site.org_path ? el("small", { textContent: ` ${site.org_path}` }) : null,
    invited.has(site.id) ? el("small", { className: "invited", textContent: ` · ${t("console.invitations.already")}` }) : null)));
  $("#invite-none").hidden = state.sites.length > 0;
  $("#invite-button").disabled = session.state === "ended" || state.sites.length === 0;
  $("#invitations tbody").replaceChildren(...invitations.map((item) => {
    const link = el("input", { readOnly: true, value: item.url, className: "link" });
    const [kind, label] = invitationStatus(item);
    const actions = el("td", { className: "actions" },
      el("button", { type: "button", className: "copy", textContent: t("console.invitations.copy"), onclick: () => copyLink(link) }));
    if (item.revoked_at == null) {
      actions.append(el("button", { type: "button", className: "danger", textContent: t("console.invitations.revoke"),
        onclick: () => revoke(item) }));
    }
    return el("tr", { dataset: { id: item.id } },
      el("td", {}, item.site_name, item.org_path ? el("small", { textContent: ` ${item.org_path}` }) : null),
      el("td", {}, link),
      el("td", {}, el("img", { className: "qr", alt: t("console.invitations.qr_alt", { name: item.site_name }),
        src: `/api/v1/invitations/${encodeURIComponent(item.id)}/qr.svg`, width: 116, height: 116 })),
      el("td", {}, el("span", { className: `status status-${kind}`, textContent: label })),
      actions);
  }));
  $("#invitations-empty").hidden = invitations.length > 0;
}

async function invite() {
  const boxes = [...document.querySelectorAll("#invite-sites input:checked")];
  $("#invite-error").textContent = "";
  if (!boxes.length) { $("#invite-error").textContent = t("console.invitations.pick_some"); return; }
  for (const box of boxes) {
    try { await api("POST", `/sessions/${state.detail}/invitations`, { site_id: Number(box.value) }); } catch (error) {
      $("#invite-error").textContent = t("console.error", { message: error.message });
      break;
    }
  }
  await renderDetail();
}

async function revoke(item) {
  if (!confirm(t("console.confirm.revoke", { name: item.site_name }))) return;
  try { await api("DELETE", `/invitations/${encodeURIComponent(item.id)}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await renderDetail();
}

// ----------------------------------------------------------------- import
async function importSites(event) {
  event.preventDefault();
  const form = $("#sites-import");
  clearErrors(form);
  const list = $(".row-errors", form);
  list.replaceChildren();
  const file = form.elements.file.files[0];
  const text = file ? await file.text() : form.elements.text.value;
  if (!text.trim()) { $(".form-error", form).textContent = t("error.csv_empty"); return; }
  let reply;
  try { reply = await api("POST", "/sites/import", text, "text/csv"); } catch (error) {
    const fields = error.status === 422 ? fieldErrors(error.message) : {};
    if (!Object.keys(fields).length) { $(".form-error", form).textContent = t("console.error", { message: error.message }); return; }
    $(".form-error", form).textContent = t("console.import.failed");
    for (const [where, key] of Object.entries(fields)) {
      const row = where.match(/^row (\d+)$/);
      const place = row ? t("console.import.row", { n: row[1] }) : t("console.import.file");
      list.append(el("li", { textContent: `${place}：${t(key)}` }));
    }
    return;
  }
  form.reset();
  notify(t("console.import.done", { count: reply.imported }));
  await refresh();
}

// ----------------------------------------------------------------- start
async function refresh() {
  const [units, courses, sites, sessions, archive, links] = await Promise.all(
    ["units", "courses", "sites", "sessions", "archive", "library-links"].map((kind) => api("GET", `/${kind}`)));
  Object.assign(state, { units: units.units, courses: courses.courses, sites: sites.sites, sessions: sessions.sessions,
    archive: archive.items, links: links.links });
  for (const kind of Object.keys(EDITORS)) renderEditor(kind);
  renderSessions();
  renderArchive();
  renderLinks();
  schedulePoll();
  await renderDetail();
}

async function main() {
  const lang = await init();
  const me = await fetch("/api/v1/me");
  if (!me.ok) { location.href = "/login"; return; }
  const who = await me.json();
  state.csrf = who.csrf_token;
  $("#who").textContent = t("console.logged_in", { name: who.username ?? "" });
  $("#lang-switch").onclick = () => switchLanguage(lang === "en" ? "zh-CN" : "en");
  for (const button of document.querySelectorAll("#tabs [data-tab]")) button.onclick = () => showTab(button.dataset.tab);
  for (const kind of Object.keys(EDITORS)) buildEditor(kind);
  $("#sessions-form").addEventListener("submit", saveSession);
  $("#sessions-form .cancel").onclick = resetSessionForm;
  const sessionForm = $("#sessions-form");
  for (const radio of sessionForm.elements.source) radio.addEventListener("change", showSource);
  sessionForm.elements.replay_item_id.addEventListener("change", showSource);
  sessionForm.elements.replay_filter.addEventListener("input", fillReplayPicker);
  sessionForm.elements.replay_filter.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.preventDefault(); // filtering, not saving
  });
  $("#invite-button").onclick = invite;
  $("#sites-import").addEventListener("submit", importSites);
  $("#archive-form").addEventListener("submit", saveItem);
  $("#archive-form .cancel").onclick = closeItemEditor;
  $("#links-form").addEventListener("submit", createLink);
  $("#new-link-copy").onclick = () => copyLink($("#new-link-url"));
  $("#presenter-copy").onclick = () => copyLink($("#presenter-link"));
  resetSessionForm();
  const tab = location.hash.slice(1);
  showTab(["sessions", "units", "courses", "sites", "archive", "links"].includes(tab) ? tab : "sessions");
  await refresh();
  document.body.dataset.ready = "true";
}

main();
