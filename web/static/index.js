// The start page (/): create a session with the admin token or a login, and
// list its publish and view links.
const params = new URLSearchParams(location.hash.slice(1));
document.getElementById("token").value = params.get("token") || "";
// Logged in with the session cookie: no token needed, but unsafe calls carry CSRF.
let csrf = null;
const me = await fetch("/api/v1/me");
if (me.ok) {
  const body = await me.json();
  if (body.csrf_token) {
    csrf = body.csrf_token;
    document.getElementById("token-row").hidden = true;
    const who = document.getElementById("who");
    who.hidden = false;
    who.textContent = `已登录 Logged in: ${body.username}`;
  }
}
document.getElementById("create").onsubmit = async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch("/api/v1/sessions", {
    method: "POST",
    headers,
    body: JSON.stringify({ title: document.getElementById("title").value }),
  });
  const body = await response.json();
  if (response.status !== 201) {
    document.getElementById("error").textContent = body.error;
    return;
  }
  const item = (label, href) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = href; a.textContent = label; a.target = "_blank";
    li.append(a);
    document.getElementById("links").append(li);
  };
  item(`主课堂推流 Publish: ${body.title}`, body.presenter_url);
  item(`分课堂观看 View: ${body.title}`, `/static/view.html#session=${body.id}&token=${body.view_token}`);
};
