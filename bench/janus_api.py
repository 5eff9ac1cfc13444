"""Janus's VideoRoom over its HTTP API, for the benchmark's publisher and viewers.

A Janus session is made, the VideoRoom plugin attached; a request the plugin
answers later ("join", "configure", "start") is acknowledged at once and its
event fetched by long-polling the session. The publisher joins the room with
a fixed feed id and configures with its offer; a subscriber joins naming that
feed, gets Janus's offer in the "attached" event, and answers with "start".
Nothing keeps the sessions alive: the bench's Janus runs with
``session_timeout = 0``, so no viewer spends anything on keep-alives.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from bench.rawviewer import BrowserLikeViewer, RawViewer, _context

PLUGIN = "janus.plugin.videoroom"
EVENT_TIMEOUT = 30.0


class JanusError(RuntimeError):
    """Janus answered a request with an error."""


class JanusHandle:
    """One Janus session with the VideoRoom plugin attached."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base  # http://host:port/janus
        self.session: int | None = None
        self.handle: int | None = None

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": secrets.token_hex(8)}
        async with self.http.post(url, json=body) as response:
            answer: dict[str, Any] = await response.json(content_type=None)
        if answer.get("janus") == "error":
            raise JanusError(f"{body['janus']}: {answer.get('error')}")
        answer["_transaction"] = body["transaction"]
        return answer

    async def attach(self) -> None:
        created = await self._post(self.base, {"janus": "create"})
        self.session = int(created["data"]["id"])
        attached = await self._post(f"{self.base}/{self.session}",
                                    {"janus": "attach", "plugin": PLUGIN})
        self.handle = int(attached["data"]["id"])

    async def request(self, body: dict[str, Any],
                      jsep: dict[str, str] | None = None) -> tuple[dict[str, Any],
                                                                  dict[str, Any] | None]:
        """A plugin request; returns the plugin's data and JSEP (from its event if async)."""
        message: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        answer = await self._post(f"{self.base}/{self.session}/{self.handle}", message)
        if answer["janus"] == "ack":
            answer = await self._event(answer["_transaction"])
        data: dict[str, Any] = answer.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return data, answer.get("jsep")

    async def _event(self, transaction: str) -> dict[str, Any]:
        """Long-poll the session until the event of ``transaction`` comes."""
        deadline = asyncio.get_running_loop().time() + EVENT_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            async with self.http.get(f"{self.base}/{self.session}?maxev=10") as response:
                events = await response.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                if event.get("transaction") == transaction:
                    return dict(event)
        raise TimeoutError(f"no Janus event for transaction {transaction}")

    async def destroy(self) -> None:
        if self.session is not None:
            await self._post(f"{self.base}/{self.session}", {"janus": "destroy"})
            self.session = None


async def create_room(http: aiohttp.ClientSession, base: str, room: int) -> None:
    """A VideoRoom room for one VP8 + Opus publisher: no recording, no REMB cap."""
    janus = JanusHandle(http, base)
    await janus.attach()
    await janus.request({"request": "create", "room": room, "publishers": 1, "bitrate": 0,
                         "videocodec": "vp8", "audiocodec": "opus", "record": False,
                         "notify_joining": False, "permanent": False})
    await janus.destroy()


async def publish(http: aiohttp.ClientSession, base: str, room: int, feed: int,
                  pc: RTCPeerConnection) -> JanusHandle:
    """Join ``room`` as publisher ``feed`` and negotiate ``pc`` (its offer, Janus's answer)."""
    janus = JanusHandle(http, base)
    await janus.attach()
    await janus.request({"request": "join", "ptype": "publisher", "room": room, "id": feed})
    await pc.setLocalDescription(await pc.createOffer())
    _, jsep = await janus.request({"request": "configure", "audio": True, "video": True},
                                  {"type": "offer", "sdp": pc.localDescription.sdp})
    if jsep is None:
        raise JanusError("configure: no JSEP answer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="answer"))
    return janus


def answer_sdp(offer: str, viewer: RawViewer) -> str:
    """The receive-only answer a raw viewer gives to Janus's subscriber offer.

    It takes what the WHEP viewers' own offer takes (VP8 with its RTX, NACK,
    PLI and REMB feedback, Opus; the mid, abs-send-time and audio-level header
    extensions where Janus offers them), in Janus's payload types and ids.
    """
    _, fingerprint = _context()
    description = SessionDescription.parse(offer)
    mids = [m.rtp.muxId for m in description.media]
    lines = ["v=0", f"o=- {secrets.randbits(62)} 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
             f"a=group:BUNDLE {' '.join(mids)}", "a=msid-semantic:WMS *"]
    candidates = [f"a=candidate:{c.to_sdp()}" for c in viewer.ice.local_candidates]
    transport = [*candidates, "a=end-of-candidates", f"a=ice-ufrag:{viewer.ice.local_username}",
                 f"a=ice-pwd:{viewer.ice.local_password}",
                 f"a=fingerprint:sha-256 {fingerprint}", "a=setup:active"]
    wanted = {"urn:ietf:params:rtp-hdrext:sdes:mid",
              "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
              "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}
    for media in description.media:
        wanted_codec = "vp8" if media.kind == "video" else "opus"
        codec = next(c for c in media.rtp.codecs if c.name.lower() == wanted_codec)
        chosen = [codec]
        rtx = [c for c in media.rtp.codecs if c.name.lower() == "rtx"
               and c.parameters.get("apt") == codec.payloadType]
        chosen += rtx[:1]
        lines += [f"m={media.kind} 9 UDP/TLS/RTP/SAVPF "
                  + " ".join(str(c.payloadType) for c in chosen),
                  "c=IN IP4 0.0.0.0", "a=recvonly", f"a=mid:{media.rtp.muxId}",
                  "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux"]
        lines += [f"a=extmap:{e.id} {e.uri}" for e in media.rtp.headerExtensions
                  if e.uri in wanted]
        for c in chosen:
            channels = f"/{c.channels}" if c.channels else ""
            lines.append(f"a=rtpmap:{c.payloadType} {c.name}/{c.clockRate}{channels}")
            if c.name.lower() == "rtx":
                lines.append(f"a=fmtp:{c.payloadType} apt={codec.payloadType}")
        if media.kind == "video":
            lines += [f"a=rtcp-fb:{codec.payloadType} {fb}"
                      for fb in ("nack", "nack pli", "goog-remb")]
        lines += transport
    return "\r\n".join(lines) + "\r\n"


class JanusSubscription:
    """How a raw viewer joins a Janus VideoRoom: ``url`` is Janus's API base,
    ``token`` is ``"<room>:<feed>"``."""

    ice: Any
    janus: JanusHandle | None = None

    async def connect(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        room, feed = (int(part) for part in token.split(":"))
        self.janus = janus = JanusHandle(http, url)
        await janus.attach()
        _, offer = await janus.request({"request": "join", "ptype": "subscriber", "room": room,
                                        "streams": [{"feed": feed}]})
        if offer is None:
            raise JanusError("join: no JSEP offer")
        await self.ice.gather_candidates()
        await janus.request({"request": "start"},
                            {"type": "answer", "sdp": answer_sdp(offer["sdp"], self)})  # type: ignore[arg-type]
        await self._establish(offer["sdp"])  # type: ignore[attr-defined]


class JanusRawViewer(JanusSubscription, RawViewer):
    def __init__(self) -> None:
        RawViewer.__init__(self, controlling=False)


class JanusBrowserLikeViewer(JanusSubscription, BrowserLikeViewer):
    def __init__(self) -> None:
        BrowserLikeViewer.__init__(self, controlling=False)
