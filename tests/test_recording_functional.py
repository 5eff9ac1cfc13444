"""Recording a live session through the API, with real aiortc publishers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Service
from tests.media import start_publisher
from web.keys import ARCHIVE

pytestmark = pytest.mark.webrtc


async def api(service: Service, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with service.http.request(method, f"{service.base}{path}", headers=service.admin,
                                    **kwargs) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def wait_state(service: Service, item_id: str, states: tuple[str, ...],
                     timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, item = await api(service, "GET", f"/api/v1/archive/{item_id}")
        assert status == 200, item
        if item["state"] in states:
            return item
        assert time.monotonic() < deadline, item
        await asyncio.sleep(0.2)


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", str(path)], capture_output=True, text=True,
                         check=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def decode_errors(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True).stderr


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
