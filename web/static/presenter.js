// The presenter page (主课堂): camera or screen + microphone, sent over WHIP;
// the invited sub-classrooms (分课堂) and whether they are in; 研讨.
// The publish token comes in the URL fragment (#token=...), never in a request for the page.
// This is the entry point and the publish (开始直播/结束直播); the devices are
// presenter-media.js's, the sub-classrooms presenter-sites.js's, 研讨
// presenter-discussion.js's, what they share presenter-page.js's.
import { init } from "/static/i18n.js";
import { publish } from "/static/whip-client.js";
import { isRefusal, KeptConnection } from "/static/kept-connection.js";
import { $, errorKey, page, renderError, renderStatus, rtcServers, sessionId, setStatus, showError,
         token, zhixing } from "/static/presenter-page.js";
import { applyBitrate, media, mediaToSend, renderDevices, setupMedia } from "/static/presenter-media.js";
import { pollPresence, renderSites } from "/static/presenter-sites.js";
import { renderDiscussion, setupDiscussion } from "/static/presenter-discussion.js";

const RETRY_DELAYS = [1, 2, 5, 10]; // seconds; the last one repeats
const DISCONNECTED_GRACE_MS = 3000; // "disconnected" often heals by itself

let publishing = null; // KeptConnection: the operator pressed 开始直播 and not yet 结束直播
// The WHIP resource this page last had: an automatic reconnection names it
// (?resumes=), so that it does not take the program back from another
// presenter PC that has taken over since; 开始直播 always takes over.
let lastResource = null;

// ---------------------------------------------------------------- texts

function renderAll() {
  renderStatus();
  renderError();
  renderSites();
  renderDevices();
  renderDiscussion();
}

async function setLanguage(lang) {
  document.cookie = `zhixing_lang=${lang}; path=/; max-age=31536000; SameSite=Lax`;
  const url = new URL(location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.delete("lang");
    history.replaceState(null, "", url.toString());
  }
  // No reload: a broadcast in progress goes on.
  const now = await init();
  $("lang").dataset.lang = now;
  renderAll();
}

// ---------------------------------------------------------------- publishing

function serverText(e) {
  // whip-client throws "status: body"; our server's body is {"error": "..."}.
  const text = String((e && e.message) || e);
  const body = text.replace(/^\d{3}: /, "");
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch (_) {
    // plain text
  }
  return body;
}

// 开始直播 keeps the WHIP publish up until 结束直播: a refused or dropped one
// is published again with backoff; a "no" from the server (4xx) or no camera
// stops it.
class MediaFailed extends Error {} // openMedia has said what is wrong

function keepPublishing() {
  return new KeptConnection({
    delays: RETRY_DELAYS,
    graceMs: DISCONNECTED_GRACE_MS,
    async open() {
      setStatus("connecting", "presenter.state.connecting");
      let stream;
      try {
        stream = await mediaToSend();
      } catch (e) {
        throw new MediaFailed(String(e));
      }
      const resumes = lastResource ? `?resumes=${encodeURIComponent(lastResource)}` : "";
      return publish(`/whip/${encodeURIComponent(sessionId)}${resumes}`, token, stream,
                     await rtcServers());
    },
    giveUp: (e) => e instanceof MediaFailed || isRefusal(e),
    onGiveUp(e) {
      publishing = null;
      // The server said no (bad or revoked token, ended session, or another
      // presenter PC took over while we were away): retrying won't help.
      if (e?.status === 409) showError("presenter.error.replaced");
      else if (!(e instanceof MediaFailed)) showError("presenter.error.rejected", { error: serverText(e) });
      setStatus("failed", "presenter.state.failed");
      updateButtons();
    },
    async onUp(result) {
      page.sending = result;
      lastResource = result.resourceUrl.split("/").pop();
      zhixing.pc = result.pc;
      await applyBitrate(result.pc);
      if (page.sending === result && result.pc.connectionState === "connected") {
        setStatus("live", "presenter.state.live");
      }
    },
    onDown() {
      page.sending = null;
      zhixing.pc = null;
    },
    // The network may be down: no DELETE on a retry; the next WHIP POST
    // replaces the old publisher on the server anyway.
    drop: (result) => result.pc.close(),
    onState(state) {
      if (state !== "connected") return;
      if (errorKey() === "presenter.error.network") showError(null);
      setStatus("live", "presenter.state.live");
    },
    onRetry({ seconds, attempt, error: e }) {
      if (e) console.warn("publish", e); // the network, or the server is restarting
      zhixing.attempts = attempt;
      showError("presenter.error.network");
      setStatus("reconnecting", "presenter.state.reconnecting", { seconds, attempt });
    },
  });
}

function updateButtons() {
  $("start").disabled = !!publishing;
  $("stop").disabled = !publishing;
}

function start() {
  if (publishing) return;
  lastResource = null;
  publishing = keepPublishing();
  showError(null);
  updateButtons();
  publishing.start();
}

async function stop() {
  const old = publishing;
  publishing = null;
  updateButtons();
  if (old) await old.stop();
  setStatus("stopped", "presenter.state.stopped");
}

// ---------------------------------------------------------------- start-up

const lang = await init();
$("lang").dataset.lang = lang;
$("lang").addEventListener("click", () =>
  setLanguage($("lang").dataset.lang === "zh-CN" ? "en" : "zh-CN"));
renderAll();
if (!token) {
  showError("presenter.no_token");
  $("start").disabled = true;
} else {
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  setupMedia();
  pollPresence();
  setupDiscussion();
  // Preview at once (this also asks for the permission the device names need).
  if (navigator.mediaDevices) media().catch(() => {});
  else showError("presenter.error.permission");
}
