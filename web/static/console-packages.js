// The 课程包 (course packages) tab: export a unit, a course or chosen
// recordings as a ZIP file or disc image, with its progress and a download
// link; upload a package from another server to import it (upload progress,
// then the server verifies every file and says what it added or which file
// was missing or damaged).
import { t } from "/static/i18n.js";
import { clearErrors } from "/static/forms.js";
import { el } from "/static/dom.js";
import { $, api, fillSelect, formatBytes, formatTime, refresh, showErrors, state } from "/static/console-shared.js";

const POLL_MS = 500;
let pollTimer = null;

// For tests: the export shown, and the last import's reply or error.
export const packages = { job: null, imported: null, refused: null };
state.packages = packages;

function choice() {
  return $("#packages-form").elements.what.value;
}

function showChoice() {
  for (const label of document.querySelectorAll("#packages-form [data-what]")) {
    label.hidden = label.dataset.what !== choice();
  }
}

export function renderPackages() {
  const form = $("#packages-form");
  fillSelect(form.elements.unit_id, state.units, (unit) => unit.name, false);
  fillSelect(form.elements.course_id, state.courses,
    (course) => [course.unit_name, course.title].filter(Boolean).join(" · "), false);
  const chosen = new Set([...form.elements.item_ids.selectedOptions].map((o) => o.value));
  const ready = state.archive.filter((item) => item.state === "ready");
  form.elements.item_ids.replaceChildren(...ready.map((item) => el("option", {
    value: item.id, selected: chosen.has(item.id),
    textContent: `${item.title}${item.course_title ? ` · ${item.course_title}` : ""} · ${formatTime(item.recorded_at)}`,
  })));
  form.querySelector("button[type=submit]").disabled = ready.length === 0;
  form.querySelector(".form-error").textContent = ready.length ? "" : t("package.console.none_ready");
}

// ---------------------------------------------------------------- export

function showJob(job) {
  packages.job = job;
  $("#package-job").hidden = !job;
  if (!job) return;
  const running = job.state === "running";
  $("#package-progress").hidden = !running && job.state !== "ready";
  $("#package-progress").value = job.progress;
  const status = $("#package-status");
  status.className = job.state === "failed" ? "failed" : "";
  status.textContent = running ? t("package.console.running", { percent: Math.floor(job.progress * 100) })
    : job.state === "ready" ? t("package.console.ready", { size: formatBytes(job.size), count: job.items })
    : t("package.console.failed", { message: job.error || "" });
  const download = $("#package-download");
  download.hidden = job.state !== "ready";
  if (job.download_url) download.href = job.download_url;
  $("#packages-form button[type=submit]").disabled = running;
}

async function follow(jobId) {
  clearTimeout(pollTimer);
  let job;
  try { job = await api("GET", `/packages/${encodeURIComponent(jobId)}`); } catch (error) {
    showJob({ ...packages.job, state: "failed", error: error.message });
    return;
  }
  showJob(job);
  if (job.state === "running") pollTimer = setTimeout(() => follow(jobId), POLL_MS);
}

async function startExport(event) {
  event.preventDefault();
  const form = $("#packages-form");
  clearErrors(form);
  const body = { format: form.elements.format.value };
  const what = choice();
  if (what === "unit") body.unit_id = Number(form.elements.unit_id.value) || null;
  else if (what === "course") body.course_id = Number(form.elements.course_id.value) || null;
  else body.item_ids = [...form.elements.item_ids.selectedOptions].map((o) => o.value);
  if (body.unit_id === null) delete body.unit_id;
  if (body.course_id === null) delete body.course_id;
  let job;
  try { job = await api("POST", "/packages", body); } catch (error) { showErrors(form, error); return; }
  showJob(job);
  follow(job.id);
}

// ---------------------------------------------------------------- import

function uploadType(file) {
  return /\.iso$/i.test(file.name) ? "application/x-iso9660-image" : "application/zip";
}

// XMLHttpRequest, not fetch(): only it reports an upload's progress.
function upload(file, onProgress) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/v1/package-imports");
    request.setRequestHeader("X-CSRF-Token", state.csrf);
    request.setRequestHeader("Content-Type", uploadType(file));
    request.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
    request.upload.onload = () => onProgress(1);
    request.onload = () => {
      let reply = {};
      try { reply = JSON.parse(request.responseText); } catch { /* not JSON */ }
      resolve({ status: request.status, reply });
    };
    request.onerror = () => resolve({ status: 0, reply: { error: "network error" } });
    request.send(file);
  });
}

async function startImport(event) {
  event.preventDefault();
  const form = $("#package-import-form");
  clearErrors(form);
  const file = form.elements.file.files[0];
  if (!file) { form.querySelector(".form-error").textContent = t("package.console.no_file"); return; }
  const button = form.querySelector("button[type=submit]");
  const status = $("#package-import-status");
  button.disabled = true;
  $("#package-import").hidden = false;
  status.className = "";
  Object.assign(packages, { imported: null, refused: null });
  const progress = (share) => {
    $("#package-upload-progress").value = share;
    status.textContent = share < 1 ? t("package.console.uploading", { percent: Math.floor(share * 100) })
      : t("package.console.verifying");
  };
  progress(0);
  const { status: code, reply } = await upload(file, progress);
  button.disabled = false;
  if (code === 401) { location.href = "/login"; return; }
  if (code !== 200) {
    packages.refused = reply;
    status.className = "failed";
    // What was wrong, in the reader's language, naming the file; else the server's text.
    const reason = reply.kind ? t(`package.refused.${reply.kind}`, { file: reply.file }) : reply.error;
    status.textContent = t("package.console.refused", { message: reason || String(code) });
    return;
  }
  packages.imported = reply;
  status.textContent = t("package.console.imported", {
    added: reply.added.length, present: reply.present.length, units: reply.units_added, courses: reply.courses_added,
  });
  form.reset();
  await refresh();
}

export async function setupPackages() {
  const form = $("#packages-form");
  for (const radio of form.elements.what) radio.addEventListener("change", showChoice);
  showChoice();
  form.addEventListener("submit", startExport);
  $("#package-import-form").addEventListener("submit", startImport);
  // An export still running (or ready) from before this page was opened.
  try {
    const { packages: jobs } = await api("GET", "/packages");
    if (jobs.length) {
      showJob(jobs[0]);
      if (jobs[0].state === "running") follow(jobs[0].id);
    }
  } catch { /* the tab works without it */ }
}
