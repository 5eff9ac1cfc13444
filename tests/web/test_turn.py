"""TURN for rooms that cannot send UDP to the relay: the pages' credentials
(/api/v1/rtc-config), and a real coturn (Debian's) relaying a peer over TCP
while the namespace drops every other UDP datagram (nftables)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from tests.support.coturn import RELAY_PORTS, Coturn, coturn
from tests.support.media import BarcodeTrack, ToneTrack, post_offer
from tests.support.netns import udp_dropped
from tests.support.service import ADMIN_TOKEN, Service, call_json, invite, running
from web.config import Config

STATIC_PASSWORD = "the-relays-own-static-password"


@pytest.fixture
async def turn(tmp_path: Path) -> AsyncIterator[Coturn]:
    async with coturn(tmp_path / "coturn") as server:
        yield server


@pytest.fixture
async def service(tmp_path: Path, turn: Coturn) -> AsyncIterator[Service]:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN,
                    turn_urls=[turn.tcp_url, turn.tls_url], turn_secret=turn.secret,
                    turn_username="relay", turn_password=STATIC_PASSWORD, turn_ttl=3600)
    async with running(config) as service:
        yield service


async def rtc_config(service: Service, token: str | None) -> tuple[int, Any]:
    return await call_json(service, "GET", "/api/v1/rtc-config", token=token)


async def test_pages_get_credentials_of_their_own_that_expire(service: Service,
                                                              turn: Coturn) -> None:
    session = await service.create_session()
    invitation = await invite(service, session, "新碶街道分课堂")
    status, anonymous = await rtc_config(service, None)
    assert status == 200 and anonymous == {"iceServers": []}, anonymous  # no STUN configured

    holders = {invitation["token"]: f"room-{invitation['id']}",
               session["publish_token"]: f"presenter-{session['id']}",
               session["view_token"]: f"viewer-{session['id']}", ADMIN_TOKEN: "admin"}
    for token, holder in holders.items():
        status, body = await rtc_config(service, token)
        assert status == 200, body
        [server] = body["iceServers"]
        assert server["urls"] == [turn.tcp_url, turn.tls_url]
        expiry, _, named = server["username"].partition(":")
        assert named == holder
        assert abs(int(expiry) - (time.time() + 3600)) < 5
        assert server["credential"] and server["credential"] != STATIC_PASSWORD

    status, body = await rtc_config(service, "not-a-token")
    assert status == 401, body
    status, _ = await call_json(service, "DELETE", f"/api/v1/invitations/{invitation['id']}")
    assert status == 204
    status, body = await rtc_config(service, invitation["token"])
    assert status == 410, body
    # The static password is the relay's own: no page, answer or header shows it.
    async with service.http.get(f"{service.base}/api/v1/rtc-config",
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as reply:
        assert STATIC_PASSWORD not in await reply.text()
        assert STATIC_PASSWORD not in json.dumps(dict(reply.headers))
        assert reply.headers["Cache-Control"] == "no-store"


@pytest.mark.webrtc
async def test_a_publisher_without_udp_reaches_the_relay_through_coturn_over_tcp(
    service: Service, turn: Coturn
) -> None:
    session = await service.create_session(video_codec="VP8")
    status, body = await rtc_config(service, session["publish_token"])
    assert status == 200, body
    [server] = body["iceServers"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(
        urls=turn.tcp_url, username=server["username"], credential=server["credential"])]))
    pc.addTransceiver(BarcodeTrack(), direction="sendonly")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    try:
        with udp_dropped([RELAY_PORTS]):
            status, answer, _ = await post_offer(service.http, f"{session['whip_url']}",
                                                 session["publish_token"], pc)
            assert status == 201, answer
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            deadline = time.monotonic() + 20
            while True:
                stats = (await service.session(session["id"]))["stats"]
                if stats["publisher_connected"] and stats["ingress"]["video"]["frames"] > 30:
                    break
                assert time.monotonic() < deadline, (pc.connectionState, list(turn.log)[-20:])
                await asyncio.sleep(0.2)
        # The only way in was coturn's relayed address, allocated over TCP.
        pair = pc.getTransceivers()[0].sender.transport.transport._connection._nominated[1]
        assert pair.local_candidate.type == "relay", pair
        assert any(f"{server['username']}" in line for line in turn.log), list(turn.log)[-20:]
    finally:
        await pc.close()
