"""End to end with a real headless Chromium: publish.html over WHIP, view.html over WHEP.

The pages use Chromium's fake camera and microphone; the relay runs in process
(the ``service`` fixture). Every wait has a timeout and fails with the pages'
ICE states, candidates, errors and console output.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.browser import BrowserPage, Chromium
from tests.support.service import Service

pytestmark = pytest.mark.browser

CONNECT_TIMEOUT = 20.0
FRAMES_TIMEOUT = 20.0
MIN_FRAMES = 30
SAMPLE_GAP = 2.0  # seconds between two framesDecoded samples
MIN_FRAMES_PER_GAP = 5  # the fake camera sends 20 fps; this only rules out a stall


async def open_viewer(chromium: Chromium, service: Service, session: dict[str, Any],
                      name: str = "viewer") -> BrowserPage:
    return await chromium.open(
        f"{service.base}/static/view.html#session={session['id']}&token={session['view_token']}",
        name,
    )


async def start_publisher(chromium: Chromium, service: Service,
                          session: dict[str, Any]) -> BrowserPage:
    page = await chromium.open(
        f"{service.base}/static/publish.html"
        f"#session={session['id']}&token={session['publish_token']}",
        "publisher",
    )
    await page.page.click("#start")
    return page


async def wait_connected(chromium: Chromium, page: BrowserPage) -> None:
    await chromium.wait_for_js(
        page, "RTCPeerConnection connected",
        "() => window.zhixing.pc?.connectionState === 'connected'", CONNECT_TIMEOUT)


async def assert_video_flows(chromium: Chromium, viewer: BrowserPage,
                             codec: str) -> dict[str, Any]:
    """The viewer decodes > MIN_FRAMES frames of ``codec``, and keeps decoding."""
    first = await chromium.wait_for_frames(viewer, MIN_FRAMES, FRAMES_TIMEOUT)
    await asyncio.sleep(SAMPLE_GAP)
    second = await viewer.video_received()
    assert second is not None
    assert second["framesDecoded"] >= first["framesDecoded"] + MIN_FRAMES_PER_GAP, (
        f"framesDecoded went from {first['framesDecoded']} to {second['framesDecoded']} "
        f"in {SAMPLE_GAP} s\n" + await chromium.report()
    )
    assert second["codec"] == f"video/{codec}", (
        f"viewer decodes {second['codec']}, expected video/{codec}\n" + await chromium.report()
    )
    assert second["videoWidth"] > 0, "the <video> shows no picture\n" + await chromium.report()
    return second


async def wait_for_room(chromium: Chromium, service: Service, session_id: str,
                        viewers: int) -> dict[str, Any]:
    """The API reports a connected publisher and ``viewers`` connected viewers."""

    async def stats() -> dict[str, Any]:
        body: dict[str, Any] = (await service.session(session_id))["stats"]
        return body

    def ready(stats: dict[str, Any]) -> bool:
        return (
            stats["publisher_connected"]
            and stats["viewer_count"] == viewers
            and all(v["connection"] == "connected" for v in stats["viewers"])
        )

    return await chromium.wait_for(
        f"API: publisher connected and {viewers} viewer(s) connected", stats, ready,
        CONNECT_TIMEOUT)


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_browser_publishes_and_browser_views(
    service: Service, chromium: Chromium, codec: str
) -> None:
    extra = {} if codec == "H264" else {"video_codec": codec}  # H264 is the default
    session = await service.create_session(**extra)
    assert session["video_codec"] == codec

    publisher = await start_publisher(chromium, service, session)
    await wait_connected(chromium, publisher)
    viewer = await open_viewer(chromium, service, session)
    await wait_connected(chromium, viewer)

    await assert_video_flows(chromium, viewer, codec)
    stats = await wait_for_room(chromium, service, session["id"], viewers=1)
    assert stats["ingress"]["video"]["frames"] > MIN_FRAMES, stats
    assert (await service.session(session["id"]))["state"] == "live"


async def test_viewer_waiting_before_the_publisher_starts_gets_the_picture(
    service: Service, chromium: Chromium
) -> None:
    session = await service.create_session()
    viewer = await open_viewer(chromium, service, session)
    await wait_connected(chromium, viewer)
    # Mark this document and its connection: both must survive until the end.
    await viewer.evaluate("() => { window.__waiting = true; window.zhixing.pc.__first = true; }")

    # Nobody publishes yet: the viewer stays connected and decodes nothing.
    await asyncio.sleep(3)
    waiting = await viewer.video_received()
    assert waiting is not None
    assert waiting["connection"] == "connected", await chromium.report()
    assert waiting["framesDecoded"] == 0, await chromium.report()
    stats = (await service.session(session["id"]))["stats"]
    assert stats["viewer_count"] == 1 and not stats["publisher_connected"], stats

    publisher = await start_publisher(chromium, service, session)
    await wait_connected(chromium, publisher)
    await assert_video_flows(chromium, viewer, "H264")
    same = await viewer.evaluate(
        "() => window.__waiting === true && window.zhixing.pc.__first === true"
        " && window.__zhixingPcs.length === 1")
    assert same, "the viewer page reloaded or reconnected\n" + await chromium.report()
    await wait_for_room(chromium, service, session["id"], viewers=1)
