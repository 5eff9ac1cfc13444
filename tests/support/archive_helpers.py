"""Archive items for tests: record a real one from an aiortc publisher, hand out
library links, and a client that holds a reader's cookie."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.support.discussion import A_START, Events, connect
from tests.support.media import start_publisher
from tests.support.service import Service, invite
from web.keys import ARCHIVE, SESSIONS

LECTURER_HZ, ROOM_HZ = 440.0, 1500.0  # the tones of the lecturer and of room A
ROOM_NAME = "新碶街道分课堂"


async def record_item(service: Service, seconds: float, codec: str = "H264",
                      title: str = "第一讲") -> dict[str, Any]:
    """Record a live session for ``seconds`` and wait until the item is ready."""
    session = await service.create_session(title=title, video_codec=codec)
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    try:
        status, item = await api(service, "POST", f"/api/v1/sessions/{session['id']}/recording")
        assert status == 201, item
        await asyncio.sleep(seconds)
        status, stopped = await api(service, "DELETE",
                                    f"/api/v1/sessions/{session['id']}/recording")
        assert status == 200, stopped
    finally:
        await publisher.close()
    ready = await wait_state(service, item["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready
    return ready


async def record_discussion(service: Service, codec: str = "H264", *, before: float = 2.0,
                            turn: float = 3.0, after: float = 2.0,
                            ) -> tuple[dict[str, Any], float, float]:
    """Record a session where room A (tone ``ROOM_HZ``, barcodes from
    ``A_START``) is on stage for ``turn`` seconds, ``before`` seconds into the
    recording; the ready item, and when A went on and off stage (seconds on the
    recording's clock)."""
    session = await service.create_session(video_codec=codec)
    sid = session["id"]
    room_a = await invite(service, session, ROOM_NAME)
    room = service.app[SESSIONS].get(sid).broadcast
    assert room.video_codec == codec
    w, h = 256, 96
    program = await start_publisher(service.http, service.base, sid, session["publish_token"],
                                    width=w, height=h, tone=LECTURER_HZ)
    uplink = await start_publisher(service.http, service.base, sid, room_a["token"],
                                   start=A_START, width=w, height=h, tone=ROOM_HZ)
    presenter: Events | None = None
    try:
        presenter = await connect(service, sid, session["publish_token"])
        await presenter.wait_for("A's uplink connected", lambda st: [
            u["connected"] for u in st["uplinks"]] == [True])
        status, item = await api(service, "POST", f"/api/v1/sessions/{sid}/recording")
        assert status == 201, item
        recorder = service.app[ARCHIVE].recordings.active[item["id"]]
        deadline = time.monotonic() + 10
        while recorder.started_at is None:
            assert time.monotonic() < deadline, "the recording did not start"
            await asyncio.sleep(0.05)
        await asyncio.sleep(before)
        on_stage_at = time.monotonic() - recorder.started_at
        assert (await presenter.call("stage", invitation_id=room_a["id"]))["type"] == "ack"
        await asyncio.sleep(turn)
        assert (await presenter.call("stage", invitation_id=None))["type"] == "ack"
        off_stage_at = time.monotonic() - recorder.started_at
        await asyncio.sleep(after)
        status, stopped = await api(service, "DELETE", f"/api/v1/sessions/{sid}/recording")
        assert status == 200, stopped
    finally:
        if presenter is not None:
            await presenter.close()
        await uplink.close()
        await program.close()
    ready = await wait_state(service, item["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready
    return ready, on_stage_at, off_stage_at


async def create_link(service: Service, label: str = "北仑区学员",
                      expires_at: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"label": label}
    if expires_at is not None:
        body["expires_at"] = expires_at
    status, link = await api(service, "POST", "/api/v1/library-links", json=body)
    assert status == 201, link
    return link


@contextlib.asynccontextmanager
async def reader(service: Service, link: dict[str, Any] | None = None
                 ) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of its own (no admin token); with ``link``, it has opened it."""
    # unsafe=True: the test server is 127.0.0.1, and aiohttp keeps no cookies
    # of bare IP addresses otherwise.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        if link is not None:
            async with http.get(f"{service.base}/library/k/{link['token']}") as response:
                assert response.status == 200, await response.text()
                assert response.url.path == "/library", response.url
        yield http


async def api(service: Service, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with service.http.request(method, f"{service.base}{path}", headers=service.admin,
                                    **kwargs) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def wait_state(service: Service, item_id: str, states: tuple[str, ...],
                     timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, item = await api(service, "GET", f"/api/v1/archive/{item_id}")
        assert status == 200, item
        if item["state"] in states:
            return item
        assert time.monotonic() < deadline, item
        await asyncio.sleep(0.2)
