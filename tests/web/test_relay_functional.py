"""Real aiortc peers on loopback through the WHIP/WHEP endpoints."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.media import (
    in_order,
    make_lossy,
    start_publisher,
    start_viewer,
)
from tests.support.service import Service

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


async def test_late_viewer_sees_a_picture_within_a_second(service: Service) -> None:
    session = await service.create_session(video_codec="VP8")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    early = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    late = None
    try:
        await early.wait_for_frames(60, timeout=10)  # the stream is well under way
        asked = time.monotonic()
        late = await start_viewer(service.http, service.base, session["id"],
                                  session["view_token"])
        await late.wait_for_frames(1, timeout=5)
        assert late.first_frame_at is not None
        waited = late.first_frame_at - asked
        assert waited < 1.0, f"first frame after {waited:.3f} s"
        assert late.indices[0] > early.indices[0]
    finally:
        if late is not None:
            await late.close()
        await early.close()
        await publisher.close()


@pytest.mark.parametrize("old_leaves_first", [True, False], ids=["reconnect", "takeover"])
async def test_new_publisher_reaches_existing_viewers_without_renegotiation(
    service: Service, old_leaves_first: bool
) -> None:
    session = await service.create_session()
    first = await start_publisher(service.http, service.base, session["id"],
                                  session["publish_token"])
    viewers = []
    second = None
    try:
        for _ in range(3):
            viewers.append(await start_viewer(service.http, service.base, session["id"],
                                              session["view_token"]))
        await asyncio.gather(*(v.wait_for_frames(30, timeout=10) for v in viewers))
        resources = {v["id"] for v in (await service.session(session["id"]))["stats"]["viewers"]}
        if old_leaves_first:
            await first.close()  # the classroom PC loses its network: no DELETE
            await asyncio.sleep(0.5)
        switched = time.monotonic()
        second = await start_publisher(service.http, service.base, session["id"],
                                       session["publish_token"], start=10_000)
        for viewer in viewers:
            before = len(viewer.indices)
            deadline = switched + 3.0
            while not any(i >= 10_000 for i in viewer.indices[before:]):
                assert time.monotonic() < deadline, (
                    f"no frame of the new publisher within 3 s: {viewer.indices[-5:]}")
                await asyncio.sleep(0.05)
            assert viewer.pc.connectionState == "connected"
            assert viewer.pc.signalingState == "stable"
            new = [i for i in viewer.indices if i >= 10_000]
            assert in_order(new)
        stats = (await service.session(session["id"]))["stats"]
        assert {v["id"] for v in stats["viewers"]} == resources  # the same resources
        assert stats["publishers_accepted"] == 2
        if not old_leaves_first:
            # Never two publishers at once: the server dropped the first one.
            for _ in range(50):
                if first.pc.connectionState in ("closed", "failed"):
                    break
                await asyncio.sleep(0.1)
            assert first.pc.connectionState in ("closed", "failed")
    finally:
        for viewer in viewers:
            await viewer.close()
        if second is not None:
            await second.close()
        await first.close()


async def test_two_percent_loss_on_the_publisher_leg(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    session = await service.create_session(video_codec="VP8")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"], width=640, height=480)
    dropped = make_lossy(publisher.pc, 0.02)
    viewers = []
    try:
        for _ in range(3):
            viewers.append(await start_viewer(service.http, service.base, session["id"],
                                              session["view_token"]))
        await asyncio.gather(*(v.wait_for_frames(300, timeout=30) for v in viewers))
        assert dropped[0] >= 10, "the lossy wrapper dropped too little to prove anything"
        sent = publisher.video.index
        for viewer in viewers:
            assert in_order(viewer.indices), viewer.indices
            assert all(0 <= i < sent for i in viewer.indices)
            # Retransmissions fill the gaps: hardly any frame is skipped.
            span = viewer.indices[-1] - viewer.indices[0] + 1
            assert len(viewer.indices) >= 0.9 * span, (len(viewer.indices), span)
        decode_failures = [r for r in caplog.records if "failed to decode" in r.getMessage()]
        assert not decode_failures, decode_failures[:3]
        stats = (await service.session(session["id"]))["stats"]
        assert stats["publisher"]["video_packets_lost"] >= 0
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


async def test_two_percent_loss_on_a_viewers_downlink_is_repaired_by_retransmission(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    session = await service.create_session(video_codec="VP8")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"], width=640, height=480)
    viewer = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    try:
        dropped = make_lossy(viewer.pc, 0.02, seed=11, direction="receive")
        await viewer.wait_for_frames(300, timeout=30)
        assert dropped[0] >= 10, "the lossy wrapper dropped too little to prove anything"
        assert in_order(viewer.indices)
        span = viewer.indices[-1] - viewer.indices[0] + 1
        assert len(viewer.indices) >= 0.9 * span, (len(viewer.indices), span)
        assert not [r for r in caplog.records if "failed to decode" in r.getMessage()]
        stats = (await service.session(session["id"]))["stats"]["viewers"][0]["program_video"]
        assert stats["nacks"] > 0
        assert stats["retransmitted"] > 0
    finally:
        await viewer.close()
        await publisher.close()
