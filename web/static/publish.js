// publish.html: the bare WHIP publisher the relay's browser tests use
// (#session=…&token=…; camera and microphone at 640x480).
import { loadIceServers, publish } from "/static/whip-client.js";
const params = new URLSearchParams(location.hash.slice(1) || location.search.slice(1));
const session = params.get("session"), token = params.get("token");
const status = document.getElementById("status");
let current = null;
window.zhixing = { state: "idle", error: null };
document.getElementById("start").onclick = async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    document.getElementById("preview").srcObject = stream;
    current = await publish(`/whip/${session}`, token, stream, await loadIceServers());
    window.zhixing.pc = current.pc;
    current.pc.addEventListener("connectionstatechange", () => {
      status.textContent = current.pc.connectionState;
      window.zhixing.state = current.pc.connectionState;
    });
    document.getElementById("stop").disabled = false;
    status.textContent = "连接中 Connecting";
  } catch (e) {
    window.zhixing.error = String(e);
    status.textContent = "错误 Error: " + e.message;
  }
};
document.getElementById("stop").onclick = async () => {
  if (current) await current.stop();
  status.textContent = "已结束 Stopped";
};
