// The room wall (监控墙): every invited sub-classroom of a session as a tile,
// problems first, from the snapshots the server pushes every 2 s over a
// WebSocket (the login cookie authenticates it).
import { init, switchLanguage, t } from "/static/i18n.js";

const CLOSE_ENDED = 4000; // the server's close code when the session has ended
const RETRY_DELAYS = [1, 2, 5, 10]; // seconds; the last one repeats

const $ = (id) => document.getElementById(id);
const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");

// What the test harness and a curious operator can read.
const zhixing = { state: "connecting", snapshot: null, updates: 0 };
window.zhixing = zhixing;

let lang = "zh-CN";
let attempt = 0;

// ---------------------------------------------------------------- formatting

function bitrate(bits) {
  if (bits === null || bits === undefined) return "–";
  if (bits >= 1e6) return t("wall.unit.mbps", { value: (bits / 1e6).toFixed(2) });
  return t("wall.unit.kbps", { value: Math.round(bits / 1e3) });
}

function percent(fraction) {
  return fraction === null || fraction === undefined ? "–" : `${(fraction * 100).toFixed(1)} %`;
}

function millis(seconds) {
  return seconds === null || seconds === undefined ? "–" : `${Math.round(seconds * 1000)} ms`;
}

function clock(stamp) {
  return new Date(stamp * 1000).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
}

function minutes(from, to) {
  return Math.max(0, Math.floor((to - from) / 60));
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- rendering

function renderConnection() {
  const node = $("connection");
  node.dataset.state = zhixing.state;
  node.textContent = t(`wall.connection.${zhixing.state}`);
}

function renderOverview(snapshot) {
  const { session, summary } = snapshot;
  $("session-title").textContent = session.title;
  document.title = `${t("wall.title")} · ${session.title}`;
  const state = $("session-state");
  state.textContent = t(`wall.state.${session.state}`);
  state.dataset.on = String(session.on_air);
  const publisher = $("publisher");
  const source = session.replay ? "wall.replay" : "wall.publisher";
  publisher.textContent = t(`${source}.${session.on_air ? "on" : "off"}`);
  publisher.dataset.on = String(session.on_air);
  $("recording").hidden = !session.recording;
  const video = session.ingress.video;
  $("ingress").textContent = session.on_air
    ? t("wall.ingress", { bitrate: bitrate(video.bitrate + session.ingress.audio.bitrate),
                          fps: Math.round(video.fps) })
    : "";
  const parts = [t("wall.summary.connected", summary)];
  if (summary.problems) parts.push(t("wall.summary.problems", { count: summary.problems }));
  if (summary.late) parts.push(t("wall.summary.late", { count: summary.late }));
  if (summary.headcount) parts.push(t("wall.summary.headcount", { count: summary.headcount }));
  if (summary.other_viewers) parts.push(t("wall.summary.other", { count: summary.other_viewers }));
  $("summary").textContent = parts.join(" · ");
  $("none").hidden = snapshot.sites.length > 0;
  $("ended").hidden = session.state !== "ended";
}

function quality(site) {
  const q = site.quality;
  const list = el("dl");
  const items = [
    ["wall.q.bitrate", bitrate(q.bitrate)],
    ["wall.q.loss", percent(q.fraction_lost)],
    ["wall.q.rtt", millis(q.rtt)],
    ["wall.q.jitter", millis(q.jitter)],
    ["wall.q.lost", String(q.packets_lost)],
    ["wall.q.frames", String(q.frames_sent)],
  ];
  for (const [key, value] of items) {
    const item = el("div");
    item.append(el("dt", "", t(key)), el("dd", "", value));
    list.append(item);
  }
  return list;
}

function tile(site, at) {
  const node = el("article", "tile");
  node.dataset.invitation = site.invitation_id;
  node.dataset.connected = String(site.connected);
  node.dataset.level = String(site.problem.level);
  node.dataset.reason = site.problem.reason || "";
  const title = el("h2");
  const badgeKey = site.problem.reason && site.problem.level >= 2
    ? `wall.problem.${site.problem.reason}`
    : site.connected ? "wall.site.connected" : "wall.site.offline";
  title.append(el("span", "name", site.name), el("span", "badge", t(badgeKey)));
  node.append(title, el("p", "path", site.org_path || "\u00a0"));
  if (site.connected) {
    node.append(el("p", "line since", t("wall.site.since", {
      time: clock(site.connected_since), minutes: minutes(site.connected_since, at) })));
  } else if (site.disconnected_since) {
    node.append(el("p", "line since", t("wall.site.disconnected_since", {
      time: clock(site.disconnected_since), minutes: minutes(site.disconnected_since, at) })));
  }
  const facts = [];
  if (site.reconnects) facts.push(t("wall.site.reconnects", { count: site.reconnects }));
  if (site.viewers > 1) facts.push(t("wall.site.viewers", { count: site.viewers }));
  facts.push(site.headcount === null
    ? t("wall.site.headcount_none")
    : t("wall.site.headcount", { count: site.headcount, time: clock(site.headcount_at) }));
  node.append(el("p", "line facts", facts.join(" · ")));
  for (const reason of site.problem.reasons) {
    if (reason !== "offline") node.append(el("p", "problem", t(`wall.problem_detail.${reason}`)));
  }
  if (site.quality) node.append(quality(site));
  return node;
}

function render() {
  renderConnection();
  const snapshot = zhixing.snapshot;
  if (!snapshot) return;
  renderOverview(snapshot);
  $("tiles").replaceChildren(...snapshot.sites.map((site) => tile(site, snapshot.at)));
}

// ---------------------------------------------------------------- the socket

function setState(state) {
  zhixing.state = state;
  renderConnection();
}

async function loginGone() {
  try {
    const response = await fetch("/api/v1/me", { cache: "no-store" });
    return response.status === 401;
  } catch {
    return false;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/api/v1/sessions/${encodeURIComponent(sessionId)}/wall/ws`;
  const socket = new WebSocket(url);
  socket.onopen = () => {
    attempt = 0;
    setState("live");
  };
  socket.onmessage = (event) => {
    zhixing.snapshot = JSON.parse(event.data);
    zhixing.updates += 1;
    render();
  };
  socket.onclose = async (event) => {
    if (event.code === CLOSE_ENDED) {
      setState("ended");
      return;
    }
    setState("reconnecting");
    if (await loginGone()) {
      location.assign("/login");
      return;
    }
    const delay = RETRY_DELAYS[Math.min(attempt, RETRY_DELAYS.length - 1)];
    attempt += 1;
    setTimeout(connect, delay * 1000);
  };
}

async function main() {
  lang = await init();
  const button = $("lang");
  button.addEventListener("click", () => switchLanguage(lang === "zh-CN" ? "en" : "zh-CN"));
  render();
  connect();
  document.body.dataset.ready = "true";
}

main();
