"""DTLS with peers that are not browsers, and publishers that fail to replace
the one on air: real aiortc peers on loopback through WHIP/WHEP."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from tests.support.dtls import restricted, rsa_certificate, use_certificate
from tests.support.media import start_publisher, start_viewer
from tests.support.service import Service

pytestmark = pytest.mark.webrtc


def _broadcast(service: Service, session_id: str) -> Any:
    from web.keys import SCHOOL

    return service.app[SCHOOL].sessions.get(session_id).broadcast


async def test_a_publisher_with_an_rsa_certificate_connects(service: Service) -> None:
    # The relay is the DTLS client (it answers a=setup:active) and must offer
    # suites an RSA server can pick: GStreamer's webrtcbin is such a server.
    session = await service.create_session(video_codec="VP8")
    certificate = rsa_certificate()
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"],
                                      wrap_pc=lambda pc: use_certificate(pc, certificate))
    viewer = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    try:
        await viewer.wait_for_frames(30, timeout=10)
        assert publisher.pc.connectionState == "connected"
    finally:
        await viewer.close()
        await publisher.close()


async def test_a_viewer_with_an_rsa_certificate_connects(service: Service) -> None:
    session = await service.create_session(video_codec="H264")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    certificate = rsa_certificate()
    original = RTCPeerConnection.createOffer

    async def offer_with_rsa(pc: RTCPeerConnection) -> Any:
        use_certificate(pc, certificate)
        return await original(pc)

    RTCPeerConnection.createOffer = offer_with_rsa  # type: ignore[method-assign]
    try:
        viewer = await start_viewer(service.http, service.base, session["id"],
                                    session["view_token"])
    finally:
        RTCPeerConnection.createOffer = original  # type: ignore[method-assign]
    try:
        await viewer.wait_for_frames(30, timeout=10)
    finally:
        await viewer.close()
        await publisher.close()


def _no_shared_cipher(pc: RTCPeerConnection) -> None:
    # A suite the relay never offers (RSA key exchange, no ECDHE).
    use_certificate(pc, restricted(rsa_certificate(), b"AES128-SHA"))


def _wrong_fingerprint(pc: RTCPeerConnection) -> None:
    # The offer names one certificate, the handshake shows another.
    certificate = rsa_certificate()
    original = pc.setRemoteDescription

    async def set_remote(description: Any) -> None:
        use_certificate(pc, certificate)  # after the offer went out
        await original(description)

    pc.setRemoteDescription = set_remote  # type: ignore[method-assign]


@pytest.mark.parametrize(("fault", "cause"), [
    (_no_shared_cipher, "handshake_failure"),
    (_wrong_fingerprint, "does not match the a=fingerprint"),
])
async def test_a_failing_replacement_leaves_the_program_on_air(
    service: Service, caplog: pytest.LogCaptureFixture, fault: Any, cause: str
) -> None:
    session = await service.create_session(video_codec="VP8")
    first = await start_publisher(service.http, service.base, session["id"],
                                  session["publish_token"])
    viewer = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    newcomer = None
    try:
        await viewer.wait_for_frames(30, timeout=10)
        broadcast = _broadcast(service, session["id"])
        on_air = broadcast.publisher
        with caplog.at_level(logging.WARNING, logger="streaming"):
            # The same valid token: a second classroom PC whose DTLS fails.
            newcomer = await start_publisher(service.http, service.base, session["id"],
                                             session["publish_token"], start=10_000,
                                             wrap_pc=fault)
            assert broadcast.pending_publisher is not None
            deadline = time.monotonic() + 10
            while broadcast.pending_publisher is not None:
                assert time.monotonic() < deadline, "the failing newcomer was never dropped"
                await asyncio.sleep(0.05)
            watched_from = len(viewer.arrivals)
            await asyncio.sleep(1.0)
        assert broadcast.publisher is on_air
        assert first.pc.connectionState == "connected"
        # The viewer never stopped: no frame of the newcomer, no gap.
        assert all(i < 10_000 for i in viewer.indices)
        assert len(viewer.arrivals) - watched_from >= 20
        gaps = [b - a for a, b in zip(viewer.arrivals, viewer.arrivals[1:], strict=False)]
        assert max(gaps) < 0.4, max(gaps)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        failed = [w for w in warnings if w.startswith("publisher ") and " failed: " in w]
        assert failed and cause in failed[0], warnings
        assert f"of broadcast {broadcast.broadcast_id}" in failed[0]
        assert any("went away before going live" in w for w in warnings), warnings
        assert (await service.session(session["id"]))["stats"]["publisher_connected"]
    finally:
        await viewer.close()
        if newcomer is not None:
            await newcomer.close()
        await first.close()
