"""The room page's 仅声音: the room chooses sound only and gets it (the
picture stops at the relay, the sound goes on, the page says so), then the
picture back."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.browser import Chromium
from tests.support.media import start_publisher
from tests.support.service import Service, invite

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

RECEIVED = """
async () => {
  const pc = window.zhixing && window.zhixing.pc;
  if (!pc) return null;
  const out = { frames: 0, audio: 0 };
  (await pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") out.frames = Math.max(out.frames, s.framesDecoded || 0);
    else out.audio += s.packetsReceived || 0;
  });
  return out;
}
"""


async def test_a_room_chooses_sound_only_and_the_picture_back(
    service: Service, chromium: Chromium
) -> None:
    session = await service.create_session(video_codec="VP8")
    invitation = await invite(service, session, "大碶街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    try:
        page = await chromium.open(invitation["url"], "room-sound-only")
        await chromium.wait_for_frames(page, 30, 30)
        await chromium.wait_for_js(page, "the level shows 高清",
                                   "() => !document.querySelector('#level').hidden"
                                   " && document.querySelector('#level-badge').textContent"
                                   " === '高清'", 15)
        await page.page.click("#audio-only")
        await chromium.wait_for_js(page, "the page says sound only",
                                   "() => document.querySelector('#level-badge').textContent"
                                   " === '仅声音' && !document.querySelector('#audio-screen')"
                                   ".hidden && !document.querySelector('#picture-back').hidden",
                                   10)
        await asyncio.sleep(1)  # what was in flight
        before = await page.evaluate(RECEIVED)
        await asyncio.sleep(3)
        after = await page.evaluate(RECEIVED)
        assert after["frames"] - before["frames"] <= 2, (before, after)
        assert after["audio"] - before["audio"] > 100, (before, after)  # 50 packets a second

        await page.page.click("#picture-back")
        await chromium.wait_for_js(page, "the picture is back",
                                   "() => document.querySelector('#level-badge').textContent"
                                   " === '高清' && document.querySelector('#audio-screen').hidden",
                                   10)
        again = await page.evaluate(RECEIVED)
        await asyncio.sleep(2)
        assert (await page.evaluate(RECEIVED))["frames"] > again["frames"] + 20
    finally:
        await publisher.close()
