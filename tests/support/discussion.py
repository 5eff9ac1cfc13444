"""研讨 from the rooms' side: viewers of the program and the stage pair, and the
room-events WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from tests.support.media import close_peer, new_pc, post_offer, read_barcode
from tests.support.service import Service
from web.sockets.events import PROTOCOL

API = "/api/v1"
A_START, B_START = 10000, 20000  # barcode ranges of room A's and room B's uplinks


async def until_live(*publishers: Any, timeout: float = 5.0) -> None:
    """Wait until each relay-side publisher sent its first keyframe (it takes
    its slot only then)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(p.live for p in publishers):
        assert asyncio.get_running_loop().time() < deadline, f"not live: {publishers}"
        await asyncio.sleep(0.05)


def source_of(index: int) -> str:
    if index >= B_START:
        return "B"
    if index >= A_START:
        return "A"
    return "program"


@dataclass
class PairViewer:
    """A viewer that offers program and stage (audio + video each) and reads the
    barcodes of both video tracks apart."""

    pc: RTCPeerConnection
    program: list[int] = field(default_factory=list)
    stage: list[tuple[float, int]] = field(default_factory=list)  # (arrival, index)
    offers: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def stage_since(self, since: float) -> list[str]:
        return [source_of(index) for at, index in self.stage if at >= since]

    async def close(self) -> None:
        await close_peer(self.pc, self.tasks)


async def view_slots(
    service: Service, session_id: str, token: str, order: Sequence[str],
    consume: Callable[[MediaStreamTrack, str | None], Awaitable[None]],
    pc: RTCPeerConnection | None = None,
) -> tuple[RTCPeerConnection, list[asyncio.Task[None]]]:
    """A WHEP viewer whose offer has the sections of ``order`` (the first
    video and audio are the program, the second the stage); each track is
    read by ``consume(track, slot)``, slot "program" or "stage" by its rank
    among the sections of its kind."""
    pc = pc or new_pc()
    for kind in order:
        pc.addTransceiver(kind, direction="recvonly")
    tasks: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        same_kind = [t for t in pc.getTransceivers() if t.kind == track.kind]
        index = next(i for i, t in enumerate(same_kind) if t.receiver.track is track)
        slot = ("program", "stage")[index] if index < 2 else None
        tasks.append(asyncio.ensure_future(consume(track, slot)))

    status, answer, _ = await post_offer(service.http, f"{service.base}/whep/{session_id}",
                                         token, pc)
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc, tasks


async def start_pair_viewer(service: Service, session_id: str, token: str) -> PairViewer:
    pc = new_pc()
    viewer = PairViewer(pc)
    create_offer = pc.createOffer

    async def counting_offer() -> RTCSessionDescription:
        viewer.offers += 1
        return await create_offer()

    pc.createOffer = counting_offer  # type: ignore[method-assign]

    async def consume(track: MediaStreamTrack, slot: str | None) -> None:
        while True:
            frame = await track.recv()
            if track.kind != "video":
                continue
            if slot == "program":
                viewer.program.append(read_barcode(frame))  # type: ignore[arg-type]
            elif slot == "stage":
                viewer.stage.append((time.monotonic(), read_barcode(frame)))  # type: ignore[arg-type]

    _, viewer.tasks = await view_slots(service, session_id, token,
                                       ("video", "audio", "video", "audio"), consume, pc)
    return viewer


class Events:
    """One connection to the room-events WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, state: dict[str, Any]) -> None:
        self.ws = ws
        self.state = state
        self.events: list[dict[str, Any]] = []
        self._count = 0

    async def _next(self, timeout: float = 5) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data,
                                                        message.extra)
        data: dict[str, Any] = json.loads(message.data)
        if data["type"] in ("state", "event"):
            self.state = data["state"]
            self.events.append(data)
        return data

    async def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a message; its ack or error (events before it update ``state``)."""
        self._count += 1
        ref = f"m{self._count}"
        await self.ws.send_json({"type": kind, "id": ref, **fields})
        return await self.reply(ref)

    async def raw(self, text: str) -> dict[str, Any]:
        await self.ws.send_str(text)
        return await self.reply(None)

    async def reply(self, ref: str | None) -> dict[str, Any]:
        while True:
            data = await self._next()
            if data["type"] in ("ack", "error") and data["ref"] == ref:
                return data

    async def settle(self, quiet: float = 0.3) -> None:
        """Take the events that are on their way."""
        with contextlib.suppress(TimeoutError):
            while True:
                await self._next(timeout=quiet)

    async def wait_for(self, what: str, check: Callable[[dict[str, Any]], bool],
                       timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.state):
            left = deadline - time.monotonic()
            assert left > 0, f"{what}: {self.state}"
            with contextlib.suppress(TimeoutError):
                await self._next(timeout=left)

    async def close(self) -> None:
        await self.ws.close()


def ws_url(service: Service, session_id: str) -> str:
    return f"{service.base}{API}/sessions/{session_id}/events/ws"


async def connect(service: Service, session_id: str, token: str | None,
                  **kwargs: Any) -> Events:
    protocols = [PROTOCOL] + ([f"bearer.{token}"] if token else [])
    ws = await service.http.ws_connect(ws_url(service, session_id), protocols=protocols,
                                       **kwargs)
    assert ws.protocol == PROTOCOL  # never the token
    first = json.loads((await ws.receive(timeout=5)).data)
    assert first["type"] == "state"
    return Events(ws, first["state"])
