// view.html: the bare WHEP viewer the relay's browser tests use
// (#session=…&token=…).
import { loadIceServers, view } from "/static/whip-client.js";
const params = new URLSearchParams(location.hash.slice(1) || location.search.slice(1));
const session = params.get("session"), token = params.get("token");
const status = document.getElementById("status");
window.zhixing = { state: "connecting", error: null };
try {
  const viewer = await view(`/whep/${session}`, token, await loadIceServers());
  window.zhixing.pc = viewer.pc;
  document.getElementById("program").srcObject = viewer.stream;
  viewer.pc.addEventListener("connectionstatechange", () => {
    status.textContent = viewer.pc.connectionState;
    window.zhixing.state = viewer.pc.connectionState;
  });
} catch (e) {
  window.zhixing.error = String(e);
  status.textContent = "错误 Error: " + e.message;
}
