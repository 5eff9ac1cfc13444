"""Stock GStreamer publishing (WHIP, webrtcbin unmodified) and the room page
in Chromium showing it: two WebRTC stacks that are not aiortc, through the
relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.browser import Chromium
from tests.support.gstreamer import gstreamer, lan_service
from tests.support.service import Service, invite

pytestmark = [pytest.mark.browser, pytest.mark.webrtc, pytest.mark.gstreamer]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with lan_service(tmp_path / "data") as service:
        yield service


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_chromium_shows_what_gstreamer_publishes(
    service: Service, chromium: Chromium, codec: str
) -> None:
    session = await service.create_session(video_codec=codec)
    invitation = await invite(service, session, "新碶街道分课堂")
    async with gstreamer("publish", session["whip_url"], session["publish_token"],
                         codec) as publisher:
        await publisher.wait_for("connected", lambda: publisher.connected, 15)
        page = await chromium.open(invitation["url"], f"gst-room-{codec}")
        await chromium.wait_for_frames(page, 30, 30)
        received = await page.video_received()
        assert received is not None and received["codec"].upper() == f"VIDEO/{codec}", received
