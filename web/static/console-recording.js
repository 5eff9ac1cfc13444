// The 录制 cell of a session row (场次 tab): start or stop recording, and
// while it runs its duration, size, segments and latest notices.
import { t } from "/static/i18n.js";
import { el } from "/static/dom.js";
import { $, api, formatBytes, formatClock, locale, notify, refresh, state } from "/static/console-shared.js";

// The recording cell of a session row: its button keeps its identity across
// polls, so a click is never lost to a re-render.
export function fillRecordingCell(cell, s) {
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
