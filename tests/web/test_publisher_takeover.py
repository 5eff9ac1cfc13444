"""A second publisher with the session's token: it takes the program over once
live, and an automatic reconnection of the replaced one does not take it back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.media import WhipRefused, start_publisher, start_viewer
from tests.support.service import Service
from web.keys import SESSIONS

pytestmark = pytest.mark.webrtc


def _broadcast(service: Service, session_id: str) -> Any:
    return service.app[SESSIONS].get(session_id).broadcast


async def _until(what: str, check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_replacement_takes_over_once_it_sends_a_keyframe(service: Service) -> None:
    session = await service.create_session(video_codec="VP8")
    first = await start_publisher(service.http, service.base, session["id"],
                                  session["publish_token"])
    viewer = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    second = None
    try:
        await viewer.wait_for_frames(30, timeout=10)
        broadcast = _broadcast(service, session["id"])
        second = await start_publisher(service.http, service.base, session["id"],
                                       session["publish_token"], start=10_000)
        # Answered, not yet live: the first stays the program's source.
        assert broadcast.pending_publisher is not None
        assert broadcast.program.source is broadcast.publisher
        deadline = time.monotonic() + 5
        while not any(i >= 10_000 for i in viewer.indices):
            assert time.monotonic() < deadline, viewer.indices[-5:]
            await asyncio.sleep(0.05)
        assert broadcast.pending_publisher is None
        assert broadcast.publisher.resource_id == second.location.rsplit("/", 1)[-1]
        switch = next(n for n, i in enumerate(viewer.indices) if i >= 10_000)
        # The switch costs at most the wait for the newcomer's keyframe.
        assert viewer.arrivals[switch] - viewer.arrivals[switch - 1] < 0.5
        for _ in range(50):
            if first.pc.connectionState in ("closed", "failed"):
                break
            await asyncio.sleep(0.1)
        assert first.pc.connectionState in ("closed", "failed")
    finally:
        await viewer.close()
        if second is not None:
            await second.close()
        await first.close()


async def test_a_reconnection_of_the_replaced_publisher_does_not_take_the_program_back(
    service: Service
) -> None:
    session = await service.create_session(video_codec="VP8")
    sid, token = session["id"], session["publish_token"]
    broadcast = _broadcast(service, sid)
    first = await start_publisher(service.http, service.base, sid, token)
    peers = [first]
    try:
        await _until("the first is live", lambda: broadcast.publisher is not None
                     and broadcast.publisher.live)
        first_id = broadcast.publisher.resource_id
        second = await start_publisher(service.http, service.base, sid, token, start=10_000)
        peers.append(second)
        await _until("the second takes over", lambda: broadcast.pending_publisher is None
                     and broadcast.publisher.resource_id != first_id)
        second_id = broadcast.publisher.resource_id
        await _until("the first is dropped", lambda: first.pc.connectionState
                     in ("closed", "failed"))

        # The first PC's page reconnects by itself, naming its old resource: refused.
        with pytest.raises(WhipRefused) as refused:
            peers.append(await start_publisher(service.http, service.base, sid, token,
                                               resumes=first_id))
        assert refused.value.status == 409
        assert broadcast.publisher.resource_id == second_id
        assert broadcast.pending_publisher is None
        # A bad resumes value is a bad request, and changes nothing either.
        async with service.http.post(
                f"{service.base}/whip/{sid}?resumes={'x' * 65}", data="v=0\r\n",
                headers={"Content-Type": "application/sdp",
                         "Authorization": f"Bearer {token}"}) as response:
            assert response.status == 422, await response.text()
        # Reconnecting for the *current* resource, or a fresh publish, is accepted.
        third = await start_publisher(service.http, service.base, sid, token,
                                      resumes=second_id, start=20_000)
        peers.append(third)
        await _until("the third takes over", lambda: broadcast.publisher.resource_id
                     not in (first_id, second_id) and broadcast.publisher.live)
        # Once the one that replaced it is gone, the first may come back too.
        for peer in peers[1:]:
            await peer.close()
        await _until("nobody publishes", lambda: broadcast.publisher is None)
        back = await start_publisher(service.http, service.base, sid, token, resumes=first_id)
        peers.append(back)
        await _until("the first PC is back", lambda: broadcast.publisher is not None
                     and broadcast.publisher.live)
    finally:
        for peer in peers:
            await peer.close()
