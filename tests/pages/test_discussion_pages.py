"""研讨 in the pages: a room turns its camera on, raises a hand and asks; the
presenter page shows both as plain text and puts the room on stage; another
room sees and hears the stage over the transceivers it negotiated when it
joined, and the room on stage is told it is speaking.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, Chromium
from tests.support.media import start_publisher
from tests.support.pages import invite, stage_frames, text
from tests.support.service import Service
from web.keys import SESSIONS

TIMEOUT = 20.0
QUESTION = "请问<b>x</b>怎么理解？"


@pytest.mark.browser
@pytest.mark.webrtc
async def test_a_room_asks_and_goes_on_stage_and_the_others_see_it(
    service: Service, chromium: Chromium
) -> None:
    session = await service.create_session()
    room_a = await invite(service, session["id"], "新碶街道分课堂", "北仑区 / 新碶街道")
    room_c = await invite(service, session["id"], "大碶街道分课堂", "北仑区 / 大碶街道")
    live = service.app[SESSIONS].get(session["id"])
    assert live is not None
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    try:
        page_a = await chromium.open(room_a["url"], "room-a")
        page_c = await chromium.open(room_c["url"], "room-c")
        for page in (page_a, page_c):
            await chromium.wait_for_js(page, "the program and the discussion",
                                       "() => window.zhixing.pc?.connectionState === 'connected'"
                                       " && window.zhixing.events === 'open'"
                                       " && !document.getElementById('discuss').hidden",
                                       TIMEOUT)

        # Broadcast A turns its camera on: an uplink, not on stage yet.
        await page_a.page.click("#camera-start")
        await chromium.wait_for(
            "room A's uplink connected on the server",
            lambda: _uplink_state(live.broadcast.uplinks, room_a["id"]),
            lambda state: state == "connected", TIMEOUT)
        await chromium.wait_for_js(page_a, "the camera-on indicator",
                                   "() => document.getElementById('on-air').textContent"
                                   " === '摄像头已开启（未上台）'", TIMEOUT)

        # A hand and a question with markup in it.
        await page_a.page.click("#hand")
        await chromium.wait_for_js(page_a, "the hand is up",
                                   "() => document.getElementById('hand').textContent === '放下'",
                                   TIMEOUT)
        await page_a.page.fill("#question", QUESTION)
        await page_a.page.click("#question-submit")
        await chromium.wait_for(
            "room A lists its question as text",
            lambda: text(page_a, "#my-questions li[data-status='open'] .q-text"),
            lambda value: value == QUESTION, TIMEOUT)
        assert await page_a.evaluate(
            "() => document.querySelectorAll('#my-questions b').length") == 0

        presenter = await chromium.open(session["presenter_url"], "presenter")
        await chromium.wait_for(
            "the presenter sees room A's hand",
            lambda: text(presenter, f"#hands li[data-invitation='{room_a['id']}'] .name"),
            lambda value: value == "新碶街道分课堂", TIMEOUT)
        await chromium.wait_for(
            "the presenter sees the question as plain text",
            lambda: text(presenter, "#questions li .q-text"),
            lambda value: value == QUESTION, TIMEOUT)
        assert await presenter.evaluate(
            "() => document.querySelectorAll('#questions b').length") == 0
        assert "新碶街道分课堂" in await text(presenter, "#uplinks")

        # On stage.
        stage_button = (f"#hands li[data-invitation='{room_a['id']}'] "
                        "button[data-action='stage']:not([disabled])")
        await presenter.page.click(stage_button)
        await chromium.wait_for(
            "room A is on stage on the server", lambda: _on_stage(live.broadcast),
            lambda value: value == room_a["id"], TIMEOUT)
        await chromium.wait_for_js(page_c, "the stage picture over the program",
                                   "() => !document.getElementById('stage-box').hidden",
                                   TIMEOUT)
        first = await chromium.wait_for("room C decodes the stage",
                                        lambda: stage_frames(page_c),
                                        lambda n: n > 0, TIMEOUT)
        await chromium.wait_for("room C's stage keeps decoding",
                                lambda: stage_frames(page_c),
                                lambda n: n > first + 20, TIMEOUT)
        assert "新碶街道分课堂" in await text(page_c, "#stage-name")
        await chromium.wait_for_js(page_a, "room A is told it speaks",
                                   "() => document.getElementById('on-air').textContent"
                                   " === '正在上台发言'", TIMEOUT)
        # The presenter sees the stage too (its own WHEP, stage pair only).
        await chromium.wait_for("the presenter decodes the stage",
                                lambda: stage_frames(presenter, "stagePc"),
                                lambda n: n > 10, TIMEOUT)
        assert await text(presenter, "#on-stage") == "新碶街道分课堂"

        ARTIFACTS.mkdir(exist_ok=True)
        prefix = chromium.artifact_prefix
        await presenter.page.locator("#discuss").screenshot(
            path=ARTIFACTS / f"{prefix}-presenter-panel.png")
        await page_c.page.screenshot(path=ARTIFACTS / f"{prefix}-room-c-stage.png",
                                     full_page=True)

        # Off stage: the picture goes away.
        await presenter.page.click("#stage-off")
        await chromium.wait_for_js(page_c, "the stage picture hidden again",
                                   "() => document.getElementById('stage-box').hidden",
                                   TIMEOUT)
    finally:
        await publisher.close()


async def _uplink_state(uplinks: dict[str, Any], invitation_id: str) -> str | None:
    peer = uplinks.get(invitation_id)
    return None if peer is None else str(peer.connection_state)


async def _on_stage(room: Any) -> str | None:
    value: str | None = room.on_stage
    return value
