// The library (课程回放): ready recordings as a poster grid, browsed by unit
// and course and searched by title or lecturer. Readers come with the library
// cookie; the unit and course names are taken from the items themselves.
import { init, t, switchLanguage } from "/static/i18n.js";
import { formatDate, formatDuration, savedPosition, withLanguage } from "/static/library-shared.js";
import { el } from "/static/dom.js";

const SEARCH_DELAY_MS = 250;
const $ = (id) => document.getElementById(id);

// For tests: what is shown, and whether the first list has arrived.
const state = { items: [], all: [], ready: false, error: null };
window.zhixingLibrary = state;


async function fetchItems(filters = {}) {
  const params = new URLSearchParams({ state: "ready" });
  for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
  const response = await fetch(`/api/v1/archive?${params}`, { cache: "no-store" });
  if (response.status === 401) {
    // The link was revoked or expired meanwhile: the server's page says so.
    location.reload();
    throw new Error("library link no longer valid");
  }
  if (!response.ok) throw new Error(String(response.status));
  return (await response.json()).items;
}

// ------------------------------------------------------------------ filters

function uniqueBy(items, key, label, extra = () => ({})) {
  const found = new Map();
  for (const item of items) {
    if (item[key] != null && !found.has(item[key])) {
      found.set(item[key], { id: String(item[key]), label: item[label] || "", ...extra(item) });
    }
  }
  return [...found.values()].sort((a, b) => a.label.localeCompare(b.label, "zh-CN"));
}

function fillSelect(select, options, allKey) {
  const current = select.value;
  select.replaceChildren(el("option", { value: "", textContent: t(allKey) }),
    ...options.map((o) => el("option", { value: o.id, textContent: o.label })));
  select.value = options.some((o) => o.id === current) ? current : "";
}

function buildFilters() {
  fillSelect($("unit"), uniqueBy(state.all, "unit_id", "unit_name"), "library.filter.all_units");
  const unit = $("unit").value;
  const courses = uniqueBy(state.all, "course_id", "course_title", (item) => ({ unit: String(item.unit_id) }))
    .filter((course) => !unit || course.unit === unit);
  fillSelect($("course"), courses, "library.filter.all_courses");
}

function filters() {
  return { unit_id: $("unit").value, course_id: $("course").value, q: $("q").value.trim() };
}

// The filters live in the address too, so "back" from the player keeps them.
function rememberFilters() {
  const url = new URL(location.href);
  const names = { unit_id: "unit", course_id: "course", q: "q" };
  for (const [name, value] of Object.entries(filters())) {
    if (value) url.searchParams.set(names[name], value);
    else url.searchParams.delete(names[name]);
  }
  history.replaceState(null, "", url);
}

// ------------------------------------------------------------------ the grid

function card(item) {
  const href = withLanguage(`/library/watch/${encodeURIComponent(item.id)}`);
  const poster = item.poster_url
    ? el("img", { src: item.poster_url, alt: "", loading: "lazy", width: 320, height: 180 })
    : el("span", { className: "no-poster", textContent: t("library.poster_missing") });
  const turns = Array.isArray(item.stage) ? item.stage.length : 0;
  const picture = el("span", { className: "poster" }, poster,
    item.duration ? el("span", { className: "duration", textContent: formatDuration(item.duration) }) : null,
    turns ? el("span", { className: "discussion", textContent: t("library.discussion", { count: turns }) }) : null);
  const seen = savedPosition(item.id);
  if (seen && item.duration) {
    const share = Math.min(1, seen.position / item.duration);
    picture.append(el("span", { className: "seen", title: t("library.watched", { time: formatDuration(seen.position) }) },
      el("span", { style: `width: ${(share * 100).toFixed(1)}%` })));
  }
  const course = [item.unit_name, item.course_title].filter(Boolean).join(" · ");
  return el("li", { className: "card", dataset: { id: item.id } },
    el("a", { href },
      picture,
      el("span", { className: "title", textContent: item.title || t("library.untitled") }),
      item.lecturer ? el("span", { className: "lecturer", textContent: t("library.lecturer", { name: item.lecturer }) }) : null,
      course ? el("span", { className: "course", textContent: course }) : null,
      el("span", { className: "date", textContent: formatDate(item.recorded_at) })));
}

function render() {
  $("grid").replaceChildren(...state.items.map(card));
  const filtered = Object.values(filters()).some(Boolean);
  $("count").textContent = t("library.count", { count: state.items.length });
  $("empty").hidden = state.items.length > 0;
  $("empty").textContent = t(filtered ? "library.no_match" : "library.empty");
}

let generation = 0;

function loadFailed(error) {
  state.error = String(error.message || error);
  $("count").textContent = t("library.load_failed");
}

async function reload() {
  const mine = ++generation;
  rememberFilters();
  let items;
  try {
    items = await fetchItems(filters());
  } catch (error) {
    loadFailed(error);
    return;
  }
  if (mine !== generation) return; // a newer search has been sent meanwhile
  state.items = items;
  state.error = null;
  render();
}

async function main() {
  const lang = await init();
  $("lang").onclick = () => switchLanguage(lang === "en" ? "zh-CN" : "en");
  const params = new URLSearchParams(location.search);
  try {
    state.all = await fetchItems();
  } catch (error) {
    loadFailed(error);
    return;
  }
  buildFilters();
  $("unit").value = params.get("unit") || "";
  buildFilters();
  $("course").value = params.get("course") || "";
  $("q").value = params.get("q") || "";
  if (!Object.values(filters()).some(Boolean)) {
    state.items = state.all;
    render();
  } else {
    await reload();
  }
  $("unit").addEventListener("change", () => { buildFilters(); reload(); });
  $("course").addEventListener("change", reload);
  let timer = null;
  $("q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(reload, SEARCH_DELAY_MS); });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(timer); reload(); });
  state.ready = true;
  document.body.dataset.ready = "true";
}

main();
