"""Stock GStreamer (Debian's webrtcbin, unmodified) as a WHIP publisher and a
WHEP viewer of the relay, H.264 and VP8.

webrtcbin uses an RSA certificate, offers no BUNDLE group by default and
gathers with libnice (never on loopback: see tests/support/gstreamer.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.gstreamer import gstreamer, lan_service
from tests.support.media import start_publisher, start_viewer
from tests.support.service import Service

pytestmark = [pytest.mark.webrtc, pytest.mark.gstreamer]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with lan_service(tmp_path / "data") as service:
        yield service


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_gstreamer_publishes_over_whip(service: Service, codec: str) -> None:
    session = await service.create_session(video_codec=codec)
    async with gstreamer("publish", session["whip_url"], session["publish_token"],
                         codec) as publisher:
        await publisher.wait_for("connected", lambda: publisher.connected, 15)
        viewer = await start_viewer(service.http, service.base, session["id"],
                                    session["view_token"])
        try:
            await viewer.wait_for_frames(60, timeout=15)
            assert viewer.decode_errors == 0
            assert viewer.audio_frames > 0
            stats = (await service.session(session["id"]))["stats"]
            assert stats["publisher_connected"]
            assert stats["ingress"]["video"]["frames"] >= 60
            assert stats["ingress"]["audio"]["frames"] > 0
        finally:
            await viewer.close()


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_gstreamer_views_over_whep(service: Service, codec: str) -> None:
    session = await service.create_session(video_codec=codec)
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"], codec=codec)
    try:
        async with gstreamer("view", session["whep_url"], session["view_token"],
                             codec) as viewer:
            await viewer.wait_for("connected", lambda: viewer.connected, 15)
            # Decoded by GStreamer's own decoders (avdec_h264, vp8dec, opusdec).
            await viewer.wait_for("decoding 60 frames and sound",
                                  lambda: viewer.frames >= 60 and viewer.audio > 0, 20)
    finally:
        await publisher.close()
