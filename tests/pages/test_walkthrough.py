"""End to end in Chromium: a lecture from the presenter page reaches two
sub-classroom pages opened from their invitation links, the presenter sees
both rooms, and a revoked link is refused.

(Logging in and setting the session up through the console's forms is
covered by tests/pages/test_console_page.py; here the admin API does the setup.)
"""

from __future__ import annotations

import pytest

from tests.support.browser import Chromium
from tests.support.pages import invite, request
from tests.support.service import Service

pytestmark = pytest.mark.browser

TIMEOUT = 20.0


async def test_presenter_to_two_rooms_and_a_revoked_link(
    service: Service, chromium: Chromium
) -> None:
    status, course, text = await request(service, "POST", "/api/v1/courses",
                                         json={"title": "新质生产力", "lecturer": "王教授"})
    assert status == 201, text
    session = await service.create_session(title="第一讲", course_id=course["id"],
                                           batch="第一批")
    first = await invite(service, session["id"], "新碶街道分课堂", "北仑区 / 新碶街道")
    second = await invite(service, session["id"], "大碶街道分课堂", "北仑区 / 大碶街道")

    presenter = await chromium.open(session["presenter_url"], "presenter")
    await chromium.wait_for_js(presenter, "the camera preview plays",
                               "() => document.querySelector('#preview').videoWidth > 0",
                               TIMEOUT)
    await presenter.page.click("#start")
    await chromium.wait_for_js(presenter, "the presenter is live",
                               "() => window.zhixing.state === 'live'", TIMEOUT)

    rooms = [await chromium.open(first["url"], "room-1"),
             await chromium.open(second["url"], "room-2")]
    for room, invitation in zip(rooms, (first, second), strict=True):
        await chromium.wait_for_frames(room, 30, TIMEOUT)
        assert await room.evaluate("() => document.querySelector('#site').textContent") == \
            invitation["site_name"]
        assert await room.evaluate(
            "() => document.querySelector('#program').videoWidth") > 0

    await chromium.wait_for_js(
        presenter, "the presenter lists both rooms as connected",
        "() => document.querySelector('#site-count').textContent === '已连接 2 / 邀请 2'"
        " && document.querySelectorAll('#sites li[data-connected=\"true\"]').length === 2",
        TIMEOUT)

    status, _, text = await request(service, "DELETE", f"/api/v1/invitations/{second['id']}")
    assert status == 204, text
    await chromium.wait_for_js(rooms[1], "the revoked room is told its link no longer works",
                               "() => !document.querySelector('#gone').hidden", TIMEOUT)
    await chromium.wait_for_js(
        presenter, "the presenter sees one room left",
        "() => document.querySelector('#site-count').textContent.startsWith('已连接 1')",
        TIMEOUT)
    # The other room is untouched.
    before = (await rooms[0].video_received() or {}).get("framesDecoded", 0)
    await chromium.wait_for_frames(rooms[0], before + 10, TIMEOUT)

    refused = await chromium.open(second["url"], "revoked-link")
    text = await refused.evaluate("() => document.body.innerText")
    assert "撤销" in text or "失效" in text, text
    async with service.http.get(second["url"], allow_redirects=False) as response:
        assert response.status == 410
