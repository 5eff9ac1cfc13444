// The 场次 (sessions) tab: the sessions table with each row's actions, and
// the form that creates (live or replay) and edits a session. A row's state
// cell is console-replay.js's, its 录制 cell console-recording.js's, the
// invitations under the table console-invitations.js's.
import { t } from "/static/i18n.js";
import { clearErrors } from "/static/forms.js";
import { el } from "/static/dom.js";
import { $, api, fillSelect, formatTime, fromLocalInput, notify, refresh, showErrors, state,
         toLocalInput } from "/static/console-shared.js";
import { fillRecordingCell } from "/static/console-recording.js";
import { fillReplayPicker, fillStateCell, setupReplayPicker, showSource } from "/static/console-replay.js";
import { renderDetail } from "/static/console-invitations.js";

const batchText = (batch) => ({ "第一批": t("console.batch.first"), "第二批": t("console.batch.second") })[batch] ?? (batch || "");

// 市级培训, or a district's extension training (延伸培训).
const organizerText = (s) => (s.organizer === "city" ? t("console.sessions.organizer_city")
  : t("console.sessions.organizer_district", { name: s.organizer_name || "" }));

function sessionActions(s) {
  const actions = el("td", { className: "actions" });
  if (state.role === "presenter") {
    // A presenter's one use of the console: its sessions' presenter page.
    if (s.presenter_url && s.state !== "ended" && !s.replay) {
      actions.append(el("a", { className: "button present", href: s.presenter_url, target: "_blank",
        rel: "noopener", textContent: t("console.presenter.open") }));
    }
    return actions;
  }
  actions.append(el("button", { type: "button", textContent: t("console.sessions.invitations"), onclick: () => openDetail(s.id) }));
  // The wall (a district sees its own rooms on the city's).
  actions.append(el("a", { className: "button", href: `/admin/wall/${encodeURIComponent(s.id)}`,
    textContent: t("console.sessions.wall") }));
  actions.append(el("a", { className: "button", href: `/admin/reports?session=${encodeURIComponent(s.id)}`,
    textContent: t("console.sessions.attendance") }));
  return actions;
}

export function renderSessions() {
  const body = $("#sessions-table tbody");
  body.replaceChildren(...state.sessions.map((s) => {
    const actions = sessionActions(s);
    if (s.state !== "ended" && s.manageable) {
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
    // A session of another level (the city's, seen from a district) is read-only here.
    const classes = [state.detail === s.id ? "selected" : "", s.manageable ? "" : "readonly"];
    return el("tr", { dataset: { id: s.id }, className: classes.filter(Boolean).join(" ") },
      el("td", { textContent: s.title }),
      el("td", { className: `organizer organizer-${s.organizer}`, textContent: organizerText(s) }),
      el("td", { textContent: s.course_title || "" }),
      el("td", { textContent: batchText(s.batch) }),
      el("td", { textContent: when }),
      fillStateCell(el("td", { className: "col-state" }), s),
      fillRecordingCell(el("td", { className: "recording" }), s),
      actions);
  }));
  $("#sessions-empty").hidden = state.sessions.length > 0;
  fillSelect($("#sessions-form [name=course_id]"), state.courses, (c) => c.title);
  // The organizer: the caller's own node (the default) or one below it.
  const organizer = $("#sessions-form [name=organizer_id]");
  const current = organizer.value;
  organizer.replaceChildren(...(state.org || []).map((node) => el("option", { value: String(node.id),
    textContent: node.parent_id == null ? t("console.sessions.organizer_city") : node.path })));
  organizer.value = current || String(state.me?.org_node_id ?? "");
  fillSelect($("#sessions-form [name=presenter_id]"),
    (state.accounts || []).filter((a) => a.role === "presenter" && !a.disabled),
    (a) => [a.username, a.org_path].filter(Boolean).join(" · "));
}

export function resetSessionForm() {
  const form = $("#sessions-form");
  form.reset();
  delete form.dataset.editing;
  clearErrors(form);
  form.elements.video_codec.disabled = false;
  $("fieldset.source", form).disabled = false;
  form.elements.replay_item_id.disabled = false;
  form.elements.organizer_id.disabled = false;
  form.elements.organizer_id.value = String(state.me?.org_node_id ?? "");
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
  form.elements.presenter_id.value = s.presenter_id == null ? "" : String(s.presenter_id);
  form.elements.scheduled_start.value = toLocalInput(s.scheduled_start);
  form.elements.scheduled_end.value = toLocalInput(s.scheduled_end);
  form.elements.video_codec.value = s.video_codec;
  form.elements.video_codec.disabled = true;
  form.elements.organizer_id.value = String(s.organizer_id);
  form.elements.organizer_id.disabled = true;
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
    presenter_id: f.presenter_id.value ? Number(f.presenter_id.value) : null,
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
    else {
      const organizer = f.organizer_id.value ? { organizer_id: Number(f.organizer_id.value) } : {};
      if (replay) saved = await api("POST", "/sessions", { ...data, ...organizer, replay_item_id: f.replay_item_id.value });
      else saved = await api("POST", "/sessions", { ...data, ...organizer, video_codec: f.video_codec.value });
    }
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

async function openDetail(id) {
  state.detail = id;
  renderSessions();
  await renderDetail();
  $("#session-detail").scrollIntoView({ block: "nearest" });
}

export function setupSessions() {
  $("#sessions-form").addEventListener("submit", saveSession);
  $("#sessions-form .cancel").onclick = resetSessionForm;
  setupReplayPicker();
  resetSessionForm();
}
