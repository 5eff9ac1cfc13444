"""Replay sessions (重播) through the API, with real aiortc viewers."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from recordings.finish import describe
from tests.support.browser import ARTIFACTS, Chromium
from tests.support.media import in_order, start_publisher, start_viewer
from tests.support.service import ADMIN_TOKEN, Service
from tests.support.service import call_json as call
from tests.support.synthetic import make_lecture
from web.app import create_app
from web.config import Config
from web.keys import ARCHIVE, REPLAYS

pytestmark = pytest.mark.webrtc

API = "/api/v1"




@pytest.fixture(scope="module")
def lectures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lectures")
    made = {"h264": folder / "h264.mp4", "vp8": folder / "vp8.webm",
            "aac": folder / "aac.mp4", "short": folder / "short.mp4",
            "minute": folder / "minute.mp4"}
    make_lecture(str(made["h264"]), 20.0)
    make_lecture(str(made["minute"]), 60.0, width=160, height=120)
    make_lecture(str(made["vp8"]), 6.0, "VP8")
    make_lecture(str(made["aac"]), 6.0, audio="aac")
    made["mpeg4"] = folder / "mpeg4.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=25:duration=2", "-c:v", "mpeg4",
                    str(made["mpeg4"])], check=True)
    make_lecture(str(made["short"]), 4.0)
    return made


def add_item(service: Service, source: Path, title: str = "重播的讲座") -> dict[str, Any]:
    """An archive item holding ``source`` (as finishing or import leaves one)."""
    archive = service.app[ARCHIVE]
    item = archive.create_item(title=title, recorded_at=1_760_000_000.0, origin="import",
                               state="finishing")
    folder = archive.recordings.item_dir(item["id"])
    folder.mkdir(parents=True)
    name = "lecture.mp4" if source.suffix == ".mp4" else "lecture.webm"
    (folder / name).write_bytes(source.read_bytes())
    archive.record_result(item["id"], describe(folder, name))
    found: dict[str, Any] = archive.item(item["id"])
    return found


async def replay_session(service: Service, item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    status, session = await call(service, "POST", f"{API}/sessions",
                                 {"title": "周二夜学", "replay_item_id": item["id"], **extra})
    assert status == 201, session
    return session  # type: ignore[no-any-return]


async def wait_until(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------
# scheduling and validation


async def test_a_replay_session_takes_the_items_codec_and_waits(service: Service,
                                                                lectures: dict[str, Path]) -> None:
    item = add_item(service, lectures["vp8"])
    session = await replay_session(service, item, title="")
    assert session["video_codec"] == "VP8"
    assert session["title"] == "重播的讲座"  # from the item when not given
    assert session["replay"] == {"item_id": item["id"], "item_title": "重播的讲座",
                                 "state": "waiting", "position": 0.0,
                                 "duration": item["duration"], "error": None,
                                 "starts_at": None}
    assert session["state"] == "scheduled"


async def test_items_that_cannot_be_replayed_are_refused_when_scheduling(
        service: Service, lectures: dict[str, Path]) -> None:
    archive = service.app[ARCHIVE]
    recording = archive.create_item(title="录制中", recorded_at=1_760_000_000.0)
    mpeg4 = add_item(service, lectures["mpeg4"])
    h264 = add_item(service, lectures["short"])
    cases = [
        ({"replay_item_id": "0123456789abcdef"}, "replay_item_id", "error.replay_unknown_item"),
        ({"replay_item_id": "../../etc"}, "replay_item_id", "error.replay_unknown_item"),
        ({"replay_item_id": 5}, "replay_item_id", "error.not_text"),
        ({"replay_item_id": recording["id"]}, "replay_item_id", "error.replay_not_ready"),
        ({"replay_item_id": mpeg4["id"]}, "replay_item_id", "error.replay_unplayable"),
        ({"replay_item_id": h264["id"], "video_codec": "VP8"}, "video_codec",
         "error.replay_codec_mismatch"),
    ]
    for body, field, key in cases:
        status, reply = await call(service, "POST", f"{API}/sessions", {"title": "x", **body})
        assert status == 422, (body, reply)
        assert f"{field} ({key})" in reply["error"], reply
    assert (await call(service, "GET", f"{API}/sessions"))[1]["sessions"] == []
    session = await replay_session(service, h264)
    status, reply = await call(service, "PATCH", f"{API}/sessions/{session['id']}",
                               {"replay_item_id": mpeg4["id"]})
    assert status == 422 and "error.fixed_once_created" in reply["error"]
    # The item cannot be deleted while a session will replay it.
    assert (await call(service, "DELETE", f"{API}/archive/{h264['id']}"))[0] == 409


async def test_a_replay_session_takes_no_publisher(service: Service,
                                                   lectures: dict[str, Path]) -> None:
    session = await replay_session(service, add_item(service, lectures["short"]))
    with pytest.raises(AssertionError, match="409"):
        await start_publisher(service.http, service.base, session["id"],
                              session["publish_token"])


async def test_replay_control_checks_state_and_input(service: Service,
                                                     lectures: dict[str, Path]) -> None:
    live = await service.create_session()
    path = f"{API}/sessions/{live['id']}/replay"
    assert (await call(service, "POST", path, {"action": "start"}))[0] == 409
    session = await replay_session(service, add_item(service, lectures["short"]))
    path = f"{API}/sessions/{session['id']}/replay"
    for body in ({"action": "pause"}, {"action": "resume"}, {"action": "seek", "position": 1}):
        assert (await call(service, "POST", path, body))[0] == 409, body
    for body in ({}, {"action": "rewind"}, {"action": "seek"},
                 {"action": "seek", "position": -1}, {"action": "seek", "position": "1"},
                 {"action": "seek", "position": True}):
        assert (await call(service, "POST", path, body))[0] == 422, body
    for token in (None, "wrong"):
        assert (await call(service, "POST", path, {"action": "start"}, token=token))[0] == 401
    for token in (session["view_token"], session["publish_token"]):
        assert (await call(service, "POST", path, {"action": "start"}, token=token))[0] == 403
    assert (await call(service, "POST", f"{API}/sessions/nope/replay",
                       {"action": "start"}))[0] == 404
    assert (await call(service, "GET", f"{API}/sessions/{session['id']}"))[1]["replay"][
        "state"] == "waiting"


# --------------------------------------------------------------------------
# playing


@pytest.mark.parametrize("codec", ["h264", "vp8", "aac"])
async def test_viewers_of_a_replay_decode_the_lecture_in_order(
        service: Service, lectures: dict[str, Path], codec: str) -> None:
    session = await replay_session(service, add_item(service, lectures[codec]))
    viewers = [await start_viewer(service.http, service.base, session["id"],
                                  session["view_token"]) for _ in range(3)]
    try:
        status, replay = await call(service, "POST", f"{API}/sessions/{session['id']}/replay",
                                    {"action": "start"})
        assert status == 200 and replay["state"] == "playing", replay
        assert (await call(service, "GET", f"{API}/sessions/{session['id']}"))[1]["state"] == \
            "live"
        await asyncio.gather(*(v.wait_for_frames(90, timeout=15) for v in viewers))
        for viewer in viewers:
            assert in_order(viewer.indices), viewer.indices[:50]
            assert viewer.indices[0] < 10  # from the start of the lecture
            span = viewer.indices[-1] - viewer.indices[0] + 1
            assert len(viewer.indices) >= 0.9 * span
            assert viewer.audio_frames > 0
    finally:
        for viewer in viewers:
            await viewer.close()


async def test_a_late_viewer_catches_up_at_once(service: Service,
                                                lectures: dict[str, Path]) -> None:
    session = await replay_session(service, add_item(service, lectures["h264"]))
    await call(service, "POST", f"{API}/sessions/{session['id']}/replay", {"action": "start"})
    await asyncio.sleep(random.uniform(2.5, 5.0))  # into a 2 s GOP, anywhere
    asked = time.monotonic()
    late = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    try:
        await late.wait_for_frames(30, timeout=10)
        assert late.first_frame_at is not None
        first_frame = late.first_frame_at - asked
        print(f"late joiner: first decoded frame {first_frame * 1000:.0f} ms after its offer")
        assert first_frame < 1.0
        assert in_order(late.indices)
        # Its first frames are the keyframe's and those after it (the burst).
        assert late.indices[0] % 60 == 0
    finally:
        await late.close()


async def test_pause_resume_and_seek_through_the_api(service: Service,
                                                     lectures: dict[str, Path]) -> None:
    session = await replay_session(service, add_item(service, lectures["h264"]))
    path = f"{API}/sessions/{session['id']}/replay"
    viewer = await start_viewer(service.http, service.base, session["id"],
                                session["view_token"])
    try:
        await call(service, "POST", path, {"action": "start"})
        await viewer.wait_for_frames(30, timeout=10)
        status, replay = await call(service, "POST", path, {"action": "pause"})
        assert status == 200 and replay["state"] == "paused"
        count = len(viewer.indices)
        await asyncio.sleep(1.0)
        assert len(viewer.indices) <= count + 3  # what was in flight
        status, replay = await call(service, "POST", path, {"action": "seek", "position": 12.0})
        assert status == 200 and replay["state"] == "playing"
        await viewer.wait_for_frames(len(viewer.indices) + 30, timeout=10)
        assert viewer.indices[-1] >= 12 * 30  # frames from 12 s on
        status, replay = await call(service, "POST", path, {"action": "pause"})
        status, replay = await call(service, "POST", path, {"action": "resume"})
        assert status == 200 and replay["state"] == "playing"
    finally:
        await viewer.close()


async def test_a_minute_long_replay_ends_the_session_on_time(
        service: Service, lectures: dict[str, Path]) -> None:
    """60 s of lecture, for real: paced against media time, the session ends
    with the file within half a second of its length."""
    item = add_item(service, lectures["minute"])
    session = await replay_session(service, item)
    started = time.monotonic()
    await call(service, "POST", f"{API}/sessions/{session['id']}/replay", {"action": "start"})

    async def ended() -> bool:
        body = (await call(service, "GET", f"{API}/sessions/{session['id']}"))[1]
        return body["state"] == "ended"

    await wait_until(ended, timeout=75)
    took = time.monotonic() - started
    print(f"a {item['duration']:.3f} s replay took {took:.3f} s")
    assert abs(took - item["duration"]) <= 0.5, (took, item["duration"])
    body = (await call(service, "GET", f"{API}/sessions/{session['id']}"))[1]
    assert body["replay"]["state"] == "ended"


async def test_a_corrupt_file_fails_clearly_and_the_server_stays_up(
        service: Service, lectures: dict[str, Path]) -> None:
    item = add_item(service, lectures["h264"])
    session = await replay_session(service, item)
    media = service.app[ARCHIVE].media_path(item["id"])
    data = media.read_bytes()
    media.write_bytes(data[: len(data) // 3] + bytes(random.Random(1).randbytes(50_000)))
    await call(service, "POST", f"{API}/sessions/{session['id']}/replay", {"action": "start"})

    async def finished() -> dict[str, Any] | None:
        replay = (await call(service, "GET", f"{API}/sessions/{session['id']}"))[1]["replay"]
        return replay if replay["state"] in ("failed", "ended") else None

    replay = await wait_until(finished, timeout=20)
    if replay["state"] == "failed":
        assert replay["error"]
    assert (await call(service, "GET", "/healthz", token=None))[0] == 200
    # Another session still works.
    other = await replay_session(service, add_item(service, lectures["short"]))
    assert (await call(service, "POST", f"{API}/sessions/{other['id']}/replay",
                       {"action": "start"}))[0] == 200


async def test_a_failed_replay_shows_rooms_an_error_and_can_be_restarted(
        service: Service, lectures: dict[str, Path]) -> None:
    item = add_item(service, lectures["h264"])
    session = await replay_session(service, item)
    site = (await call(service, "POST", f"{API}/sites", {"name": "新碶街道分课堂"}))[1]
    invitation = (await call(service, "POST", f"{API}/sessions/{session['id']}/invitations",
                             {"site_id": site["id"]}))[1]
    media = service.app[ARCHIVE].media_path(item["id"])
    saved = media.read_bytes()
    media.write_bytes(b"gone")
    await call(service, "POST", f"{API}/sessions/{session['id']}/replay", {"action": "start"})
    replay = (await call(service, "GET", f"{API}/sessions/{session['id']}"))[1]["replay"]
    assert replay["state"] == "failed" and "unreadable" in replay["error"]
    room = (await call(service, "GET", f"{API}/room", token=invitation["token"]))[1]
    assert room["program_failed"] and room["replay"] and not room["publisher_connected"]
    media.write_bytes(saved)  # the admin puts the file back
    status, replay = await call(service, "POST", f"{API}/sessions/{session['id']}/replay",
                                {"action": "start"})
    assert status == 200 and replay["state"] == "playing"
    room = (await call(service, "GET", f"{API}/room", token=invitation["token"]))[1]
    assert not room["program_failed"] and room["publisher_connected"]


# --------------------------------------------------------------------------
# the schedule survives a restart


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start() -> Service:
        config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                        ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN)
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Service(str(server.make_url("")).rstrip("/"), http, server.app)

    async with aiohttp.ClientSession() as http:
        yield start
        for server in servers:
            await server.close()


async def test_a_scheduled_replay_starts_on_time_after_a_restart(
        restartable: Any, lectures: dict[str, Path]) -> None:
    first: Service = await restartable()
    item = add_item(first, lectures["short"])
    starts = time.time() + 4.0
    session = await replay_session(first, item, scheduled_start=starts)
    assert session["replay"]["starts_at"] == starts
    await first.app[REPLAYS].close()
    for server_app in (first.app,):
        assert server_app[REPLAYS].describe(session["id"])["state"] == "waiting"
    # The server goes down before the start time and comes back.
    second: Service = await restartable()

    async def playing() -> bool:
        replay = (await call(second, "GET", f"{API}/sessions/{session['id']}"))[1]["replay"]
        return replay["state"] == "playing"

    await wait_until(playing, timeout=10)
    assert time.time() >= starts - 0.1
    assert time.time() < starts + 1.0


@pytest.mark.browser
async def test_a_room_link_of_a_replay_session_plays_in_chromium(
        service: Service, chromium: Chromium, lectures: dict[str, Path]) -> None:
    session = await replay_session(service, add_item(service, lectures["h264"]))
    site = (await call(service, "POST", f"{API}/sites", {"name": "北仑区委党校"}))[1]
    invitation = (await call(service, "POST", f"{API}/sessions/{session['id']}/invitations",
                             {"site_id": site["id"]}))[1]
    page = await chromium.open(invitation["url"], "replay-room")
    await chromium.wait_for_js(page, "the waiting screen",
                               "() => !document.getElementById('waiting').hidden", 20)
    await call(service, "POST", f"{API}/sessions/{session['id']}/replay", {"action": "start"})
    await chromium.wait_for_frames(page, 30, 30)
    await chromium.wait_for_js(page, "the picture, no screen over it",
                               "() => document.getElementById('waiting').hidden", 10)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-playing.png")
