"""A server killed while recording loses seconds, never the lecture.

A real ``zhixing serve`` process records an aiortc publisher, is SIGKILLed,
and is started again on the same data folder: the unfinished item is
finished at start-up and its duration matches what was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.media import start_publisher
from tests.support.probe import decode_errors
from tests.support.server_process import free_port, zhixing_serve

pytestmark = [pytest.mark.webrtc, pytest.mark.usefixtures("loopback_candidates")]

TOKEN = "crash-test-admin-token"


def serve(data: Path, port: int) -> contextlib.AbstractAsyncContextManager[
        asyncio.subprocess.Process]:
    return zhixing_serve(data, port, TOKEN, extra=["--log-level", "warning"], stop_timeout=15)


async def call(http: aiohttp.ClientSession, method: str, url: str) -> tuple[int, Any]:
    async with http.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


def leftover_finishers(data: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"recordings.finish {data}"], capture_output=True,
                         text=True).stdout
    return out.split()


async def test_a_killed_server_finishes_the_recording_when_it_comes_back(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with serve(data, port) as process:
            async with http.post(f"{base}/api/v1/sessions", json={"title": "第一讲"},
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                assert response.status == 201
                session = await response.json()
            publisher = await start_publisher(http, base, session["id"],
                                              session["publish_token"])
            try:
                status, item = await call(http, "POST",
                                          f"{base}/api/v1/sessions/{session['id']}/recording")
                assert status == 201, item
                started = time.monotonic()
                await asyncio.sleep(10)
                status, live = await call(http, "GET",
                                          f"{base}/api/v1/sessions/{session['id']}/recording")
                assert status == 200
                process.kill()  # SIGKILL: no shutdown, no trailer, no finishing
                recorded = time.monotonic() - started
                await process.wait()
            finally:
                await publisher.close()
        item_dir = data / "archive" / item["id"]
        assert list((item_dir / "parts").glob("seg-*.mkv")), "nothing was on disk"
        async with serve(data, port):
            deadline = time.monotonic() + 60
            while True:
                status, found = await call(http, "GET", f"{base}/api/v1/archive/{item['id']}")
                assert status == 200
                if found["state"] in ("ready", "failed"):
                    break
                assert time.monotonic() < deadline, found
                await asyncio.sleep(0.2)
    assert found["state"] == "ready", found
    # From the first keyframe (a few hundred ms after the start) to the kill,
    # less at most about one second of unwritten cluster.
    assert recorded - 1.5 <= found["duration"] <= recorded + 0.1, (found["duration"], recorded)
    # What had been muxed just before the kill, less at most one cluster.
    assert found["duration"] >= live["duration"] - 1.1, (found["duration"], live["duration"])
    media = item_dir / "lecture.mp4"
    assert decode_errors(media) == ""
    assert not (item_dir / "parts").exists()
    assert leftover_finishers(data) == []
