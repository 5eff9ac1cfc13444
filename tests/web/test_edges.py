"""A city origin with district edges, for real: a real ``redis-server``, a real
``zhixing serve`` and two real ``zhixing edge`` processes on loopback; rooms
are aiortc viewers that decode the barcode program (tests/support/media.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from classroom.live.cluster import (
    LinkReport,
    NodeEntry,
    ViewerEvent,
    ViewerLink,
    cluster_key,
    seal,
)
from tests.support import media
from tests.support.city import ADMIN, DISTRICTS, City, city
from tests.support.media import (
    in_order,
    new_pc,
    start_publisher,
    start_viewer,
)
from tests.support.server_process import free_port
from tests.support.wall import raw_snapshot_until

pytestmark = [pytest.mark.webrtc, pytest.mark.usefixtures("loopback_candidates")]


@contextlib.asynccontextmanager
async def viewing(town: City, session: dict[str, Any],
                  token: str) -> AsyncIterator[media.TestViewer]:
    viewer = await start_viewer(town.http, town.origin, session["id"], token)
    try:
        yield viewer
    finally:
        await viewer.close()


async def test_rooms_of_two_districts_watch_through_their_edges(tmp_path: Path) -> None:
    async with city(tmp_path) as town:
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        beilun = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        yinzhou = await town.invite(session, "首南街道分课堂", "鄞州区 / 首南街道")
        haishu = await town.invite(session, "鼓楼街道分课堂", "海曙区 / 鼓楼街道")
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        try:
            await town.wait_where(session, beilun["token"], town.edges["edge-beilun"])
            await town.wait_where(session, yinzhou["token"], town.edges["edge-yinzhou"])
            assert await town.where(session, haishu["token"]) is None  # no edge there
            # The room page may follow the redirect: its policy lets it connect there.
            async with town.http.get(beilun["url"]) as page:
                assert page.status == 200
                policy = page.headers["Content-Security-Policy"]
            connect = next(p for p in policy.split("; ") if p.startswith("connect-src"))
            assert set(connect.split()[1:]) == {"'self'", *town.edges.values()}, policy
            async with viewing(town, session, beilun["token"]) as on_beilun, \
                    viewing(town, session, yinzhou["token"]) as on_yinzhou, \
                    viewing(town, session, haishu["token"]) as at_origin:
                for viewer in (on_beilun, on_yinzhou, at_origin):
                    await viewer.wait_for_frames(60, timeout=20)
                    assert in_order(viewer.indices), viewer.indices[:50]
                    assert viewer.audio_frames > 0
                for name in DISTRICTS:
                    health = await town.edge_health(name)
                    assert health["viewers"] == 1 and health["sessions"] == [session["id"]]
                # The origin holds its own room and one pull per edge, no more.
                stats = (await town.call("GET", f"/api/v1/sessions/{session['id']}"))["stats"]
                assert stats["viewer_count"] == 3, stats
                # Attendance at the origin counts the rooms on the edges.
                report = await wait_for_attendance(town, session, {
                    beilun["id"]: True, yinzhou["id"]: True, haishu["id"]: True})
                assert all(room["intervals"] for room in report["invitations"])
                # So do the presenter's presence list and the room wall.
                presence = await town.call("GET",
                                           f"/api/v1/sessions/{session['id']}/presence")
                assert {s["invitation_id"]: s["connected_viewers"]
                        for s in presence["sites"]} == {
                    beilun["id"]: 1, yinzhou["id"]: 1, haishu["id"]: 1}, presence
                async with town.http.ws_connect(
                        f"{town.origin}/api/v1/sessions/{session['id']}/wall/ws",
                        headers={"Authorization": f"Bearer {ADMIN}"}) as ws:
                    _, snapshot = await raw_snapshot_until(
                        ws, "every room connected, with its link figures",
                        lambda snap: all(site["connected"] and site["quality"]
                                         and (site["quality"]["bitrate"] or 0) > 0
                                         and site["quality"]["rtt"] is not None
                                         for site in snap["sites"]))
                tiles = {site["invitation_id"]: site for site in snapshot["sites"]}
                assert tiles[beilun["id"]]["problem"]["level"] == \
                    tiles[haishu["id"]]["problem"]["level"], tiles
                # The edge's rooms' figures read as the origin's own room's.
                local = tiles[haishu["id"]]["quality"]
                for room in (beilun, yinzhou):
                    quality = tiles[room["id"]]["quality"]
                    assert quality.keys() == local.keys(), quality
                    assert quality["frames_sent"] > 0 and quality["fraction_lost"] is not None
                    assert quality["bitrate"] > local["bitrate"] / 4, (quality, local)
                assert snapshot["summary"]["viewers"] == 3 + 2  # the pulls are viewers too
                # /metrics counts the viewers of every relay, each by its node.
                metrics = await wait_for_metrics(town, lambda m: all(
                    m.get(f"zhixing_node_viewers_connected{{node={name}}}") == 1
                    for name in DISTRICTS))
                assert metrics["zhixing_node_viewers_connected{node=origin}"] == 3, metrics
                assert metrics["zhixing_viewers_connected"] == 5
                assert metrics[f"zhixing_session_viewers_connected{{session={session['id']}}}"] \
                    == 5
                sent_before = metrics["zhixing_egress_bytes_total"]

                # Revoked on the origin: cut on the edge within 2 s.
                revoked_at = time.monotonic()
                await town.call("DELETE", f"/api/v1/invitations/{yinzhou['id']}")
                while on_yinzhou.pc.connectionState not in ("closed", "failed"):
                    assert time.monotonic() - revoked_at < 2.0, town.logs()
                    await asyncio.sleep(0.05)
                cut_after = time.monotonic() - revoked_at
                # And its token is refused at the edge itself.
                async with town.http.post(
                        f"{town.edges['edge-yinzhou']}/whep/{session['id']}"
                        f"?token={yinzhou['token']}", data="v=0",
                        headers={"Content-Type": "application/sdp"}) as reply:
                    assert reply.status == 410, await reply.text()
                await wait_for_attendance(town, session, {yinzhou["id"]: False})
                # Its viewer left the edge's report: its bytes stay counted.
                metrics = await wait_for_metrics(town, lambda m: m.get(
                    "zhixing_node_viewers_connected{node=edge-yinzhou}") == 0)
                assert metrics["zhixing_egress_bytes_total"] >= sent_before
                # The other edge's room never noticed.
                before = len(on_beilun.indices)
                await asyncio.sleep(1.0)
                assert len(on_beilun.indices) > before + 15

                # The session ends: the edge's room is closed within 2 s.
                ended_at = time.monotonic()
                await town.call("DELETE", f"/api/v1/sessions/{session['id']}")
                while on_beilun.pc.connectionState not in ("closed", "failed"):
                    assert time.monotonic() - ended_at < 2.0, town.logs()
                    await asyncio.sleep(0.05)
                assert (await town.edge_health("edge-beilun"))["sessions"] == []
        finally:
            await publisher.close()
    print(f"revocation reached the edge's room in {cut_after:.2f} s")


async def wait_for_metrics(town: City, done: Callable[[dict[str, float]], bool],
                           timeout: float = 10.0) -> dict[str, float]:
    """The origin's /metrics as {name{labels}: value} once ``done`` says so."""
    deadline = time.monotonic() + timeout
    while True:
        async with town.http.get(f"{town.origin}/metrics",
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as reply:
            assert reply.status == 200
            text = await reply.text()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        if done(values):
            return values
        assert time.monotonic() < deadline, (values, town.logs())
        await asyncio.sleep(0.3)


async def wait_for_attendance(town: City, session: dict[str, Any],
                              connected: dict[str, bool]) -> dict[str, Any]:
    """The session's attendance report once each named invitation is (or is
    no longer) connected."""
    deadline = time.monotonic() + 10
    while True:
        report: dict[str, Any] = await town.call(
            "GET", f"/api/v1/sessions/{session['id']}/attendance")
        now = {room["invitation_id"]: room["connected"] for room in report["invitations"]}
        if all(now.get(key) == wanted for key, wanted in connected.items()):
            return report
        assert time.monotonic() < deadline, (now, connected, town.logs())
        await asyncio.sleep(0.2)


async def test_a_killed_edge_sends_its_rooms_back_to_the_origin_within_5_s(
        tmp_path: Path) -> None:
    async with city(tmp_path, edges=("edge-beilun",)) as town:
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        try:
            await town.wait_where(session, room["token"], town.edges["edge-beilun"])
            async with viewing(town, session, room["token"]) as viewer:
                await viewer.wait_for_frames(30, timeout=20)
            town.processes["edge-beilun"].kill()  # SIGKILL: no goodbye to Redis
            killed = time.monotonic()
            await town.processes["edge-beilun"].wait()
            # The room page's retries: a new offer every half second until one plays.
            while True:
                assert time.monotonic() - killed < 5.0, town.logs()
                try:
                    viewer = await start_viewer(town.http, town.origin, session["id"],
                                                room["token"])
                except (aiohttp.ClientError, AssertionError):
                    await asyncio.sleep(0.5)
                    continue
                try:
                    await viewer.wait_for_frames(1, timeout=max(0.1, 5.0 - (
                        time.monotonic() - killed)))
                    playing_after = time.monotonic() - killed
                    assert in_order(viewer.indices)
                finally:
                    await viewer.close()
                break
            assert playing_after < 5.0
        finally:
            await publisher.close()
    print(f"the room played again through the origin {playing_after:.2f} s after the kill")


async def test_a_redis_outage_loses_no_frame_and_no_attendance(tmp_path: Path) -> None:
    async with city(tmp_path, edges=("edge-beilun",)) as town:
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        staying = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        leaving = await town.invite(session, "大碶街道分课堂", "北仑区 / 大碶街道")
        coming = await town.invite(session, "霞浦街道分课堂", "北仑区 / 霞浦街道")
        edge = town.edges["edge-beilun"]
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        try:
            await town.wait_where(session, staying["token"], edge)
            async with viewing(town, session, staying["token"]) as stays:
                goes = await start_viewer(town.http, town.origin, session["id"],
                                          leaving["token"])
                await stays.wait_for_frames(30, timeout=20)
                await goes.wait_for_frames(30, timeout=20)
                await wait_for_attendance(town, session, {staying["id"]: True,
                                                          leaving["id"]: True})
                await town.redis.stop()
                outage = time.monotonic()
                start_index = len(stays.indices)
                await asyncio.sleep(2)
                await goes.close()  # leaves while Redis is away
                left_at = time.time()
                await asyncio.sleep(2)
                # Joins the edge directly while Redis is away (the origin,
                # seeing no edge now, would keep it).
                comes = await start_viewer(town.http, edge, session["id"], coming["token"])
                try:
                    await comes.wait_for_frames(10, timeout=10)
                    joined_at = time.time()
                    await asyncio.sleep(max(0.0, 10 - (time.monotonic() - outage)))
                    await town.redis.start()
                    await asyncio.sleep(1)
                    during = stays.indices[start_index:]
                    # No frame lost: every index of the outage, one after the other.
                    assert during == list(range(during[0], during[0] + len(during))), \
                        [b for a, b in itertools.pairwise(during) if b != a + 1][:10]
                    assert len(during) >= 10.5 * 30 * 0.9
                    report = await wait_for_attendance(town, session, {
                        staying["id"]: True, leaving["id"]: False, coming["id"]: True})
                finally:
                    await comes.close()
        finally:
            await publisher.close()
    rooms = {room["invitation_id"]: room for room in report["invitations"]}
    gone = rooms[leaving["id"]]["intervals"]
    assert len(gone) == 1 and abs(gone[0]["disconnected_at"] - left_at) < 1.0, gone
    came = rooms[coming["id"]]["intervals"]
    assert len(came) == 1 and came[0]["connected_at"] <= joined_at, came
    assert len(rooms[staying["id"]]["intervals"]) == 1


async def test_forged_stale_and_garbage_entries_send_no_room_anywhere(tmp_path: Path) -> None:
    async with city(tmp_path, edges=()) as town:
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        dead = f"http://127.0.0.1:{free_port()}"
        real_key = cluster_key((town.tmp / "data" / "server-secret").read_bytes())
        entry = NodeEntry("edge-beilun", dead, "北仑区", 0).to_fields()
        client = aioredis.Redis.from_url(town.redis.url)
        try:
            # Forged (another key), immortal (no TTL), a name not its key's,
            # plain garbage, a stream entry that is not a viewer event.
            await client.set("zhixing:node:edge-beilun", seal(b"x" * 32, entry), px=2000)
            await client.set("zhixing:node:edge-forever", seal(real_key, {
                **entry, "name": "edge-forever"}))
            await client.set("zhixing:node:edge-other", seal(real_key, entry), px=2000)
            await client.set("zhixing:node:junk", b"\xff\x00garbage", px=2000)
            await client.xadd("zhixing:viewers", {"e": "garbage"})
            await client.xadd("zhixing:viewers", {"x": "y"})
            await client.publish("zhixing:events", "garbage")
            await client.publish("zhixing:links", "garbage")
            await asyncio.sleep(1.5)  # three readings of the directory
            assert await town.where(session, room["token"]) is None
            # A genuine entry is followed, and dropped with its key's expiry.
            await client.set("zhixing:node:edge-beilun", seal(real_key, entry), px=1500)
            await town.wait_where(session, room["token"], dead, timeout=3)
            # A room page whose redirected try failed on the network asks
            # the origin to answer itself.
            async with town.http.post(f"{town.origin}/whep/{session['id']}?direct=1",
                                      headers={"Authorization": f"Bearer {room['token']}"},
                                      allow_redirects=False) as reply:
                assert reply.status == 415, reply.status  # answered here (the body comes next)
            waited = await town.wait_where(session, room["token"], None, timeout=3)
            assert waited < 2.5
        finally:
            await client.aclose()
        # A pull with a wrong token is refused and the origin still serves.
        pc = new_pc()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with town.http.post(f"{town.origin}/whep/{session['id']}",
                                  data=pc.localDescription.sdp,
                                  headers={"Content-Type": "application/sdp",
                                           "Authorization": "Bearer wrong-edge-token"}) as reply:
            assert reply.status == 401, await reply.text()
        await pc.close()
        async with town.http.get(f"{town.origin}/healthz") as reply:
            assert reply.status == 200
        log = town.origin_log.read_text()
        assert "directory entry zhixing:node:edge-forever refused" in log
        assert "directory entry zhixing:node:junk refused" in log
        assert "viewer event" in log and "refused" in log
        assert "link report refused" in log


async def test_an_edge_with_a_wrong_token_refuses_its_rooms_and_logs_why(
        tmp_path: Path) -> None:
    async with city(tmp_path, edges=()) as town:
        await town.start_edge("edge-beilun", token="not-the-edge-token")
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        edge = town.edges["edge-beilun"]
        pc = new_pc()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        try:
            async with town.http.post(f"{edge}/whep/{session['id']}?token={room['token']}",
                                      data=offer,
                                      headers={"Content-Type": "application/sdp"}) as reply:
                assert reply.status == 503, await reply.text()
                assert reply.headers["Access-Control-Allow-Origin"] == "*"
            forged = room["token"][:-2] + ("AA" if not room["token"].endswith("AA") else "BB")
            async with town.http.post(f"{edge}/whep/{session['id']}?token={forged}",
                                      data=offer,
                                      headers={"Content-Type": "application/sdp"}) as reply:
                assert reply.status == 401, await reply.text()
            async with town.http.get(f"{edge}/healthz") as reply:
                assert reply.status == 200
        finally:
            await pc.close()
        log = (town.tmp / "edge-beilun.log").read_text()
        assert "the origin answered 401" in log, log[-2000:]


async def test_an_edge_holds_a_room_to_the_origins_peer_and_pending_limits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with city(tmp_path, edges=()) as town:
        # The same variables as serve's (flags too: --max-peers-per-invitation …).
        monkeypatch.setenv("ZHIXING_MAX_PEERS_PER_INVITATION", "1")
        monkeypatch.setenv("ZHIXING_MAX_PENDING_PER_ADDRESS", "2")
        await town.start_edge("edge-beilun")
        edge = town.edges["edge-beilun"]
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        others = [await town.invite(session, f"分课堂{n}", f"北仑区 / 街道{n}")
                  for n in range(3)]
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        stalled: list[Any] = []
        await town.wait_where(session, room["token"], edge)

        async def offer(token: str) -> aiohttp.ClientResponse:
            """An offer whose answer is never applied: it stays being set up."""
            pc = new_pc()
            stalled.append(pc)
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            async with town.http.post(f"{edge}/whep/{session['id']}?token={token}",
                                      data=pc.localDescription.sdp,
                                      headers={"Content-Type": "application/sdp"}) as reply:
                await reply.read()
                return reply

        try:
            async with viewing(town, session, room["token"]) as watching:
                await watching.wait_for_frames(10, timeout=20)
                assert (await town.edge_health("edge-beilun"))["viewers"] == 1
                # The room's link holds its one connection here: a second is refused.
                second = await offer(room["token"])
                assert second.status == 429, second.status
                assert second.headers["Retry-After"] == "10"
                assert second.headers["Access-Control-Allow-Origin"] == "*"
                async with town.http.post(
                        f"{edge}/whep/{session['id']}?token={room['token']}", data="v=0",
                        headers={"Content-Type": "application/sdp"}) as reply:
                    assert reply.status == 429
                    assert "at most 1" in await reply.text()
                # Two offers of other rooms being set up from this address: the third waits.
                assert [(await offer(o["token"])).status for o in others[:2]] == [201, 201]
                third = await offer(others[2]["token"])
                assert third.status == 429 and third.headers["Retry-After"] == "2"
                # The room playing never noticed.
                before = len(watching.indices)
                await asyncio.sleep(0.5)
                assert len(watching.indices) > before
        finally:
            for pc in stalled:
                await pc.close()
            await publisher.close()
        log = (town.tmp / "edge-beilun.log").read_text()
        assert f"limit reached: peers of invitation {room['id']}, refused with 429" in log
        assert "limit reached: pending offers of address 127.0.0.1, refused with 429" in log
        assert room["token"] not in log


async def test_a_room_on_an_edge_watches_from_the_start_through_the_origin(
        tmp_path: Path) -> None:
    """时移 of a room on an edge, as its page does it: the recording is at the
    origin, so the page connects there (``?direct=1``), asks there, and drops
    its edge connection (web/static/room-player.js)."""
    async with city(tmp_path, edges=("edge-beilun",)) as town:
        session = await town.call("POST", "/api/v1/sessions",
                                  {"title": "第一讲", "video_codec": "H264"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        edge = town.edges["edge-beilun"]
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        on_edge = at_origin = None
        try:
            await town.wait_where(session, room["token"], edge)
            await publisher_frames(publisher, 15)
            recording_from = publisher.video.index
            await town.call("POST", f"/api/v1/sessions/{session['id']}/recording")
            await asyncio.sleep(4)
            on_edge = await start_viewer(town.http, town.origin, session["id"], room["token"])
            await on_edge.wait_for_frames(15, timeout=20)
            assert (await town.edge_health("edge-beilun"))["viewers"] == 1
            assert on_edge.indices[-1] > recording_from + 90
            room_view = await room_call(town, "GET", "/api/v1/room", room["token"])
            assert room_view["timeshift_available"], room_view
            # The origin does not know the edge's viewer: the page comes to it.
            assert on_edge.location is not None
            edge_resource = on_edge.location.rstrip("/").split("/")[-1]
            refused = await room_call(town, "POST", "/api/v1/room/timeshift", room["token"],
                                      {"mode": "start", "resource": edge_resource},
                                      status=404)
            assert "no such viewer" in str(refused)
            # (start_viewer puts the query after the session's id in the URL.)
            at_origin = await start_viewer(town.http, town.origin, f"{session['id']}?direct=1",
                                           room["token"])
            assert at_origin.location is not None
            assert (await town.edge_health("edge-beilun"))["viewers"] == 1  # not the edge's
            await on_edge.close()
            on_edge = None
            await at_origin.wait_for_frames(10, timeout=20)
            resource = at_origin.location.rstrip("/").split("/")[-1]
            mode = await room_call(town, "POST", "/api/v1/room/timeshift", room["token"],
                                   {"mode": "start", "resource": resource})
            assert mode["mode"] == "timeshift", mode
            start = len(at_origin.indices)
            await at_origin.wait_for_frames(start + 45, timeout=15)
            shifted = at_origin.indices[start:]
            # From the recording's beginning, in order.
            assert recording_from <= shifted[5] < recording_from + 60, (recording_from,
                                                                        shifted[:10])
            assert in_order(shifted[5:])
            mode = await room_call(town, "POST", "/api/v1/room/timeshift", room["token"],
                                   {"mode": "live", "resource": resource})
            assert mode["mode"] == "live"
            start = len(at_origin.indices)
            await at_origin.wait_for_frames(start + 30, timeout=15)
            assert at_origin.indices[-1] >= publisher.video.index - 30  # live again
            # Present all along: from the edge to the origin without a gap
            # worth a line in the report (the page's own takes about a second).
            report = await wait_for_attendance(town, session, {room["id"]: True})
            [only] = report["invitations"]
            intervals = only["intervals"]
            assert intervals[-1]["disconnected_at"] is None, intervals
            assert all(later["connected_at"] - earlier["disconnected_at"] < 1.0
                       for earlier, later in itertools.pairwise(intervals)), intervals
        finally:
            for viewer in (on_edge, at_origin):
                if viewer is not None:
                    await viewer.close()
            await publisher.close()
        await town.call("DELETE", f"/api/v1/sessions/{session['id']}/recording")


async def test_a_room_on_an_edge_chooses_sound_only_there(tmp_path: Path) -> None:
    """仅声音 of a room on an edge: the origin does not know its viewer, so
    the page asks the edge, on its WHEP resource (web/static/room-player.js)."""
    async with city(tmp_path, edges=("edge-beilun",)) as town:
        session = await town.call("POST", "/api/v1/sessions",
                                  {"title": "第一讲", "video_codec": "VP8"})
        room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        other = await town.invite(session, "大碶街道分课堂", "北仑区 / 大碶街道")
        edge = town.edges["edge-beilun"]
        publisher = await start_publisher(town.http, town.origin, session["id"],
                                          session["publish_token"])
        viewer = None
        try:
            await town.wait_where(session, room["token"], edge)
            viewer = await start_viewer(town.http, town.origin, session["id"], room["token"])
            await viewer.wait_for_frames(15, timeout=20)
            assert viewer.location is not None
            url = f"{edge}{viewer.location}/quality"

            async def quality(token: str, body: Any = None, status: int = 200) -> Any:
                async with town.http.request(
                        "POST" if body is not None else "GET", url,
                        headers={"Authorization": f"Bearer {token}"},
                        **({"data": body} if isinstance(body, bytes) else
                           {"json": body} if body is not None else {})) as reply:
                    assert reply.status == status, (reply.status, await reply.text())
                    assert reply.headers["Access-Control-Allow-Origin"] == "*"
                    return await reply.json() if status == 200 else await reply.text()

            assert await quality(room["token"]) == {"level": "full", "link": "full",
                                                    "audio_only": False}
            # Another room's token, a body that is not the choice: refused, unchanged.
            await quality(other["token"], status=403)
            assert "audio_only" in await quality(room["token"], b"{garbage", status=400)
            await quality(room["token"], {"audio_only": "yes"}, status=400)
            assert (await quality(room["token"]))["audio_only"] is False
            chosen = await quality(room["token"], {"audio_only": True})
            assert chosen == {"level": "audio", "link": "full", "audio_only": True}
            await asyncio.sleep(1.0)  # what was in flight
            frames, sound = len(viewer.indices), viewer.audio_frames
            await asyncio.sleep(2.0)
            assert len(viewer.indices) - frames <= 3, "pictures stop"
            assert viewer.audio_frames > sound + 20, "sound goes on"
            back = await quality(room["token"], {"audio_only": False})
            assert back["level"] == "full" and back["audio_only"] is False
            frames = len(viewer.indices)
            await viewer.wait_for_frames(frames + 20, timeout=15)
        finally:
            if viewer is not None:
                await viewer.close()
            await publisher.close()


async def publisher_frames(publisher: media.TestPublisher, count: int) -> None:
    deadline = time.monotonic() + 20
    while publisher.video.index < count:
        assert time.monotonic() < deadline, "the publisher sends no frames"
        await asyncio.sleep(0.1)


async def room_call(town: City, method: str, path: str, token: str, body: Any = None,
                    status: int = 200) -> Any:
    """A room page's API call with its invitation token."""
    async with town.http.request(method, f"{town.origin}{path}", json=body,
                                 headers={"Authorization": f"Bearer {token}"}) as reply:
        assert reply.status == status, (reply.status, await reply.text())
        return await reply.json()


async def test_an_edge_rooms_reported_loss_is_a_problem_on_the_wall_until_its_edge_goes(
        tmp_path: Path) -> None:
    """An edge's link report, sealed with the city's key and sent through Redis
    as an edge sends it: the origin judges the room by it as it would its own
    (5 % loss is a problem), counts it in /metrics, and forgets it 6 s after
    its edge fell silent; a forged report changes nothing."""
    async with city(tmp_path, edges=()) as town:
        session = await town.call("POST", "/api/v1/sessions", {"title": "第一讲"})
        lossy = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
        forged_room = await town.invite(session, "大碶街道分课堂", "北仑区 / 大碶街道")
        key = cluster_key((town.tmp / "data" / "server-secret").read_bytes())
        client = aioredis.Redis.from_url(town.redis.url)
        quality: dict[str, float | None] = {
            "bitrate": 850_000, "fraction_lost": 0.12, "packets_lost": 40, "rtt": 0.03,
            "jitter": 0.004, "frames_sent": 900, "nacks": 30, "keyframe_requests": 1,
            "overflows": 0}
        totals = {"zhixing_egress_bytes": 3_000_000.0, "zhixing_egress_packets": 3000.0}

        def link(room: dict[str, Any], node: str) -> ViewerLink:
            return ViewerLink(session["id"], room["id"], f"{node}/r-{room['id']}",
                              time.time() - 30, quality, totals)

        async def report_every_second(stop: asyncio.Event) -> None:
            while not stop.is_set():
                await client.publish("zhixing:links", seal(key, LinkReport(
                    "edge-fake", time.time(), (link(lossy, "edge-fake"),)).to_fields()))
                await client.publish("zhixing:links", seal(b"x" * 32, LinkReport(
                    "edge-forged", time.time(),
                    (link(forged_room, "edge-forged"),)).to_fields()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

        stop = asyncio.Event()
        reporting = asyncio.create_task(report_every_second(stop))
        try:
            for room, node, sealed_with in ((lossy, "edge-fake", key),
                                            (forged_room, "edge-forged", key)):
                event = ViewerEvent(session["id"], room["id"], f"{node}/r-{room['id']}",
                                    "open", time.time() - 30)
                await client.xadd("zhixing:viewers", {"e": seal(sealed_with,
                                                                 event.to_fields())})
            async with town.http.ws_connect(
                    f"{town.origin}/api/v1/sessions/{session['id']}/wall/ws",
                    headers={"Authorization": f"Bearer {ADMIN}"}) as ws:
                _, snapshot = await raw_snapshot_until(
                    ws, "both rooms connected, the edge room's figures", lambda snap: all(
                        site["connected"] for site in snap["sites"]) and any(
                        site["quality"] for site in snap["sites"]))
                tiles = {site["invitation_id"]: site for site in snapshot["sites"]}
                assert tiles[lossy["id"]]["quality"] == quality
                assert tiles[lossy["id"]]["problem"]["reason"] == "loss", tiles
                # Connected by its viewer event; no figures from a forged report.
                assert tiles[forged_room["id"]]["connected"]
                assert tiles[forged_room["id"]]["quality"] is None
                assert tiles[forged_room["id"]]["problem"]["level"] == 0
                metrics = await wait_for_metrics(town, lambda m: m.get(
                    "zhixing_node_viewers_connected{node=edge-fake}") == 1)
                assert "zhixing_node_viewers_connected{node=edge-forged}" not in metrics
                assert metrics["zhixing_egress_bytes_total"] == 3_000_000
                assert metrics["zhixing_viewers_connected"] == 1
                # The edge falls silent: forgotten after 6 s, its counters kept.
                stop.set()
                await reporting
                silent = time.monotonic()
                _, snapshot = await raw_snapshot_until(
                    ws, "the silent edge forgotten",
                    lambda snap: all(site["quality"] is None for site in snap["sites"]),
                    timeout=15)
                assert time.monotonic() - silent > 5
                tiles = {site["invitation_id"]: site for site in snapshot["sites"]}
                assert tiles[lossy["id"]]["problem"]["level"] == 0  # no figures, no judgement
                metrics = await wait_for_metrics(town, lambda m: m.get(
                    "zhixing_node_viewers_connected{node=edge-fake}") is None)
                assert metrics["zhixing_egress_bytes_total"] == 3_000_000
                assert metrics["zhixing_viewers_connected"] == 0
        finally:
            stop.set()
            await reporting
            await client.aclose()
        assert "link report refused: the seal does not match" in town.origin_log.read_text()
