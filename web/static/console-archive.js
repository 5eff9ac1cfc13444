// The 课程录像 (archive) tab: every recorded item with its state (a live
// recording's duration and size, finishing progress), play, edit, delete.
import { t } from "/static/i18n.js";
import { clearErrors } from "/static/forms.js";
import { el } from "/static/dom.js";
import { $, api, fillSelect, formatBytes, formatClock, formatTime, notify, refresh, showErrors,
         state } from "/static/console-shared.js";
import { fillReplayPicker } from "/static/console-replay.js";

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
  // The city's lectures a district may replay, not change; an auditor reads.
  if (item.manageable === false) return actions;
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

export function renderArchive() {
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

export function setupArchive() {
  $("#archive-form").addEventListener("submit", saveItem);
  $("#archive-form .cancel").onclick = closeItemEditor;
}
