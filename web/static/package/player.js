// The offline player of a course package (课程包): opened by double-click
// from a USB stick or a disc (file://), with no server. The catalog comes as
// a script (catalog.js sets window.ZHIXING_PACKAGE), the texts likewise
// (messages.js sets window.ZHIXING_MESSAGES); media play from the package's
// own folders. Units → courses → lectures, a search by title or lecturer,
// and a lecture with the rooms on stage (研讨) as a picture-in-picture and
// the list of their turns. The page's place is in the address's #hash, so
// the browser's back button and a bookmark work without a server.
(function () {
  "use strict";

  const LANGUAGES = ["zh-CN", "en"];
  const LANG_KEY = "zhixing.package.lang";
  const SPEEDS = [0.75, 1, 1.25, 1.5, 2];
  const SKIP_S = 10;
  const STAGE_DRIFT_S = 0.3; // re-seek the stage picture when it is further off than this
  const SEARCH_DELAY_MS = 200;
  // Where this browser stopped in each lecture, as the library keeps it.
  const RESUME_KEY = "zhixing.package.resume.";
  const SAVE_EVERY_MS = 4000;
  const RESUME_MIN_S = 2; // not worth resuming a few seconds in
  const RESUME_TAIL_S = 10; // stopped in the last seconds: start again from the top

  const catalog = window.ZHIXING_PACKAGE || { units: [], courses: [], items: [] };
  const allMessages = window.ZHIXING_MESSAGES || {};
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const stageVideo = $("stage-video");

  // For tests and the curious: what is shown.
  const state = { ready: false, lang: "zh-CN", shown: [], item: null, turn: null, error: null,
                  resumedFrom: null };
  window.zhixingPackage = state;

  // ---------------------------------------------------------------- language

  function chosenLanguage() {
    let wanted = new URLSearchParams(location.search).get("lang");
    if (!wanted) {
      try { wanted = localStorage.getItem(LANG_KEY); } catch (e) { wanted = null; }
    }
    return LANGUAGES.includes(wanted) ? wanted : "zh-CN";
  }

  function t(key, values) {
    const messages = allMessages[state.lang] || {};
    let text = messages[key] ?? (allMessages["zh-CN"] || {})[key] ?? key;
    for (const [name, value] of Object.entries(values || {})) text = text.split(`{${name}}`).join(String(value));
    return text;
  }

  function translatePage() {
    document.documentElement.lang = state.lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-attr]")) {
      for (const pair of node.dataset.i18nAttr.split(";")) {
        const [attr, key] = pair.split(":");
        if (attr && key) node.setAttribute(attr.trim(), t(key.trim()));
      }
    }
    if (catalog.title) $("package-title").textContent = catalog.title;
  }

  function switchLanguage() {
    state.lang = state.lang === "en" ? "zh-CN" : "en";
    try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* a convenience */ }
    translatePage();
    buildFilters();
    render();
    if (state.item) showItem(state.item);
  }

  // ---------------------------------------------------------------- helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "dataset") Object.assign(node.dataset, value);
      else node[name] = value;
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function formatDuration(seconds) {
    if (seconds == null || !Number.isFinite(seconds)) return "";
    const total = Math.max(0, Math.floor(seconds));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function formatDate(seconds) {
    if (seconds == null) return "";
    return new Date(seconds * 1000).toLocaleDateString(state.lang === "en" ? "en-GB" : "zh-CN",
      { year: "numeric", month: "2-digit", day: "2-digit" });
  }

  const courses = new Map(catalog.courses.map((course) => [course.id, course]));
  const units = new Map(catalog.units.map((unit) => [unit.id, unit]));
  const unitOf = (item) => { const c = courses.get(item.course_id); return c && c.unit_id != null ? c.unit_id : null; };

  // ---------------------------------------------------------------- the list

  function fillSelect(select, options, allKey) {
    const current = select.value;
    select.replaceChildren(el("option", { value: "", textContent: t(allKey) }),
      ...options.map((o) => el("option", { value: String(o.id), textContent: o.label })));
    select.value = options.some((o) => String(o.id) === current) ? current : "";
  }

  function buildFilters() {
    fillSelect($("unit"), catalog.units.map((u) => ({ id: u.id, label: u.name })), "package.player.all_units");
    const unit = $("unit").value;
    fillSelect($("course"), catalog.courses.filter((c) => !unit || String(c.unit_id) === unit)
      .map((c) => ({ id: c.id, label: c.title })), "package.player.all_courses");
  }

  function matches(item) {
    const unit = $("unit").value;
    const course = $("course").value;
    const words = $("q").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    if (unit && String(unitOf(item)) !== unit) return false;
    if (course && String(item.course_id) !== course) return false;
    const course_title = (courses.get(item.course_id) || {}).title || "";
    const text = `${item.title} ${item.lecturer} ${course_title}`.toLowerCase();
    return words.every((word) => text.includes(word));
  }

  function card(item) {
    const poster = item.poster
      ? el("img", { src: item.poster, alt: "", loading: "lazy", width: 320, height: 180 })
      : el("span", { className: "no-poster", textContent: t("package.player.no_poster") });
    const turns = item.stage_turns.length;
    return el("li", { className: "card", dataset: { id: item.id } },
      el("a", { href: `#/watch/${item.id}` },
        el("span", { className: "poster" }, poster,
          item.duration ? el("span", { className: "duration", textContent: formatDuration(item.duration) }) : null,
          turns ? el("span", { className: "discussion", textContent: t("package.player.discussion", { count: turns }) }) : null),
        el("span", { className: "title", textContent: item.title }),
        item.lecturer ? el("span", { className: "lecturer", textContent: t("package.player.lecturer", { name: item.lecturer }) }) : null,
        el("span", { className: "date", textContent: formatDate(item.recorded_at) })));
  }

  // Lectures grouped under their unit and course, in the catalog's order.
  function render() {
    const shown = catalog.items.filter(matches);
    state.shown = shown.map((item) => item.id);
    // Courses in the catalog's order, then the lectures without a course.
    const groups = new Map(catalog.courses.map((course) => [String(course.id), []]));
    for (const item of shown) {
      const key = item.course_id == null ? "" : String(item.course_id);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(item);
    }
    const sections = [];
    for (const [key, items] of groups) {
      if (!items.length) continue;
      const course = courses.get(Number(key));
      const unit = course && course.unit_id != null ? units.get(course.unit_id) : null;
      const heading = course ? [unit && unit.name, course.title].filter(Boolean).join(" · ")
        : t("package.player.no_course");
      sections.push(el("section", { className: "course-group" },
        el("h2", { textContent: heading }),
        course && course.lecturer ? el("p", { className: "course-lecturer", textContent: t("package.player.lecturer", { name: course.lecturer }) }) : null,
        el("ul", { className: "grid" }, ...items.map(card))));
    }
    $("sections").replaceChildren(...sections);
    $("count").textContent = t("package.player.count", { count: shown.length });
    $("empty").hidden = shown.length > 0;
    $("empty").textContent = t(catalog.items.length ? "package.player.no_match" : "package.player.empty");
  }

  // ---------------------------------------------------------------- the stage

  let turns = [];

  function roomName(turn) {
    return turn.site_name || t("package.player.unknown_room");
  }

  function followStage() {
    if (!turns.length) return;
    const index = turns.findIndex((turn) => video.currentTime >= turn.at && video.currentTime < turn.at + turn.duration);
    if (index < 0) {
      if (state.turn !== null) {
        state.turn = null;
        $("stage").hidden = true;
        stageVideo.pause();
      }
      return;
    }
    const turn = turns[index];
    if (state.turn !== index) {
      state.turn = index;
      $("stage-name").textContent = t("package.player.on_stage", { name: roomName(turn) });
      $("stage").hidden = false;
    }
    const target = turn.offset + (video.currentTime - turn.at);
    if (Math.abs(stageVideo.currentTime - target) > STAGE_DRIFT_S) stageVideo.currentTime = target;
    stageVideo.playbackRate = video.playbackRate;
    if (video.paused || video.seeking) stageVideo.pause();
    else if (stageVideo.paused) stageVideo.play().catch(() => {});
  }

  function showTurns(item) {
    turns = item.stage && item.stage_turns.length ? item.stage_turns : [];
    $("turns").hidden = !turns.length;
    if (!turns.length) {
      stageVideo.removeAttribute("src");
      return;
    }
    if (stageVideo.getAttribute("src") !== item.stage) stageVideo.src = item.stage;
    $("turn-list").replaceChildren(...turns.map((turn, index) => {
      const button = el("button", {
        type: "button",
        dataset: { turn: String(index) },
        textContent: t("package.player.turn", { time: formatDuration(turn.at), name: roomName(turn), length: formatDuration(turn.duration) }),
      });
      button.addEventListener("click", () => {
        video.currentTime = turn.at;
        video.play().catch(() => {});
      });
      return el("li", {}, button);
    }));
  }

  // ---------------------------------------------------------------- a lecture

  function showItem(item) {
    state.item = item;
    state.error = null;
    document.title = `${item.title} · ${t("package.player.app")}`;
    $("title").textContent = item.title;
    const course = courses.get(item.course_id);
    const unit = course && course.unit_id != null ? units.get(course.unit_id) : null;
    const courseText = [unit && unit.name, course && course.title].filter(Boolean).join(" · ");
    const lines = [
      item.lecturer ? t("package.player.lecturer", { name: item.lecturer }) : null,
      courseText ? t("package.player.course_line", { name: courseText }) : null,
      item.recorded_at != null ? t("package.player.recorded_at", { time: formatDate(item.recorded_at) }) : null,
      item.duration ? t("package.player.duration", { time: formatDuration(item.duration) }) : null,
    ];
    $("meta").replaceChildren(...lines.filter(Boolean).map((line) => el("li", { textContent: line })));
    $("description").textContent = item.description || "";
    if (video.dataset.item !== item.id) {
      video.dataset.item = item.id;
      decided = false;
      state.resumedFrom = null;
      $("resume").hidden = true;
      $("unavailable").hidden = true;
      video.poster = item.poster || "";
      video.src = item.media;
      video.load();
    }
    showTurns(item);
  }

  function showFailure() {
    state.error = (video.error && video.error.message) || "error";
    $("unavailable").textContent = t("package.player.play_failed", { message: state.error });
    $("unavailable").hidden = false;
  }

  // ---------------------------------------------------------------- resume

  let decided = false; // resume decided for the lecture shown: from then on it is saved
  let lastSaved = 0;

  function savedPosition(itemId) {
    try {
      const value = JSON.parse(localStorage.getItem(RESUME_KEY + itemId));
      return value && Number.isFinite(value.position) ? value : null;
    } catch (e) {
      return null;
    }
  }

  function save() {
    if (!state.item || !decided || !Number.isFinite(video.duration)) return;
    lastSaved = Date.now();
    try {
      if (video.ended) localStorage.removeItem(RESUME_KEY + state.item.id);
      else localStorage.setItem(RESUME_KEY + state.item.id,
        JSON.stringify({ position: video.currentTime, duration: video.duration, at: Date.now() }));
    } catch (e) { /* storage off or full: resuming is a convenience */ }
  }

  function decideResume() {
    if (decided || !state.item) return;
    decided = true;
    const saved = savedPosition(state.item.id);
    if (!saved || !Number.isFinite(video.duration)) return;
    if (saved.position < RESUME_MIN_S || saved.position > video.duration - RESUME_TAIL_S) return;
    video.currentTime = saved.position;
    state.resumedFrom = saved.position;
    $("resume-text").textContent = t("package.player.resumed", { time: formatDuration(saved.position) });
    $("resume").hidden = false;
  }

  function restart() {
    video.currentTime = 0;
    $("resume").hidden = true;
    state.resumedFrom = null;
    save();
    video.play().catch(() => {});
  }

  // ---------------------------------------------------------------- places

  function route() {
    const match = location.hash.match(/^#\/watch\/([0-9a-f]{16})$/);
    const item = match ? catalog.items.find((entry) => entry.id === match[1]) : null;
    if (item) {
      $("browse").hidden = true;
      $("watch").hidden = false;
      showItem(item);
      window.scrollTo(0, 0);
    } else {
      save();
      video.pause();
      stageVideo.pause();
      state.item = null;
      state.turn = null;
      $("stage").hidden = true;
      $("watch").hidden = true;
      $("browse").hidden = false;
      document.title = `${catalog.title || t("package.player.heading")} · ${t("package.player.app")}`;
    }
  }

  function onKey(event) {
    if (!state.item || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target instanceof Element ? event.target : null;
    if (target && (target.isContentEditable || target.closest("input, textarea, select"))) return;
    if (event.key === " " || event.code === "Space") {
      if (target && target.closest("button, a")) return;
      event.preventDefault();
      if (video.paused || video.ended) video.play().catch(() => {});
      else video.pause();
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      const end = Number.isFinite(video.duration) ? video.duration : Infinity;
      video.currentTime = Math.min(end, Math.max(0, video.currentTime + (event.key === "ArrowLeft" ? -SKIP_S : SKIP_S)));
    }
  }

  function main() {
    state.lang = chosenLanguage();
    translatePage();
    buildFilters();
    render();
    $("lang").addEventListener("click", switchLanguage);
    $("unit").addEventListener("change", () => { buildFilters(); render(); });
    $("course").addEventListener("change", render);
    let timer = null;
    $("q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(render, SEARCH_DELAY_MS); });
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); render(); });
    $("speed").addEventListener("change", () => {
      const speed = Number($("speed").value);
      video.playbackRate = SPEEDS.includes(speed) ? speed : 1;
      $("speed").blur();
    });
    video.addEventListener("error", showFailure);
    video.addEventListener("loadedmetadata", decideResume);
    video.addEventListener("timeupdate", () => { if (Date.now() - lastSaved >= SAVE_EVERY_MS) save(); });
    video.addEventListener("pause", save);
    video.addEventListener("seeked", () => { if (video.paused) save(); });
    video.addEventListener("ended", save);
    window.addEventListener("pagehide", save);
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") save(); });
    $("restart").addEventListener("click", restart);
    for (const name of ["timeupdate", "seeked", "seeking", "play", "pause", "ratechange", "ended"]) {
      video.addEventListener(name, followStage);
    }
    // timeupdate comes every 250 ms at best: look a little more often while playing.
    setInterval(() => { if (state.item && !video.paused) followStage(); }, 200);
    document.addEventListener("keydown", onKey);
    window.addEventListener("hashchange", route);
    route();
    state.ready = true;
    document.body.dataset.ready = "true";
  }

  main();
})();
