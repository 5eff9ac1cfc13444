"""The room page in Chromium behind a district edge: it follows the origin's
307 to the edge (CORS, the token in the query, the page's connect-src) and,
when the edge is killed, plays again through the origin by its own retries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.browser import Chromium
from tests.support.city import city
from tests.support.media import start_publisher

pytestmark = [pytest.mark.browser, pytest.mark.webrtc,
              pytest.mark.usefixtures("loopback_candidates")]

MIN_FRAMES = 20


async def test_the_room_page_watches_through_its_edge_and_falls_back_to_the_origin(
        tmp_path: Path, chromium: Chromium) -> None:
    async with city(tmp_path, edges=("edge-beilun",)) as town:
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        edge = town.edges["edge-beilun"]
        await town.wait_where(session, room["token"], edge)
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        try:
            page = await chromium.open(room["url"], "room-on-edge")
            await chromium.wait_for_frames(page, MIN_FRAMES, 30)
            assert (await town.edge_health("edge-beilun"))["viewers"] == 1, \
                await chromium.report()
            town.processes["edge-beilun"].kill()
            killed = time.monotonic()
            await town.processes["edge-beilun"].wait()
            # The page's own retries: a new connection (its first gets no
            # more pictures), through the origin, playing.
            await chromium.wait_for_js(
                page, "a new connection, connected",
                "() => window.__zhixingPcs.length > 1"
                " && window.zhixing.pc?.connectionState === 'connected'", 30)
            await chromium.wait_for_frames(page, MIN_FRAMES, 30)
            again = time.monotonic() - killed
            assert again < 5.0, await chromium.report()
            stats = await town.call("GET", f"/api/v1/sessions/{session['id']}")
            assert stats["stats"]["viewer_count"] >= 1, stats
        finally:
            await publisher.close()
    print(f"the room page played through the origin {again:.1f} s after the edge was killed")


async def test_a_room_page_on_an_edge_watches_from_the_start_through_the_origin(
        tmp_path: Path, chromium: Chromium) -> None:
    async with city(tmp_path, edges=("edge-beilun",)) as town:
        session = await town.call("POST", "/api/v1/sessions",
                                  {"title": "第一讲", "video_codec": "H264"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        await town.wait_where(session, room["token"], town.edges["edge-beilun"])
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        try:
            await town.call("POST", f"/api/v1/sessions/{session['id']}/recording")
            page = await chromium.open(room["url"], "timeshift-on-edge")
            await chromium.wait_for_frames(page, MIN_FRAMES, 30)
            assert (await town.edge_health("edge-beilun"))["viewers"] == 1, \
                await chromium.report()
            await chromium.wait_for_js(page, "the 从头观看 button",
                                       "() => !document.getElementById('timeshift').hidden"
                                       " && !document.getElementById('timeshift-start').hidden",
                                       15)
            await page.evaluate("() => document.getElementById('timeshift-start').click()")
            await chromium.wait_for_js(page, "watching from the start, through the origin",
                                       "() => window.zhixing.timeshift === 'timeshift'"
                                       " && !document.getElementById('timeshift-badge').hidden"
                                       " && window.zhixing.pc?.connectionState === 'connected'",
                                       20)
            assert (await town.edge_health("edge-beilun"))["viewers"] == 0
            before = (await page.video_received() or {}).get("framesDecoded", 0)
            await chromium.wait_for_frames(page, before + MIN_FRAMES, 15)
            await page.evaluate("() => document.getElementById('timeshift-live').click()")
            await chromium.wait_for_js(page, "live again",
                                       "() => window.zhixing.timeshift === 'live'"
                                       " && document.getElementById('timeshift-badge').hidden",
                                       10)
            before = (await page.video_received() or {}).get("framesDecoded", 0)
            await chromium.wait_for_frames(page, before + MIN_FRAMES, 15)
        finally:
            await publisher.close()
        await town.call("DELETE", f"/api/v1/sessions/{session['id']}/recording")


async def test_a_room_page_on_an_edge_chooses_sound_only_there(
        tmp_path: Path, chromium: Chromium) -> None:
    """仅声音 on an edge: the page reads its level from the edge and asks the
    edge for sound only (the origin does not know its viewer)."""
    async with city(tmp_path, edges=("edge-beilun",)) as town:
        session = await town.call("POST", "/api/v1/sessions",
                                  {"title": "第一讲", "video_codec": "VP8"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        edge = town.edges["edge-beilun"]
        await town.wait_where(session, room["token"], edge)
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        try:
            page = await chromium.open(room["url"], "room-on-edge-sound-only")
            await chromium.wait_for_frames(page, MIN_FRAMES, 30)
            assert (await town.edge_health("edge-beilun"))["viewers"] == 1
            await chromium.wait_for_js(page, "the level shows 高清 (read from the edge)",
                                       "() => !document.querySelector('#level').hidden"
                                       " && document.querySelector('#level-badge').textContent"
                                       " === '高清'", 15)
            await page.page.click("#audio-only")
            await chromium.wait_for_js(page, "the page says sound only",
                                       "() => document.querySelector('#level-badge').textContent"
                                       " === '仅声音' && !document.querySelector('#audio-screen')"
                                       ".hidden", 10)
            await page.page.click("#picture-back")
            await chromium.wait_for_js(page, "the picture is back",
                                       "() => document.querySelector('#level-badge').textContent"
                                       " === '高清' && document.querySelector('#audio-screen')"
                                       ".hidden", 10)
            await chromium.wait_for_frames(page, MIN_FRAMES, 15)
            assert (await town.edge_health("edge-beilun"))["viewers"] == 1  # never left it
        finally:
            await publisher.close()
