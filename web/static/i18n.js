// Page translation: elements carry data-i18n="key" (text) or
// data-i18n-attr="attr:key;attr2:key2"; t(key) for texts made in JS.
// Language: ?lang=, then the zhixing_lang cookie, then zh-CN.
export const LANGUAGES = ["zh-CN", "en"];
let messages = {};

export function language() {
  const wanted = new URLSearchParams(location.search).get("lang")
    || (document.cookie.match(/(?:^|; )zhixing_lang=([^;]+)/) || [])[1] || "zh-CN";
  return LANGUAGES.includes(wanted) ? wanted : "zh-CN";
}

export function t(key, values = {}) {
  let text = messages[key] ?? key;
  for (const [name, value] of Object.entries(values)) text = text.replaceAll(`{${name}}`, value);
  return text;
}

export function apply(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}

export function switchLanguage(lang) {
  document.cookie = `zhixing_lang=${lang}; path=/; max-age=31536000; SameSite=Lax`;
  const url = new URL(location.href);
  url.searchParams.delete("lang");
  location.replace(url.toString());
}

export async function init() {
  const lang = language();
  document.documentElement.lang = lang;
  const response = await fetch(`/i18n/${lang}.json`);
  messages = response.ok ? await response.json() : {};
  apply();
  return lang;
}
