// The 组织与账号 tab (organization tree, accounts, the city's audit log) and
// what each role sees of the console: elements marked data-roles="…" show
// only to those roles; the server checks every request anyway.
import { t, apply } from "/static/i18n.js";
import { clearErrors, fieldErrors } from "/static/forms.js";
import { el } from "/static/dom.js";
import { $, api, formatTime, notify, refresh, showErrors, state } from "/static/console-shared.js";

// The tabs each role may use (the first is where it starts).
export const ROLE_TABS = {
  city_admin: ["sessions", "units", "courses", "sites", "archive", "links", "packages", "learners",
               "access"],
  district_admin: ["sessions", "courses", "sites", "archive", "learners", "access"],
  auditor: ["sessions", "archive", "learners"],
  presenter: ["sessions"],
};

export const can = {
  manage: () => state.role === "city_admin" || state.role === "district_admin",
  city: () => state.role === "city_admin",
};

export function applyRole(me) {
  state.role = me.role;
  state.me = me;
  document.body.dataset.role = me.role;
  for (const node of document.querySelectorAll("[data-roles]")) {
    node.hidden = !node.dataset.roles.split(" ").includes(me.role);
  }
  const where = me.org_path ? ` · ${me.org_path}` : "";
  $("#who").textContent = `${t("console.logged_in", { name: me.username ?? "" })} · ${t(`role.${me.role}`)}${where}`;
}

// ------------------------------------------------------------ the tree
const nodeLabel = (node) => node.path || node.name;

function renderOrg() {
  const nodes = state.org;
  $("#org-table tbody").replaceChildren(...nodes.map((node) => {
    const own = node.id === state.me.org_node_id;
    const actions = el("td", { className: "actions" });
    if (!own) {
      actions.append(
        el("button", { type: "button", textContent: t("console.edit"), onclick: () => editNode(node) }),
        el("button", { type: "button", className: "danger", textContent: t("console.delete"),
          onclick: () => deleteNode(node) }));
    }
    return el("tr", { dataset: { id: String(node.id) } },
      el("td", { textContent: nodeLabel(node), style: `padding-left: ${0.5 + node.depth}em` }),
      el("td", { textContent: t(`org.kind.${node.kind}`) }), actions);
  }));
  for (const select of [$("#org-form [name=parent_id]"), $("#accounts-form [name=org_node_id]")]) {
    const current = select.value;
    select.replaceChildren(...nodes.map((node) => el("option", { value: String(node.id), textContent: nodeLabel(node) })));
    if (current) select.value = current;
  }
}

function resetNodeForm() {
  const form = $("#org-form");
  form.reset();
  delete form.dataset.editing;
  clearErrors(form);
  $("#org-form-heading").textContent = t("console.org.new");
  $(".cancel", form).hidden = true;
}

function editNode(node) {
  const form = $("#org-form");
  clearErrors(form);
  form.dataset.editing = String(node.id);
  form.elements.name.value = node.name;
  form.elements.parent_id.value = String(node.parent_id ?? "");
  form.elements.kind.value = node.kind === "city" ? "" : node.kind;
  $("#org-form-heading").textContent = t("console.org.editing");
  $(".cancel", form).hidden = false;
}

async function saveNode(event) {
  event.preventDefault();
  const form = $("#org-form");
  clearErrors(form);
  const f = form.elements;
  const data = { name: f.name.value, parent_id: Number(f.parent_id.value) };
  if (f.kind.value) data.kind = f.kind.value;
  try {
    if (form.dataset.editing) await api("PATCH", `/org/${form.dataset.editing}`, data);
    else await api("POST", "/org", data);
  } catch (error) { showErrors(form, error); return; }
  notify(t("console.saved"));
  resetNodeForm();
  await refresh();
}

async function deleteNode(node) {
  if (!confirm(t("console.confirm.delete", { name: node.name }))) return;
  try { await api("DELETE", `/org/${node.id}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

async function importNodes(event) {
  event.preventDefault();
  const form = $("#org-import");
  clearErrors(form);
  $(".row-errors", form).replaceChildren();
  try {
    const reply = await api("POST", "/org/import", form.elements.text.value, "text/csv");
    notify(t("console.org.imported", { count: reply.imported }));
    form.reset();
  } catch (error) {
    showErrors(form, error);
    const rows = error.status === 422 ? fieldErrors(error.message) : {};
    $(".row-errors", form).replaceChildren(...Object.entries(rows)
      .map(([row, key]) => el("li", { textContent: `${row}: ${t(key)}` })));
    return;
  }
  await refresh();
}

// ------------------------------------------------------------ accounts
function renderAccounts() {
  $("#accounts-table tbody").replaceChildren(...state.accounts.map((account) => {
    const self = account.id === state.me.account_id || account.username === state.me.username;
    const actions = el("td", { className: "actions" });
    if (!self) {
      actions.append(
        el("button", { type: "button", textContent: t("console.accounts.reset"), onclick: () => resetPassword(account) }),
        el("button", { type: "button", className: account.disabled ? "" : "danger",
          textContent: t(account.disabled ? "console.accounts.enable" : "console.accounts.disable"),
          onclick: () => toggleAccount(account) }));
    }
    return el("tr", { dataset: { id: String(account.id) } },
      el("td", { textContent: account.username }), el("td", { textContent: t(`role.${account.role}`) }),
      el("td", { textContent: account.org_path || t("console.org.city") }),
      el("td", { textContent: t(account.disabled ? "console.accounts.disabled" : "console.accounts.enabled") }),
      actions);
  }));
}

function showPassword(account) {
  const box = $("#new-password");
  box.hidden = !account.password;
  if (account.password) {
    box.textContent = t("console.accounts.password_once", { name: account.username, password: account.password });
  }
}

async function createAccount(event) {
  event.preventDefault();
  const form = $("#accounts-form");
  clearErrors(form);
  const f = form.elements;
  let made;
  try {
    made = await api("POST", "/accounts", { username: f.username.value, role: f.role.value,
                                            org_node_id: Number(f.org_node_id.value) });
  } catch (error) { showErrors(form, error); return; }
  form.reset();
  showPassword(made);
  await refresh();
}

async function resetPassword(account) {
  if (!confirm(t("console.accounts.confirm_reset", { name: account.username }))) return;
  try { showPassword(await api("POST", `/accounts/${account.id}/password`, {})); } catch (error) {
    notify(t("console.error", { message: error.message }));
  }
}

async function toggleAccount(account) {
  try { await api("PATCH", `/accounts/${account.id}`, { disabled: !account.disabled }); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  await refresh();
}

// ------------------------------------------------------------ audit log
function renderAudit() {
  $("#audit-table tbody").replaceChildren(...state.audit.slice(0, 200).map((entry) => el("tr", {},
    el("td", { textContent: formatTime(entry.at) }),
    el("td", { textContent: `${entry.username}${entry.role ? ` (${t(`role.${entry.role}`)})` : ""}` }),
    el("td", { textContent: entry.action }), el("td", { textContent: entry.object_id }),
    el("td", { textContent: entry.detail }), el("td", { textContent: entry.address }))));
  $("#audit-csv").href = `/api/v1/audit?format=csv&utc_offset=${-new Date().getTimezoneOffset()}`;
}

// What the tab reads, as the role may (the others' lists stay empty).
export async function loadAccess() {
  if (!can.manage()) return;
  const calls = [api("GET", "/org"), api("GET", "/accounts")];
  if (can.city()) calls.push(api("GET", "/audit"));
  const [org, accounts, audit] = await Promise.all(calls);
  Object.assign(state, { org: org.nodes, accounts: accounts.accounts, audit: audit ? audit.entries : [] });
}

export function renderAccess() {
  if (!can.manage()) return;
  renderOrg();
  renderAccounts();
  if (can.city()) renderAudit();
}

export function setupAccess() {
  $("#org-form").addEventListener("submit", saveNode);
  $("#org-form .cancel").onclick = resetNodeForm;
  $("#org-import").addEventListener("submit", importNodes);
  $("#accounts-form").addEventListener("submit", createAccount);
  apply($("#panel-access"));
  resetNodeForm();
}
