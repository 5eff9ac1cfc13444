"""Limits per credential: a leaked room link, a view token or one address
cannot hold more than its share (web/limits.py).

The limiter's counting is tested on its own with an injected clock; every
limit is then met over HTTP by real clients: aiortc peers on loopback for
WHEP, aiohttp WebSockets, CSV uploads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection, RTCSessionDescription

from tests.support.discussion import connect, ws_url
from tests.support.fakes import FakeClock
from tests.support.media import new_pc, start_viewer
from tests.support.service import ADMIN_TOKEN, Service, call_json, invite
from web.app import create_app
from web.cli import build_parser
from web.config import Config, config_from_args
from web.limits import Limiter, LimitSettings, TooManyRequests, Unavailable
from web.sockets.events import PROTOCOL

LOG = "web.limits"

# ---------------------------------------------------------------------- the counting


@dataclass
class FakePeer:
    resource_id: str
    connected_at: float | None = None


class FakeHolder:
    def __init__(self) -> None:
        self.peers: dict[str, FakePeer] = {}

    def resource(self, resource_id: str) -> FakePeer | None:
        return self.peers.get(resource_id)

    def add(self, resource_id: str) -> FakePeer:
        self.peers[resource_id] = FakePeer(resource_id)
        return self.peers[resource_id]


def _offer(limiter: Limiter, holder: FakeHolder, resource_id: str, address: str = "10.0.0.1",
           credential: str | None = "invitation 1", per_credential: int = 2) -> FakePeer:
    with limiter.offer(address, credential, per_credential) as admission:
        peer = holder.add(resource_id)
        admission.admit(holder, resource_id)
    return peer


def test_a_credential_holds_its_share_until_a_peer_goes() -> None:
    limiter, holder = Limiter(LimitSettings()), FakeHolder()
    first = _offer(limiter, holder, "a")
    first.connected_at = 1.0
    _offer(limiter, holder, "b").connected_at = 1.0
    with pytest.raises(TooManyRequests) as refused:
        _offer(limiter, holder, "c")
    assert refused.value.headers == {"Retry-After": "10"}
    assert "c" not in holder.peers
    _offer(limiter, holder, "d", credential="invitation 2")  # another room is not affected
    del holder.peers["a"]  # the broadcast forgot it: it no longer counts
    _offer(limiter, holder, "e")
    assert limiter.peers_held("invitation 1") == 2


def test_pending_offers_count_per_address_and_in_total() -> None:
    settings = LimitSettings(pending_per_address=2, pending_total=3)
    limiter, holder = Limiter(settings), FakeHolder()
    a = _offer(limiter, holder, "a", credential=None)
    _offer(limiter, holder, "b", credential=None)
    with pytest.raises(TooManyRequests):
        _offer(limiter, holder, "c", credential=None)
    _offer(limiter, holder, "d", address="10.0.0.2", credential=None)
    with pytest.raises(Unavailable) as busy:
        _offer(limiter, holder, "e", address="10.0.0.3", credential=None)
    assert busy.value.headers == {"Retry-After": "2"}
    a.connected_at = 5.0  # connected: no longer pending
    _offer(limiter, holder, "f", credential=None)


def test_an_offer_being_answered_counts_as_pending() -> None:
    limiter = Limiter(LimitSettings(pending_per_address=1))
    with (limiter.offer("10.0.0.1", None, 0), pytest.raises(TooManyRequests),
          limiter.offer("10.0.0.1", None, 0)):
        pass
    with limiter.offer("10.0.0.1", None, 0):  # released when answered (or failed)
        pass


def test_a_flood_of_refusals_is_one_log_line_per_ten_seconds(
    caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    limiter = Limiter(LimitSettings(sockets_per_token=1), clock=clock)
    caplog.set_level(logging.WARNING, LOG)
    with limiter.socket("token", "room invitation 7"):
        for _ in range(50):
            with pytest.raises(TooManyRequests), limiter.socket("token", "room invitation 7"):
                pass
        clock.advance(10.0)
        with pytest.raises(TooManyRequests), limiter.socket("token", "room invitation 7"):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert lines == [
        "limit reached: sockets of room invitation 7, refused with 429",
        "limit reached: sockets of room invitation 7, refused with 429 "
        "(and 49 more since the last line)",
    ]


def test_uploads_per_minute_and_at_once() -> None:
    clock = FakeClock()
    limiter = Limiter(LimitSettings(uploads_per_minute=2, uploads_at_once=1), clock=clock)
    with (limiter.upload("admin", "admin"), pytest.raises(Unavailable),
          limiter.upload("other", "other")):
        pass
    clock.advance(20.0)
    with limiter.upload("admin", "admin"):
        pass
    with pytest.raises(TooManyRequests) as refused, limiter.upload("admin", "admin"):
        pass
    assert refused.value.headers == {"Retry-After": "40"}  # the first one leaves the window
    clock.advance(40.0)
    with limiter.upload("admin", "admin"):
        pass


# ---------------------------------------------------------------------- over HTTP


async def _serve(tmp_path: Path, settings: LimitSettings) -> AsyncIterator[Service]:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN, limits=settings)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    await server.close()


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Service]:
    settings = LimitSettings(peers_per_invitation=2, peers_per_view_token=1,
                             pending_per_address=3, pending_total=4, sockets_per_token=2,
                             uploads_per_minute=2, uploads_at_once=1)
    async for service in _serve(tmp_path, settings):
        yield service


async def _wait_connected(pc: RTCPeerConnection, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if pc.connectionState == "connected":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not connected: {pc.connectionState}")


async def _bare_offer(service: Service, session_id: str,
                      token: str) -> tuple[RTCPeerConnection, int, str, str | None, Any]:
    """An offer whose answer is never applied: the server's peer stays unconnected."""
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with service.http.post(
        f"{service.base}/whep/{session_id}", data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    ) as response:
        return (pc, response.status, await response.text(), response.headers.get("Location"),
                response.headers)


async def _delete(service: Service, location: str, token: str) -> None:
    async with service.http.delete(f"{service.base}{location}",
                                   headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()


async def _viewer_count(service: Service, session_id: str) -> int:
    return int((await service.session(session_id))["stats"]["viewer_count"])


@pytest.mark.webrtc
async def test_a_room_link_holds_at_most_its_share_of_viewers(
    limited: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOG)
    session = await limited.create_session()
    room = await invite(limited, session, "新碶街道会议室")
    other = await invite(limited, session, "大碶街道会议室")
    viewers = [await start_viewer(limited.http, limited.base, session["id"], room["token"])
               for _ in range(2)]
    pcs: list[RTCPeerConnection] = []
    try:
        for viewer in viewers:
            await _wait_connected(viewer.pc)
        pc, status, text, _, headers = await _bare_offer(limited, session["id"], room["token"])
        pcs.append(pc)
        assert status == 429, text
        assert headers["Retry-After"] == "10"
        assert "at most 2" in text
        assert await _viewer_count(limited, session["id"]) == 2  # nothing was added
        # Another room's link is not affected by this one's.
        pc, status, text, _, _ = await _bare_offer(limited, session["id"], other["token"])
        pcs.append(pc)
        assert status == 201, text
        # One of the room's viewers leaves: the link may join again.
        assert viewers[0].location is not None
        await _delete(limited, viewers[0].location, room["token"])
        pc, status, text, _, _ = await _bare_offer(limited, session["id"], room["token"])
        pcs.append(pc)
        assert status == 201, text
    finally:
        for viewer in viewers:
            await viewer.close()
        for pc in pcs:
            await pc.close()
    lines = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert lines == [f"limit reached: peers of invitation {room['id']}, refused with 429"]
    assert room["token"] not in caplog.text


@pytest.mark.webrtc
async def test_the_view_token_holds_at_most_its_share(limited: Service) -> None:
    session = await limited.create_session()
    viewer = await start_viewer(limited.http, limited.base, session["id"], session["view_token"])
    pcs = []
    try:
        await _wait_connected(viewer.pc)
        pc, status, text, _, headers = await _bare_offer(limited, session["id"],
                                                         session["view_token"])
        pcs.append(pc)
        assert (status, headers.get("Retry-After")) == (429, "10"), text
        await viewer.close()  # gone without a DELETE: the server notices the closed peer
        for _ in range(100):
            if await _viewer_count(limited, session["id"]) == 0:
                break
            await asyncio.sleep(0.1)
        pc, status, text, _, _ = await _bare_offer(limited, session["id"],
                                                   session["view_token"])
        pcs.append(pc)
        assert status == 201, text
    finally:
        await viewer.close()
        for pc in pcs:
            await pc.close()


@pytest.mark.webrtc
async def test_unconnected_offers_per_address(tmp_path: Path) -> None:
    settings = LimitSettings(peers_per_view_token=0, pending_per_address=2)
    async for service in _serve(tmp_path, settings):
        session = await service.create_session()
        token = session["view_token"]
        pcs: list[RTCPeerConnection] = []
        try:
            answers = []
            for _ in range(2):
                pc, status, text, _, _ = await _bare_offer(service, session["id"], token)
                pcs.append(pc)
                assert status == 201, text
                answers.append((pc, text))
            pc, status, text, _, headers = await _bare_offer(service, session["id"], token)
            pcs.append(pc)
            assert (status, headers.get("Retry-After")) == (429, "2"), text
            assert await _viewer_count(service, session["id"]) == 2
            # One of them connects: it is no longer pending, which makes room.
            pc, answer = answers[0]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await _wait_connected(pc)
            pc, status, text, _, _ = await _bare_offer(service, session["id"], token)
            pcs.append(pc)
            assert status == 201, text
        finally:
            for pc in pcs:
                await pc.close()


@pytest.mark.webrtc
async def test_unconnected_offers_in_total(tmp_path: Path) -> None:
    settings = LimitSettings(peers_per_view_token=0, pending_total=3)
    async for service in _serve(tmp_path, settings):
        session = await service.create_session()
        token = session["view_token"]
        pcs: list[RTCPeerConnection] = []
        try:
            locations = []
            for _ in range(3):
                pc, status, text, location, _ = await _bare_offer(service, session["id"], token)
                pcs.append(pc)
                assert status == 201, text
                locations.append(location)
            pc, status, text, _, headers = await _bare_offer(service, session["id"], token)
            pcs.append(pc)
            assert (status, headers.get("Retry-After")) == (503, "2"), text
            assert await _viewer_count(service, session["id"]) == 3
            assert locations[0] is not None
            await _delete(service, locations[0], token)  # one given up: room again
            pc, status, text, _, _ = await _bare_offer(service, session["id"], token)
            pcs.append(pc)
            assert status == 201, text
        finally:
            for pc in pcs:
                await pc.close()


async def test_event_sockets_per_token(limited: Service) -> None:
    session = await limited.create_session()
    room = await invite(limited, session, "新碶街道会议室")
    sockets = [await connect(limited, session["id"], room["token"]) for _ in range(2)]
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await limited.http.ws_connect(ws_url(limited, session["id"]),
                                          protocols=[PROTOCOL, f"bearer.{room['token']}"])
        assert refused.value.status == 429
        assert refused.value.headers is not None
        assert refused.value.headers["Retry-After"] == "10"
        # The presenter's token is another credential.
        presenter = await connect(limited, session["id"], session["publish_token"])
        await presenter.close()
        await sockets.pop().close()
        for _ in range(50):  # the server's handler ends once the close is through
            try:
                sockets.append(await connect(limited, session["id"], room["token"]))
                break
            except aiohttp.WSServerHandshakeError:
                await asyncio.sleep(0.1)
        assert len(sockets) == 2
    finally:
        for events in sockets:
            await events.close()


async def test_uploads_a_minute_per_admin(limited: Service) -> None:
    async def upload(rows: str) -> tuple[int, Any, str | None]:
        async with limited.http.post(
            f"{limited.base}/api/v1/sites/import", data=f"name,org_path\n{rows}".encode(),
            headers={"Content-Type": "text/csv", **limited.admin},
        ) as response:
            return response.status, await response.json(), response.headers.get("Retry-After")

    assert (await upload("甲,北仑区\n"))[0] == 201
    assert (await upload("乙,北仑区\n"))[0] == 201
    status, body, retry = await upload("丙,北仑区\n")
    assert status == 429, body
    assert retry is not None and 50 <= int(retry) <= 60
    status, sites = await call_json(limited, "GET", "/api/v1/sites")
    assert status == 200
    assert sorted(s["name"] for s in sites["sites"]) == ["乙", "甲"]  # not the refused one


async def test_one_upload_at_a_time(limited: Service) -> None:
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"name,org_path\n"
        await release.wait()
        yield "甲,北仑区\n".encode()

    async def slow() -> int:
        async with limited.http.post(
            f"{limited.base}/api/v1/sites/import", data=slow_body(),
            headers={"Content-Type": "text/csv", **limited.admin},
        ) as response:
            return response.status

    first = asyncio.create_task(slow())
    try:
        await asyncio.sleep(0.3)  # the first upload is being read
        async with limited.http.post(
            f"{limited.base}/api/v1/sites/import", data="name,org_path\n乙,北仑区\n".encode(),
            headers={"Content-Type": "text/csv", **limited.admin},
        ) as response:
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"] == "5"
    finally:
        release.set()
        assert await first == 201


def test_each_limit_is_a_flag_and_a_variable(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert config_from_args(build_parser().parse_args(["serve"])).limits == LimitSettings()
    monkeypatch.setenv("ZHIXING_MAX_PEERS_PER_INVITATION", "5")
    monkeypatch.setenv("ZHIXING_MAX_PENDING", "0")
    args = build_parser().parse_args(["serve", "--max-sockets-per-token", "4",
                                      "--max-pending", "7"])
    limits = config_from_args(args).limits
    assert (limits.peers_per_invitation, limits.sockets_per_token, limits.pending_total) \
        == (5, 4, 7)  # a flag wins over its variable
    for bad in ("-1", "many", "2000000"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--max-uploads", bad])
        assert "not a whole number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    assert "ZHIXING_MAX_PEERS_PER_VIEW_TOKEN" in capsys.readouterr().out
