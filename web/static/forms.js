// What the admin pages share about API errors and form fields.

export class ApiError extends Error {
  constructor(status, text) { super(text); this.status = status; }
}

// "invalid fields: title (error.required), row 2 (error.duplicate_site)" → {field: key}
export function fieldErrors(text) {
  const found = {};
  const body = text.replace(/^invalid fields: /, "");
  for (const match of body.matchAll(/(?:^|, )([^,(]+?) \((error\.[a-z_]+)\)/g)) found[match[1]] = match[2];
  return found;
}

export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error, .form-error")) node.textContent = "";
}
