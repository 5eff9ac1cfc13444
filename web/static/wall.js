// The room wall (监控墙): every invited sub-classroom of a session as a tile,
// problems first, from the snapshots the server pushes every 2 s over a
// WebSocket (the login cookie authenticates it). Also the discussion (研讨),
// read only: hands, questions, the stage and the rooms' cameras. Questions
// are the rooms' own text: everything goes in with textContent.
import { init, switchLanguage, t } from "/static/i18n.js";
import { KeptConnection } from "/static/kept-connection.js";
import { el } from "/static/dom.js";

const CLOSE_ENDED = 4000; // the server's close code when the session has ended
const RETRY_DELAYS = [1, 2, 5, 10]; // seconds; the last one repeats

const $ = (id) => document.getElementById(id);
const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");

// What the test harness and a curious operator can read.
const zhixing = { state: "connecting", snapshot: null, updates: 0 };
window.zhixing = zhixing;

let lang = "zh-CN";

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

function clock(stamp, seconds = false) {
  const options = { hour: "2-digit", minute: "2-digit" };
  if (seconds) options.second = "2-digit";
  return new Date(stamp * 1000).toLocaleTimeString(lang, options);
}

function minutes(from, to) {
  return Math.max(0, Math.floor((to - from) / 60));
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
  if (summary.hands) parts.push(t("wall.summary.hands", { count: summary.hands }));
  if (summary.open_questions) {
    parts.push(t("wall.summary.questions", { count: summary.open_questions }));
  }
  if (summary.cameras) parts.push(t("wall.summary.cameras", { count: summary.cameras }));
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
    item.append(el("dt", { textContent: t(key) }), el("dd", { textContent: value }));
    list.append(item);
  }
  return list;
}

// What a tile says of its room's part in the discussion; null if it took none.
function discussionMarks(d) {
  if (!d) return null;
  const marks = [];
  if (d.on_stage) {
    marks.push(el("span", { className: "mark stage", textContent: t("wall.site.on_stage") }));
  }
  if (d.hand) {
    marks.push(el("span", { className: "mark hand", textContent: t("wall.site.hand", {
      position: d.hand.position, time: clock(d.hand.raised_at, true) }) }));
  }
  const uplink = d.uplink;
  if (uplink && uplink.present) {
    const key = uplink.muted ? "wall.site.camera_muted"
      : uplink.connected ? "wall.site.camera" : "wall.site.camera_connecting";
    const mark = el("span", { className: "mark camera", textContent: t(key) });
    mark.dataset.state = uplink.muted ? "muted" : uplink.connected ? "connected" : "connecting";
    marks.push(mark);
  }
  if (d.questions) {
    marks.push(el("span", { className: "mark questions", textContent: t("wall.site.questions", {
      count: d.questions, open: d.open_questions }) }));
  }
  if (!marks.length) return null;
  const line = el("p", { className: "marks" });
  line.append(...marks);
  return line;
}

function tile(site, at) {
  const node = el("article", { className: "tile" });
  node.dataset.invitation = site.invitation_id;
  node.dataset.connected = String(site.connected);
  node.dataset.level = String(site.problem.level);
  node.dataset.reason = site.problem.reason || "";
  const title = el("h2");
  const badgeKey = site.problem.reason && site.problem.level >= 2
    ? `wall.problem.${site.problem.reason}`
    : site.connected ? "wall.site.connected" : "wall.site.offline";
  title.append(el("span", { className: "name", textContent: site.name }),
               el("span", { className: "badge", textContent: t(badgeKey) }));
  node.append(title, el("p", { className: "path", textContent: site.org_path || "\u00a0" }));
  const marks = discussionMarks(site.discussion);
  if (marks) {
    node.dataset.hand = String(!!site.discussion.hand);
    node.dataset.onStage = String(site.discussion.on_stage);
    node.append(marks);
  }
  if (site.connected) {
    node.append(el("p", { className: "line since", textContent: t("wall.site.since", {
      time: clock(site.connected_since), minutes: minutes(site.connected_since, at) }) }));
  } else if (site.disconnected_since) {
    node.append(el("p", { className: "line since", textContent: t("wall.site.disconnected_since", {
      time: clock(site.disconnected_since), minutes: minutes(site.disconnected_since, at) }) }));
  }
  const facts = [];
  if (site.reconnects) facts.push(t("wall.site.reconnects", { count: site.reconnects }));
  if (site.viewers > 1) facts.push(t("wall.site.viewers", { count: site.viewers }));
  facts.push(site.headcount === null
    ? t("wall.site.headcount_none")
    : t("wall.site.headcount", { count: site.headcount, time: clock(site.headcount_at) }));
  node.append(el("p", { className: "line facts", textContent: facts.join(" · ") }));
  for (const reason of site.problem.reasons) {
    if (reason !== "offline") {
      node.append(el("p", { className: "problem", textContent: t(`wall.problem_detail.${reason}`) }));
    }
  }
  if (site.quality) node.append(quality(site));
  return node;
}

// A list is rebuilt only when what it shows changed: an admin may be reading,
// selecting or scrolling it between two snapshots.
const shown = new Map(); // list id -> its items as JSON

function renderList(id, items, item, noneKey) {
  const key = JSON.stringify(items);
  if (shown.get(id) === key) return;
  shown.set(id, key);
  const list = $(id);
  const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren(...(items.length ? items.map(item)
    : [el("li", { className: "none", textContent: t(noneKey) })]));
  if (atEnd) list.scrollTop = list.scrollHeight; // the newest stay in sight
}

function handItem(hand, index) {
  const li = el("li");
  li.dataset.invitation = hand.invitation_id;
  li.append(el("span", { className: "position", textContent: String(index + 1) }),
            el("span", { className: "name", textContent: hand.name }),
            el("span", { className: "time", textContent: clock(hand.raised_at, true) }));
  return li;
}

function questionItem(q) {
  const li = el("li");
  li.dataset.id = String(q.id);
  li.dataset.invitation = q.invitation_id;
  li.dataset.status = q.status;
  const head = el("div", { className: "q-head" });
  head.append(el("span", { className: "name", textContent: q.name }),
              el("span", { className: "time", textContent: clock(q.asked_at, true) }),
              el("span", { className: "q-status", textContent: t(`wall.question.status.${q.status}`) }));
  li.append(head, el("p", { className: "q-text", textContent: q.text }));
  if (q.answer) {
    li.append(el("p", { className: "q-answer", textContent: t("wall.question.answer", { text: q.answer }) }));
  }
  return li;
}

function uplinkItem(u) {
  const li = el("li");
  li.dataset.invitation = u.invitation_id;
  li.dataset.onStage = String(u.on_stage);
  li.dataset.muted = String(u.muted);
  const parts = [t(u.present ? (u.connected ? "wall.uplink.connected" : "wall.uplink.connecting")
                             : "wall.uplink.absent")];
  if (u.muted) parts.push(t("wall.uplink.muted"));
  if (u.on_stage) parts.push(t("wall.uplink.on_stage"));
  li.append(el("span", { className: "name", textContent: u.name }),
            el("span", { className: "badge", textContent: parts.join(" · ") }));
  return li;
}

function renderDiscussion(snapshot) {
  const d = snapshot.discussion;
  const active = !!d && (snapshot.session.state === "live" || !!d.stage || d.hands.length > 0
                         || d.questions.length > 0 || d.uplinks.length > 0);
  $("discussion").hidden = !active;
  if (!active) return;
  const stage = $("stage");
  stage.textContent = d.stage ? d.stage.name : t("wall.discussion.stage_nobody");
  stage.dataset.on = String(!!d.stage);
  $("hands-count").textContent = d.hands.length ? String(d.hands.length) : "";
  $("questions-count").textContent = d.questions_total
    ? t("wall.discussion.questions_count", { total: d.questions_total, open: d.open_questions })
    : "";
  $("questions-locked").hidden = !d.locked;
  const more = $("questions-more");
  more.hidden = d.questions_total <= d.questions.length;
  more.textContent = t("wall.discussion.questions_more",
                       { shown: d.questions.length, total: d.questions_total });
  renderList("uplinks", d.uplinks, uplinkItem, "wall.discussion.uplinks_none");
  renderList("hands", d.hands, handItem, "wall.discussion.hands_none");
  renderList("questions", d.questions, questionItem, "wall.discussion.questions_none");
}

function render() {
  renderConnection();
  const snapshot = zhixing.snapshot;
  if (!snapshot) return;
  renderOverview(snapshot);
  renderDiscussion(snapshot);
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

// The wall's socket, kept up until the session ends or the login is gone.
function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/api/v1/sessions/${encodeURIComponent(sessionId)}/wall/ws`;
  const keeper = new KeptConnection({
    delays: RETRY_DELAYS,
    open() {
      const socket = new WebSocket(url);
      socket.onopen = () => {
        keeper.up(socket);
        setState("live");
      };
      socket.onmessage = (event) => {
        zhixing.snapshot = JSON.parse(event.data);
        zhixing.updates += 1;
        render();
      };
      socket.onclose = (event) => {
        if (event.code === CLOSE_ENDED) {
          setState("ended");
          keeper.stop();
          return;
        }
        setState("reconnecting");
        keeper.lost(socket);
      };
      return socket;
    },
    async beforeRetry() {
      if (!(await loginGone())) return true;
      location.assign("/login");
      return false;
    },
    drop: () => {},
    end: (socket) => socket.close(),
  });
  keeper.start();
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
