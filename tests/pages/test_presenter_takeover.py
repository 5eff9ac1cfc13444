"""Two presenter PCs on one session: the page whose broadcast another PC has
taken over stops (instead of taking it back on its automatic reconnection),
says so, and takes it back only when the operator presses 开始直播 again."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Chromium
from tests.support.media import start_publisher
from tests.support.service import Service
from web.keys import SESSIONS

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

TIMEOUT = 45.0  # the page may only learn of the loss from ICE consent (about 30 s)
REPLACED = json.loads((Path(__file__).parents[2] / "web/i18n/zh-CN/presenter.json")
                      .read_text(encoding="utf-8"))["presenter.error.replaced"]


async def _until(what: str, check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_presenter_page_replaced_by_another_pc_stops_until_started_again(
    service: Service, chromium: Chromium
) -> None:
    session = await service.create_session(video_codec="VP8")
    broadcast = service.app[SESSIONS].get(session["id"]).broadcast
    page = await chromium.open(session["presenter_url"], "presenter-replaced")
    await chromium.wait_for_js(page, "the start button is ready",
                               "() => !document.querySelector('#start').disabled", TIMEOUT)
    await page.page.click("#start")
    await chromium.wait_for_js(page, "publishing", "() => window.zhixing.state === 'live'",
                               TIMEOUT)
    await _until("the page is on air", lambda: broadcast.publisher is not None
                 and broadcast.publisher.live)
    page_resource = broadcast.publisher.resource_id

    other = await start_publisher(service.http, service.base, session["id"],
                                  session["publish_token"], start=10_000)
    try:
        await _until("the other PC takes over", lambda: broadcast.publisher.resource_id
                     != page_resource and broadcast.publisher.live)
        other_resource = broadcast.publisher.resource_id
        await chromium.wait_for_js(
            page, "the page says another PC took over and offers to start again",
            f"() => window.zhixing.error === {json.dumps(REPLACED)}"
            " && !document.querySelector('#start').disabled"
            " && document.querySelector('#stop').disabled", TIMEOUT)
        assert broadcast.publisher.resource_id == other_resource
        await asyncio.sleep(2.0)  # no more attempts from the page
        assert broadcast.publisher.resource_id == other_resource
        assert broadcast.pending_publisher is None
        assert other.pc.connectionState == "connected"

        # The operator starts again: a deliberate takeover.
        await page.page.click("#start")
        await _until("the page takes the program back", lambda: broadcast.publisher
                     .resource_id != other_resource and broadcast.publisher.live, TIMEOUT)
        await chromium.wait_for_js(page, "publishing again",
                                   "() => window.zhixing.state === 'live' && !window.zhixing.error",
                                   TIMEOUT)
        await _until("the other PC is dropped",
                     lambda: other.pc.connectionState in ("closed", "failed"), TIMEOUT)
        await page.page.click("#stop")
    finally:
        await other.close()
