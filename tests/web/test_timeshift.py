"""Timeshift (时移): a late room watches from the start while live rooms stay live."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import media
from tests.support.browser import ARTIFACTS, Chromium
from tests.support.media import in_order, start_publisher, start_viewer
from tests.support.service import Service, invite
from tests.support.service import call_json as call

pytestmark = pytest.mark.webrtc

API = "/api/v1"


def resource_of(viewer: media.TestViewer) -> str:
    assert viewer.location is not None
    return viewer.location.rstrip("/").split("/")[-1]


async def frames_after(viewer: media.TestViewer, count: int, timeout: float = 10) -> list[int]:
    start = len(viewer.indices)
    await viewer.wait_for_frames(start + count, timeout)
    return viewer.indices[start:]


async def test_a_late_room_watches_from_the_start_and_back_to_live(service: Service) -> None:
    session = await service.create_session(video_codec="H264")
    early_room = await invite(service, session, "新碶街道分课堂")
    late_room = await invite(service, session, "大碶街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    live = late = None
    try:
        live = await start_viewer(service.http, service.base, session["id"],
                                  early_room["token"])
        await live.wait_for_frames(15, timeout=10)
        recording_from = publisher.video.index
        status, _ = await call(service, "POST", f"{API}/sessions/{session['id']}/recording")
        assert status == 201
        await asyncio.sleep(5)
        late = await start_viewer(service.http, service.base, session["id"], late_room["token"])
        await late.wait_for_frames(15, timeout=10)
        room = (await call(service, "GET", f"{API}/room", token=late_room["token"]))[1]
        assert room["timeshift_available"]
        now = publisher.video.index
        assert late.indices[-1] > recording_from + 100

        # Not someone else's viewer, not with a bad mode.
        body = {"mode": "start", "resource": resource_of(late)}
        assert (await call(service, "POST", f"{API}/room/timeshift", body,
                           token=early_room["token"]))[0] == 404
        assert (await call(service, "POST", f"{API}/room/timeshift",
                           {**body, "mode": "rewind"}, token=late_room["token"]))[0] == 422
        assert (await call(service, "POST", f"{API}/room/timeshift",
                           {**body, "resource": "x" * 65}, token=late_room["token"]))[0] == 422
        assert (await call(service, "POST", f"{API}/room/timeshift", body,
                           token=session["view_token"]))[0] == 403
        assert (await call(service, "POST", f"{API}/room/timeshift", body, token=None))[0] == 401

        status, mode = await call(service, "POST", f"{API}/room/timeshift", body,
                                  token=late_room["token"])
        assert status == 200 and mode["mode"] == "timeshift", mode
        shifted = await frames_after(late, 45)
        # From the beginning of the recording (its first keyframe) ...
        assert recording_from <= shifted[5] < recording_from + 60, (recording_from, shifted[:10])
        assert in_order(shifted[5:])
        # ... while the live room stays live and in order.
        live_after = await frames_after(live, 30)
        assert live_after[0] >= now and in_order(live.indices)

        status, mode = await call(service, "POST", f"{API}/room/timeshift",
                                  {"mode": "live", "resource": resource_of(late)},
                                  token=late_room["token"])
        assert status == 200 and mode["mode"] == "live"
        back = await frames_after(late, 30)
        assert back[-1] >= publisher.video.index - 30  # live again
        assert late.decode_errors == 0 and live.decode_errors == 0
    finally:
        for viewer in (live, late):
            if viewer is not None:
                await viewer.close()
        await publisher.close()
    await call(service, "DELETE", f"{API}/sessions/{session['id']}/recording")


async def test_no_timeshift_without_a_recording(service: Service) -> None:
    session = await service.create_session(video_codec="VP8")
    room = await invite(service, session, "新碶街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewer = None
    try:
        viewer = await start_viewer(service.http, service.base, session["id"], room["token"])
        await viewer.wait_for_frames(10, timeout=10)
        info = (await call(service, "GET", f"{API}/room", token=room["token"]))[1]
        assert not info["timeshift_available"]
        status, body = await call(service, "POST", f"{API}/room/timeshift",
                                  {"mode": "start", "resource": resource_of(viewer)},
                                  token=room["token"])
        assert status == 409 and "not being recorded" in body["error"]
        assert (await call(service, "POST", f"{API}/room/timeshift",
                           {"mode": "start", "resource": "nope"}, token=room["token"]))[0] == 404
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.close()


@pytest.mark.browser
async def test_the_room_page_offers_watching_from_the_start(service: Service,
                                                           chromium: Chromium) -> None:
    session = await service.create_session(video_codec="H264")
    room = await invite(service, session, "霞浦街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    try:
        await call(service, "POST", f"{API}/sessions/{session['id']}/recording")
        page = await chromium.open(room["url"], "timeshift-room")
        await chromium.wait_for_frames(page, 30, 30)
        await chromium.wait_for_js(page, "the 从头观看 button",
                                   "() => !document.getElementById('timeshift').hidden"
                                   " && !document.getElementById('timeshift-start').hidden", 15)
        await page.evaluate("() => document.getElementById('timeshift-start').click()")
        await chromium.wait_for_js(page, "watching from the start",
                                   "() => window.zhixing.timeshift === 'timeshift'"
                                   " && !document.getElementById('timeshift-badge').hidden", 10)
        before = (await page.video_received() or {}).get("framesDecoded", 0)
        await chromium.wait_for_frames(page, before + 30, 15)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-shifted.png")
        await page.evaluate("() => document.getElementById('timeshift-live').click()")
        await chromium.wait_for_js(page, "live again",
                                   "() => window.zhixing.timeshift === 'live'"
                                   " && document.getElementById('timeshift-badge').hidden", 10)
        before = (await page.video_received() or {}).get("framesDecoded", 0)
        await chromium.wait_for_frames(page, before + 30, 15)
    finally:
        await publisher.close()
    await call(service, "DELETE", f"{API}/sessions/{session['id']}/recording")
