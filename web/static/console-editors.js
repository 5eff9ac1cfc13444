// The 专题 (units), 课程 (courses) and 分课堂 (sites) tabs: one table and
// editor each, built from EDITORS; the sites tab also imports sites from CSV.
import { t, apply } from "/static/i18n.js";
import { clearErrors, fieldErrors } from "/static/forms.js";
import { el } from "/static/dom.js";
import { $, api, fillSelect, notify, refresh, showErrors, state } from "/static/console-shared.js";

const EDITORS = {
  units: {
    singular: "unit",
    fields: [{ name: "name", required: true }, { name: "description", textarea: true, optional: true }],
    columns: [(row) => row.name, (row) => row.description],
  },
  courses: {
    singular: "course",
    fields: [{ name: "title", required: true }, { name: "lecturer", optional: true },
             { name: "unit_id", ref: "units", label: (row) => row.name }],
    columns: [(row) => row.title, (row) => row.lecturer, (row) => row.unit_name || ""],
  },
  sites: {
    singular: "site",
    fields: [{ name: "name", required: true }, { name: "org_path", optional: true }],
    columns: [(row) => row.name, (row) => row.org_path],
  },
};

function buildEditor(kind) {
  const spec = EDITORS[kind];
  const root = kind === "sites" ? $("#sites-editor") : $(`#panel-${kind}`);
  const heads = spec.fields.map((f) => el("th", { dataset: { i18n: `console.${kind}.${f.name}` } }));
  root.append(
    el("h2", { dataset: { i18n: `console.tab.${kind}` } }),
    el("table", { id: `${kind}-table`, className: "list" },
      el("thead", {}, el("tr", {}, ...heads, el("th", { dataset: { i18n: "console.actions" } }))),
      el("tbody")),
    el("p", { className: "empty", id: `${kind}-empty`, hidden: true, dataset: { i18n: "console.empty" } }));
  const form = el("form", { id: `${kind}-form`, className: "editor", noValidate: true });
  form.append(el("h3", { id: `${kind}-form-heading` }));
  for (const field of spec.fields) {
    let input;
    if (field.ref) input = el("select", { name: field.name });
    else if (field.textarea) input = el("textarea", { name: field.name, rows: 2 });
    else input = el("input", { name: field.name, maxLength: 200 });
    form.append(el("label", {}, el("span", { dataset: { i18n: `console.${kind}.${field.name}` } }), input,
      el("span", { className: "field-error", dataset: { field: field.name } })));
  }
  form.append(el("p", { className: "form-error", role: "alert" }),
    el("p", { className: "buttons" },
      el("button", { type: "submit", dataset: { i18n: "console.save" } }),
      el("button", { type: "button", className: "cancel", hidden: true, dataset: { i18n: "console.cancel" },
        onclick: () => resetEditor(kind) })));
  form.addEventListener("submit", (event) => { event.preventDefault(); saveRow(kind); });
  root.append(form);
  apply(root);
  resetEditor(kind);
}

function resetEditor(kind) {
  const form = $(`#${kind}-form`);
  form.reset();
  delete form.dataset.editing;
  clearErrors(form);
  $(`#${kind}-form-heading`).textContent = t(`console.${kind}.new`);
  $(".cancel", form).hidden = true;
}


function renderEditor(kind) {
  const spec = EDITORS[kind];
  const rows = state[kind];
  const body = $(`#${kind}-table tbody`);
  body.replaceChildren(...rows.map((row) => el("tr", { dataset: { id: String(row.id) } },
    ...spec.columns.map((column) => el("td", { textContent: column(row) ?? "" })),
    // A district reads the city's courses, and changes its own.
    row.manageable === false ? el("td", { className: "actions" }) : el("td", { className: "actions" },
      el("button", { type: "button", textContent: t("console.edit"), onclick: () => editRow(kind, row) }),
      el("button", { type: "button", className: "danger", textContent: t("console.delete"),
        onclick: () => deleteRow(kind, row) })))));
  $(`#${kind}-empty`).hidden = rows.length > 0;
  for (const field of spec.fields.filter((f) => f.ref)) {
    fillSelect($(`#${kind}-form [name="${field.name}"]`), state[field.ref], field.label);
  }
}

function editRow(kind, row) {
  const form = $(`#${kind}-form`);
  clearErrors(form);
  form.dataset.editing = String(row.id);
  for (const field of EDITORS[kind].fields) form.elements[field.name].value = row[field.name] ?? "";
  $(`#${kind}-form-heading`).textContent = t(`console.${kind}.editing`);
  $(".cancel", form).hidden = false;
  form.scrollIntoView({ block: "nearest" });
}

async function saveRow(kind) {
  const form = $(`#${kind}-form`);
  clearErrors(form);
  const data = {};
  for (const field of EDITORS[kind].fields) {
    const value = form.elements[field.name].value;
    if (field.ref) data[field.name] = value ? Number(value) : null;
    else if (value.trim() || !field.optional || form.dataset.editing) data[field.name] = value;
  }
  try {
    if (form.dataset.editing) await api("PATCH", `/${kind}/${form.dataset.editing}`, data);
    else await api("POST", `/${kind}`, data);
  } catch (error) { showErrors(form, error); return; }
  notify(t("console.saved"));
  resetEditor(kind);
  await refresh();
}

async function deleteRow(kind, row) {
  const name = row.name ?? row.title;
  if (!confirm(t("console.confirm.delete", { name }))) return;
  try { await api("DELETE", `/${kind}/${row.id}`); } catch (error) {
    notify(t("console.error", { message: error.message })); return;
  }
  notify(t("console.deleted"));
  await refresh();
}

// A CSV of sites: all rows or none; each bad row is listed with its error.
async function importSites(event) {
  event.preventDefault();
  const form = $("#sites-import");
  clearErrors(form);
  const list = $(".row-errors", form);
  list.replaceChildren();
  const file = form.elements.file.files[0];
  const text = file ? await file.text() : form.elements.text.value;
  if (!text.trim()) { $(".form-error", form).textContent = t("error.csv_empty"); return; }
  let reply;
  try { reply = await api("POST", "/sites/import", text, "text/csv"); } catch (error) {
    const fields = error.status === 422 ? fieldErrors(error.message) : {};
    if (!Object.keys(fields).length) { $(".form-error", form).textContent = t("console.error", { message: error.message }); return; }
    $(".form-error", form).textContent = t("console.import.failed");
    for (const [where, key] of Object.entries(fields)) {
      const row = where.match(/^row (\d+)$/);
      const place = row ? t("console.import.row", { n: row[1] }) : t("console.import.file");
      list.append(el("li", { textContent: `${place}：${t(key)}` }));
    }
    return;
  }
  form.reset();
  notify(t("console.import.done", { count: reply.imported }));
  await refresh();
}

// Build the three editors and wire the import form.
export function setupEditors() {
  for (const kind of Object.keys(EDITORS)) buildEditor(kind);
  $("#sites-import").addEventListener("submit", importSites);
}

export function renderEditors() {
  for (const kind of Object.keys(EDITORS)) renderEditor(kind);
}
