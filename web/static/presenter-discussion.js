// The 研讨 (discussion) panel of the presenter page, over the room-events
// socket with the publish token (as a subprotocol): hands, questions and the
// rooms' cameras (uplinks); what we send changes the stage. While someone is
// on stage, a WHEP viewer shows and plays the stage here.
import { t } from "/static/i18n.js";
import { EventsClient } from "/static/events-client.js";
import { view } from "/static/whip-client.js";
import { KeptConnection } from "/static/kept-connection.js";
import { el } from "/static/dom.js";
import { $, rtcServers, sessionId, token, zhixing } from "/static/presenter-page.js";

const STAGE_BACKOFF_S = [1, 2, 5, 10, 30];
const ERROR_SHOWN_MS = 6000;
const KNOWN_ERRORS = ["rate_limited", "unavailable", "not_found", "too_long", "empty",
                      "forbidden"];

let events = null; // EventsClient
let eventsOpen = false;
let discussion = null;
let discussError = null; // {key, values}
let discussErrorTimer = null;
const questionItems = new Map(); // question id -> its <li> (kept: a typed answer survives)
let viewToken = null; // the session's view token (from the presence poll), for the stage
let stageViewer = null; // {pc, stageStream, stop()} while someone is on stage
let stageKeeper = null; // KeptConnection of the stage viewer while someone is on stage

function connectEvents() {
  events = new EventsClient({
    sessionId, token,
    onState: (state) => {
      discussion = state;
      zhixing.discussion = discussion;
      renderDiscussion();
      updateStageViewer();
    },
    onError: showDiscussError,
    onStatus: (status) => {
      eventsOpen = status === "open";
      renderDiscussion();
    },
  });
  events.start();
}

function sendEvent(type, fields = {}, onAck = null) {
  if (events) events.send(type, fields, onAck);
  else showDiscussError("offline");
}

function showDiscussError(code) {
  const key = code === "offline" || KNOWN_ERRORS.includes(code)
    ? `presenter.discuss.error.${code}` : "presenter.discuss.error.other";
  discussError = { key, values: { code: String(code || "") } };
  clearTimeout(discussErrorTimer);
  discussErrorTimer = setTimeout(() => {
    discussError = null;
    renderDiscussError();
  }, ERROR_SHOWN_MS);
  renderDiscussError();
}

function renderDiscussError() {
  const el = $("discuss-error");
  el.hidden = !discussError;
  el.textContent = discussError ? t(discussError.key, discussError.values) : "";
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString(document.documentElement.lang || "zh-CN",
                                                     { hour12: false });
}

function button(key, onClick) {
  return el("button", { type: "button", textContent: t(key), dataset: { action: key.split(".").pop() },
                        onclick: onClick });
}

function uplinkOf(invitationId) {
  return discussion ? discussion.uplinks.find((u) => u.invitation_id === invitationId) : null;
}

// A room may go on stage when its camera is up and not muted.
function canStage(invitationId) {
  const u = uplinkOf(invitationId);
  return !!(u && u.present && !u.muted);
}

function none(key) {
  return el("li", { className: "none", textContent: t(key) });
}

function renderHands() {
  const items = discussion.hands.map((hand) => {
    const stage = button("presenter.action.stage",
                         () => sendEvent("stage", { invitation_id: hand.invitation_id }));
    stage.disabled = !canStage(hand.invitation_id);
    if (stage.disabled) stage.title = t("presenter.uplinks.no_camera");
    return el("li", { dataset: { invitation: hand.invitation_id } },
      el("span", { className: "name", textContent: hand.name }),
      el("span", { className: "time", textContent: clock(hand.raised_at) }), stage,
      button("presenter.action.lower", () => lowerHand(hand.invitation_id)));
  });
  $("hands").replaceChildren(...(items.length ? items : [none("presenter.hands.none")]));
}

function lowerHand(invitationId) {
  if (discussion) sendEvent("lower_hand", { invitation_id: invitationId });
}

function questionItem(q) {
  let li = questionItems.get(q.id);
  if (li) return li;
  const input = el("input", { type: "text", maxLength: 1000, className: "q-input" });
  const form = el("form", { className: "q-form", onsubmit: (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      showDiscussError("empty");
      return;
    }
    sendEvent("answer", { question_id: q.id, text: value }, () => { input.value = ""; });
  } }, input, el("button", { type: "submit", dataset: { action: "answer" } }));
  const dismiss = button("presenter.action.dismiss",
                         () => sendEvent("dismiss", { question_id: q.id }));
  const stage = button("presenter.action.stage",
                       () => sendEvent("stage", { invitation_id: q.invitation_id }));
  li = el("li", { dataset: { id: String(q.id) } },
    el("div", { className: "q-head" },
      el("span", { className: "name" }), el("span", { className: "time" }),
      el("span", { className: "q-status" })),
    el("p", { className: "q-text" }), el("p", { className: "q-answer" }), form,
    el("div", { className: "q-actions" }, dismiss, stage));
  questionItems.set(q.id, li);
  return li;
}

function renderQuestions() {
  const seen = new Set();
  const items = discussion.questions.map((q) => {
    seen.add(q.id);
    const li = questionItem(q);
    li.dataset.status = q.status;
    const [head, text, answer, form, actions] = li.children;
    head.children[0].textContent = q.name;
    head.children[1].textContent = clock(q.asked_at);
    head.children[2].textContent = t(`presenter.questions.status.${q.status}`);
    text.textContent = q.text;
    answer.hidden = !q.answer;
    answer.textContent = q.answer ? t("presenter.questions.answer", { text: q.answer }) : "";
    const input = form.querySelector("input");
    input.placeholder = t("presenter.questions.answer_placeholder");
    form.querySelector("button").textContent = t("presenter.action.answer");
    const [dismiss, stage] = actions.children;
    dismiss.textContent = t("presenter.action.dismiss");
    dismiss.disabled = q.status === "dismissed";
    stage.textContent = t("presenter.action.stage");
    stage.disabled = !canStage(q.invitation_id)
      || (discussion.stage && discussion.stage.invitation_id === q.invitation_id);
    return li;
  });
  for (const id of [...questionItems.keys()]) if (!seen.has(id)) questionItems.delete(id);
  // Open questions first, each group in the order asked.
  items.sort((a, b) => (a.dataset.status !== "open") - (b.dataset.status !== "open"));
  const list = $("questions");
  if (!items.length) {
    list.replaceChildren(none("presenter.questions.none"));
    return;
  }
  // Move the kept items into place without re-creating them (focus stays).
  if ([...list.children].some((el, i) => el !== items[i]) || list.children.length !== items.length) {
    const focused = document.activeElement;
    list.replaceChildren(...items);
    if (focused && list.contains(focused)) focused.focus();
  }
}

function renderUplinks() {
  const stageId = discussion.stage ? discussion.stage.invitation_id : null;
  const items = discussion.uplinks.map((u) => {
    const parts = [t(u.present ? (u.connected ? "presenter.uplinks.connected"
                                              : "presenter.uplinks.connecting")
                               : "presenter.uplinks.absent")];
    if (u.muted) parts.push(t("presenter.uplinks.muted"));
    if (u.on_stage) parts.push(t("presenter.uplinks.on_stage"));
    const stage = u.invitation_id === stageId
      ? button("presenter.stage.off", () => sendEvent("stage", { invitation_id: null }))
      : button("presenter.action.stage",
               () => sendEvent("stage", { invitation_id: u.invitation_id }));
    if (u.invitation_id !== stageId) stage.disabled = !u.present || u.muted;
    const mute = button(u.muted ? "presenter.action.unmute" : "presenter.action.mute",
                        () => sendEvent("mute", { invitation_id: u.invitation_id,
                                                  muted: !u.muted }));
    return el("li", { dataset: { invitation: u.invitation_id, onStage: String(u.on_stage) } },
      el("span", { className: "name", textContent: u.name }),
      el("span", { className: "badge", textContent: parts.join(" · ") }), stage, mute);
  });
  $("uplinks").replaceChildren(...(items.length ? items : [none("presenter.uplinks.none")]));
}

export function renderDiscussion() {
  $("discuss").hidden = !discussion;
  $("discuss-offline").hidden = eventsOpen || !discussion;
  renderDiscussError();
  if (!discussion) return;
  const stage = discussion.stage;
  $("on-stage").textContent = stage ? stage.name : t("presenter.stage.nobody");
  $("stage-off").hidden = !stage;
  $("stage-video").hidden = !(stage && stageViewer);
  $("lock").textContent = t(discussion.locked ? "presenter.questions.unlock"
                                              : "presenter.questions.lock");
  $("lock").dataset.locked = String(discussion.locked);
  $("lower-all").disabled = !discussion.hands.length;
  renderHands();
  renderQuestions();
  renderUplinks();
}

// See and hear the stage while someone is on it (the program pair is not
// offered: this page makes the program). Between turns nothing is open.
function updateStageViewer() {
  const wanted = !!(discussion && discussion.stage && viewToken);
  if (!wanted) {
    if (stageKeeper) {
      stageKeeper.stop();
      stageKeeper = null;
    }
    renderDiscussion();
    return;
  }
  if (stageKeeper) return;
  stageKeeper = new KeptConnection({
    delays: STAGE_BACKOFF_S,
    giveUp: () => false,
    async open() {
      return view(`/whep/${encodeURIComponent(sessionId)}`, viewToken, await rtcServers(),
                  { program: false });
    },
    onUp(result) {
      stageViewer = result;
      zhixing.stagePc = result.pc;
      const stageVideo = $("stage-video");
      stageVideo.srcObject = result.stageStream;
      stageVideo.play().catch(() => {});
      renderDiscussion();
    },
    onDown() {
      stageViewer = null;
      zhixing.stagePc = null;
      $("stage-video").srcObject = null;
      renderDiscussion();
    },
  });
  stageKeeper.start();
}

export function setupDiscussion() {
  $("stage-off").addEventListener("click", () => sendEvent("stage", { invitation_id: null }));
  $("lower-all").addEventListener("click", () => sendEvent("lower_all_hands"));
  $("lock").addEventListener("click", () =>
    sendEvent("lock_questions", { locked: !(discussion && discussion.locked) }));
  connectEvents();
}

// The presence poll brings the view token; the stage viewer waits for it.
export function setViewToken(value) {
  if (value === viewToken) return;
  viewToken = value;
  updateStageViewer();
}
