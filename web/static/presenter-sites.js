// The invited sub-classrooms (分课堂) panel: which are in, their headcounts
// and the viewer count, polled from the session's presence; the poll also
// brings the view token the stage viewer needs.
import { t } from "/static/i18n.js";
import { el } from "/static/dom.js";
import { $, sessionId, token, zhixing } from "/static/presenter-page.js";
import { setViewToken } from "/static/presenter-discussion.js";

const PRESENCE_INTERVAL_MS = 2000;

let lastPresence = null;
let presenceError = null;

export function renderSites() {
  const list = $("sites");
  const presence = lastPresence;
  const errorEl = $("sites-error");
  errorEl.hidden = !presenceError;
  errorEl.textContent = presenceError
    ? t("presenter.sites.unavailable", { error: presenceError }) : "";
  if (!presence) return;
  const sites = [...presence.sites].sort((a, b) =>
    (b.connected - a.connected) || a.org_path.localeCompare(b.org_path, "zh-CN")
    || a.site_name.localeCompare(b.site_name, "zh-CN"));
  const connected = sites.filter((s) => s.connected).length;
  $("site-count").textContent = t("presenter.sites.count",
                                  { connected, invited: sites.length });
  $("viewer-count").textContent = t("presenter.sites.viewers", { count: presence.viewer_count });
  const items = sites.map((site) => {
    const parts = [t(site.connected ? "presenter.sites.connected" : "presenter.sites.offline")];
    if (site.headcount !== null && site.headcount !== undefined) {
      parts.push(t("presenter.sites.headcount", { count: site.headcount }));
    }
    return el("li", { dataset: { invitation: site.invitation_id, connected: String(site.connected) } },
      el("span", { className: "name", textContent: site.site_name }),
      el("span", { className: "badge", textContent: parts.join(" · ") }),
      el("span", { className: "path", textContent: site.org_path }));
  });
  if (!items.length) items.push(el("li", { className: "none", textContent: t("presenter.sites.none") }));
  list.replaceChildren(...items);
}

export async function pollPresence() {
  try {
    const response = await fetch(`/api/v1/sessions/${encodeURIComponent(sessionId)}/presence`, {
      headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      presenceError = body.error || String(response.status);
    } else {
      presenceError = null;
      lastPresence = body;
      zhixing.presence = body;
      if (body.title) $("session-title").textContent = body.title;
      if (body.view_token) setViewToken(body.view_token);
    }
  } catch (e) {
    presenceError = e.message || String(e);
  }
  renderSites();
  setTimeout(pollPresence, PRESENCE_INTERVAL_MS);
}
