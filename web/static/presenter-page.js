// What the presenter page's parts share: the session and its publish token
// (from the URL fragment, never sent for the page), the state the test
// harness and a curious operator can read, the status and error lines, and
// the ICE servers.
import { t } from "/static/i18n.js";
import { loadIceServers } from "/static/whip-client.js";

export const $ = (id) => document.getElementById(id);
export const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
export const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";

// What the test harness and a curious operator can read.
export const zhixing = { state: "idle", error: null, pc: null, presence: null, attempts: 0,
                         discussion: null, stagePc: null };
window.zhixing = zhixing;

// What the parts keep between them: the local MediaStream (preview and what
// is sent; presenter-media.js's) and the running publish ({pc, stop()};
// presenter.js's).
export const page = { stream: null, sending: null };

let status = { key: "presenter.state.idle", values: {}, state: "idle" };
let error = null; // {key, values}
let iceServers = null;

export function setStatus(state, key, values = {}) {
  status = { state, key, values };
  zhixing.state = state;
  renderStatus();
}

export function renderStatus() {
  const el = $("status");
  el.dataset.state = status.state;
  el.textContent = t(status.key, status.values);
}

export function showError(key, values = {}) {
  error = key ? { key, values } : null;
  zhixing.error = key ? t(key, values) : null;
  renderError();
}

export function renderError() {
  const el = $("error");
  el.hidden = !error;
  el.textContent = error ? t(error.key, error.values) : "";
}

// The key of the error shown, or null.
export function errorKey() {
  return error ? error.key : null;
}

// Loaded once, for the publish and the stage viewer.
export async function rtcServers() {
  if (iceServers === null) iceServers = await loadIceServers(token);
  return iceServers;
}
