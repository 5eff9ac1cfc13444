"""``zhixing serve`` with workers for real: the main process starts two
workers, which report over Redis (a real ``redis-server``, ``--redis``) or,
by default, over their sockets to it; rooms are decoding aiortc viewers, sent
to the workers by the main process's redirects."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.media import in_order, start_publisher, start_viewer
from tests.support.redis_server import redis_server
from tests.support.server_process import free_port, tail, zhixing_serve
from tests.support.wall import raw_snapshot_until
from web.config import Config, add_serve_arguments, config_from_args
from web.workers import as_seen_from, worker_url

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


def children(pid: int) -> dict[int, str]:
    """The child processes of ``pid`` and their command lines."""
    found = {}
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes() \
                    .replace(b"\0", b" ").decode(errors="replace")
    return found


async def test_one_box_runs_a_worker_a_core_without_redis(tmp_path: Path) -> None:
    """No --workers and no --redis on two cores: two workers that report over
    their sockets; every room feature follows, and a worker SIGKILLed leaves
    the directory at once."""
    port = free_port()
    log = tmp_path / "serve.log"
    cores = sorted(os.sched_getaffinity(0))
    # Pinned to two cores, so that the default (a worker a core) is two; a
    # one-core machine asks for the two workers (the default has its own test).
    how: dict[str, Any] = {"workers": 2}
    if len(cores) >= 2:
        how = {"workers": None, "wrapper": ["taskset", "-c", f"{cores[0]},{cores[1]}"]}
    async with aiohttp.ClientSession() as http, \
            zhixing_serve(tmp_path / "data", port, ADMIN, log=log, **how) as main:
        base = f"http://127.0.0.1:{port}"
        workers = [f"http://127.0.0.1:{port + i}" for i in (1, 2)]

        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, base + path, json=body,
                                    headers={"Authorization": f"Bearer {ADMIN}"}) as reply:
                assert reply.status < 300, (reply.status, await reply.text())
                return await reply.json() if reply.status != 204 else None

        async def sent_to(token: str) -> str | None:
            """Where the main process sends a room (None: it answers itself)."""
            async with http.post(f"{base}/whep/{session['id']}", allow_redirects=False,
                                 headers={"Authorization": f"Bearer {token}"}) as reply:
                if reply.status != 307:
                    return None
                location: str = reply.headers["Location"]
                assert f"token={token}" in location
                return location.split("/whep/")[0]

        async def presence() -> dict[str, int]:
            listed = await call("GET", f"/api/v1/sessions/{session['id']}/presence")
            return {s["invitation_id"]: s["connected_viewers"] for s in listed["sites"]}

        async def closed_within(viewer: Any, seconds: float, since: float) -> None:
            while viewer.pc.connectionState not in ("closed", "failed"):
                assert time.monotonic() - since < seconds, tail(log)
                await asyncio.sleep(0.05)

        session = await call("POST", "/api/v1/sessions", {"title": "第一讲"})
        rooms, sites = [], []
        for index in range(5):
            sites.append(await call("POST", "/api/v1/sites", {
                "name": f"分课堂{index}", "org_path": f"北仑区 / 街道{index}"}))
            rooms.append(await call("POST", f"/api/v1/sessions/{session['id']}/invitations",
                                    {"site_id": sites[-1]["id"]}))

        deadline = time.monotonic() + 15
        seen: set[str | None] = set()
        while not set(workers) <= seen:
            assert time.monotonic() < deadline, (seen, tail(log))
            seen.add(await sent_to(rooms[0]["token"]))
            await asyncio.sleep(0.3)
        await asyncio.sleep(3.5)  # the probes' redirects no longer count in the loads

        publisher = await start_publisher(http, base, session["id"], session["publish_token"])
        viewers: list[Any] = []
        try:
            # What a room page's fetch does: the main process's 307, then the worker.
            where = []
            for room in rooms[:4]:
                worker = await sent_to(room["token"])
                assert worker in workers, worker
                where.append(worker)
                viewers.append(await start_viewer(http, worker, session["id"], room["token"]))
            assert set(where) == set(workers), where
            # The view token (OBS, the bare view page) is answered here: a worker
            # cannot check it (docs/architecture.md).
            async with http.post(f"{base}/whep/{session['id']}", allow_redirects=False,
                                 headers={"Authorization": f"Bearer {session['view_token']}"}
                                 ) as reply:
                assert reply.status == 415, reply.status  # read here, not sent away
            for viewer in viewers:
                await viewer.wait_for_frames(60, timeout=30)
                assert in_order(viewer.indices)
            info = await call("GET", f"/api/v1/sessions/{session['id']}")
            assert info["stats"]["viewer_count"] == 2, info["stats"]  # one pull per worker

            deadline = time.monotonic() + 10
            while True:
                report = await call("GET", f"/api/v1/sessions/{session['id']}/attendance")
                if all(r["connected"] for r in report["invitations"][:4]):
                    break
                assert time.monotonic() < deadline, report
                await asyncio.sleep(0.2)
            listed = await presence()
            assert [listed.get(room["id"]) for room in rooms] == [1, 1, 1, 1, 0], listed

            # The workers' link reports: /metrics counts their rooms, each by
            # its node, and the wall has their rooms' link figures.
            deadline = time.monotonic() + 10
            while True:
                async with http.get(f"{base}/metrics",
                                    headers={"Authorization": f"Bearer {ADMIN}"}) as reply:
                    text = await reply.text()
                counted = {sample.labels["node"]: sample.value
                           for family in text_string_to_metric_families(text)
                           for sample in family.samples
                           if sample.name == "zhixing_node_viewers_connected"}
                if counted.get("worker-1", 0) + counted.get("worker-2", 0) == 4:
                    break
                assert time.monotonic() < deadline, (counted, tail(log))
                await asyncio.sleep(0.5)
            async with http.ws_connect(f"{base}/api/v1/sessions/{session['id']}/wall/ws",
                                       headers={"Authorization": f"Bearer {ADMIN}"}) as ws:
                await raw_snapshot_until(
                    ws, "the workers' rooms with their link figures",
                    lambda snap: all(site["quality"] and site["quality"]["frames_sent"]
                                     for site in snap["sites"] if site["connected"])
                    and sum(site["connected"] for site in snap["sites"]) == 4)

            # A revocation cuts a room on each worker within 2 s.
            cut = [where.index(workers[0]), where.index(workers[1])]
            for index in cut:
                revoked_at = time.monotonic()
                await call("DELETE", f"/api/v1/invitations/{rooms[index]['id']}")
                await closed_within(viewers[index], 2.0, revoked_at)

            # Worker 1 SIGKILLed: out of the directory at once; its rooms leave
            # the presence list; a new room goes to worker 2.
            victim = next(pid for pid, command in children(main.pid).items()
                          if f"--port {port + 1} " in command + " ")
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            while (destination := await sent_to(rooms[4]["token"])) != workers[1]:
                assert time.monotonic() - killed_at < 5.0, (destination, tail(log))
                await asyncio.sleep(0.1)
            viewers.append(await start_viewer(http, workers[1], session["id"],
                                              rooms[4]["token"]))
            await viewers[-1].wait_for_frames(30, timeout=30)
            left_on_one = [i for i, w in enumerate(where) if w == workers[0] and i not in cut]
            while True:
                listed = await presence()
                if not any(listed.get(rooms[i]["id"]) for i in left_on_one):
                    break
                assert time.monotonic() - killed_at < 5.0, (listed, tail(log))
                await asyncio.sleep(0.1)
            assert "worker-1 left the directory" in log.read_text()

            # The session's end closes the rooms of the worker left within 2 s.
            ended_at = time.monotonic()
            await call("DELETE", f"/api/v1/sessions/{session['id']}")
            for index, viewer in enumerate(viewers):
                if index in cut or (index < 4 and where[index] == workers[0]):
                    continue
                await closed_within(viewer, 2.0, ended_at)
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close()
    assert not listening(port + 1) and not listening(port + 2)
    assert "Redis" not in log.read_text(), tail(log)


def test_without_a_public_url_a_room_reaches_a_worker_at_the_host_it_used() -> None:
    config = Config(host="0.0.0.0", port=8080, workers=2)
    assert as_seen_from(config, "http://127.0.0.1:8081", "http://10.1.2.3:8080") \
        == "http://10.1.2.3:8081"
    assert as_seen_from(config, "http://127.0.0.1:8082", "https://[fd00::5]:8080") \
        == "https://[fd00::5]:8082"
    # Not a worker of this box: a district's edge, a port outside PORT+1…PORT+N.
    for url in ("http://10.8.0.5:8090", "http://127.0.0.1:8083", "http://127.0.0.1:8080"):
        assert as_seen_from(config, url, "http://10.1.2.3:8080") == url
    public = Config(host="0.0.0.0", port=8080, workers=2, public_url="http://zx.example:8080")
    assert worker_url(public, 1) == "http://zx.example:8081"
    assert as_seen_from(public, "http://zx.example:8081", "http://10.1.2.3:8080") \
        == "http://zx.example:8081"


def test_the_default_is_a_worker_a_core(monkeypatch: pytest.MonkeyPatch) -> None:
    def workers(*argv: str) -> int:
        parser = argparse.ArgumentParser()
        add_serve_arguments(parser)  # reads the environment's defaults
        return config_from_args(parser.parse_args(list(argv))).workers

    monkeypatch.delenv("ZHIXING_WORKERS", raising=False)
    assert workers() == len(os.sched_getaffinity(0))
    assert workers("--workers", "1") == 1
    monkeypatch.setenv("ZHIXING_WORKERS", "3")
    assert workers() == 3
    assert Config().workers == 1  # an application built in process is one process
