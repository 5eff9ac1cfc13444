"""Archive items for tests: record a real one from an aiortc publisher, hand out
library links, and a client that holds a reader's cookie."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.conftest import Service
from tests.media import start_publisher
from tests.test_recording_functional import api, wait_state


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
