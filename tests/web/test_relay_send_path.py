"""The two send paths with real aiortc viewers: connected viewers take their
frames in their slot track's batch (one native call for all), a viewer whose
socket is full loses frames up to the next keyframe and plays on (native),
and the Python path that ``--send-path python`` keeps still serves viewers."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from streaming import aiortc_glue
from tests.support.media import in_order, start_publisher, start_viewer
from tests.support.service import ADMIN_TOKEN, Service, running
from web.config import Config
from web.keys import SESSIONS

pytestmark = pytest.mark.webrtc


async def test_a_full_socket_drops_a_native_viewer_to_the_next_keyframe(
        service: Service) -> None:
    session = await service.create_session(video_codec="VP8")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"], width=640, height=480)
    viewer = await start_viewer(service.http, service.base, session["id"], session["view_token"])
    blocked, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        await viewer.wait_for_frames(30, timeout=15)
        broadcast = service.app[SESSIONS].get(session["id"]).broadcast
        [relay_side] = broadcast.viewers.values()
        [video] = [o for o in relay_side.outgoing if o.kind == "video"]
        writer = video.writer
        assert isinstance(writer, aiortc_glue.NativeViewerWriter)
        route = writer._viewer
        assert route is not None, "a direct viewer goes through the native path"
        assert writer._batch is not None, "a connected viewer takes its frames in a batch"
        # The viewer's packets now go to a socket nobody reads: the kernel
        # soon refuses them, as it does when a room's socket buffer is full.
        blocked.setblocking(False)
        fd, length, gso = route.fd, route.address_length, route.gso
        route.fd, route.address_length, route.gso = blocked.fileno(), 0, 0
        for _ in range(100):
            await asyncio.sleep(0.05)
            if video.track.overflows:
                break
        route.fd, route.address_length, route.gso = fd, length, gso
        assert video.track.overflows >= 1
        decoded = len(viewer.indices)
        await viewer.wait_for_frames(decoded + 30, timeout=15)  # plays on from a keyframe
        assert in_order(viewer.indices)
        assert writer._batch is not None, "back in the batch after the keyframe"
    finally:
        blocked.close()
        reader.close()
        await viewer.close()
        await publisher.close()


async def test_connected_viewers_share_one_batch_and_a_leaver_leaves_it(
        service: Service) -> None:
    session = await service.create_session(video_codec="VP8")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"], width=640, height=480)
    viewers = [await start_viewer(service.http, service.base, session["id"],
                                  session["view_token"]) for _ in range(3)]
    try:
        await asyncio.gather(*(v.wait_for_frames(30, timeout=15) for v in viewers))
        broadcast = service.app[SESSIONS].get(session["id"]).broadcast
        writers = {kind: [o.writer for side in broadcast.viewers.values()
                          for o in side.outgoing if o.kind == kind and o.slot_name == "program"]
                   for kind in ("video", "audio")}
        for kind, track in (("video", broadcast.program.video),
                            ("audio", broadcast.program.audio)):
            [batch] = {id(w._batch): w._batch for w in writers[kind]}.values()
            assert isinstance(batch, aiortc_glue.NativeBatch) and len(batch) == 3
            assert track.sink_count >= 3  # the batch's members count as sinks
        # Sender reports come from the native counters: the viewers see
        # what was sent (aiortc's remote-outbound figures come from them).
        await asyncio.sleep(2)
        for viewer in viewers:
            remote = [s for receiver in viewer.pc.getReceivers()
                      for s in (await receiver.getStats()).values()
                      if s.type == "remote-outbound-rtp"]
            assert remote and all(s.packetsSent > 0 and s.bytesSent > 0 for s in remote)
        video_batch = writers["video"][0]._batch
        await viewers[0].close()
        for _ in range(100):
            if len(video_batch) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(video_batch) == 2
        counts = [len(v.indices) for v in viewers[1:]]
        await asyncio.gather(*(v.wait_for_frames(n + 30, timeout=15)
                               for v, n in zip(viewers[1:], counts, strict=True)))
        for viewer in viewers[1:]:
            assert in_order(viewer.indices)
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


async def test_the_python_send_path_serves_viewers(tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN, send_path="python")
    async with running(config) as service:
        session = await service.create_session(video_codec="VP8")
        publisher = await start_publisher(service.http, service.base, session["id"],
                                          session["publish_token"])
        viewers = [await start_viewer(service.http, service.base, session["id"],
                                      session["view_token"]) for _ in range(2)]
        try:
            await asyncio.gather(*(v.wait_for_frames(60, timeout=15) for v in viewers))
            broadcast = service.app[SESSIONS].get(session["id"]).broadcast
            for relay_side in broadcast.viewers.values():
                for out in relay_side.outgoing:
                    assert type(out.writer) is aiortc_glue.ViewerWriter
            for viewer in viewers:
                assert in_order(viewer.indices)
                assert viewer.audio_frames > 0
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close()
