"""The library (课程回放) and its player, for readers with a library link, and
the console's recording, archive and library-link sections.

HTTP: without a link or a login, /library is a 401 page (zh-CN, or English
with ?lang=en), never a listing; a link's cookie opens it; a revoked or
expired link shuts the pages and the media; readers list ready items only;
media answer Range requests. Chromium: a cadre opens the link, finds the
recording in the grid, plays it, seeks, changes speed and resumes after a
reload; an admin records a live session from the console and hands out a
library link. The ready items are recorded for real from an aiortc publisher.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Dialog, Response
from yarl import URL

from tests.support.archive_helpers import (
    ROOM_NAME,
    api,
    create_link,
    reader,
    record_discussion,
    record_item,
)
from tests.support.browser import ARTIFACTS, BrowserPage, Chromium
from tests.support.media import start_publisher
from tests.support.pages import log_in, open_console
from tests.support.service import Service
from web.keys import ARCHIVE, LIBRARY_LINKS

CJK = re.compile(r"[\u4e00-\u9fff]")
UI_TIMEOUT = 15.0
FINISH_TIMEOUT = 40.0


async def fetch(http: aiohttp.ClientSession, url: str | URL,
                headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    async with http.get(url, headers=headers, allow_redirects=False) as response:
        return response.status, response.headers, await response.read()


def assert_page_headers(headers: Any) -> None:
    assert headers["Content-Type"].startswith("text/html"), headers
    assert headers["Cache-Control"] == "no-store", headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], headers
    assert headers["X-Frame-Options"] == "DENY", headers


# --------------------------------------------------------------------------
# who may open the library


async def test_without_a_link_the_library_is_a_401_page(service: Service) -> None:
    async with reader(service) as http:
        status, headers, body = await fetch(http, f"{service.base}/library")
        assert status == 401
        assert_page_headers(headers)
        text = body.decode()
        assert 'lang="zh-CN"' in text
        assert "需要课程回放链接" in text and "回放链接打开本页" in text
        assert "/static/library.js" not in text  # a notice, not the listing
        assert '<a href="?lang=en"' in text

        status, headers, body = await fetch(http, f"{service.base}/library?lang=en")
        assert status == 401
        assert_page_headers(headers)
        english = body.decode()
        assert 'lang="en"' in english and "A library link is needed" in english
        visible = re.sub(r"<[^>]+>", "", english.split("<body", 1)[1])
        assert not CJK.search(visible.replace("中文", "")), visible  # only the switch

        # The language cookie the pages' switch sets works as well.
        http.cookie_jar.update_cookies({"zhixing_lang": "en"}, URL(service.base))
        status, _, body = await fetch(http, f"{service.base}/library")
        assert status == 401 and "A library link is needed" in body.decode()

        for path in ("/library/watch/0123456789abcdef", "/library/watch/nope"):
            status, headers, body = await fetch(http, service.base + path)
            assert status == 401, path
            assert_page_headers(headers)
        # Nor does a forged cookie or a session's token open anything.
        http.cookie_jar.update_cookies({"zhixing_library": "forged"}, URL(service.base))
        assert (await fetch(http, f"{service.base}/library"))[0] == 401
        session = await service.create_session()
        bearer = {"Authorization": f"Bearer {session['view_token']}"}
        assert (await fetch(http, f"{service.base}/library", bearer))[0] == 401
        assert (await fetch(http, f"{service.base}/api/v1/archive"))[0] == 401


async def test_a_library_link_opens_the_library(service: Service) -> None:
    link = await create_link(service)
    assert link["url"] == f"{service.base}/library/k/{link['token']}"
    async with reader(service) as http:
        async with http.get(link["url"], allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/library"
            cookie = response.cookies["zhixing_library"]
            assert cookie["httponly"] and cookie.value == link["token"]
        status, headers, body = await fetch(http, f"{service.base}/library")
        assert status == 200, body
        assert_page_headers(headers)
        text = body.decode()
        assert 'lang="zh-CN"' in text and "/static/library.js" in text
        assert not re.search(r"(src|href)=\"(https?:)?//", text), text  # nothing from outside
        status, _, body = await fetch(http, f"{service.base}/library?lang=en")
        assert status == 200 and 'lang="en"' in body.decode()
        for asset in ("library.js", "library.css", "watch.js", "library-shared.js", "i18n.js"):
            status, _, _ = await fetch(http, f"{service.base}/static/{asset}")
            assert status == 200, asset
        status, _, body = await fetch(http, f"{service.base}/api/v1/archive")
        assert status == 200 and body == b'{"items": []}'
        # A known-looking but unknown item: the player says so, with a 404.
        status, headers, body = await fetch(http,
                                            f"{service.base}/library/watch/0123456789abcdef")
        assert status == 404 and "找不到这个录像" in body.decode()
        assert_page_headers(headers)
    async with reader(service) as http:
        status, _, _ = await fetch(http, f"{service.base}/library/k/{link['token']}x")
        assert status == 401


async def test_a_logged_in_admin_may_open_the_library(admin_service: Service) -> None:
    assert (await fetch(admin_service.http, f"{admin_service.base}/library"))[0] == 401
    await log_in(admin_service)
    status, _, body = await fetch(admin_service.http, f"{admin_service.base}/library")
    assert status == 200 and "/static/library.js" in body.decode()


# --------------------------------------------------------------------------
# a real recording: listing, media, Range, revocation


@pytest.mark.webrtc
async def test_readers_see_ready_items_and_fetch_media_by_ranges(service: Service) -> None:
    item = await record_item(service, 6)
    archive = service.app[ARCHIVE]
    failed = archive.create_item(title="断电的一讲", recorded_at=time.time(), state="failed")
    recording = archive.create_item(title="还在录的一讲", recorded_at=time.time())
    media_file = archive.media_path(item["id"])
    size = media_file.stat().st_size
    assert size == item["size"]
    base = service.base

    status, listed = await api(service, "GET", "/api/v1/archive")
    assert status == 200
    assert {i["id"] for i in listed["items"]} == {item["id"], failed["id"], recording["id"]}

    async with reader(service, await create_link(service)) as http:
        async with http.get(f"{base}/api/v1/archive") as response:
            assert response.status == 200
            assert [i["id"] for i in (await response.json())["items"]] == [item["id"]]
        async with http.get(f"{base}/api/v1/archive?state=failed") as response:
            assert [i["id"] for i in (await response.json())["items"]] == [item["id"]]
        for other in (failed, recording):
            assert (await fetch(http, f"{base}/api/v1/archive/{other['id']}"))[0] == 404
            # Neither its media nor its player page is there for anyone.
            assert (await fetch(http, f"{base}/archive/{other['id']}/media"))[0] == 404
            assert (await fetch(http, f"{base}/archive/{other['id']}/media",
                                service.admin))[0] == 404
            status, _, body = await fetch(http, f"{base}/library/watch/{other['id']}")
            assert status == 404 and "找不到这个录像" in body.decode()

        status, headers, body = await fetch(http, f"{base}/library/watch/{item['id']}")
        assert status == 200
        assert_page_headers(headers)
        assert f'data-item-id="{item["id"]}"' in body.decode()

        media = f"{base}{item['media_url']}"
        status, headers, body = await fetch(http, media, {"Range": "bytes=0-99"})
        assert status == 206
        assert headers["Content-Range"] == f"bytes 0-99/{size}"
        assert body == media_file.read_bytes()[:100]
        assert headers["Content-Type"] == item["mime_type"] == "video/mp4"
        status, headers, body = await fetch(http, media, {"Range": f"bytes={size - 50}-"})
        assert (status, len(body)) == (206, 50)
        status, headers, _ = await fetch(http, media, {"Range": f"bytes={size + 10}-"})
        assert status == 416
        status, headers, body = await fetch(http, media)
        assert status == 200 and len(body) == size
        assert headers["Accept-Ranges"] == "bytes"
        status, headers, body = await fetch(http, f"{base}{item['poster_url']}")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert body.startswith(b"\xff\xd8")

        # Nothing but an item's own files, and never a directory listing.
        for path in ("/archive/../zhixing.sqlite3", "/archive/%2e%2e/media",
                     "/archive/%2E%2E%2F%2E%2E%2Fzhixing.sqlite3/media",
                     f"/archive/{item['id']}/../../zhixing.sqlite3",
                     f"/archive/{item['id']}/..%2F..%2Fzhixing.sqlite3",
                     f"/archive/{item['id']}/", f"/archive/{item['id']}", "/archive/",
                     f"/archive/{item['id']}/lecture.mp4",
                     "/archive/0123456789abcdef/media", "/archive/NOT-AN-ID/media",
                     f"/archive/{item['id'].upper()}/media", f"/archive/{item['id']}0/media",
                     "/archive/" + "a" * 300 + "/media",
                     "/library/watch/..%2F..%2Fzhixing.sqlite3", "/library/watch/NOT-AN-ID"):
            status, headers, body = await fetch(http, URL(base + path, encoded=True))
            assert status == 404, (path, status, body[:200])
            assert b"Index of" not in body and b"SQLite" not in body, path


@pytest.mark.webrtc
async def test_a_revoked_or_expired_link_stops_pages_and_media(service: Service) -> None:
    item = await record_item(service, 4)
    base = service.base
    urls = [f"{base}/library", f"{base}/library/watch/{item['id']}", f"{base}/api/v1/archive",
            f"{base}{item['media_url']}", f"{base}{item['poster_url']}"]
    revoked, expiring = await create_link(service, "第一批"), await create_link(service, "第二批")
    async with reader(service, revoked) as first, reader(service, expiring) as second:
        for http in (first, second):
            status, _, _ = await fetch(http, urls[3], {"Range": "bytes=0-99"})
            assert status == 206
        status, _ = await api(service, "DELETE", f"/api/v1/library-links/{revoked['id']}")
        assert status == 204
        # The link's expiry passes while the browser still holds its cookie.
        service.app[LIBRARY_LINKS].db.execute(
            "UPDATE library_links SET expires_at = ? WHERE id = ?",
            (time.time() - 1, expiring["id"]))
        for http in (first, second):
            for url in urls:
                status, _, body = await fetch(http, url, {"Range": "bytes=0-99"})
                assert status == 401, (url, status)
            status, _, body = await fetch(http, urls[0])
            assert "需要课程回放链接" in body.decode()
        for link in (revoked, expiring):
            assert (await fetch(first, link["url"]))[0] == 401
    status, links = await api(service, "GET", "/api/v1/library-links")
    assert {row["id"]: row["revoked_at"] is not None for row in links["links"]} == {
        revoked["id"]: True, expiring["id"]: False}


# --------------------------------------------------------------------------
# the library and the player in Chromium


async def js(page: BrowserPage, expression: str, arg: Any = None) -> Any:
    return await page.evaluate(expression, arg)


async def playback(page: BrowserPage) -> dict[str, Any]:
    value: dict[str, Any] = await js(page, """() => { const v = document.getElementById('video');
      return { t: v.currentTime, d: v.duration, paused: v.paused, ready: v.readyState,
               rate: v.playbackRate }; }""")
    return value


async def wait_playing_from(chromium: Chromium, page: BrowserPage, position: float,
                            timeout: float) -> float:
    """Until the video plays at or after ``position`` (it advanced): its time then."""
    value = await chromium.wait_for(
        f"{page.name}: playing from {position:.1f} s", lambda: playback(page),
        lambda v: not v["paused"] and v["ready"] >= 3 and v["t"] > position + 0.05, timeout)
    result: float = value["t"]
    return result


async def seek(page: BrowserPage, position: float) -> None:
    await js(page, "(t) => { document.getElementById('video').currentTime = t; }", position)


@pytest.mark.browser
@pytest.mark.webrtc
async def test_a_cadre_finds_plays_seeks_and_resumes_a_lecture(
    service: Service, chromium: Chromium
) -> None:
    # Long enough to resume inside it (resuming skips the last 10 s).
    item = await record_item(service, 16)
    status, unit = await api(service, "POST", "/api/v1/units", json={"name": "党的创新理论"})
    assert status == 201, unit
    status, course = await api(service, "POST", "/api/v1/courses",
                               json={"title": "新质生产力", "unit_id": unit["id"]})
    assert status == 201, course
    status, item = await api(service, "PATCH", f"/api/v1/archive/{item['id']}", json={
        "title": "第一讲：新质生产力", "lecturer": "王教授", "course_id": course["id"],
        "description": "第一批学员集中学习。"})
    assert status == 200, item
    duration = item["duration"]
    link = await create_link(service)

    grid = await chromium.open(link["url"], "library")
    await chromium.wait_for_js(grid, "the grid with the recording and its poster", """() =>
        location.pathname === '/library' && document.body.dataset.ready === 'true'
        && document.querySelectorAll('#grid .card').length === 1
        && document.querySelector('#grid .card img')?.complete
        && document.querySelector('#grid .card img').naturalWidth > 0""", UI_TIMEOUT)
    card = await js(grid, "() => document.querySelector('#grid .card').innerText")
    for text in ("第一讲：新质生产力", "王教授", "党的创新理论 · 新质生产力"):
        assert text in card, card
    assert re.search(r"\b0:1\d\b", card), card  # the duration on the poster
    options = await js(grid, "() => [...document.querySelectorAll('#unit option, #course option')]"
                             ".map((o) => o.textContent)")
    assert options == ["全部专题", "党的创新理论", "全部课程", "新质生产力"], options
    await grid.page.select_option("#unit", label="党的创新理论")
    await grid.page.fill("#q", "没有这一讲")
    await chromium.wait_for_js(grid, "no match for the search", """() =>
        document.querySelectorAll('#grid .card').length === 0
        && !document.getElementById('empty').hidden""", UI_TIMEOUT)
    assert "q=" in grid.page.url and f"unit={unit['id']}" in grid.page.url
    await grid.page.fill("#q", "王教授")
    await chromium.wait_for_js(grid, "found by lecturer",
                               "() => document.querySelectorAll('#grid .card').length === 1",
                               UI_TIMEOUT)
    await grid.page.fill("#q", "")
    await chromium.wait_for_js(grid, "the grid again",
                               "() => document.querySelectorAll('#grid .card').length === 1",
                               UI_TIMEOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    await grid.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-library-grid.png")
    await grid.page.set_viewport_size({"width": 390, "height": 760})  # a phone
    await grid.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-library-phone.png")
    phone_width = await js(grid, "() => document.querySelector('#grid .card').offsetWidth")
    assert phone_width <= 390, phone_width
    await grid.page.set_viewport_size({"width": 800, "height": 640})

    # The player, opened from the grid.
    media: list[tuple[int, str | None]] = []

    def on_response(response: Response) -> None:
        if response.url.endswith(item["media_url"]):
            media.append((response.status, response.request.headers.get("range")))

    grid.page.on("response", on_response)
    await grid.page.click("#grid .card a")
    player = grid
    await chromium.wait_for_js(player, "the player with the video's metadata", f"""() =>
        location.pathname === '/library/watch/{item["id"]}'
        && document.body.dataset.ready === 'true'
        && document.getElementById('video').readyState >= 1""", UI_TIMEOUT)
    assert await js(player, "() => document.getElementById('title').textContent") \
        == "第一讲：新质生产力"
    source = await js(player, "() => { const s = document.querySelector('#video source');"
                              " return [s.getAttribute('src'), s.type]; }")
    assert source == [item["media_url"], "video/mp4"]
    assert await js(player, "() => window.zhixingPlayer.resumedFrom") is None

    await player.page.keyboard.press("Space")  # the page's own shortcut
    await wait_playing_from(chromium, player, 0.5, UI_TIMEOUT)
    middle = duration / 2
    await seek(player, middle)
    started = time.monotonic()
    position = await wait_playing_from(chromium, player, middle, 1.0)
    assert position >= middle - 0.5
    assert time.monotonic() - started <= 1.5
    await asyncio.sleep(0.4)
    assert (await playback(player))["t"] > position, "playback stalled after the seek"

    await seek(player, 2)
    await player.page.keyboard.press("ArrowRight")
    assert (await playback(player))["t"] >= 11.5
    await player.page.keyboard.press("ArrowLeft")
    assert (await playback(player))["t"] < 4
    await player.page.select_option("#speed", "1.5")
    assert (await playback(player))["rate"] == 1.5
    # The page is not typing anywhere: Space pauses.
    await player.page.keyboard.press("Space")
    assert (await playback(player))["paused"]
    await seek(player, 4)
    await chromium.wait_for_js(player, "position saved",
                               "() => JSON.parse(localStorage.getItem("
                               f"'zhixing.resume.{item['id']}'))?.position === 4", 5)
    assert media and all(status == 206 for status, _ in media), media
    assert all(header and header.startswith("bytes=") for _, header in media), media

    # Back another day: it resumes where this browser stopped.
    await player.page.reload()
    await chromium.wait_for_js(player, "resumed near 4 s", """() =>
        document.body.dataset.ready === 'true'
        && Math.abs(document.getElementById('video').currentTime - 4) < 0.5
        && !document.getElementById('resume').hidden""", UI_TIMEOUT)
    assert await js(player, "() => window.zhixingPlayer.resumedFrom") == 4
    assert "0:04" in await js(player, "() => document.getElementById('resume').textContent")
    assert (await playback(player))["rate"] == 1.5  # the speed is remembered too
    await player.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-player.png",
                                 full_page=True)
    await player.page.click("#restart")
    await wait_playing_from(chromium, player, 0.2, UI_TIMEOUT)
    assert (await playback(player))["t"] < 3

    # Stopped in the last 10 s: it starts again from the top.
    await player.page.keyboard.press("Space")
    await seek(player, duration - 5)
    await chromium.wait_for_js(player, "position near the end saved",
                               "(t) => JSON.parse(localStorage.getItem("
                               f"'zhixing.resume.{item['id']}'))?.position > 5", 5)
    await player.page.reload()
    await chromium.wait_for_js(player, "the player again",
                               "() => document.body.dataset.ready === 'true'"
                               " && document.getElementById('video').readyState >= 1",
                               UI_TIMEOUT)
    await asyncio.sleep(0.3)
    assert await js(player, "() => window.zhixingPlayer.resumedFrom") is None
    assert (await playback(player))["t"] == 0
    assert await js(player, "() => document.getElementById('resume').hidden")
    assert all(status == 206 for status, _ in media), media

    english = await chromium.open(f"{service.base}/library/watch/{item['id']}?lang=en",
                                  "player-en")
    await chromium.wait_for_js(english, "the English player",
                               "() => document.body.dataset.ready === 'true'", UI_TIMEOUT)
    assert await js(english, "() => document.getElementById('restart').textContent") \
        == "Play from the start"
    assert await js(english, "() => document.getElementById('back').getAttribute('href')") \
        == "/library?lang=en"


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_player_shows_the_room_on_stage_in_step_with_the_lecture(
    service: Service, chromium: Chromium
) -> None:
    """A recorded discussion: the room's picture shows in the corner over its
    turn (in step with the lecture, seeking included) and nowhere else; the
    list of turns jumps to one."""
    item, _, _ = await record_discussion(service, before=3.0, turn=4.0, after=3.0)
    [turn] = item["stage"]
    link = await create_link(service)
    async with reader(service, link) as http, \
            http.get(f"{service.base}{item['stage_url']}", headers={"Range": "bytes=0-"}) as r:
        assert r.status == 206
    grid = await chromium.open(link["url"], "library-stage")
    await chromium.wait_for_js(grid, "the card says it has a discussion", """() =>
        document.querySelector('#grid .card .discussion')?.textContent === '研讨发言 1 段'""",
                               UI_TIMEOUT)
    player = await chromium.open(f"{service.base}/library/watch/{item['id']}", "player-stage")
    await chromium.wait_for_js(player, "the player with its turns", """() =>
        document.body.dataset.ready === 'true'
        && document.getElementById('video').readyState >= 1
        && !document.getElementById('turns').hidden""", UI_TIMEOUT)
    entries = await js(player, "() => [...document.querySelectorAll('#turn-list button')]"
                               ".map((b) => b.textContent)")
    assert len(entries) == 1 and ROOM_NAME in entries[0], entries
    assert await js(player, "() => document.getElementById('stage').hidden")

    # The list jumps to the turn: the room shows, its picture in step.
    await player.page.click("#turn-list button")
    await wait_playing_from(chromium, player, turn["at"], UI_TIMEOUT)
    stage_state = """([at, offset]) => { const v = document.getElementById('video');
      const s = document.getElementById('stage-video');
      return { turn: window.zhixingPlayer.turn, hidden: document.getElementById('stage').hidden,
               off: s.currentTime - (v.currentTime - at + offset), paused: s.paused,
               ready: s.readyState, name: document.getElementById('stage-name').textContent,
               t: v.currentTime }; }"""

    async def stage() -> dict[str, Any]:
        value: dict[str, Any] = await js(player, stage_state, [turn["at"], turn["offset"]])
        return value

    shown = await chromium.wait_for(
        "the room's picture playing in step", stage,
        lambda st: st["turn"] == 0 and not st["hidden"] and not st["paused"]
        and st["ready"] >= 2 and abs(st["off"]) < 0.35, UI_TIMEOUT)
    assert ROOM_NAME in shown["name"], shown
    ARTIFACTS.mkdir(exist_ok=True)
    await player.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-player-stage.png")

    # Seeking inside the turn keeps the picture in step; out of it hides it.
    await seek(player, turn["at"] + turn["duration"] - 1.5)
    await chromium.wait_for("in step after a seek", stage,
                            lambda st: st["turn"] == 0 and abs(st["off"]) < 0.35, UI_TIMEOUT)
    await seek(player, max(0.2, turn["at"] - 2.0))
    gone = await chromium.wait_for("no picture before the turn", stage,
                                   lambda st: st["hidden"] and st["paused"], UI_TIMEOUT)
    assert gone["turn"] is None
    # Playing on into the turn brings it back by itself.
    await chromium.wait_for("the room again as the turn comes", stage,
                            lambda st: st["turn"] == 0 and not st["hidden"], 5.0)


# --------------------------------------------------------------------------
# the console: record a session, see it ready, hand out a link


async def wait_js(chromium: Chromium, page: BrowserPage, what: str, expression: str,
                  timeout: float = UI_TIMEOUT) -> Any:
    return await chromium.wait_for_js(page, what, expression, timeout)


@pytest.mark.browser
@pytest.mark.webrtc
async def test_an_admin_records_a_session_and_hands_out_a_library_link(
    admin_service: Service, chromium: Chromium
) -> None:
    base = admin_service.base
    session = await admin_service.create_session(title="第二讲", video_codec="H264")
    publisher = await start_publisher(admin_service.http, base, session["id"],
                                      session["publish_token"])
    try:
        page = await open_console(chromium, base, "console-archive")
        confirms: list[str] = []

        async def accept(dialog: Dialog) -> None:
            confirms.append(dialog.message)
            await dialog.accept()

        page.page.on("dialog", accept)
        row = f"#sessions-table tr[data-id='{session['id']}']"
        assert await js(page, f"() => document.querySelector(\"{row} button.record\")"
                              ".textContent") == "开始录制"
        await page.page.click(f"{row} button.record")
        await wait_js(chromium, page, "the live recording state", f"""() => {{
            const cell = document.querySelector("{row} td.recording");
            const s = window.zhixingConsole.sessions.find((x) => x.id === '{session["id"]}');
            return cell.textContent.includes('录制中') && s?.recording?.duration >= 2
              && cell.querySelector('.stats').textContent.includes('1 段')
              && cell.querySelector('button.record').textContent === '停止录制'; }}""")
        stats = await js(page, f"() => document.querySelector(\"{row} .stats\").textContent")
        assert re.fullmatch(r"00:0[2-9] · [\d.]+ (KB|MB) · 1 段 · 重启 0 次", stats), stats
        ARTIFACTS.mkdir(exist_ok=True)
        await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-recording.png",
                                   full_page=True)
        await asyncio.sleep(2)
        await page.page.click(f"{row} button.record")
        await wait_js(chromium, page, "recording stopped",
                      f"() => document.querySelector(\"{row} button.record\").textContent"
                      " === '开始录制'")
        assert confirms and "第二讲" in confirms[-1]
    finally:
        await publisher.close()

    await page.page.click("#tab-archive")
    await wait_js(chromium, page, "the item ready in the archive", """() => {
        const rows = document.querySelectorAll('#archive-table tbody tr');
        return rows.length === 1 && rows[0].querySelector('.col-state').textContent === '可回放'
          && rows[0].querySelector('a.play'); }""", FINISH_TIMEOUT)
    [item] = (await api(admin_service, "GET", "/api/v1/archive"))[1]["items"]
    assert item["state"] == "ready"
    archive_row = "#archive-table tbody tr"
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-archive.png",
                               full_page=True)
    assert await js(page, f"() => document.querySelector('{archive_row} a.play')"
                          ".getAttribute('href')") == f"/library/watch/{item['id']}"
    cells = await js(page, f"() => [...document.querySelectorAll('{archive_row} td')]"
                           ".map((td) => td.textContent)")
    assert cells[0] == "第二讲" and re.fullmatch(r"00:0\d", cells[4]), cells
    assert re.fullmatch(r"[\d.]+ (KB|MB)", cells[5]), cells

    # Edit its details.
    await page.page.click(f"{archive_row} button.edit")
    await page.page.fill("#archive-form [name=title]", "")
    await page.page.click("#archive-form button[type=submit]")
    await wait_js(chromium, page, "the field error on the title",
                  "() => document.querySelector('#archive-form .field-error[data-field=title]')"
                  ".textContent === '必填'")
    await page.page.fill("#archive-form [name=title]", "第二讲：数字经济")
    await page.page.fill("#archive-form [name=lecturer]", "李研究员")
    await page.page.fill("#archive-form [name=description]", "回放版")
    await page.page.click("#archive-form button[type=submit]")
    await wait_js(chromium, page, "the new title in the list",
                  f"() => document.querySelector('{archive_row} .col-title').textContent"
                  " === '第二讲：数字经济 李研究员'"
                  " && document.getElementById('archive-form').hidden")
    status, edited = await api(admin_service, "GET", f"/api/v1/archive/{item['id']}")
    assert (edited["title"], edited["lecturer"], edited["description"]) == (
        "第二讲：数字经济", "李研究员", "回放版")

    # A library link: created, shown once, listed; it opens the library.
    await page.page.click("#tab-links")
    await page.page.fill("#links-form [name=label]", "北仑区第一批学员")
    await page.page.click("#links-form button[type=submit]")
    await wait_js(chromium, page, "the new link and its row", """() =>
        !document.getElementById('new-link').hidden
        && document.querySelectorAll('#links-table tbody tr').length === 1""")
    url = await js(page, "() => document.getElementById('new-link-url').value")
    assert url.startswith(f"{base}/library/k/"), url
    status_text = await js(page, "() => document.querySelector("
                                 "'#links-table tbody tr .status').textContent")
    assert status_text == "有效"
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-links.png",
                               full_page=True)
    async with reader(admin_service) as http:
        async with http.get(url) as response:
            assert response.status == 200 and response.url.path == "/library"
        async with http.get(f"{base}/api/v1/archive") as response:
            assert [i["id"] for i in (await response.json())["items"]] == [item["id"]]
        await page.page.click("#links-table tbody tr button.danger")
        await wait_js(chromium, page, "the link revoked",
                      "() => document.querySelector('#links-table tbody tr .status')"
                      ".textContent === '已撤销'")
        assert (await fetch(http, f"{base}/api/v1/archive"))[0] == 401

    # Delete the item, after a confirmation.
    await page.page.click("#tab-archive")
    await page.page.click(f"{archive_row} button.delete")
    await wait_js(chromium, page, "the archive empty",
                  "() => !document.getElementById('archive-empty').hidden"
                  " && !document.querySelector('#archive-table tbody tr')")
    assert "第二讲：数字经济" in confirms[-1]
    status, _ = await api(admin_service, "GET", f"/api/v1/archive/{item['id']}")
    assert status == 404
