"""The recording of a discussion (研讨): the rooms brought on stage are in it.

Real aiortc peers: the program publisher sends a 440 Hz tone, room A's uplink
a 1500 Hz tone and barcodes from ``A_START``. The presenter brings A on stage
for a few seconds while the session is recorded; the finished lecture must
let A be heard over its turn (and only then), keep the lecturer audible
throughout, and the stage file must show A's pictures.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest

from tests.conftest import Service
from tests.media import read_barcode, start_publisher
from tests.synthetic import tone_levels
from tests.test_discussion import A_START, Events, connect
from tests.test_recording_functional import api, decode_errors, wait_state
from tests.test_timeshift import invite
from web.keys import ARCHIVE, SESSIONS

pytestmark = pytest.mark.webrtc

LECTURER_HZ, ROOM_HZ = 440.0, 1500.0
HEARD = 0.05  # amplitude of a tone that can be heard (the peers send ≈ 0.24)


def share_heard(levels: list[tuple[float, float]], start: float, end: float) -> float:
    inside = [level for at, level in levels if start <= at < end]
    assert inside, (start, end)
    return sum(level > HEARD for level in inside) / len(inside)


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_the_recording_of_a_discussion_contains_the_stage(
        service: Service, codec: str) -> None:
    session = await service.create_session(video_codec=codec)
    sid = session["id"]
    room_a = await invite(service, session, "新碶街道分课堂")
    room = service.app[SESSIONS].get(sid).room
    assert room.video_codec == codec
    w, h = 256, 96
    program = await start_publisher(service.http, service.base, sid,
                                    session["publish_token"], width=w, height=h,
                                    tone=LECTURER_HZ)
    uplink = await start_publisher(service.http, service.base, sid, room_a["token"],
                                   start=A_START, width=w, height=h, tone=ROOM_HZ)
    presenter: Events | None = None
    try:
        presenter = await connect(service, sid, session["publish_token"])
        await presenter.wait_for("A's uplink connected", lambda st: [
            u["connected"] for u in st["uplinks"]] == [True])
        status, item = await api(service, "POST", f"/api/v1/sessions/{sid}/recording")
        assert status == 201, item
        recorder = service.app[ARCHIVE].recordings.active[item["id"]]
        deadline = time.monotonic() + 10
        while recorder.started_at is None:
            assert time.monotonic() < deadline, "the recording did not start"
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        on_stage_at = time.monotonic() - recorder.started_at
        assert (await presenter.call("stage", invitation_id=room_a["id"]))["type"] == "ack"
        await asyncio.sleep(3.0)
        assert (await presenter.call("stage", invitation_id=None))["type"] == "ack"
        off_stage_at = time.monotonic() - recorder.started_at
        await asyncio.sleep(2.0)
        status, stopped = await api(service, "DELETE", f"/api/v1/sessions/{sid}/recording")
        assert status == 200, stopped
    finally:
        if presenter is not None:
            await presenter.close()
        await uplink.close()
        await program.close()
    ready = await wait_state(service, item["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready
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
