// The admin console (管理后台): the entry point that wires its tabs, each a
// module: 场次 console-sessions.js (with console-replay.js,
// console-recording.js and console-invitations.js), 专题/课程/分课堂
// console-editors.js, 课程录像 console-archive.js, 回放链接 console-links.js,
// 课程包 console-packages.js; 学员 console-learners.js; 组织与账号 console-access.js (which also decides what each role sees);
// what they share is console-shared.js. Here: switching tabs, reloading
// everything, and polling while something is live.
import { init, t, switchLanguage } from "/static/i18n.js";
import { $, api, hooks, state } from "/static/console-shared.js";
import { renderEditors, setupEditors } from "/static/console-editors.js";
import { renderSessions, setupSessions } from "/static/console-sessions.js";
import { fillSessionRow, replayRunning } from "/static/console-replay.js";
import { renderDetail, setupInvitations } from "/static/console-invitations.js";
import { renderArchive, setupArchive } from "/static/console-archive.js";
import { renderLinks, setupLinks } from "/static/console-links.js";
import { renderPackages, setupPackages } from "/static/console-packages.js";
import { loadLearners, renderLearners, setupLearners } from "/static/console-learners.js";
import { ROLE_TABS, applyRole, can, loadAccess, renderAccess, setupAccess } from "/static/console-access.js";

const tabs = () => ROLE_TABS[state.role] ?? ["sessions"];
const LIVE_POLL_MS = 2000; // while a session is recorded, a replay runs or an item finished
const MAX_TIMER_MS = 3600 * 1000; // a far replay start is looked at again hourly (setTimeout caps at 24.8 days)

// ---------------------------------------------------------------- tabs
function showTab(name) {
  for (const button of document.querySelectorAll("#tabs [data-tab]")) {
    const on = button.dataset.tab === name;
    button.setAttribute("aria-selected", String(on));
    $(`#panel-${button.dataset.tab}`).hidden = !on;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `${location.pathname}${location.search}#${name}`);
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
    [sessions, archive] = await Promise.all([api("GET", "/sessions"),
      tabs().includes("archive") ? api("GET", "/archive") : { items: [] }]);
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

// ----------------------------------------------------------------- start
async function refresh() {
  // Each role reads what it may: a presenter its sessions only.
  const readable = {
    units: state.role !== "presenter", courses: state.role !== "presenter", sites: can.manage(), sessions: true,
    archive: tabs().includes("archive"), "library-links": can.city() };
  const [units, courses, sites, sessions, archive, links] = await Promise.all(
    ["units", "courses", "sites", "sessions", "archive", "library-links"].map((kind) => (readable[kind]
      ? api("GET", `/${kind}`) : { [kind === "library-links" ? "links" : kind === "archive" ? "items" : kind]: [] })));
  Object.assign(state, { units: units.units, courses: courses.courses, sites: sites.sites, sessions: sessions.sessions,
    archive: archive.items, links: links.links });
  await loadAccess();
  await loadLearners();
  renderEditors();
  renderSessions();
  renderArchive();
  renderLinks();
  renderPackages();
  renderAccess();
  renderLearners();
  schedulePoll();
  await renderDetail();
}

hooks.refresh = refresh;
hooks.schedulePoll = schedulePoll;

async function main() {
  const lang = await init();
  const me = await fetch("/api/v1/me");
  if (!me.ok) { location.href = "/login"; return; }
  const who = await me.json();
  state.csrf = who.csrf_token;
  applyRole(who);
  $("#lang-switch").onclick = () => switchLanguage(lang === "en" ? "zh-CN" : "en");
  for (const button of document.querySelectorAll("#tabs [data-tab]")) button.onclick = () => showTab(button.dataset.tab);
  setupEditors();
  setupSessions();
  setupInvitations();
  setupArchive();
  setupLinks();
  setupPackages();
  setupAccess();
  setupLearners();
  const tab = location.hash.slice(1);
  showTab(tabs().includes(tab) ? tab : "sessions");
  await refresh();
  document.body.dataset.ready = "true";
}

main();
