"""The recording of a discussion (研讨): the rooms brought on stage are in it.

Real aiortc peers: the program publisher sends a 440 Hz tone, room A's uplink
a 1500 Hz tone and barcodes from ``A_START``. The presenter brings A on stage
for a few seconds while the session is recorded; the finished lecture must
let A be heard over its turn (and only then), keep the lecturer audible
throughout, and the stage file must show A's pictures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from tests.support.archive_helpers import LECTURER_HZ, ROOM_HZ, ROOM_NAME, record_discussion
from tests.support.browser import ARTIFACTS, Chromium
from tests.support.discussion import A_START, connect, start_pair_viewer
from tests.support.media import read_barcode
from tests.support.pages import stage_frames, text
from tests.support.probe import decode_errors
from tests.support.service import Service, invite
from tests.support.service import call_json as call
from tests.support.synthetic import tone_levels
from web.keys import ARCHIVE

pytestmark = pytest.mark.webrtc

UI_TIMEOUT = 20.0
HEARD = 0.05  # amplitude of a tone that can be heard (the peers send ≈ 0.24)


def share_heard(levels: list[tuple[float, float]], start: float, end: float) -> float:
    inside = [level for at, level in levels if start <= at < end]
    assert inside, (start, end)
    return sum(level > HEARD for level in inside) / len(inside)


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_the_recording_of_a_discussion_contains_the_stage(
        service: Service, codec: str) -> None:
    ready, on_stage_at, off_stage_at = await record_discussion(service, codec)
    item = ready
    print(f"{codec}: on stage at {on_stage_at:.3f} s, off at {off_stage_at:.3f} s; "
          f"turn {ready['stage']}")
    media = service.app[ARCHIVE].media_path(item["id"])
    assert decode_errors(media) == ""

    # One turn, named by its room, where the presenter put it.
    assert len(ready["stage"]) == 1, ready["stage"]
    turn = ready["stage"][0]
    assert turn["site_name"] == "新碶街道分课堂"
    assert turn["offset"] == 0.0
    assert on_stage_at - 0.1 < turn["at"] < on_stage_at + 0.8, (turn, on_stage_at)
    assert turn["at"] + turn["duration"] == pytest.approx(off_stage_at, abs=0.8)

    # The room is heard over its turn and not before or after it; the
    # lecturer throughout.
    room_levels = tone_levels(str(media), ROOM_HZ)
    lecturer_levels = tone_levels(str(media), LECTURER_HZ)
    start, end = turn["at"], turn["at"] + turn["duration"]
    assert share_heard(room_levels, start + 0.3, end - 0.3) > 0.9
    assert share_heard(room_levels, 0.0, start - 0.3) == 0.0
    assert share_heard(room_levels, end + 1.3, ready["duration"]) == 0.0
    assert share_heard(lecturer_levels, 0.0, ready["duration"] - 0.2) > 0.95

    # The stage file shows room A's pictures (and carries its sound).
    assert ready["stage_url"] == f"/archive/{item['id']}/stage"
    async with service.http.get(f"{service.base}{ready['stage_url']}",
                                headers={**service.admin, "Range": "bytes=0-99"}) as response:
        assert response.status == 206
        assert len(await response.read()) == 100
    stage_file = service.app[ARCHIVE].media_path(item["id"], stage=True)
    assert isinstance(stage_file, Path) and decode_errors(stage_file) == ""
    with av.open(str(stage_file)) as container:
        indices = [read_barcode(frame) for frame in container.decode(video=0)]
    assert len(indices) > 30
    assert all(index >= A_START for index in indices), indices[:10]
    assert share_heard(tone_levels(str(stage_file), ROOM_HZ), 0.3, turn["duration"] - 0.3) > 0.9


async def test_a_replay_of_a_discussion_brings_the_room_back_on_stage(
        service: Service) -> None:
    """Re-broadcast (重播) of a recorded discussion: while the program plays
    through the turn, every room's stage shows the room that spoke then (its
    pictures from the stage file; its sound is in the lecture), named on the
    rooms' pages; before and after it the stage is empty."""
    item, _, _ = await record_discussion(service)
    [turn] = item["stage"]
    status, session = await call(service, "POST", "/api/v1/sessions",
                                 {"title": "第二批", "replay_item_id": item["id"]})
    assert status == 201, session
    sid = session["id"]
    room_c = await invite(service, session, "霞浦街道分课堂")
    viewer = await start_pair_viewer(service, sid, room_c["token"])
    events = await connect(service, sid, room_c["token"])
    stages: list[tuple[float, Any]] = []
    try:
        started = time.monotonic()
        status, replay = await call(service, "POST", f"/api/v1/sessions/{sid}/replay",
                                    {"action": "start"})
        assert status == 200 and replay["state"] == "playing", replay
        # The room's events until the end of the replay closes them.
        deadline = started + item["duration"] + 10
        while True:
            message = await events.ws.receive(timeout=deadline - time.monotonic())
            if message.type is not aiohttp.WSMsgType.TEXT:
                assert message.data == 4000, (message.type, message.data)  # session ended
                break
            data = json.loads(message.data)
            if "state" in data and (not stages or stages[-1][1] != data["state"]["stage"]):
                stages.append((time.monotonic() - started, data["state"]["stage"]))
    finally:
        await events.close()
        await viewer.close()
    # The rooms' pages were told who is on stage, then that nobody is.
    named = [stage for _, stage in stages if stage is not None]
    assert named and all(stage == {"invitation_id": None, "name": ROOM_NAME, "replayed": True}
                         for stage in named), stages
    assert stages[-1][1] is None, stages
    # The stage showed room A's pictures (its barcodes), over the turn only.
    assert viewer.program and min(viewer.program) < 30
    shown = [(at - started, index) for at, index in viewer.stage]
    assert len(shown) > 0.7 * 30 * turn["duration"], (len(shown), turn)
    assert all(index >= A_START for _, index in shown), shown[:5]
    first, last = shown[0][0], shown[-1][0]
    print(f"turn at {turn['at']:.2f} s for {turn['duration']:.2f} s; the replay's stage "
          f"showed {len(shown)} frames from {first:.2f} s to {last:.2f} s; pages: {stages}")
    assert turn["at"] - 0.2 < first < turn["at"] + 1.0, (first, turn)
    assert last < turn["at"] + turn["duration"] + 1.0, (last, turn)
    assert viewer.offers == 1


@pytest.mark.browser
async def test_a_rooms_page_shows_the_replayed_turn_on_stage(
        service: Service, chromium: Chromium) -> None:
    """Chromium: a room following the re-broadcast sees the recorded room's
    picture on stage, named, during its turn, and no stage after it."""
    item, _, _ = await record_discussion(service, before=3.0, turn=5.0, after=2.0)
    status, session = await call(service, "POST", "/api/v1/sessions",
                                 {"title": "第二批", "replay_item_id": item["id"]})
    assert status == 201, session
    room_c = await invite(service, session, "霞浦街道分课堂")
    page = await chromium.open(room_c["url"], "replay-room")
    await chromium.wait_for_js(page, "the room waiting with its discussion socket",
                               "() => window.zhixing.events === 'open'", UI_TIMEOUT)
    status, replay = await call(service, "POST", f"/api/v1/sessions/{session['id']}/replay",
                                {"action": "start"})
    assert status == 200, replay
    await chromium.wait_for_js(page, "the recorded room on stage",
                               "() => !document.getElementById('stage-box').hidden",
                               UI_TIMEOUT)
    assert ROOM_NAME in await text(page, "#stage-name")
    # Nobody presents a replay: no camera, hand or questions to offer.
    assert await page.evaluate("() => document.getElementById('discuss').hidden")
    first = await chromium.wait_for("the stage decoding", lambda: stage_frames(page),
                                    lambda n: n > 0, UI_TIMEOUT)
    await chromium.wait_for("the stage still decoding", lambda: stage_frames(page),
                            lambda n: n > first + 15, UI_TIMEOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-replay-stage.png")
    await chromium.wait_for_js(page, "the stage gone after the turn",
                               "() => document.getElementById('stage-box').hidden", UI_TIMEOUT)
