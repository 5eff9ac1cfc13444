// Attendance reports (出勤统计): a session's attendance, a unit's sessions and
// districts, a district's sites over a date range, the city's training and the
// districts' extension training apart; charts are SVG drawn by the
// server, CSV downloads come straight from the API (login cookie, GET only).
import { init, t, language, switchLanguage } from "/static/i18n.js";
import { apiReply, clearErrors, showErrors } from "/static/forms.js";
import { el } from "/static/dom.js";

const $ = (selector, root = document) => root.querySelector(selector);
const UTC_OFFSET = String(-new Date().getTimezoneOffset());
const state = { sessions: [], units: [] };
window.zhixingReports = state;


function url(path, params = {}) {
  const query = new URLSearchParams({ ...params, utc_offset: UTC_OFFSET });
  return `/api/v1${path}?${query}`;
}

async function get(path, params) {
  return apiReply(await fetch(url(path, params)));
}

function showError(form, error) {
  showErrors(form, error, "reports.failed");
}

const locale = () => (language() === "en" ? "en-GB" : "zh-CN");
const dateTime = (seconds) => new Date(seconds * 1000).toLocaleString(locale(), {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
const day = (seconds) => seconds == null ? "" : new Date(seconds * 1000).toLocaleDateString(locale(), {
  year: "numeric", month: "2-digit", day: "2-digit" });
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString(locale(), {
  hour: "2-digit", minute: "2-digit", second: "2-digit" });
const shortTime = (seconds) => new Date(seconds * 1000).toLocaleTimeString(locale(), {
  hour: "2-digit", minute: "2-digit" });
const minutes = (seconds) => t("reports.minutes", { minutes: (seconds / 60).toFixed(1) });
const percent = (share) => share == null ? "–" : `${(share * 100).toFixed(1)}%`;
const yesNo = (value) => el("span", { className: value ? "yes" : "no" },
                            t(value ? "reports.yes" : "reports.no"));
const numberCell = (value) => el("td", { className: "num" }, String(value));

function showChart(img, src) {
  img.hidden = false;
  img.dataset.loaded = "false";
  img.onload = () => { img.dataset.loaded = "true"; };
  img.onerror = () => { img.hidden = true; };
  img.src = src;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// ------------------------------------------------------------------ tabs
function selectTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== `panel-${name}`;
  const address = new URL(location.href);
  address.searchParams.set("tab", name);
  history.replaceState(null, "", address);
}

// --------------------------------------------------------------- session
function intervalsCell(item) {
  const cell = el("td", { className: "intervals" });
  for (const span of item.intervals) {
    const end = span.disconnected_at == null ? t("reports.online") : clock(span.disconnected_at);
    const line = el("div", {}, `${clock(span.connected_at)} – ${end}`);
    if (span.ended_by === "restart") line.append(el("small", {}, ` ${t("reports.restart_cut")}`));
    cell.append(line);
  }
  return cell;
}

function headcountCell(item) {
  const cell = el("td", { className: "num" });
  if (item.headcount == null) return cell;
  cell.append(String(item.headcount));
  const detail = [shortTime(item.headcount_reported_at)];
  if (item.headcount_history.length > 1) {
    detail.push(t("reports.corrected", { count: item.headcount_history.length - 1 }));
    cell.title = item.headcount_history.map((h) => `${dateTime(h.reported_at)}: ${h.count}`).join("\n");
  }
  cell.append(el("small", {}, detail.join(" · ")));
  return cell;
}

async function showSession(event) {
  event?.preventDefault();
  const form = $("#session-form");
  clearErrors(form);
  const id = $("#session-select").value;
  if (!id) return;
  let report;
  try {
    report = await get(`/sessions/${encodeURIComponent(id)}/attendance`);
  } catch (error) { showError(form, error); return; }
  const totals = report.totals;
  $("#session-summary").textContent = t("reports.summary", {
    invited: totals.rooms_invited, connected: totals.rooms_connected,
    attended: totals.rooms_attended, person_times: totals.person_times });
  const rules = [t("reports.threshold", { threshold: report.threshold })];
  rules.push(report.window ? t("reports.window", { start: dateTime(report.window.start),
                                                   end: dateTime(report.window.end) })
                           : t("reports.window_none"));
  if (totals.attended_without_headcount) {
    rules.push(t("reports.without_headcount", { count: totals.attended_without_headcount }));
  }
  $("#session-rules").textContent = rules.join("；");
  fill($("#session-table tbody"), report.invitations.map((item) => el("tr",
    { className: item.attended ? "attended" : "" },
    el("td", {}, item.site_name), el("td", {}, item.org_path), intervalsCell(item),
    el("td", { className: "num" }, minutes(item.connected_seconds)),
    el("td", { className: "num" }, percent(item.share)),
    el("td", {}, yesNo(item.attended)), headcountCell(item),
    numberCell(item.reconnects), numberCell(item.person_times))));
  showChart($("#session-chart"), url(`/sessions/${encodeURIComponent(id)}/attendance/chart.svg`,
                                     { lang: language() }));
  $("#session-csv").href = url(`/sessions/${encodeURIComponent(id)}/attendance`,
                               { format: "csv", lang: language() });
  $("#session-result").hidden = false;
}

// ------------------------------------------------------------------ unit
function groupRows(groups) {
  return groups.map((group) => el("tr", {},
    el("td", {}, group.name || t("reports.ungrouped")), numberCell(group.sites),
    numberCell(group.sessions), numberCell(group.rooms_invited),
    numberCell(group.rooms_attended), numberCell(group.person_times)));
}

function summaryMany(totals) {
  return t("reports.summary_many", {
    sessions: totals.sessions, sites: totals.sites, invited: totals.rooms_invited,
    attended: totals.rooms_attended, person_times: totals.person_times });
}

async function showUnit(event) {
  event?.preventDefault();
  const form = $("#unit-form");
  clearErrors(form);
  const id = $("#unit-select").value;
  if (!id) return;
  let report;
  try {
    report = await get(`/reports/units/${encodeURIComponent(id)}`);
  } catch (error) { showError(form, error); return; }
  $("#unit-summary").textContent = summaryMany(report.totals);
  fill($("#unit-sessions tbody"), report.sessions.map((s) => el("tr", {},
    el("td", {}, day(s.session_time)), el("td", {}, s.title), el("td", {}, s.course_title || ""),
    el("td", {}, s.batch), numberCell(s.rooms_invited), numberCell(s.rooms_connected),
    numberCell(s.rooms_attended), numberCell(s.person_times))));
  fill($("#unit-districts tbody"), groupRows(report.districts));
  showChart($("#unit-chart"), url(`/reports/units/${encodeURIComponent(id)}/chart.svg`,
                                  { lang: language() }));
  $("#unit-csv").href = url(`/reports/units/${encodeURIComponent(id)}`,
                            { format: "csv", lang: language() });
  $("#unit-result").hidden = false;
}

// -------------------------------------------------------------- district
async function showDistrict(event) {
  event?.preventDefault();
  const form = $("#district-form");
  clearErrors(form);
  const query = { prefix: $("#district-prefix").value.trim(), from: $("#district-from").value,
                  to: $("#district-to").value };
  let report;
  try {
    report = await get("/reports/districts", query);
  } catch (error) { showError(form, error); $("#district-result").hidden = true; return; }
  $("#district-summary").textContent = report.groups.length
    ? summaryMany(report.totals) : t("reports.no_rows");
  fill($("#district-table tbody"), groupRows(report.groups));
  const totals = report.totals;
  $("#district-table tfoot").replaceChildren(el("tr", {},
    el("th", {}, t("reports.total")), numberCell(totals.sites), numberCell(totals.sessions),
    numberCell(totals.rooms_invited), numberCell(totals.rooms_attended),
    numberCell(totals.person_times)));
  showChart($("#district-chart"), url("/reports/districts/chart.svg", { ...query, lang: language() }));
  $("#district-csv").href = url("/reports/districts", { ...query, format: "csv", lang: language() });
  $("#district-result").hidden = false;
  const address = new URL(location.href);
  for (const [key, value] of Object.entries(query)) address.searchParams.set(key, value);
  history.replaceState(null, "", address);
}

// ------------------------------------------------------------- organizer
// The city's own training and each district's extension training, apart.
function organizerName(organizer) {
  return organizer.training === "city" ? t("reports.organizer.city")
    : t("reports.organizer.extension", { name: organizer.name });
}

function organizerRows(organizer) {
  const name = organizerName(organizer);
  const row = (grouping, label, group, className = "") => el("tr", { className },
    el("td", {}, name), el("td", {}, grouping), el("td", {}, label),
    numberCell(group.sessions), numberCell(group.rooms_invited),
    numberCell(group.rooms_attended), numberCell(group.person_times));
  const rows = [row(t("reports.grouping.total"), "", organizer, `organizer ${organizer.training}`)];
  for (const grouping of ["months", "units", "districts", "levels"]) {
    for (const group of organizer[grouping]) {
      const label = grouping === "levels" && group.name ? t(`org.kind.${group.name}`) : group.name;
      rows.push(row(t(`reports.grouping.${grouping}`), label || t("reports.ungrouped"), group));
    }
  }
  return rows;
}

async function showOrganizers(event) {
  event?.preventDefault();
  const form = $("#organizer-form");
  clearErrors(form);
  const query = { from: $("#organizer-from").value, to: $("#organizer-to").value };
  let report;
  try {
    report = await get("/reports/organizers", query);
  } catch (error) { showError(form, error); $("#organizer-result").hidden = true; return; }
  state.organizers = report;
  $("#organizer-summary").textContent = report.organizers.length
    ? summaryMany(report.totals) : t("reports.no_rows");
  fill($("#organizer-table tbody"), report.organizers.flatMap(organizerRows));
  showChart($("#organizer-chart"), url("/reports/organizers/chart.svg", { ...query, lang: language() }));
  $("#organizer-csv").href = url("/reports/organizers", { ...query, format: "csv", lang: language() });
  $("#organizer-result").hidden = false;
}

function isoDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// Every org path and each of its prefixes, for the prefix field's suggestions.
async function loadPaths() {
  const { sites } = await get("/sites");
  const paths = new Set();
  for (const site of sites) {
    const parts = site.org_path ? site.org_path.split(" / ") : [];
    for (let i = 1; i <= parts.length; i++) paths.add(parts.slice(0, i).join(" / "));
  }
  fill($("#district-paths"), [...paths].sort().map((path) => el("option", { value: path })));
}

// ------------------------------------------------------------------ start
async function main() {
  await init();
  $("#lang-switch").addEventListener("click",
    () => switchLanguage(language() === "zh-CN" ? "en" : "zh-CN"));
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => selectTab(button.dataset.tab));
  }
  $("#session-form").addEventListener("submit", showSession);
  $("#unit-form").addEventListener("submit", showUnit);
  $("#district-form").addEventListener("submit", showDistrict);
  $("#organizer-form").addEventListener("submit", showOrganizers);

  const params = new URL(location.href).searchParams;
  const today = new Date();
  $("#district-from").value = params.get("from") || isoDay(new Date(today.getFullYear(), today.getMonth(), 1));
  $("#district-to").value = params.get("to") || isoDay(today);
  $("#district-prefix").value = params.get("prefix") || "";
  $("#organizer-from").value = $("#district-from").value;
  $("#organizer-to").value = $("#district-to").value;

  const [{ sessions }, { units }] = await Promise.all([get("/sessions"), get("/units")]);
  state.sessions = sessions;
  state.units = units;
  fill($("#session-select"), sessions.map((s) => el("option", { value: s.id },
    [s.title, s.batch, day(s.scheduled_start ?? s.started_at ?? s.created_at)]
      .filter(Boolean).join(" · "))));
  $("#session-none").hidden = sessions.length > 0;
  fill($("#unit-select"), units.map((u) => el("option", { value: String(u.id) }, u.name)));
  $("#unit-none").hidden = units.length > 0;
  if (params.get("session")) $("#session-select").value = params.get("session");
  if (params.get("unit")) $("#unit-select").value = params.get("unit");
  await loadPaths().catch(() => {});

  const tab = ["session", "unit", "district", "organizer"].includes(params.get("tab")) ? params.get("tab") : "session";
  selectTab(tab);
  if (tab === "session" && params.get("session")) await showSession();
  if (tab === "unit" && params.get("unit")) await showUnit();
  if (tab === "district" && params.get("from")) await showDistrict();
  if (tab === "organizer" && params.get("from")) await showOrganizers();
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.body.dataset.ready = "error";
  console.error(error);
});
