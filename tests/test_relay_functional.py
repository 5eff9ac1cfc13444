"""Real aiortc peers on loopback through the WHIP/WHEP endpoints."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Service
from tests.media import in_order, start_publisher, start_viewer

pytestmark = pytest.mark.webrtc


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_viewers_decode_the_publishers_frames_in_order(service: Service, codec: str) -> None:
    session = await service.create_session(video_codec=codec)
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewers = []
    try:
        for _ in range(10):
            viewers.append(await start_viewer(service.http, service.base, session["id"],
                                              session["view_token"]))
        await asyncio.gather(*(v.wait_for_frames(60, timeout=15) for v in viewers))
        sent = publisher.video.index
        for viewer in viewers:
            assert in_order(viewer.indices), viewer.indices[:80]
            assert all(0 <= i < sent for i in viewer.indices)
            # Gaps only where a frame was really skipped: ≥ 90 % of the span arrived.
            span = viewer.indices[-1] - viewer.indices[0] + 1
            assert len(viewer.indices) >= 0.9 * span, (len(viewer.indices), span)
            assert viewer.audio_frames > 0
        stats = (await service.session(session["id"]))["stats"]
        assert stats["viewer_count"] == 10
        assert stats["publisher_connected"]
        assert stats["ingress"]["video"]["frames"] > 60
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
