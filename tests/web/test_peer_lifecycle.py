"""Peers that go away without saying so are closed and forgotten."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aioice.ice
import pytest
from aiohttp.test_utils import TestServer

from tests.support.media import new_pc, post_offer, start_publisher, start_viewer
from tests.support.service import ADMIN_TOKEN, Service
from web.app import create_app
from web.config import Config

pytestmark = pytest.mark.webrtc


@pytest.fixture
async def impatient_service(tmp_path: Path) -> AsyncIterator[Service]:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN, connect_timeout=1.5)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    await server.close()


async def _viewer_count(service: Service, session_id: str) -> int:
    count: int = (await service.session(session_id))["stats"]["viewer_count"]
    return count


async def test_a_viewer_that_never_connects_is_forgotten(
    impatient_service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    service = impatient_service
    caplog.set_level(logging.WARNING, logger="streaming")
    session = await service.create_session()
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    try:
        status, _, _ = await post_offer(service.http, f"{service.base}/whep/{session['id']}",
                                        session["view_token"], pc)
        assert status == 201
        # The client never applies the answer, so ICE never starts.
        assert await _viewer_count(service, session["id"]) == 1
        deadline = time.monotonic() + 5
        while await _viewer_count(service, session["id"]):
            assert time.monotonic() < deadline, "the unconnected viewer was never forgotten"
            await asyncio.sleep(0.1)
        # The operator's log says who and why: the ICE candidates that never answered.
        [line] = [r.getMessage() for r in caplog.records if "did not connect" in r.getMessage()]
        assert line.startswith("viewer ") and f"of broadcast {session['id']}" in line, line
        assert "ICE" in line and "no answer between our 127.0.0.1 and the peer's" in line, line
    finally:
        await pc.close()


async def test_a_viewer_that_vanishes_is_forgotten(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Consent freshness (RFC 7675) is what notices a silent peer: 6 missed
    # checks. Checking every 0.2 s instead of 5 s keeps the test short.
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    session = await service.create_session(video_codec="VP8")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewer = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    try:
        await viewer.wait_for_frames(10, timeout=10)
        assert await _viewer_count(service, session["id"]) == 1
        # The room PC loses its network: its sockets go silent, nothing is said.
        connection = viewer.pc.getTransceivers()[0].receiver.transport.transport._connection
        for protocol in connection._protocols:
            protocol.transport.close()
        deadline = time.monotonic() + 10
        while await _viewer_count(service, session["id"]):
            assert time.monotonic() < deadline, "the vanished viewer was never forgotten"
            await asyncio.sleep(0.2)
        # The publisher is unaffected.
        assert (await service.session(session["id"]))["stats"]["publisher_connected"]
    finally:
        await viewer.close()
        await publisher.close()


async def test_rooms_tell_listeners_when_viewers_connect_and_leave(service: Service) -> None:
    from streaming.peers import Viewer
    from web.keys import SESSIONS

    session = await service.create_session(video_codec="VP8")
    live = service.app[SESSIONS].get(session["id"])
    assert live is not None
    events: list[tuple[str, str | None]] = []

    def listener(viewer: Viewer, event: str) -> None:
        events.append((event, viewer.resource_id))

    live.broadcast.viewer_listeners.append(listener)
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewer = await start_viewer(service.http, service.base, session["id"],
                                session["view_token"])
    try:
        await viewer.wait_for_frames(5, timeout=10)
        assert [event for event, _ in events] == ["connected"]
        assert viewer.location is not None
        async with service.http.delete(
                service.base + viewer.location,
                headers={"Authorization": f"Bearer {session['view_token']}"}) as response:
            assert response.status == 200
    finally:
        await viewer.close()
        await publisher.close()
    resource = events[0][1]
    deadline = asyncio.get_running_loop().time() + 10
    while ("closed", resource) not in events:
        assert asyncio.get_running_loop().time() < deadline, events
        await asyncio.sleep(0.2)
    assert [event for event, _ in events] == ["connected", "closed"]
