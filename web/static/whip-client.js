// WHIP/WHEP client for our pages (RFC 9725 resource model).
// The relay does not trickle: we wait for ICE gathering, then POST the offer.

const GATHER_TIMEOUT_MS = 3000;

// With the page's token, TURN servers come with credentials of its own that
// expire (never a shared password); without one, STUN only.
export async function loadIceServers(token = null) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch("/api/v1/rtc-config", { headers, cache: "no-store" });
  if (!response.ok) return [];
  return (await response.json()).iceServers || [];
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_TIMEOUT_MS);
  });
}

class HttpError extends Error {
  constructor(status, text, retryAfter = null) {
    super(`${status}: ${text}`);
    this.status = status;
    this.retryAfter = retryAfter; // seconds the server asked us to wait (429, 503)
  }
}

async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const text = await response.text();
  if (response.status !== 201) {
    const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    throw new HttpError(response.status, text.trim(),
                        Number.isFinite(retryAfter) ? retryAfter : null);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  return new URL(response.headers.get("Location"), response.url).toString();
}

// A failed attempt must not leave a connection behind (pages retry).
async function negotiateOrClose(pc, url, token) {
  try {
    return await negotiate(pc, url, token);
  } catch (error) {
    pc.close();
    throw error;
  }
}

async function endResource(resourceUrl, token) {
  if (!resourceUrl) return;
  try {
    await fetch(resourceUrl, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  } catch (e) {
    // The server forgets an unreachable peer by itself.
  }
}

// Publish a MediaStream; resolves to {pc, stop()}.
export async function publish(url, token, stream, iceServers = []) {
  const pc = new RTCPeerConnection({ iceServers });
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  const resourceUrl = await negotiateOrClose(pc, url, token);
  return {
    pc,
    resourceUrl,
    async stop() {
      pc.close();
      await endResource(resourceUrl, token);
    },
  };
}

// View a session's slots: the offer's first video + audio pair is the program,
// the second pair the stage (a room on stage after the lecture). Either pair
// may be left out (offered inactive, so the stage stays the second pair).
// Resolves to {pc, stream, stageStream, resourceUrl, stop()}.
export async function view(url, token, iceServers = [], { program = true, stage = true } = {}) {
  const pc = new RTCPeerConnection({ iceServers });
  const stream = new MediaStream();
  const stageStream = new MediaStream();
  const pair = (wanted) => {
    const direction = wanted ? "recvonly" : "inactive";
    return [pc.addTransceiver("video", { direction }), pc.addTransceiver("audio", { direction })];
  };
  const programPair = pair(program);
  const stagePair = pair(stage);
  pc.addEventListener("track", (event) => {
    if (stagePair.includes(event.transceiver)) stageStream.addTrack(event.track);
    else if (programPair.includes(event.transceiver)) stream.addTrack(event.track);
  });
  const resourceUrl = await negotiateOrClose(pc, url, token);
  return {
    pc,
    stream,
    stageStream,
    // The mids of each pair's video, for telling their getStats() apart.
    programVideoMid: programPair[0].mid,
    stageVideoMid: stagePair[0].mid,
    resourceUrl,
    async stop() {
      pc.close();
      await endResource(resourceUrl, token);
    },
  };
}
