// What the admin pages share about API errors and form fields.
import { t } from "/static/i18n.js";

export class ApiError extends Error {
  constructor(status, text) { super(text); this.status = status; }
}

// An /api/v1/ reply with the login cookie: its JSON (null for 204); a 401
// goes to the login page, any other error status throws an ApiError.
export async function apiReply(response) {
  if (response.status === 401) { location.href = "/login"; throw new ApiError(401, ""); }
  if (response.status === 204) return null;
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, reply.error || String(response.status));
  return reply;
}

// "invalid fields: title (error.required), row 2 (error.duplicate_site)" → {field: key}
export function fieldErrors(text) {
  const found = {};
  const body = text.replace(/^invalid fields: /, "");
  for (const match of body.matchAll(/(?:^|, )([^,(]+?) \((error\.[a-z_]+)\)/g)) found[match[1]] = match[2];
  return found;
}

// A refused form: each field's error in its .field-error slot, or, when none
// fits, the whole message (t(messageKey, {message})) in the form's .form-error.
export function showErrors(form, error, messageKey) {
  const fields = error.status === 422 ? fieldErrors(error.message) : {};
  let placed = false;
  for (const [name, key] of Object.entries(fields)) {
    const slot = form.querySelector(`.field-error[data-field="${CSS.escape(name)}"]`);
    if (slot) { slot.textContent = t(key); placed = true; }
  }
  if (!placed) form.querySelector(".form-error").textContent = t(messageKey, { message: error.message });
}

export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error, .form-error")) node.textContent = "";
}
