// What the console's tabs share: the state they render from, /api/v1/ calls
// (every unsafe one sends X-CSRF-Token), form errors, the notice line, formatting, and
// refresh()/schedulePoll(), which the entry point (console.js) provides.
import { t, language } from "/static/i18n.js";
import { apiReply, showErrors as showFormErrors } from "/static/forms.js";
import { el, flash } from "/static/dom.js";

export const $ = (selector, root = document) => root.querySelector(selector);
export const state = { csrf: null, units: [], courses: [], sites: [], sessions: [], detail: null,
                       archive: [], links: [] };
window.zhixingConsole = state;

// Set by console.js: reload everything; look again soon while something is live.
export const hooks = { refresh: async () => {}, schedulePoll: () => {} };
export const refresh = () => hooks.refresh();
export const schedulePoll = () => hooks.schedulePoll();

export async function api(method, path, body, contentType = "application/json") {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  let data;
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    data = contentType === "application/json" ? JSON.stringify(body) : body;
  }
  return apiReply(await fetch(`/api/v1${path}`, { method, headers, body: data }));
}

export function showErrors(form, error) {
  showFormErrors(form, error, "console.error");
}

export function notify(text) {
  flash($("#notice"), text, 4000);
}

export const locale = () => (language() === "en" ? "en-GB" : "zh-CN");
export const formatTime = (seconds) => seconds == null ? "" : new Date(seconds * 1000).toLocaleString(locale(), {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
export const toLocalInput = (seconds) => {
  if (seconds == null) return "";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
};
export const fromLocalInput = (value) => (value ? Math.round(new Date(value).getTime() / 1000) : null);
export const formatClock = (seconds) => {
  const total = Math.max(0, Math.floor(seconds || 0));
  const pad = (n) => String(n).padStart(2, "0");
  const h = Math.floor(total / 3600);
  return `${h ? `${h}:` : ""}${pad(Math.floor((total % 3600) / 60))}:${pad(total % 60)}`;
};
export const formatBytes = (bytes) => {
  if (bytes == null) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${unit && value < 100 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
};

export function fillSelect(select, rows, label, allowNone = true) {
  const current = select.value;
  select.replaceChildren();
  if (allowNone) select.append(el("option", { value: "", textContent: t("console.none") }));
  for (const row of rows) select.append(el("option", { value: String(row.id), textContent: label(row) }));
  select.value = current;
}

export async function copyLink(input) {
  try { await navigator.clipboard.writeText(input.value); } catch {
    input.select();
    document.execCommand("copy");
  }
  notify(t("console.invitations.copied"));
}
