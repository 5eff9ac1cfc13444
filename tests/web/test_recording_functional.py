"""Recording a live session through the API, with real aiortc publishers."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.archive_helpers import api, wait_state
from tests.support.media import start_publisher
from tests.support.probe import decode_errors, ffprobe
from tests.support.service import Service
from web.keys import ARCHIVE

pytestmark = pytest.mark.webrtc


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_a_recorded_session_becomes_a_playable_archive_item(
        service: Service, codec: str) -> None:
    session = await service.create_session(video_codec=codec)
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    try:
        status, item = await api(service, "POST", f"/api/v1/sessions/{session['id']}/recording")
        assert status == 201, item
        assert item["state"] == "recording"
        await asyncio.sleep(4)
        status, live = await api(service, "GET", f"/api/v1/sessions/{session['id']}/recording")
        assert status == 200 and live["item_id"] == item["id"]
        assert live["duration"] > 1, live
        stopped_at = time.monotonic()
        status, stopped = await api(service, "DELETE",
                                    f"/api/v1/sessions/{session['id']}/recording")
        assert status == 200 and stopped["state"] in ("finishing", "ready"), stopped
    finally:
        await publisher.close()
    ready = await wait_state(service, item["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready
    finished_in = time.monotonic() - stopped_at
    media = service.app[ARCHIVE].media_path(item["id"])
    probe = ffprobe(media)
    kinds = sorted(s["codec_type"] for s in probe["streams"])
    assert kinds == ["audio", "video"], probe
    assert abs(float(probe["format"]["duration"]) - ready["duration"]) < 0.2
    assert 2.5 < ready["duration"] < 6, ready
    assert decode_errors(media) == ""
    assert media.suffix == (".mp4" if codec == "H264" else ".webm")
    assert ready["poster_url"] and ready["media_url"]
    assert finished_in < 10


async def test_a_publisher_reconnect_continues_the_same_item(service: Service) -> None:
    session = await service.create_session(video_codec="H264")
    path = f"/api/v1/sessions/{session['id']}/recording"
    first = await start_publisher(service.http, service.base, session["id"],
                                  session["publish_token"])
    second = None
    try:
        status, item = await api(service, "POST", path)
        assert status == 201
        started = time.monotonic()
        await asyncio.sleep(3)
        await first.close()  # the classroom PC drops off ...
        await asyncio.sleep(1)
        # ... and comes back with another picture size.
        second = await start_publisher(service.http, service.base, session["id"],
                                       session["publish_token"], start=5000, width=480,
                                       height=360)
        await asyncio.sleep(3)
        status, live = await api(service, "GET", path)
        assert status == 200 and live["segments"] == 2, live
        status, _ = await api(service, "DELETE", path)
        elapsed = time.monotonic() - started
        assert status == 200
    finally:
        await first.close()
        if second is not None:
            await second.close()
    ready = await wait_state(service, item["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready
    listed = (await api(service, "GET", "/api/v1/archive"))[1]["items"]
    assert [i["id"] for i in listed] == [item["id"]]  # one item for the lecture
    media = service.app[ARCHIVE].media_path(item["id"])
    assert decode_errors(media) == ""
    # The gap keeps its wall-clock length: the item is as long as the lecture.
    assert elapsed - 1.5 < ready["duration"] <= elapsed + 0.2, (ready["duration"], elapsed)
