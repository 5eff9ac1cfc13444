"""The room page (分课堂): /join/{token}, its JSON API, and the page in Chromium.

The link's token is the room's only credential: the page gets it in a data
attribute (never as visible text), and uses it as the bearer of
/api/v1/room, /api/v1/room/headcount and WHEP.
"""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, BrowserPage, Chromium
from tests.support.catalog import API, CJK, World, call, created, tampered
from tests.support.media import start_publisher
from tests.support.service import ADMIN_TOKEN, Service
from web.keys import SESSIONS

FRAMES_TIMEOUT = 30.0
MIN_FRAMES = 20


class _Page(HTMLParser):
    """The visible text of a page, and every attribute value."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.attributes: dict[str, list[str]] = {}
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attributes.setdefault(name, []).append(value or "")
        if tag in ("script", "style", "title"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "title"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def assert_page_headers(headers: Any) -> None:
    assert headers["Content-Type"].startswith("text/html"), headers
    assert headers["Cache-Control"] == "no-store", headers
    assert headers["Referrer-Policy"] == "no-referrer", headers


# --------------------------------------------------------------------------
# /join/{token}


async def test_the_room_page_holds_the_token_only_for_its_script(
    service: Service, world: World
) -> None:
    token = world.invitation["token"]
    reply = await call(service, "GET", f"/join/{token}", token=None, allow_redirects=False)
    assert reply.status == 200, reply.text
    assert_page_headers(reply.headers)
    page = parse(reply.text)
    visible = "".join(page.text)
    assert token not in visible
    assert page.attributes["data-token"] == [token]
    assert "<video" in reply.text
    # Everything the page needs comes from the app itself (no CDN).
    assert not re.search(r"(src|href)=\"(https?:)?//", reply.text), reply.text
    for asset in ("/static/room.js", "/static/room.css", "/static/i18n.js",
                  "/static/whip-client.js"):
        async with service.http.get(service.base + asset) as response:
            assert response.status == 200, asset


async def test_a_tampered_link_gets_a_403_page(service: Service, world: World) -> None:
    join = f"/join/{tampered(world.invitation['token'])}"
    reply = await call(service, "GET", join, token=None, allow_redirects=False)
    assert reply.status == 403, reply.text
    assert_page_headers(reply.headers)
    assert "此邀请链接无效" in reply.text and "请联系组织者获取新的链接" in reply.text
    english = await call(service, "GET", f"{join}?lang=en", token=None)
    assert english.status == 403
    assert "not valid" in english.text and "ask the organizers for a new link" in english.text
    assert 'lang="en"' in english.text


async def test_a_revoked_link_gets_a_410_page_in_either_language(
    service: Service, world: World
) -> None:
    token = world.invitation["token"]
    assert (await call(service, "DELETE", f"{API}/invitations/{world.invitation['id']}")
            ).status == 204
    reply = await call(service, "GET", f"/join/{token}", token=None)
    assert reply.status == 410, reply.text
    assert_page_headers(reply.headers)
    assert 'lang="zh-CN"' in reply.text
    assert "已被撤销" in reply.text and "请联系组织者获取新的链接" in reply.text
    visible = "".join(parse(reply.text).text)
    assert token not in visible

    english = await call(service, "GET", f"/join/{token}?lang=en", token=None)
    assert english.status == 410
    assert_page_headers(english.headers)
    text = "".join(parse(english.text).text)
    assert "revoked" in text and "ask the organizers for a new link" in text
    assert not CJK.search(text.replace("中文", "")), text  # only the language switch


# --------------------------------------------------------------------------
# /api/v1/room


async def room(service: Service, token: str | None) -> Any:
    return await call(service, "GET", f"{API}/room", token=token)


async def test_the_room_api_describes_the_room(service: Service, world: World) -> None:
    reply = await room(service, world.invitation["token"])
    assert reply.status == 200, reply.text
    body = reply.json()
    assert body == {
        "session_id": world.session["id"],
        "title": "第一讲",
        "course_title": "中国式现代化",
        "lecturer": "王教授",
        "site_name": "新碶街道分课堂",
        "org_path": world.site["org_path"],
        "state": "scheduled",
        "scheduled_start": world.session["scheduled_start"],
        "scheduled_end": world.session["scheduled_end"],
        "publisher_connected": False,
        "program_failed": False,
        "replay": False,
        "timeshift_available": False,
        "max_headcount": 500,
        "headcount": None,
        "quality": None,  # no ?resource= asked
    }


async def test_the_room_api_wants_the_rooms_own_token(service: Service, world: World) -> None:
    assert (await room(service, None)).status == 401
    assert (await room(service, tampered(world.invitation["token"]))).status == 401
    assert (await room(service, "garbage")).status == 401
    assert (await room(service, world.session["view_token"])).status == 403
    assert (await room(service, ADMIN_TOKEN)).status == 403
    await call(service, "DELETE", f"{API}/invitations/{world.invitation['id']}")
    assert (await room(service, world.invitation["token"])).status == 410


async def headcount(service: Service, token: str | None, body: Any,
                    content_type: str | None = None) -> int:
    reply = await call(service, "POST", f"{API}/room/headcount", body, token=token,
                       content_type=content_type)
    return reply.status


async def test_reporting_the_headcount(service: Service, world: World) -> None:
    token = world.invitation["token"]
    assert await headcount(service, token, {"count": 37}) == 204
    assert (await room(service, token)).json()["headcount"] == 37
    listed = (await call(service, "GET",
                         f"{API}/sessions/{world.session['id']}/invitations")).json()
    [invitation] = listed["invitations"]
    assert invitation["headcount"] == 37
    for count in (0, 500):
        assert await headcount(service, token, {"count": count}) == 204
    assert (await room(service, token)).json()["headcount"] == 500


@pytest.mark.parametrize("body", [
    {"count": -1}, {"count": 501}, {"count": 12.5}, {"count": "12"}, {"count": True},
    {"count": False}, {"count": None}, {}, {"count": [3]},
])
async def test_a_headcount_that_is_not_a_number_of_people_is_422(
    service: Service, world: World, body: dict[str, Any]
) -> None:
    token = world.invitation["token"]
    assert await headcount(service, token, body) == 422
    assert (await room(service, token)).json()["headcount"] is None


async def test_who_may_report_a_headcount(service: Service, world: World) -> None:
    token = world.invitation["token"]
    assert await headcount(service, None, {"count": 3}) == 401
    assert await headcount(service, tampered(token), {"count": 3}) == 401
    # The session's view token is a real token, but not a room's.
    assert await headcount(service, world.session["view_token"], {"count": 3}) == 403
    assert await headcount(service, world.session["publish_token"], {"count": 3}) == 403
    assert await headcount(service, token, "count=3", "application/x-www-form-urlencoded") \
        == 415
    assert await headcount(service, token, "{not json", "application/json") == 400
    assert (await room(service, token)).json()["headcount"] is None
    # Another room's report lands on that room only.
    other = created(await call(service, "POST",
                               f"{API}/sessions/{world.session['id']}/invitations",
                               {"site_id": world.other_site["id"]}))
    assert await headcount(service, other["token"], {"count": 9}) == 204
    assert (await room(service, token)).json()["headcount"] is None
    assert (await room(service, other["token"])).json()["headcount"] == 9
    await call(service, "DELETE", f"{API}/invitations/{other['id']}")
    assert await headcount(service, other["token"], {"count": 10}) == 410


# --------------------------------------------------------------------------
# the page in Chromium


async def visible(page: BrowserPage, element_id: str) -> bool:
    value: bool = await page.evaluate(
        "(id) => { const el = document.getElementById(id);"
        " return !!el && !el.hidden && el.offsetParent !== null; }", element_id)
    return value


async def text_of(page: BrowserPage, element_id: str) -> str:
    value: str = await page.evaluate(
        "(id) => document.getElementById(id)?.textContent ?? ''", element_id)
    return value


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_room_page_waits_then_shows_the_lecture(
    service: Service, chromium: Chromium, world: World
) -> None:
    url = world.invitation["url"]
    room_zh = await chromium.open(url, "room-zh")
    await chromium.wait_for_js(room_zh, "the waiting screen",
                               "() => !document.getElementById('waiting').hidden"
                               " && window.zhixing.pc?.connectionState === 'connected'", 20)
    assert await visible(room_zh, "waiting"), await chromium.report()
    assert "本场尚未开始" in await text_of(room_zh, "waiting")
    assert await text_of(room_zh, "site") == "新碶街道分课堂"
    frames = await room_zh.video_received()
    assert frames is not None and frames["framesDecoded"] == 0, frames
    ARTIFACTS.mkdir(exist_ok=True)
    await room_zh.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-waiting.png")

    publisher = await start_publisher(service.http, service.base, world.session["id"],
                                      world.session["publish_token"])
    try:
        await chromium.wait_for_frames(room_zh, MIN_FRAMES, FRAMES_TIMEOUT)
        await chromium.wait_for_js(room_zh, "the waiting screen gone",
                                   "() => document.getElementById('waiting').hidden", 15)
        assert await room_zh.evaluate("() => window.__zhixingPcs.length") == 1, \
            "the page reconnected instead of waiting\n" + await chromium.report()
        room_en = await chromium.open(f"{url}?lang=en", "room-en")
        await chromium.wait_for_frames(room_en, MIN_FRAMES, FRAMES_TIMEOUT)
        assert await text_of(room_en, "site") == "新碶街道分课堂"
        assert await text_of(room_en, "lang") == "中文"
        assert "Report" in await text_of(room_en, "headcount")
        assert await text_of(room_zh, "lang") == "English"
        await chromium.wait_for_js(room_en, "the quality indicator",
                                   "() => window.zhixing.quality !== null", 10)
        await asyncio.sleep(0.5)  # a settled picture for the screenshots
    finally:
        await publisher.close()


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_room_page_reconnects_by_itself(
    service: Service, chromium: Chromium, world: World
) -> None:
    publisher = await start_publisher(service.http, service.base, world.session["id"],
                                      world.session["publish_token"])
    try:
        page = await chromium.open(world.invitation["url"], "room-reconnect")
        await chromium.wait_for_frames(page, MIN_FRAMES, FRAMES_TIMEOUT)
        await page.evaluate("() => { window.__same = true; }")
        # The server drops the room's connection (as a broken link would).
        session = service.app[SESSIONS].get(world.session["id"])
        assert session is not None
        for viewer in list(session.broadcast.viewers.values()):
            await viewer.close()
        await chromium.wait_for_js(page, "a second connection, same document",
                                   "() => window.__same === true"
                                   " && window.__zhixingPcs.length >= 2"
                                   " && window.zhixing.pc === window.__zhixingPcs.at(-1)", 40)
        await chromium.wait_for_frames(page, MIN_FRAMES, FRAMES_TIMEOUT)
    finally:
        await publisher.close()


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_room_page_shows_the_end(
    service: Service, chromium: Chromium, world: World
) -> None:
    page = await chromium.open(world.invitation["url"], "room-ended")
    await chromium.wait_for_js(page, "connected while waiting",
                               "() => window.zhixing.pc?.connectionState === 'connected'", 20)
    assert (await call(service, "DELETE", f"{API}/sessions/{world.session['id']}")).status \
        in (200, 204)
    await chromium.wait_for_js(page, "the end screen",
                               "() => !document.getElementById('ended').hidden"
                               " && document.getElementById('waiting').hidden", 15)
    assert "本场已结束" in await text_of(page, "ended")
    count = await page.evaluate("() => window.__zhixingPcs.length")
    await asyncio.sleep(3)
    assert await page.evaluate("() => window.__zhixingPcs.length") == count, \
        "the page kept reconnecting to an ended session\n" + await chromium.report()
