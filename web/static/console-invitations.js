// A session's invitations (邀请链接, under the 场次 table): the presenter's
// link, inviting sites, and each invitation's link, QR code and state.
import { t } from "/static/i18n.js";
import { el } from "/static/dom.js";
import { $, api, copyLink, notify, state } from "/static/console-shared.js";

function invitationStatus(item) {
  if (item.revoked_at != null) return ["revoked", t("console.invitations.revoked")];
  if (item.expires_at * 1000 <= Date.now()) return ["expired", t("console.invitations.expired")];
  if (item.connected) return ["connected", t("console.invitations.connected")];
  return ["waiting", t("console.invitations.not_connected")];
}

export async function renderDetail() {
  const session = state.sessions.find((s) => s.id === state.detail);
  $("#session-detail").hidden = !session;
  if (!session) return;
  $("#detail-title").textContent = session.title;
  // The main classroom's link (it carries the session's publish token). A
  // replay has no presenter: its program is the recorded lecture.
  $("#presenter-row").hidden = !!session.replay || !session.presenter_url;
  $("#invite-sites").hidden = !session.manageable;
  $("#presenter-link").value = session.replay ? "" : session.presenter_url || "";
  $("#presenter-open").href = session.replay ? "#" : session.presenter_url || "#";
  const { invitations } = await api("GET", `/sessions/${session.id}/invitations`);
  const invited = new Set(invitations.filter((i) => i.revoked_at == null).map((i) => i.site_id));
  $("#invite-sites .checks").replaceChildren(...state.sites.map((site) => el("label", { className: "check" },
    el("input", { type: "checkbox", value: String(site.id) }),
    ` ${site.name}`, site.org_path ? el("small", { textContent: ` ${site.org_path}` }) : null,
    invited.has(site.id) ? el("small", { className: "invited", textContent: ` · ${t("console.invitations.already")}` }) : null)));
  $("#invite-none").hidden = state.sites.length > 0;
  $("#invite-button").disabled = session.state === "ended" || state.sites.length === 0;
  $("#invitations tbody").replaceChildren(...invitations.map((item) => {
    const link = el("input", { readOnly: true, value: item.url || "", className: "link" });
    const [kind, label] = invitationStatus(item);
    const actions = el("td", { className: "actions" });
    if (item.url) {
      actions.append(el("button", { type: "button", className: "copy", textContent: t("console.invitations.copy"),
        onclick: () => copyLink(link) }));
    }
    if (item.revoked_at == null && session.manageable) {
      actions.append(el("button", { type: "button", className: "danger", textContent: t("console.invitations.revoke"),
        onclick: () => revoke(item) }));
    }
    return el("tr", { dataset: { id: item.id } },
      el("td", {}, item.site_name, item.org_path ? el("small", { textContent: ` ${item.org_path}` }) : null),
      el("td", {}, link),
      el("td", {}, item.url ? el("img", { className: "qr", alt: t("console.invitations.qr_alt", { name: item.site_name }),
        src: `/api/v1/invitations/${encodeURIComponent(item.id)}/qr.svg`, width: 116, height: 116 }) : null),
      el("td", {}, el("span", { className: `status status-${kind}`, textContent: label })),
      actions);
  }));
  $("#invitations-empty").hidden = invitations.length > 0;
}

async function invite() {
  const boxes = [...document.querySelectorAll("#invite-sites input:checked")];
  $("#invite-error").textContent = "";
  if (!boxes.length) { $("#invite-error").textContent = t("console.invitations.pick_some"); return; }
  for (const box of boxes) {
    try { await api("POST", `/sessions/${state.detail}/invitations`, { site_id: Number(box.value) }); } catch (error) {
      $("#invite-error").textContent = t("console.error", { message: error.message });
      break;
    }
  }
  await renderDetail();
}

async function revoke(item) {
  if (!confirm(t("console.confirm.revoke", { name: item.site_name }))) return;
  try { await api("DELETE", `/invitations/${encodeURIComponent(item.id)}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await renderDetail();
}

export function setupInvitations() {
  $("#invite-button").onclick = invite;
  $("#presenter-copy").onclick = () => copyLink($("#presenter-link"));
}
