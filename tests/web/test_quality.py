"""Per-room quality: a room whose link loses packets is moved to sound only
and back once it recovers, while a healthy room keeps the picture; a room may
choose sound only itself. Real aiortc viewers; the loss is made in the
viewer's receive path (before SRTP), so the viewer's own receiver reports
carry it, as over a lossy downlink."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from tests.support import media
from tests.support.media import start_publisher, start_viewer
from tests.support.service import Service, call_json, invite
from web.keys import SESSIONS

pytestmark = pytest.mark.webrtc


class Loss:
    """Drops ``rate`` of the RTP packets a peer receives; the rate may change."""

    def __init__(self, pc: RTCPeerConnection, rate: float) -> None:
        self.rate = rate
        rng = random.Random(11)
        transport = pc.getTransceivers()[0].receiver.transport
        original = transport._handle_rtp_data

        async def lossy(data: bytes, arrival_time_ms: int) -> None:
            if rng.random() < self.rate:
                return
            await original(data, arrival_time_ms)

        transport._handle_rtp_data = lossy


async def quality(service: Service, token: str, viewer: media.TestViewer) -> dict[str, Any]:
    resource = viewer.location.rsplit("/", 1)[-1]
    status, body = await call_json(service, "GET", f"/api/v1/room/quality?resource={resource}",
                                   token=token)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def until(what: str, check: Callable[[], Any], timeout: float) -> float:
    """Seconds until ``check()`` (a coroutine function) is true."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, what
        await asyncio.sleep(0.25)
    return time.monotonic() - start


async def test_a_lossy_room_steps_down_to_sound_only_and_back_up_when_it_recovers(
    service: Service
) -> None:
    session = await service.create_session(video_codec="VP8")
    weak = await invite(service, session, "某村会议室", "奉化区 / 溪口镇 / 某村")
    healthy = await invite(service, session, "新碶街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    broadcast = service.app[SESSIONS].get(session["id"]).broadcast
    viewers = []
    try:
        for invitation in (weak, healthy):
            viewers.append(await start_viewer(service.http, service.base, session["id"],
                                              invitation["token"]))
        weak_viewer, healthy_viewer = viewers
        await asyncio.gather(*(v.wait_for_frames(30, timeout=15) for v in viewers))
        loss = Loss(weak_viewer.pc, 0.2)

        def weak_at(level: str) -> Callable[[], Any]:
            async def check() -> bool:
                state = await quality(service, weak["token"], weak_viewer)
                return state["level"] == level  # type: ignore[no-any-return]
            return check

        took = await until("the lossy room moves to the lower rendition", weak_at("low"), 15)
        assert took < 10, took
        # The lower rendition runs (made for this room) and the room still gets pictures.
        assert broadcast.transcoder is not None
        frames = len(weak_viewer.indices)
        await until("pictures of the lower rendition arrive",
                    lambda: _true(len(weak_viewer.indices) > frames + 10), 10)
        assert broadcast.transcoder.frames_out > 0
        # Still lossy: one more step, to sound only; sound goes on, pictures stop.
        await until("the room moves on to sound only", weak_at("audio"), 15)
        frames, sound = len(weak_viewer.indices), weak_viewer.audio_frames
        await asyncio.sleep(3)
        assert weak_viewer.audio_frames > sound + 10, (sound, weak_viewer.audio_frames)
        assert len(weak_viewer.indices) - frames <= 3  # what was in flight
        # The healthy room kept the full picture all along.
        assert (await quality(service, healthy["token"], healthy_viewer))["level"] == "full"
        healthy_frames = len(healthy_viewer.indices)
        await asyncio.sleep(1)
        assert len(healthy_viewer.indices) > healthy_frames + 15

        loss.rate = 0.0
        took = await until("the recovered room steps up to the lower rendition",
                           weak_at("low"), 20)
        assert 8 <= took <= 15, took  # 10 good seconds, no sooner
        took = await until("and then to the full picture", weak_at("full"), 20)
        assert 8 <= took <= 15, took
        frames = len(weak_viewer.indices)
        # The relay sends the full pictures at once (from a keyframe)...
        relay_side = broadcast.viewers[weak_viewer.location.rsplit("/", 1)[-1]]
        [video] = [o.track for o in relay_side.outgoing if o.kind == "video"
                   and o.slot_name == "program"]
        sent = video.frames_delivered
        await until("the relay sends pictures again",
                    lambda: _true(video.frames_delivered > sent + 20), 8)
        assert video.slot_track.slot is broadcast.program
        # ... and the viewer decodes them; aiortc's jitter buffer may first have
        # to give up on a packet lost before the pause (128 packets later).
        await until("pictures again", lambda: _true(len(weak_viewer.indices) > frames + 20), 20)
        # Nobody needs the lower rendition any more: it stops.
        await until("the lower rendition stops", lambda: _true(broadcast.transcoder is None), 15)
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_room_may_choose_sound_only(service: Service) -> None:
    session = await service.create_session(video_codec="VP8")
    room = await invite(service, session, "大碶街道分课堂")
    other = await invite(service, session, "霞浦街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewer = await start_viewer(service.http, service.base, session["id"], room["token"])
    try:
        await viewer.wait_for_frames(30, timeout=15)
        resource = viewer.location.rsplit("/", 1)[-1]
        status, body = await call_json(service, "POST", "/api/v1/room/quality",
                                       {"resource": resource, "audio_only": True}, room["token"])
        assert status == 200 and body == {"level": "audio", "link": "full", "audio_only": True}
        # The room's poll says the same with its resource (the page's one request).
        status, polled = await call_json(service, "GET", f"/api/v1/room?resource={resource}",
                                         token=room["token"])
        assert status == 200 and polled["quality"] == body, polled
        status, polled = await call_json(service, "GET", f"/api/v1/room?resource={resource}",
                                         token=other["token"])
        assert status == 200 and polled["quality"] is None  # another room's viewer
        await asyncio.sleep(0.5)
        frames, sound = len(viewer.indices), viewer.audio_frames
        await asyncio.sleep(2)
        assert len(viewer.indices) == frames and viewer.audio_frames > sound + 20
        status, body = await call_json(service, "POST", "/api/v1/room/quality",
                                       {"resource": resource, "audio_only": False}, room["token"])
        assert status == 200 and body["level"] == "full"
        # From the keyframe asked for at once (a loaded machine may take a while).
        await until("pictures again", lambda: _true(len(viewer.indices) > frames + 20), 8)
        # Another room's token, a made-up resource, a bad body: refused, nothing changed.
        for token, payload, expected in (
                (other["token"], {"resource": resource, "audio_only": True}, 404),
                (room["token"], {"resource": "nope", "audio_only": True}, 404),
                (room["token"], {"resource": resource, "audio_only": "yes"}, 422),
                (session["view_token"], {"resource": resource, "audio_only": True}, 403),
                (None, {"resource": resource, "audio_only": True}, 401)):
            status, body = await call_json(service, "POST", "/api/v1/room/quality", payload,
                                           token)
            assert status == expected, (payload, body)
        assert (await quality(service, room["token"], viewer))["level"] == "full"
    finally:
        await viewer.close()
        await publisher.close()
