// Shared by the library (课程回放) and player pages: durations, dates, and
// where this browser stopped in each recording (localStorage, per item id).
import { language } from "/static/i18n.js";

const KEY_PREFIX = "zhixing.resume.";

// 3725 → "1:02:05", 65 → "1:05"
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function formatDate(seconds, withTime = false) {
  if (seconds == null) return "";
  const options = { year: "numeric", month: "2-digit", day: "2-digit" };
  if (withTime) Object.assign(options, { hour: "2-digit", minute: "2-digit" });
  return new Date(seconds * 1000).toLocaleString(language() === "en" ? "en-GB" : "zh-CN", options);
}

// Keeps the language of the page (?lang=) on links to the other page.
export function withLanguage(path) {
  const lang = new URLSearchParams(location.search).get("lang");
  return lang ? `${path}?lang=${encodeURIComponent(lang)}` : path;
}

// {position, duration, at} or null; storage may be off (private mode).
export function savedPosition(itemId) {
  try {
    const value = JSON.parse(localStorage.getItem(KEY_PREFIX + itemId));
    return value && Number.isFinite(value.position) ? value : null;
  } catch {
    return null;
  }
}

export function savePosition(itemId, position, duration) {
  try {
    localStorage.setItem(KEY_PREFIX + itemId, JSON.stringify({ position, duration, at: Date.now() }));
  } catch {
    // Storage full or off: resuming is a convenience.
  }
}

export function forgetPosition(itemId) {
  try { localStorage.removeItem(KEY_PREFIX + itemId); } catch { /* as above */ }
}
