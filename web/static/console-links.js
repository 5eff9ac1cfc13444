// The 回放链接 (library links) tab: links that let cadres watch the library
// without a login; a new link's token is shown once.
import { t } from "/static/i18n.js";
import { clearErrors } from "/static/forms.js";
import { el } from "/static/dom.js";
import { $, api, copyLink, formatTime, fromLocalInput, notify, refresh, showErrors,
         state } from "/static/console-shared.js";

function linkStatus(link) {
  if (link.revoked_at != null) return "revoked";
  if (link.expires_at != null && link.expires_at * 1000 <= Date.now()) return "expired";
  return "active";
}

export function renderLinks() {
  $("#links-table tbody").replaceChildren(...state.links.map((link) => {
    const status = linkStatus(link);
    const actions = el("td", { className: "actions" });
    if (status === "active") {
      actions.append(el("button", { type: "button", className: "danger", textContent: t("console.links.revoke"),
        onclick: () => revokeLink(link) }));
    }
    return el("tr", { dataset: { id: link.id } },
      el("td", { textContent: link.label }),
      el("td", { textContent: formatTime(link.created_at) }),
      el("td", { textContent: link.expires_at == null ? t("console.links.never") : formatTime(link.expires_at) }),
      el("td", {}, el("span", { className: `status status-${status}`, textContent: t(`console.links.${status}`) })),
      actions);
  }));
  $("#links-empty").hidden = state.links.length > 0;
}

async function createLink(event) {
  event.preventDefault();
  const form = $("#links-form");
  clearErrors(form);
  const data = { label: form.elements.label.value };
  const expires = fromLocalInput(form.elements.expires_at.value);
  if (expires != null) data.expires_at = expires;
  let link;
  try { link = await api("POST", "/library-links", data); } catch (error) { showErrors(form, error); return; }
  form.reset();
  // The token is shown once: only its digest is kept on the server.
  $("#new-link-label").textContent = link.label;
  $("#new-link-url").value = link.url;
  $("#new-link").hidden = false;
  await refresh();
}

async function revokeLink(link) {
  if (!confirm(t("console.confirm.revoke_link", { name: link.label }))) return;
  try { await api("DELETE", `/library-links/${encodeURIComponent(link.id)}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

export function setupLinks() {
  $("#links-form").addEventListener("submit", createLink);
  $("#new-link-copy").onclick = () => copyLink($("#new-link-url"));
}
