"""The presenter page (主课堂) and the presence API it polls.

HTTP: the page is served for a known session only; presence wants the session's
publish token or the admin token and joins the invitations with the room's
viewers. Browser: the page publishes Chromium's fake camera, an aiortc viewer
decodes it, and the page lists the invited site as connected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, Chromium
from tests.support.media import start_publisher, start_viewer
from tests.support.pages import invite, request
from tests.support.service import ADMIN_TOKEN, Service

API = "/api/v1"


async def presence(service: Service, session_id: str,
                   token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    status, body, _ = await request(service, "GET", f"{API}/sessions/{session_id}/presence",
                                    token)
    return status, body


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------
# the page


async def test_the_presenter_page_is_served_for_a_session(service: Service) -> None:
    session = await service.create_session()
    assert session["presenter_url"] == (
        f"{service.base}/present/{session['id']}#token={session['publish_token']}")
    async with service.http.get(f"{service.base}/present/{session['id']}") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "/static/presenter.js" in page and "开始直播" in page
    # The token is never in the page or its request: it stays in the fragment.
    assert session["publish_token"] not in page
    async with service.http.get(f"{service.base}/static/presenter.js") as response:
        assert response.status == 200


async def test_an_unknown_session_has_no_presenter_page(service: Service) -> None:
    async with service.http.get(f"{service.base}/present/no-such-session") as response:
        assert response.status == 404
        assert response.content_type == "text/html"
        assert "没有这个场次" in await response.text()
    async with service.http.get(f"{service.base}/present/no-such-session?lang=en") as response:
        assert response.status == 404
        assert "No such session" in await response.text()


# --------------------------------------------------------------------------
# presence


async def test_presence_lists_the_invited_sites(service: Service) -> None:
    session = await service.create_session()
    first = await invite(service, session["id"])
    second = await invite(service, session["id"], "大碶街道分课堂", "北仑区 / 大碶街道")
    status, body = await presence(service, session["id"], session["publish_token"])
    assert status == 200, body
    assert body["state"] == "scheduled"
    assert body["publisher_connected"] is False
    assert body["viewer_count"] == 0
    sites = {site["invitation_id"]: site for site in body["sites"]}
    assert sites.keys() == {first["id"], second["id"]}
    assert sites[first["id"]] == {"invitation_id": first["id"], "site_name": "新碶街道分课堂",
                                  "org_path": "北仑区 / 新碶街道", "connected": False,
                                  "connected_viewers": 0, "headcount": None}
    # A revoked link is no longer invited.
    status, _, text = await request(service, "DELETE", f"{API}/invitations/{second['id']}")
    assert status == 204, text
    status, body = await presence(service, session["id"])
    assert status == 200
    assert [site["invitation_id"] for site in body["sites"]] == [first["id"]]


async def test_presence_wants_the_publish_or_admin_token(service: Service) -> None:
    session = await service.create_session()
    other = await service.create_session("第二讲")
    invitation = await invite(service, session["id"])
    for token in (session["publish_token"], ADMIN_TOKEN):
        status, body = await presence(service, session["id"], token)
        assert status == 200, body
    for token in (session["view_token"], other["publish_token"], invitation["token"]):
        status, body = await presence(service, session["id"], token)
        assert status == 403, (token, body)
        assert body["error"]
    for token in (None, "wrong-token"):
        status, body = await presence(service, session["id"], token)
        assert status == 401, body
    status, body = await presence(service, "no-such-session")
    assert status == 404, body


@pytest.mark.webrtc
async def test_a_site_viewing_with_its_invitation_is_connected(service: Service) -> None:
    session = await service.create_session()
    invitation = await invite(service, session["id"])
    other = await invite(service, session["id"], "大碶街道分课堂", "北仑区 / 大碶街道")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewers = []
    try:
        viewers.append(await start_viewer(service.http, service.base, session["id"],
                                          invitation["token"]))
        viewers.append(await start_viewer(service.http, service.base, session["id"],
                                          session["view_token"]))
        for viewer in viewers:
            await viewer.wait_for_frames(10, timeout=15)

        async def everyone_in() -> bool:
            status, body = await presence(service, session["id"], session["publish_token"])
            assert status == 200, body
            return bool(body["publisher_connected"] and body["viewer_count"] == 2)

        await wait_until(everyone_in, 10, "publisher and two viewers connected")
        _, body = await presence(service, session["id"], session["publish_token"])
        assert body["state"] == "live"
        sites = {site["invitation_id"]: site for site in body["sites"]}
        assert sites[invitation["id"]]["connected"] is True
        assert sites[invitation["id"]]["connected_viewers"] == 1
        # The plain view token counts as a viewer, for no site.
        assert sites[other["id"]]["connected"] is False
        assert sites[other["id"]]["connected_viewers"] == 0
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


# --------------------------------------------------------------------------
# the page in Chromium

CONNECT_TIMEOUT = 20.0


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_presenter_page_broadcasts_and_sees_the_site(
    service: Service, chromium: Chromium
) -> None:
    session = await service.create_session()
    invitation = await invite(service, session["id"])
    await invite(service, session["id"], "大碶街道分课堂", "北仑区 / 大碶街道")
    page = await chromium.open(session["presenter_url"], "presenter")
    await chromium.wait_for_js(page, "the page is in Chinese with the start button ready",
                               "() => document.querySelector('#start').textContent === '开始直播'"
                               " && !document.querySelector('#start').disabled", CONNECT_TIMEOUT)
    await chromium.wait_for_js(page, "the camera preview plays",
                               "() => document.querySelector('#preview').videoWidth > 0",
                               CONNECT_TIMEOUT)
    await page.page.click("#start")
    await chromium.wait_for_js(page, "publishing connected",
                               "() => window.zhixing.pc?.connectionState === 'connected'"
                               " && window.zhixing.state === 'live'", CONNECT_TIMEOUT)

    viewer = await start_viewer(service.http, service.base, session["id"], invitation["token"])
    try:
        async def frames() -> int:
            return len(viewer.indices)

        # The aiortc viewer decodes Chromium's fake camera (whatever its "barcode" reads).
        assert await chromium.wait_for("the aiortc viewer decodes frames", frames,
                                       lambda n: n > 10, CONNECT_TIMEOUT) > 10

        status_text = await chromium.wait_for_js(
            page, "the page lists the invited site as connected",
            "() => { const li = document.querySelector('#sites li[data-connected=\"true\"]');"
            " return li && li.querySelector('.name').textContent === '新碶街道分课堂'"
            " && document.querySelector('#site-count').textContent === '已连接 1 / 邀请 2'"
            " && document.querySelector('#status').textContent; }",
            CONNECT_TIMEOUT)
        assert status_text == "直播中"
        first = await page.evaluate(
            "() => document.querySelector('#sites li').dataset.invitation")
        assert first == invitation["id"], "connected sites come first"
        ARTIFACTS.mkdir(exist_ok=True)
        await page.page.screenshot(path=ARTIFACTS / "presenter-page-zh-CN.png", full_page=True)

        # English without a reload: the broadcast goes on.
        await page.page.click("#lang")
        await chromium.wait_for_js(
            page, "the page switched to English",
            "() => document.querySelector('#stop').textContent === 'End broadcast'"
            " && document.querySelector('#site-count').textContent"
            " === 'Connected 1 / invited 2'"
            " && document.querySelector('#status').textContent === 'Live'", CONNECT_TIMEOUT)
        assert await page.evaluate("() => window.zhixing.pc.connectionState") == "connected"
        await page.page.screenshot(path=ARTIFACTS / "presenter-page-en.png", full_page=True)

        await page.page.click("#stop")
        await chromium.wait_for_js(page, "the broadcast ended",
                                   "() => window.zhixing.state === 'stopped'", CONNECT_TIMEOUT)
    finally:
        await viewer.close()
        await page.evaluate("() => { document.cookie = 'zhixing_lang=; path=/; max-age=0'; }")
