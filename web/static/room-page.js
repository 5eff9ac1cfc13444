// What the room page's parts share: the invitation token (from the page,
// never in window.zhixing), the state tests and a person at the console can
// read, the API, the status line, and the 研讨 error line.
import { t } from "/static/i18n.js";
import { flash } from "/static/dom.js";

export const token = document.body.dataset.token || "";
export const $ = (id) => document.getElementById(id);
export const video = $("program");
const ERROR_SHOWN_MS = 6000;

// For tests and for a person at the console: never holds the token.
export const state = { state: "connecting", error: null, pc: null, room: null, quality: null,
                       timeshift: "live", discussion: null, events: "closed", uplinkPc: null,
                       camera: "off", cameraRetryIn: null, cameraRetries: 0 };
window.zhixing = state;

// What the parts keep between them: the picture's viewer ({pc, stream,
// stageStream, resourceUrl, stop()}), the ICE servers, and whether the session is over (ended
// or the link gone: nothing more to connect to).
export const page = { viewer: null, finished: false, iceServers: [] };

// Set by room.js: ask the server about the room (it may have ended, or the
// link be gone).
export const hooks = { poll: async () => {} };
export const poll = () => hooks.poll();

let statusKey = "room.status.connecting";
let statusValues = {};

export function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
  return fetch(path, { ...options, headers, cache: "no-store" });
}

export function setStatus(key, values = {}) {
  statusKey = key;
  statusValues = values;
  $("status").textContent = t(key, values);
}

// The status line again, in the page's language.
export function renderStatus() {
  setStatus(statusKey, statusValues);
}

// This room's invitation, once the discussion knows it.
export function mine() {
  const d = state.discussion;
  return d && d.you ? d.you.invitation_id : null;
}

// A line under the discussion for a few seconds (a refused request, a camera problem).
export function flashError(text) {
  flash($("discuss-error"), text, ERROR_SHOWN_MS);
}
