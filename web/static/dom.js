// Building page elements: el("li", { className: "card", dataset: {...},
// onclick: fn }, ...children). Properties the element has are set as such
// (textContent, never innerHTML: text from rooms and admins stays text),
// "on…" ones become listeners, the rest attributes; null children are skipped.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// Show a message in node for ms, then hide it (a later message restarts the wait).
export function flash(node, text, ms) {
  node.textContent = text;
  node.hidden = false;
  clearTimeout(node.flashTimer);
  node.flashTimer = setTimeout(() => { node.hidden = true; }, ms);
}
