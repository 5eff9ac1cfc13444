"""Faults: a publisher flapping (in process, real aiortc peers); and of a real
``zhixing serve`` process, SIGKILL while a recording is being finished, and
the archive's disk filling up in the middle of a recording (a real ENOSPC:
the archive is a small tmpfs mounted in the server's own mount namespace).

Slow (about half a minute each); CI runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.media import in_order, make_bad_link, start_publisher, start_viewer
from tests.support.probe import decode_errors, ffprobe
from tests.support.server_process import free_port, tail, zhixing_serve
from tests.support.service import Service

pytestmark = [pytest.mark.slow, pytest.mark.webrtc, pytest.mark.usefixtures("loopback_candidates")]

TOKEN = "fault-test-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def serving(data: Path, port: int, log: Path, wrapper: list[str] | None = None
            ) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    return zhixing_serve(data, port, TOKEN, log=log, wrapper=wrapper or (),
                         extra=["--min-free-mb", "1", "--log-level", "info"])


async def call(http: aiohttp.ClientSession, method: str, url: str) -> tuple[int, Any]:
    async with http.request(method, url, headers=HEADERS) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def wait_item(http: aiohttp.ClientSession, base: str, item_id: str,
                    states: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, item = await call(http, "GET", f"{base}/api/v1/archive/{item_id}")
        assert status == 200, item
        if item["state"] in states:
            return dict(item)
        assert time.monotonic() < deadline, item
        await asyncio.sleep(0.2)


def finishers(item_dir: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"recordings.finish {item_dir}"],
                         capture_output=True, text=True).stdout
    return out.split()


async def test_sigkill_while_finishing_then_restart(tmp_path: Path) -> None:
    data, port, log = tmp_path / "data", free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with serving(data, port, log) as process:
            async with http.post(f"{base}/api/v1/sessions", json={"title": "第一讲"},
                                 headers=HEADERS) as response:
                assert response.status == 201
                session = await response.json()
            publisher = await start_publisher(http, base, session["id"],
                                              session["publish_token"])
            try:
                status, item = await call(http, "POST",
                                          f"{base}/api/v1/sessions/{session['id']}/recording")
                assert status == 201, item
                started = time.monotonic()
                await asyncio.sleep(6)
                status, stopped = await call(
                    http, "DELETE", f"{base}/api/v1/sessions/{session['id']}/recording")
                recorded = time.monotonic() - started
                assert status == 200, stopped
                assert stopped["state"] == "finishing", stopped
                process.kill()  # while the child remuxes: no shutdown at all
                await process.wait()
            finally:
                await publisher.close()
        item_dir = data / "archive" / item["id"]
        deadline = time.monotonic() + 5
        while finishers(item_dir):  # the child went with its server
            assert time.monotonic() < deadline, f"orphan finishing: {finishers(item_dir)}"
            await asyncio.sleep(0.1)
        async with serving(data, port, log):
            found = await wait_item(http, base, item["id"], ("ready", "failed"))
    assert found["state"] == "ready", (found, tail(log))
    assert recorded - 1.5 <= found["duration"] <= recorded + 0.1, (found["duration"], recorded)
    assert decode_errors(item_dir / "lecture.mp4") == ""
    assert not (item_dir / "parts").exists()


async def test_the_archive_disk_filling_up_mid_recording(tmp_path: Path) -> None:
    # scripts/run-tests runs the suite as root, or as root of a user namespace.
    assert os.geteuid() == 0, "mounting a tmpfs needs root: run the suite with scripts/run-tests"
    data, port, log = tmp_path / "data", free_port(), tmp_path / "serve.log"
    archive = data / "archive"
    archive.mkdir(parents=True)
    # The server alone sees an 8 MiB archive disk (its own mount namespace).
    wrapper = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               f"mount -t tmpfs -o size=8m zhixing-test {archive} && exec \"$@\"", "sh"]
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http, serving(data, port, log, wrapper) as process:
        # The archive as the server sees it.
        seen = Path(f"/proc/{process.pid}/root") / archive.relative_to("/")
        async with http.post(f"{base}/api/v1/sessions", json={"title": "第一讲"},
                             headers=HEADERS) as response:
            session = await response.json()
        publisher = await start_publisher(http, base, session["id"], session["publish_token"])
        viewer = await start_viewer(http, base, session["id"], session["view_token"])
        try:
            status, item = await call(http, "POST",
                                      f"{base}/api/v1/sessions/{session['id']}/recording")
            assert status == 201, item
            await viewer.wait_for_frames(30, timeout=15)
            await asyncio.sleep(2)
            filler = seen / "filler"
            with filler.open("wb") as out, contextlib.suppress(OSError):
                while True:  # until ENOSPC
                    out.write(b"\0" * 65536)
                    out.flush()
            failed = await wait_item(http, base, item["id"], ("failed", "ready"), timeout=20)
            assert failed["state"] == "failed" and "disk" in failed["failure"], failed
            # The relay carries on: the room keeps its picture.
            before = len(viewer.indices)
            await asyncio.sleep(2)
            assert len(viewer.indices) >= before + 20, (before, len(viewer.indices))
            status, live = await call(http, "GET", f"{base}/api/v1/sessions/{session['id']}")
            assert status == 200 and live["stats"]["publisher_connected"], live
            # Room made again: the next recording of the same session works.
            filler.unlink()
            status, again = await call(http, "POST",
                                       f"{base}/api/v1/sessions/{session['id']}/recording")
            assert status == 201, again
            assert again["id"] != item["id"]
            await asyncio.sleep(3)
            status, _ = await call(http, "DELETE",
                                   f"{base}/api/v1/sessions/{session['id']}/recording")
            assert status == 200
            ready = await wait_item(http, base, again["id"], ("ready", "failed"))
            assert ready["state"] == "ready", ready
            media = seen / again["id"] / "lecture.mp4"
            assert decode_errors(media) == ""
            assert float(ffprobe(media)["format"]["duration"]) > 2.0
        finally:
            await viewer.close()
            await publisher.close()


FLAPS = 10


async def test_a_flapping_publisher_never_makes_viewers_renegotiate(service: Service) -> None:
    """The classroom PC's network drops and comes back ten times: each new
    publisher reaches the same viewer resources, connected and stable, on
    the transceivers they negotiated once."""
    session = await service.create_session(video_codec="VP8")
    viewers = [await start_viewer(service.http, service.base, session["id"],
                                  session["view_token"]) for _ in range(3)]
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    gaps: list[float] = []
    try:
        await asyncio.gather(*(v.wait_for_frames(20, timeout=15) for v in viewers))
        resources = {v["id"] for v in (await service.session(session["id"]))["stats"]["viewers"]}
        transceivers = [len(v.pc.getTransceivers()) for v in viewers]
        for flap in range(1, FLAPS + 1):
            await publisher.close()  # gone without a DELETE
            await asyncio.sleep(0.3)
            start = flap * 1000
            dropped = time.monotonic()
            publisher = await start_publisher(service.http, service.base, session["id"],
                                              session["publish_token"], start=start)
            for viewer in viewers:
                deadline = dropped + 5.0
                while not any(start <= i < start + 1000 for i in viewer.indices[-30:]):
                    assert time.monotonic() < deadline, (
                        f"flap {flap}: no frame of the new publisher: {viewer.indices[-5:]}")
                    await asyncio.sleep(0.05)
            gaps.append(time.monotonic() - dropped)
        stats = (await service.session(session["id"]))["stats"]
        assert {v["id"] for v in stats["viewers"]} == resources  # never a new resource
        assert stats["publishers_accepted"] == FLAPS + 1
        for viewer, count in zip(viewers, transceivers, strict=True):
            assert viewer.pc.connectionState == "connected"
            assert viewer.pc.signalingState == "stable"
            assert len(viewer.pc.getTransceivers()) == count
            for flap in range(1, FLAPS + 1):  # each publisher's frames in order
                own = [i for i in viewer.indices if flap * 1000 <= i < flap * 1000 + 1000]
                assert own and in_order(own), (flap, own[:20])
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
    print(f"publisher flaps: {FLAPS}; drop to the new publisher's picture at every viewer: "
          f"max {max(gaps):.2f} s, median {sorted(gaps)[len(gaps) // 2]:.2f} s")


async def test_five_percent_loss_and_jitter_on_the_publishers_link(service: Service) -> None:
    """5 % of the publisher's RTP lost and the rest delayed 0-30 ms (so
    reordered): the viewers keep at least 25 fps, never a frozen picture
    over 2 s."""
    session = await service.create_session(video_codec="VP8")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"], width=640, height=480)
    dropped = make_bad_link(publisher.pc, loss=0.05, jitter=0.030)
    viewers = [await start_viewer(service.http, service.base, session["id"],
                                  session["view_token"]) for _ in range(2)]
    try:
        await asyncio.gather(*(v.wait_for_frames(30, timeout=20) for v in viewers))
        window, step = 15.0, 0.05
        counts = [len(v.indices) for v in viewers]
        seen = list(counts)
        last_new = [time.monotonic()] * len(viewers)
        frozen = [0.0] * len(viewers)
        started = time.monotonic()
        while time.monotonic() - started < window:
            await asyncio.sleep(step)
            now = time.monotonic()
            for n, viewer in enumerate(viewers):
                if len(viewer.indices) > seen[n]:
                    seen[n] = len(viewer.indices)
                    last_new[n] = now
                frozen[n] = max(frozen[n], now - last_new[n])
        elapsed = time.monotonic() - started
        fps = [(len(v.indices) - counts[n]) / elapsed for n, v in enumerate(viewers)]
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
    print(f"5 % loss + 0-30 ms jitter on the publisher's link: viewers' fps "
          f"{', '.join(f'{f:.1f}' for f in fps)}; longest frozen picture "
          f"{max(frozen):.2f} s; {dropped[0]} packets dropped")
    assert dropped[0] >= 50, "the bad link dropped too little to prove anything"
    assert min(fps) >= 25.0, fps
    assert max(frozen) <= 2.0, frozen
