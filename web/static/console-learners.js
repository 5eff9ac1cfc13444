// The 学员 (learners) tab: the roster of the caller's part of the tree, its CSV
// import (bad rows named), personal links (issue, QR code, revoke), assigning
// the listed learners to a unit, the write-ups waiting for review (accept, or
// return with a comment), and the completion report's downloads.
import { t } from "/static/i18n.js";
import { el } from "/static/dom.js";
import { fieldErrors } from "/static/forms.js";
import { $, api, copyLink, notify, refresh, state } from "/static/console-shared.js";

export async function loadLearners() {
  if (!["city_admin", "district_admin", "auditor"].includes(state.role)) return;
  const [learners, writeups] = await Promise.all([api("GET", "/learners"),
    api("GET", "/learning/writeups?state=submitted")]);
  state.learners = learners.learners;
  state.writeups = writeups.writeups;
}

// Write-ups waiting for review: accept, or return with a comment.
function renderWriteups() {
  const manage = state.role === "city_admin" || state.role === "district_admin";
  const rows = state.writeups ?? [];
  $("#writeups-table tbody").replaceChildren(...rows.map((writeup) => {
    const actions = el("td", { className: "actions" });
    if (manage) {
      const comment = el("input", { className: "comment", maxLength: 1000,
                                    placeholder: t("console.writeups.comment") });
      actions.append(comment,
        el("button", { type: "button", className: "accept", textContent: t("console.writeups.accept"),
                       onclick: () => review(writeup, "accept", comment.value) }),
        el("button", { type: "button", className: "return danger", textContent: t("console.writeups.return"),
                       onclick: () => review(writeup, "return", comment.value) }));
    }
    const attachment = writeup.attachment_type
      ? el("a", { href: `/api/v1/learning/writeups/${writeup.id}/attachment`,
                  textContent: writeup.attachment_type.toUpperCase() })
      : null;
    return el("tr", { dataset: { id: String(writeup.id) } },
      el("td", { textContent: writeup.learner_name }),
      el("td", { textContent: writeup.unit_name }),
      el("td", { className: "writeup-text", textContent: writeup.text }),
      el("td", {}, attachment),
      actions);
  }));
  $("#writeups-empty").hidden = rows.length > 0;
}

async function review(writeup, decision, comment) {
  if (decision === "return" && !comment.trim()) {
    notify(t("console.writeups.need_comment")); return;
  }
  try { await api("POST", `/learning/writeups/${writeup.id}/review`, { decision, comment }); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

function unitNames(learner) {
  const names = new Map(state.units.map((unit) => [unit.id, unit.name]));
  return learner.unit_ids.map((id) => names.get(id) ?? `#${id}`).join("、");
}

export function renderLearners() {
  const learners = state.learners ?? [];
  const manage = state.role === "city_admin" || state.role === "district_admin";
  $("#learners-table tbody").replaceChildren(...learners.map((learner) => {
    const actions = el("td", { className: "actions" });
    if (manage) {
      actions.append(el("button", { type: "button", textContent: t(learner.link_active
        ? "console.learners.reissue" : "console.learners.issue"), onclick: () => issueLink(learner) }));
      if (learner.link_active) {
        actions.append(el("button", { type: "button", className: "danger",
          textContent: t("console.learners.revoke"), onclick: () => revokeLink(learner) }));
      }
    }
    return el("tr", { dataset: { id: String(learner.id) } },
      el("td", { textContent: learner.name }),
      el("td", { textContent: learner.org_path || t("console.learners.city") }),
      el("td", { textContent: learner.site_name ?? "" }),
      el("td", { textContent: learner.position }),
      el("td", { textContent: unitNames(learner) }),
      el("td", {}, el("span", { className: `status status-${learner.link_active ? "active" : "revoked"}`,
        textContent: t(learner.link_active ? "console.learners.link_on" : "console.learners.link_off") })),
      actions);
  }));
  $("#learners-empty").hidden = learners.length > 0;
  renderWriteups();
  const select = $("#learners-unit");
  const current = select.value;
  select.replaceChildren(...state.units.map((unit) => el("option", { value: String(unit.id), textContent: unit.name })));
  if (current) select.value = current;
}

async function issueLink(learner) {
  let link;
  try { link = await api("POST", `/learners/${learner.id}/link`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  $("#learner-link-name").textContent = learner.name;
  $("#learner-link-url").value = link.url;
  $("#learner-link-qr").src = `/api/v1/learners/${learner.id}/link/qr.svg?at=${Date.now()}`;
  $("#learner-link").hidden = false;
  await refresh();
}

async function revokeLink(learner) {
  if (!confirm(t("console.learners.confirm_revoke", { name: learner.name }))) return;
  try { await api("DELETE", `/learners/${learner.id}/link`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  $("#learner-link").hidden = true;
  await refresh();
}

async function importCsv(event) {
  event.preventDefault();
  const file = $("#learners-file").files[0];
  const message = $("#learners-import-result");
  if (!file) return;
  try {
    const reply = await api("POST", "/learners/import", await file.text(), "text/csv");
    message.textContent = t("console.learners.imported", { count: reply.imported });
  } catch (error) {
    const fields = error.status === 422 ? fieldErrors(error.message) : {};
    const rows = Object.entries(fields).map(([row, key]) => `${row}: ${t(key)}`);
    message.textContent = rows.length ? rows.join("；") : t("console.error", { message: error.message });
    return;
  } finally {
    message.hidden = false;
  }
  $("#learners-import").reset();
  await refresh();
}

async function assignListed() {
  const unit = $("#learners-unit").value;
  const ids = (state.learners ?? []).map((learner) => learner.id);
  if (!unit || !ids.length) return;
  try {
    const reply = await api("POST", `/learning/units/${unit}/assign`, { learner_ids: ids });
    notify(t("console.learners.assigned", { count: reply.count }));
  } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

export function setupLearners() {
  $("#learners-import").addEventListener("submit", importCsv);
  $("#learners-assign").onclick = assignListed;
  $("#learner-link-copy").onclick = () => copyLink($("#learner-link-url"));
}
