// 研讨 (discussion) on the room page, over the room-events socket: this
// room's hand, its questions and their answers, and the stage (someone on
// stage over the program). The room's own camera is room-camera.js's.
import { t } from "/static/i18n.js";
import { CLOSE_ENDED, CLOSE_REVOKED, EventsClient } from "/static/events-client.js";
import { el } from "/static/dom.js";
import { $, flashError, mine, page, poll, state, token, video } from "/static/room-page.js";
import { renderCamera, stopCamera } from "/static/room-camera.js";

const QUESTION_MAX = 500;
const KNOWN_ERRORS = ["rate_limited", "locked", "too_long", "empty", "full", "unavailable",
                      "forbidden", "not_found", "too_large"];

let events = null; // EventsClient

export function connectEvents() {
  if (page.finished || events || !state.room) return;
  events = new EventsClient({
    sessionId: state.room.session_id, token,
    onState: (discussion) => {
      state.discussion = discussion;
      renderDiscussion();
    },
    onError: showDiscussError,
    onStatus: (status) => {
      state.events = status;
      renderDiscussion();
    },
    onClose: (code) => {
      if (code === CLOSE_ENDED || code === CLOSE_REVOKED) poll(); // the end, or the link gone
      return !page.finished;
    },
  });
  events.start();
}

export function stopDiscussion() {
  if (events) {
    events.stop();
    events = null;
  }
  stopCamera();
  state.discussion = null;
  renderDiscussion();
}

// Send one message; onAck runs when the server accepted it.
function send(type, fields = {}, onAck = null) {
  if (events) return events.send(type, fields, onAck);
  showDiscussError("offline");
  return false;
}

function showDiscussError(code) {
  const key = code === "offline" || KNOWN_ERRORS.includes(code)
    ? `room.discuss.error.${code}` : "room.discuss.error.other";
  flashError(t(key, { code: String(code || "") }));
}

function statusText(question) {
  return t(`room.question.status.${question.status}`);
}

function renderQuestions(questions) {
  const items = questions.slice().reverse().map((q) => el("li", { dataset: { status: q.status, id: String(q.id) } },
    el("span", { className: "q-status", textContent: statusText(q) }),
    el("p", { className: "q-text", textContent: q.text }),
    q.answer ? el("p", { className: "q-answer", textContent: t("room.question.answer", { text: q.answer }) }) : null));
  if (!items.length) items.push(el("li", { className: "none", textContent: t("room.question.none") }));
  $("my-questions").replaceChildren(...items);
}

function renderDiscussion() {
  const d = state.discussion;
  // A replay has nobody to answer: no camera, hand or questions (its stage
  // still shows the rooms of the recorded discussion).
  $("discuss").hidden = !d || page.finished || !!(state.room && state.room.replay);
  renderStage();
  renderCamera();
  if (!d) return;
  const me = mine();
  const raised = d.hands.some((h) => h.invitation_id === me);
  const hand = $("hand");
  hand.textContent = t(raised ? "room.hand.lower" : "room.hand.raise");
  hand.dataset.raised = String(raised);
  $("hand-note").textContent = state.events !== "open" ? t("room.discuss.offline")
    : raised ? t("room.hand.raised") : "";
  $("question-submit").disabled = d.locked;
  $("question").disabled = d.locked;
  $("question").placeholder = t(d.locked ? "room.question.locked" : "room.question.placeholder");
  renderQuestions(d.questions);
}

function countQuestion() {
  const length = $("question").value.length;
  const counter = $("question-count");
  counter.textContent = t("room.question.count", { count: length, max: QUESTION_MAX });
  counter.classList.toggle("error", length > QUESTION_MAX);
}

function ask(event) {
  event.preventDefault();
  const text = $("question").value.trim();
  if (!text) {
    showDiscussError("empty");
    return;
  }
  if (text.length > QUESTION_MAX) {
    showDiscussError("too_long");
    return;
  }
  send("question", { text }, () => {
    $("question").value = "";
    countQuestion();
  });
}

function toggleHand() {
  const d = state.discussion;
  if (!d) return;
  const raised = d.hands.some((h) => h.invitation_id === mine());
  send("hand", { raised: !raised });
}

// ------------------------------------------------------------ the stage

// Someone on stage: their picture over the program, with their sound. This
// room's own turn shows its picture as the others see it, without its sound
// (it would come back into its own microphone).
export function renderStage() {
  const d = state.discussion;
  const on = d && d.stage ? d.stage : null;
  const box = $("stage-box");
  const stageVideo = $("stage-video");
  const show = !!(on && page.viewer && !page.finished);
  box.hidden = !show;
  state.stage = show ? on.invitation_id : null;
  if (!show) {
    stageVideo.pause();
    return;
  }
  $("stage-name").textContent = t("room.stage.label", { name: on.name });
  stageVideo.muted = (on.invitation_id !== null && on.invitation_id === mine()) || video.muted;
  if (stageVideo.paused) stageVideo.play().catch(() => {});
}

export function setupDiscussion() {
  $("hand").addEventListener("click", toggleHand);
  $("ask").addEventListener("submit", ask);
  $("question").addEventListener("input", countQuestion);
  countQuestion();
  video.addEventListener("volumechange", renderStage); // 点击开启声音 covers the stage too
}
