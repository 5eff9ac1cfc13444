// 我的学习: a learner's units (self-study videos, the lecture's replay, whether
// the lecture was attended) from the personal link in the address, and the
// player, which tells the server what it actually played (the browser's own
// video.played ranges) every 10 s, on pause and when the page goes away; the
// server keeps the union, says where to resume (on any device) and when an
// item is complete.
import { init, t, switchLanguage } from "/static/i18n.js";
import { el } from "/static/dom.js";

const REPORT_EVERY_MS = 10000;
const RESUME_TAIL_S = 3; // stopped in the last seconds: start again from the top
const MAX_RATE = 2;

const $ = (id) => document.getElementById(id);
const token = decodeURIComponent(location.pathname.split("/")[2] || "");
const base = `/learn/${encodeURIComponent(token)}`;
const video = $("video");

// For tests: the overview, the item playing, where it resumed, the last report's answer.
const state = { study: null, item: null, resumedFrom: null, lastReport: null, ready: false };
window.zhixingLearn = state;

let timer = null;

function share(entry) {
  if (!entry.duration) return "";
  return `${Math.min(100, Math.floor((100 * entry.played) / entry.duration))}%`;
}

function entryRow(entry) {
  return el("li", {},
    el("button", { type: "button", className: "entry", dataset: { itemId: entry.id },
                   onclick: () => openItem(entry) },
      el("span", { className: "tick", textContent: entry.complete ? "✓" : "",
                   title: entry.complete ? t("learn.complete") : "" }),
      el("span", { className: "name", textContent: entry.title }),
      el("span", { className: "share", textContent: entry.complete ? t("learn.complete") : share(entry) })));
}

function readingRow(reading) {
  const box = el("input", { type: "checkbox", checked: reading.read,
                            dataset: { readingId: String(reading.id) } });
  box.addEventListener("change", async () => {
    box.disabled = true;
    const response = await fetch(`${base}/readings/${reading.id}/read`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ read: box.checked }),
    }).catch(() => null);
    box.disabled = false;
    if (!response || !response.ok) box.checked = !box.checked;
    else await loadStudy();
  });
  const title = reading.file_type
    ? el("a", { href: `${base}/readings/${reading.id}/file`, target: "_blank", rel: "noopener",
                textContent: `${reading.title}（${reading.file_type.toUpperCase()}）` })
    : el("span", { textContent: reading.title });
  return el("li", { className: "reading" },
    el("label", { className: "entry" }, box, el("span", { className: "name" }, title)),
    reading.notes ? el("p", { className: "notes", textContent: reading.notes }) : null);
}

const WRITEUP_MAX = 5000;

function writeupForm(unit) {
  const mine = unit.writeup;
  const section = el("div", { className: "writeup", dataset: { writeupUnit: String(unit.id) } },
    el("h3", { textContent: t("learn.writeup") }));
  if (mine) {
    section.append(el("p", { className: `state state-${mine.state}`,
                             textContent: t(`learn.writeup.${mine.state}`) }));
    if (mine.comment) section.append(el("p", { className: "comment", textContent: mine.comment }));
  }
  if (mine && mine.state === "accepted") {
    section.append(el("p", { className: "text", textContent: mine.text }));
    return section;
  }
  const text = el("textarea", { rows: 6, maxLength: WRITEUP_MAX, value: mine ? mine.text : "",
                                placeholder: t("learn.writeup.placeholder") });
  const count = el("span", { className: "count" });
  const file = el("input", { type: "file", accept: ".pdf,.docx,.jpg,.jpeg,.png" });
  const message = el("p", { className: "error", role: "alert", hidden: true });
  const showCount = () => { count.textContent = `${text.value.length} / ${WRITEUP_MAX}`; };
  text.addEventListener("input", showCount);
  showCount();
  const submit = el("button", { type: "button", className: "submit", textContent: t("learn.writeup.submit") });
  submit.addEventListener("click", async () => {
    submit.disabled = true;
    message.hidden = true;
    const path = `${base}/writeups/${unit.id}`;
    let response = await fetch(path, { method: "PUT", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify({ text: text.value }) }).catch(() => null);
    if (response && response.ok && file.files.length) {
      response = await fetch(`${path}/attachment`, { method: "PUT", body: file.files[0],
        headers: { "Content-Type": file.files[0].type || "application/octet-stream" } }).catch(() => null);
    }
    submit.disabled = false;
    if (!response || !response.ok) {
      message.textContent = t(response && response.status === 422 ? "learn.writeup.refused" : "learn.writeup.failed");
      message.hidden = false;
      return;
    }
    await loadStudy();
  });
  section.append(text, count, el("label", { className: "file" }, t("learn.writeup.file"), file),
                 submit, message);
  return section;
}

function surveyCard(survey) {
  const open = survey.state === "open";
  const mine = survey.answers || [];
  const form = el("form", { className: "unit survey", dataset: { surveyId: String(survey.id) } },
    el("h2", { textContent: `${t("learn.surveys")}：${survey.title}` }));
  survey.questions.forEach((question, index) => {
    const name = `s${survey.id}q${index}`;
    const block = el("fieldset", { className: "question", disabled: !open },
      el("legend", { textContent: `${index + 1}. ${question.text}` }));
    if (question.kind === "text") {
      block.append(el("textarea", { name, rows: 3, maxLength: 2000, value: mine[index] ?? "" }));
    } else {
      const type = question.kind === "single" ? "radio" : "checkbox";
      const chosen = Array.isArray(mine[index]) ? mine[index] : [mine[index]];
      question.choices.forEach((choice, value) => {
        block.append(el("label", { className: "choice" },
          el("input", { type, name, value: String(value), checked: chosen.includes(value) }), choice));
      });
    }
    form.append(block);
  });
  const message = el("p", { className: "status", role: "status",
                            textContent: open ? (survey.answers ? t("learn.survey.saved") : "")
                                              : t("learn.survey.closed") });
  if (open) {
    const submit = el("button", { type: "submit", className: "submit", textContent: t("learn.survey.submit") });
    form.append(submit);
  }
  form.append(message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answers = survey.questions.map((question, index) => {
      const name = `s${survey.id}q${index}`;
      if (question.kind === "text") {
        const text = form.elements[name].value.trim();
        return text || null;
      }
      const picked = [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => Number(i.value));
      if (question.kind === "single") return picked.length ? picked[0] : null;
      return picked.length ? picked : null;
    });
    const response = await fetch(`${base}/surveys/${survey.id}`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ answers }),
    }).catch(() => null);
    if (response && response.ok) await loadStudy();
    else message.textContent = t("learn.survey.failed");
  });
  return form;
}

function unitCard(unit) {
  const card = el("section", { className: "unit", dataset: { unitId: String(unit.id) } },
    el("h2", { textContent: unit.name }),
    el("p", { className: "summary", textContent: t("learn.videos_done",
      { done: unit.videos_complete, total: unit.videos.length }) }),
    el("p", { className: unit.lecture_attended ? "summary attended" : "summary not-attended",
              textContent: t(unit.lecture_attended ? "learn.attended" : "learn.not_attended") }));
  if (unit.readings.length) {
    card.append(el("h3", { textContent: t("learn.readings", { done: unit.readings_read,
                                                              total: unit.readings.length }) }),
                el("ul", {}, ...unit.readings.map(readingRow)));
  }
  if (unit.videos.length) {
    card.append(el("h3", { textContent: t("learn.videos") }), el("ul", {}, ...unit.videos.map(entryRow)));
  }
  if (unit.lectures.length) {
    card.append(el("h3", { textContent: t("learn.lectures") }), el("ul", {}, ...unit.lectures.map(entryRow)));
  }
  card.append(writeupForm(unit));
  return card;
}

async function loadStudy() {
  const response = await fetch(`${base}/study`, { cache: "no-store" });
  if (!response.ok) {
    $("status").textContent = t(response.status === 410 ? "learn.revoked.body" : "learn.load_failed");
    $("status").hidden = false;
    return;
  }
  const study = await response.json();
  state.study = study;
  $("who").textContent = [study.name, study.org_path, study.site_name].filter(Boolean).join(" · ");
  $("units").replaceChildren(...study.surveys.map(surveyCard), ...study.units.map(unitCard));
  $("no-units").hidden = study.units.length > 0;
  $("status").hidden = true;
  $("overview").hidden = false;
  state.ready = true;
}

// ------------------------------------------------------------------ the player

function playedRanges() {
  const ranges = [];
  for (let i = 0; i < video.played.length; i += 1) {
    const start = video.played.start(i);
    const end = video.played.end(i);
    if (end > start) ranges.push([start, end]);
  }
  return ranges;
}

function report(leaving = false) {
  const item = state.item;
  if (!item || !Number.isFinite(video.currentTime)) return;
  const ranges = playedRanges();
  if (!ranges.length && !leaving) return;
  const body = JSON.stringify({ item_id: item.id, ranges, position: video.currentTime });
  const sent = fetch(`${base}/progress`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body, keepalive: leaving,
  });
  if (leaving) return;
  sent.then(async (response) => {
    if (response.ok) {
      state.lastReport = await response.json();
      $("report-error").hidden = true;
      showPlayed();
    } else if (response.status !== 429) {
      $("report-error").textContent = t("learn.report_failed");
      $("report-error").hidden = false;
    }
  }).catch(() => {});
}

function showPlayed() {
  const last = state.lastReport;
  if (!last) return;
  $("played").textContent = last.complete ? t("learn.complete")
    : t("learn.played", { share: share(last) });
}

function openItem(entry) {
  state.item = entry;
  state.resumedFrom = null;
  state.lastReport = { ...entry, item_id: entry.id };
  $("overview").hidden = true;
  $("player").hidden = false;
  $("back").hidden = false;
  $("item-title").textContent = entry.title;
  $("resumed").hidden = true;
  showPlayed();
  video.src = `${base}/media/${entry.id}`;
  video.addEventListener("loadedmetadata", () => {
    const at = entry.position || 0;
    if (at > 1 && at < video.duration - RESUME_TAIL_S) {
      video.currentTime = at;
      state.resumedFrom = at;
      $("resumed").textContent = t("learn.resumed", { time: formatTime(at) });
      $("resumed").hidden = false;
    }
    video.playbackRate = Number($("speed").value);
  }, { once: true });
  clearInterval(timer);
  timer = setInterval(() => { if (!video.paused) report(); }, REPORT_EVERY_MS);
}

async function closeItem() {
  report();
  clearInterval(timer);
  video.pause();
  video.removeAttribute("src");
  video.load();
  state.item = null;
  $("player").hidden = true;
  $("back").hidden = true;
  await loadStudy();
}

function formatTime(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

$("speed").addEventListener("change", () => {
  video.playbackRate = Math.min(MAX_RATE, Number($("speed").value) || 1);
});
video.addEventListener("ratechange", () => {
  if (video.playbackRate > MAX_RATE) video.playbackRate = MAX_RATE;
});
video.addEventListener("pause", () => report());
video.addEventListener("ended", () => report());
window.addEventListener("pagehide", () => report(true));
$("back").addEventListener("click", closeItem);
$("lang").addEventListener("click", () => switchLanguage(document.documentElement.lang === "en" ? "zh-CN" : "en"));

await init();
await loadStudy();
