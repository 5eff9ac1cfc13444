"""A room's camera (its uplink for the discussion) comes back by itself: the
room page publishes again with backoff when the server refuses it or the
connection drops, says so in its indicator, and stops trying when the room
turns the camera off or the session ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from tests.support.browser import BrowserPage, Chromium
from tests.support.media import start_publisher
from tests.support.pages import invite
from tests.support.service import ADMIN_TOKEN, Service
from web.keys import SESSIONS

TIMEOUT = 30.0
ON = "() => document.getElementById('on-air').textContent === '摄像头已开启（未上台）'"


async def camera(page: BrowserPage) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate(
        "() => ({camera: window.zhixing.camera, retries: window.zhixing.cameraRetries,"
        " retryIn: window.zhixing.cameraRetryIn,"
        " shown: document.getElementById('on-air').hidden ? null"
        "        : document.getElementById('on-air').textContent})")
    return value


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_room_camera_comes_back_by_itself(
    service: Service, chromium: Chromium, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await service.create_session()
    room_a = await invite(service, session["id"], "新碶街道分课堂", "北仑区 / 新碶街道")
    live = service.app[SESSIONS].get(session["id"])
    assert live is not None
    room = live.broadcast
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"], width=256, height=96)

    # The server refuses the room's first two uplinks (as while it restarts),
    # and every one while ``refusing`` says so.
    publish_uplink = room.publish_uplink
    calls: list[float] = []
    refusing = [False]

    async def flaky(invitation_id: str, offer: str) -> tuple[str, str]:
        calls.append(time.monotonic())
        if len(calls) <= 2 or refusing[0]:
            raise web.HTTPServiceUnavailable(text="restarting")
        return await publish_uplink(invitation_id, offer)

    monkeypatch.setattr(room, "publish_uplink", flaky)

    async def uplink_state() -> str | None:
        peer = room.uplinks.get(room_a["id"])
        return None if peer is None else str(peer.connection_state)

    try:
        page = await chromium.open(room_a["url"], "room-a")
        await chromium.wait_for_js(page, "the program and the discussion",
                                   "() => window.zhixing.pc?.connectionState === 'connected'"
                                   " && window.zhixing.events === 'open'"
                                   " && !document.getElementById('discuss').hidden",
                                   TIMEOUT)

        # Refused twice: the page says when it tries again (1 s, then 2 s) …
        await page.page.click("#camera-start")
        shown = await chromium.wait_for(
            "the second retry announced", lambda: camera(page),
            lambda c: c["camera"] == "retrying" and c["retryIn"] == 2, TIMEOUT)
        assert shown["shown"] == "本会场画面未连通，2 秒后重试…"
        assert len(calls) == 2 and calls[1] - calls[0] >= 0.9
        # … and the third attempt goes through.
        await chromium.wait_for("room A's uplink connected on the server", uplink_state,
                                lambda state: state == "connected", TIMEOUT)
        await chromium.wait_for_js(page, "the camera-on indicator", ON, TIMEOUT)
        assert len(calls) == 3 and calls[2] - calls[1] >= 1.9
        assert (await camera(page))["retries"] == 2

        # The server drops the uplink: the page notices and publishes again.
        first = room.uplinks[room_a["id"]]
        await room.close_uplink(room_a["id"])
        await chromium.wait_for(
            "a new uplink of room A connected", lambda: _new_uplink(room, room_a["id"], first),
            bool, TIMEOUT)
        await chromium.wait_for_js(page, "the camera-on indicator again", ON, TIMEOUT)
        assert len(calls) == 4 and (await camera(page))["retries"] == 3

        # Turned off while retrying: no more attempts.
        refusing[0] = True
        await room.close_uplink(room_a["id"])
        await chromium.wait_for("retrying after a refusal", lambda: camera(page),
                                lambda c: c["camera"] == "retrying" and c["retryIn"] == 2,
                                TIMEOUT)
        await page.page.click("#camera-stop")
        stopped_at = len(calls)
        await asyncio.sleep(4)
        assert len(calls) == stopped_at
        assert (await camera(page))["camera"] == "off" and (await camera(page))["shown"] is None
        assert room_a["id"] not in room.uplinks

        # On again, refused, and the session ends: no more attempts either.
        await page.page.click("#camera-start")
        await chromium.wait_for("retrying again", lambda: camera(page),
                                lambda c: c["camera"] == "retrying", TIMEOUT)
        async with service.http.delete(f"{service.base}/api/v1/sessions/{session['id']}",
                                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            assert r.status == 204
        await chromium.wait_for_js(page, "the ended screen",
                                   "() => window.zhixing.state === 'ended'", TIMEOUT)
        ended = await camera(page)
        assert ended["camera"] == "off" and ended["shown"] is None
        await asyncio.sleep(3)
        assert (await camera(page))["retries"] == ended["retries"]
    finally:
        await publisher.close()


async def _new_uplink(room: Any, invitation_id: str, old: Any) -> bool:
    peer = room.uplinks.get(invitation_id)
    return peer is not None and peer is not old and peer.connection_state == "connected"
