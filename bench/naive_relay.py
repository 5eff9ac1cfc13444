"""The baseline: the stock aiortc relay pattern behind the same WHIP/WHEP endpoints.

aiortc decodes every received track once; ``MediaRelay`` hands the decoded
frames to every viewer's sender (``relay.subscribe(track)`` per viewer, the
default buffered proxies), and each sender encodes them with its own default
encoder. Nothing is tuned except ICE, which must stay on loopback: no STUN
server and 127.0.0.1 as the only host candidate.

Run as ``python -m bench.naive_relay --port P``. ``POST /whip/{id}`` takes the
publisher, ``POST /whep/{id}`` a viewer (any id, any bearer token: one room).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from streaming.aiortc_glue import configure_ice

LOOPBACK = "127.0.0.1"
SDP = "application/sdp"

logger = logging.getLogger("naive_relay")


class NaiveRelay:
    """One room: the latest publisher's tracks, relayed to every viewer."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.pcs: set[RTCPeerConnection] = set()
        self._drains: set[asyncio.Task[None]] = set()

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)

        async def state_changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.pcs.discard(pc)
                await pc.close()

        pc.on("connectionstatechange", state_changed)
        return pc

    async def _drain(self, track: MediaStreamTrack) -> None:
        # One always-present subscriber keeps the relay reading the decoded
        # track: without it aiortc queues every decoded frame while nobody
        # watches (a recorder or a preview plays this part in practice).
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def publish(self, offer: str) -> str:
        pc = self._new_pc()

        def on_track(track: MediaStreamTrack) -> None:
            self.tracks[track.kind] = track
            task = asyncio.ensure_future(self._drain(self.relay.subscribe(track)))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)

        pc.on("track", on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def view(self, offer: str) -> str:
        pc = self._new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in pc.getTransceivers():
            track = self.tracks.get(transceiver.kind)
            if track is None:
                continue
            pc.addTrack(self.relay.subscribe(track))
            if transceiver.kind == "video":
                codecs = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences(
                    [c for c in codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")])
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def close(self) -> None:
        for task in list(self._drains):
            task.cancel()
        await asyncio.gather(*(pc.close() for pc in list(self.pcs)), return_exceptions=True)
        self.pcs.clear()


RELAY = web.AppKey("relay", NaiveRelay)


async def whip(request: web.Request) -> web.Response:
    answer = await request.app[RELAY].publish(await request.text())
    return _created(request, answer)


async def whep(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    if "video" not in relay.tracks:
        raise web.HTTPConflict(text="nobody is publishing yet")
    return _created(request, await relay.view(await request.text()))


def _created(request: web.Request, answer: str) -> web.Response:
    location = f"{request.path}/{secrets.token_urlsafe(8)}"
    return web.Response(status=201, text=answer, content_type=SDP,
                        headers={"Location": location})


async def healthz(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    return web.json_response({"ok": True, "peers": len(relay.pcs),
                              "publishing": sorted(relay.tracks)})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    configure_ice([LOOPBACK])
    yield
    await app[RELAY].close()


def create_app() -> web.Application:
    app = web.Application()
    app[RELAY] = NaiveRelay()
    app.add_routes([
        web.post("/whip/{session_id}", whip),
        web.post("/whep/{session_id}", whep),
        web.get("/healthz", healthz),
    ])
    app.cleanup_ctx.append(_lifecycle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(create_app(), host=LOOPBACK, port=args.port, print=None)


if __name__ == "__main__":
    main()
