"""``zhixing serve --workers 2`` for real: a real ``redis-server`` and the main
process, which starts two workers; rooms are decoding aiortc viewers, sent to
the workers by the main process's redirects."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.media import in_order, start_publisher, start_viewer
from tests.support.redis_server import redis_server
from tests.support.server_process import free_port, tail, zhixing_serve

pytestmark = [pytest.mark.webrtc, pytest.mark.usefixtures("loopback_candidates")]

ADMIN = "workers-test-admin-token"


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


async def test_rooms_spread_over_two_workers_and_every_feature_follows(
        tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    async with redis_server(tmp_path / "redis") as redis, aiohttp.ClientSession() as http, \
            zhixing_serve(tmp_path / "data", port, ADMIN, log=log,
                          extra=["--redis", redis.url, "--workers", "2"]):
        base = f"http://127.0.0.1:{port}"
        workers = {f"http://127.0.0.1:{port + i}" for i in (1, 2)}

        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, base + path, json=body,
                                    headers={"Authorization": f"Bearer {ADMIN}"}) as reply:
                assert reply.status < 300, (reply.status, await reply.text())
                return await reply.json() if reply.status != 204 else None

        session = await call("POST", "/api/v1/sessions", {"title": "第一讲"})
        rooms = []
        for index, path in enumerate(("北仑区 / 新碶街道", "鄞州区 / 首南街道",
                                      "海曙区 / 鼓楼街道", "江北区 / 慈城镇")):
            site = await call("POST", "/api/v1/sites", {"name": f"分课堂{index}",
                                                        "org_path": path})
            rooms.append(await call("POST", f"/api/v1/sessions/{session['id']}/invitations",
                                    {"site_id": site["id"]}))

        # Both workers in the directory: the rooms are redirected to them.
        deadline = time.monotonic() + 15
        seen: set[str] = set()
        while seen != workers:
            assert time.monotonic() < deadline, (seen, tail(log))
            async with http.post(f"{base}/whep/{session['id']}", allow_redirects=False,
                                 headers={"Authorization": f"Bearer {rooms[0]['token']}"}
                                 ) as reply:
                if reply.status == 307:
                    seen.add(reply.headers["Location"].split("/whep/")[0])
            await asyncio.sleep(0.3)
        await asyncio.sleep(3.5)  # the probes' redirects no longer count in the loads

        publisher = await start_publisher(http, base, session["id"], session["publish_token"])
        viewers = []
        try:
            for room in rooms:
                viewers.append(await start_viewer(http, base, session["id"], room["token"]))
            for viewer in viewers:
                await viewer.wait_for_frames(60, timeout=30)
                assert in_order(viewer.indices)
            loads = []
            for url in sorted(workers):
                async with http.get(f"{url}/healthz") as reply:
                    loads.append((await reply.json())["viewers"])
            # Least loaded first, each redirect counted for 3 s: 2 and 2 on a quiet
            # machine; a room that takes longer than that to connect (a loaded CI box)
            # may tip one more onto a worker, never all onto one.
            assert sum(loads) == 4 and min(loads) >= 1, loads
            info = await call("GET", f"/api/v1/sessions/{session['id']}")
            assert info["stats"]["viewer_count"] == 2, info["stats"]  # one pull per worker

            deadline = time.monotonic() + 10
            while True:
                report = await call("GET", f"/api/v1/sessions/{session['id']}/attendance")
                if all(r["connected"] for r in report["invitations"]):
                    break
                assert time.monotonic() < deadline, report
                await asyncio.sleep(0.2)
            presence = await call("GET", f"/api/v1/sessions/{session['id']}/presence")
            assert all(s["connected_viewers"] == 1 for s in presence["sites"]), presence

            revoked_at = time.monotonic()
            await call("DELETE", f"/api/v1/invitations/{rooms[1]['id']}")
            while viewers[1].pc.connectionState not in ("closed", "failed"):
                assert time.monotonic() - revoked_at < 2.0, tail(log)
                await asyncio.sleep(0.05)
            ended_at = time.monotonic()
            await call("DELETE", f"/api/v1/sessions/{session['id']}")
            for viewer in (viewers[0], viewers[2], viewers[3]):
                while viewer.pc.connectionState not in ("closed", "failed"):
                    assert time.monotonic() - ended_at < 2.0, tail(log)
                    await asyncio.sleep(0.05)
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close()
    # Stopping the main process stopped its workers.
    assert not listening(port + 1) and not listening(port + 2)
