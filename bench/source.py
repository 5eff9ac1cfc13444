"""The benchmark's publisher: 640x480@30 barcode video (VP8) and an Opus tone.

Two ways to encode the video:

- ``fixed`` (default): the bench encodes each ``BarcodeTrack`` frame itself
  with libvpx at a fixed CBR bitrate (aiortc's own VP8 settings otherwise) and
  pushes pre-packetized frames through the glue's ``ViewerWriter`` (the same
  sender path the relay uses for its viewers). A keyframe request (PLI/FIR)
  from the relay forces the next frame to be a keyframe, as aiortc's encoder
  does.
- ``aiortc``: aiortc's own encoder, whose bitrate follows the relay's REMB
  between its 250 kbps floor and 1.5 Mbps cap. Measured on loopback: the plain
  ``BarcodeTrack`` (``--grain 0``) settles at ~250 kbps, because libvpx needs
  no more for a sliding gradient at its best quantizer; with grain the REMB
  estimate climbs to the 1.5 Mbps cap in ~25 s, restarting the encoder (a
  keyframe) at every step of more than 10 %. Neither is the 1 Mbps wanted,
  hence ``fixed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from av.video.frame import PictureType

from bench.peers import Endpoint, negotiate
from streaming.aiortc_glue import ViewerWriter, attach_sender, make_packetizer
from streaming.frames import VIDEO_CLOCK_RATE, EncodedFrame
from streaming.keyframes import is_vp8_keyframe
from tests.support.media import BLOCK, BarcodeTrack, ToneTrack, new_pc

WIDTH, HEIGHT, FPS = 640, 480, 30
GRAIN_FIELDS = 31
SOURCES = ("fixed", "aiortc")


class GrainyBarcodeTrack(BarcodeTrack):
    """``BarcodeTrack`` with film grain below the barcode band.

    The plain picture (a sliding gradient) is so predictable that libvpx
    spends only ~250 kbps on it whatever the target; grain that changes every
    frame makes the encoder use the bitrate it is given, as camera noise does.
    The barcode band stays clean so that every frame still reads back.
    """

    GRAIN_TOP = 2 * BLOCK + 16  # rows above stay untouched (the barcode)

    def __init__(self, width: int, height: int, fps: int, grain: int, seed: int = 1) -> None:
        super().__init__(width, height, fps)
        rng = np.random.default_rng(seed)
        rows = height - self.GRAIN_TOP
        self._grain = [rng.integers(-grain, grain + 1, (rows, width), dtype=np.int16)
                       for _ in range(GRAIN_FIELDS)] if grain > 0 else []
        self._next = 0

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        if self._grain:
            plane = frame.planes[0]
            y = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(self.height,
                                                                          plane.line_size)
            y = y[:, :self.width].astype(np.int16)
            y[self.GRAIN_TOP:] += self._grain[self._next % GRAIN_FIELDS]
            self._next += 1
            plane.update(np.clip(y, 0, 255).astype(np.uint8).tobytes())
        return frame


class FixedRateVp8Track(MediaStreamTrack):
    """``BarcodeTrack`` frames, VP8-encoded at ``bitrate`` and packetized."""

    kind = "video"

    def __init__(self, barcodes: BarcodeTrack, bitrate: int) -> None:
        super().__init__()
        self.barcodes = barcodes
        self.keyframes_forced = 0
        self._force_keyframe = True
        self._packetize = make_packetizer("VP8")
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = barcodes.width, barcodes.height
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = bitrate
        codec.time_base = Fraction(1, VIDEO_CLOCK_RATE)
        codec.gop_size = 3000
        codec.qmin, codec.qmax = 2, 56
        codec.thread_count = 1
        codec.options = {  # aiortc's Vp8Encoder settings, but a fixed rate and top speed
            "bufsize": str(bitrate), "cpu-used": "16", "deadline": "realtime",
            "lag-in-frames": "0", "minrate": str(bitrate), "maxrate": str(bitrate),
            "noise-sensitivity": "4", "overshoot-pct": "15", "partitions": "0",
            "static-thresh": "1", "undershoot-pct": "100",
        }
        self._codec = codec

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    def _encode(self, frame: av.VideoFrame, keyframe: bool) -> bytes:
        if keyframe:
            frame.pict_type = PictureType.I
        return b"".join(bytes(packet) for packet in self._codec.encode(frame))

    async def pump(self, writer: ViewerWriter) -> None:
        """Encode and send frames for as long as the publisher runs."""
        while True:
            frame = await self.recv()
            if not writer.ready or not writer.send(frame):
                self._force_keyframe = True  # what was not sent would be missed

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        while True:
            frame = await self.barcodes.recv()
            keyframe, self._force_keyframe = self._force_keyframe, False
            self.keyframes_forced += keyframe
            data = await asyncio.get_running_loop().run_in_executor(
                None, self._encode, frame, keyframe)
            if data:
                break
        out = EncodedFrame("video", "VP8", data, int(frame.pts or 0), VIDEO_CLOCK_RATE,
                           is_vp8_keyframe(data))
        out.payloads = self._packetize(out)
        return out


class Source:
    """The publisher peer and its figures."""

    def __init__(self, pc: RTCPeerConnection, barcodes: BarcodeTrack,
                 video_sender: RTCRtpSender) -> None:
        self.pc = pc
        self.barcodes = barcodes
        self.video_sender = video_sender
        self.started_at = time.monotonic()
        self.pump: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, http: aiohttp.ClientSession, endpoint: Endpoint, kind: str,
                    bitrate: int, grain: int,
                    negotiator: Callable[[RTCPeerConnection], Awaitable[object]] | None = None
                    ) -> Source:
        """Publish into ``endpoint`` by WHIP, or by ``negotiator`` (Janus's API)."""
        pc = new_pc()
        barcodes = GrainyBarcodeTrack(WIDTH, HEIGHT, FPS, grain)
        track: MediaStreamTrack = barcodes
        if kind == "fixed":
            track = FixedRateVp8Track(barcodes, bitrate)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences(
            [c for c in codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")])
        pc.addTransceiver(ToneTrack(), direction="sendonly")
        source = cls(pc, barcodes, transceiver.sender)
        if isinstance(track, FixedRateVp8Track):
            writer, _ = attach_sender(transceiver.sender, track.request_keyframe, lambda: None)
            source.pump = asyncio.ensure_future(track.pump(writer))
        try:
            if negotiator is not None:
                await negotiator(pc)
            else:
                await negotiate(http, f"{endpoint.base}/whip/{endpoint.session_id}",
                                endpoint.publish_token, pc)
        except BaseException:
            await pc.close()
            raise
        return source

    @property
    def frames_sent(self) -> int:
        return self.barcodes.index

    def sent_at(self, index: int) -> float | None:
        return self.barcodes.sent_at.get(index)

    @property
    def connected(self) -> bool:
        return bool(self.pc.connectionState == "connected")

    async def video_bytes_sent(self) -> int:
        """RTP payload bytes the video sender has sent so far."""
        for stat in (await self.video_sender.getStats()).values():
            if stat.type == "outbound-rtp":
                return int(stat.bytesSent)
        return 0

    async def close(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump
        await self.pc.close()
