"""The benchmark's viewers: cheap counting viewers and decoding viewers.

Every peer here uses no STUN server and offers only 127.0.0.1 as its ICE
candidate (:func:`loopback_only`), so no packet ever leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streaming.aiortc_glue import ReceiverTap, configure_ice, install_rfc7983_demux
from tests.support.media import new_pc, read_barcode

LOOPBACK = "127.0.0.1"


def loopback_only(address: str = LOOPBACK) -> None:
    """ICE host candidates: 127.0.0.1 only (process-wide); cheap media demux.

    ``address`` replaces 127.0.0.1 for a relay that never uses loopback (Janus:
    bench.janus gives its namespace a veth address for every peer). The demux
    only lowers the load generator's own receive cost.
    """
    configure_ice([address])
    install_rfc7983_demux()


@dataclass(frozen=True)
class Endpoint:
    """Where to publish into and view from one relay's session."""

    base: str
    session_id: str
    publish_token: str
    view_token: str

    @property
    def whep_url(self) -> str:
        return f"{self.base}/whep/{self.session_id}"


class OfferRejected(RuntimeError):
    """The relay did not answer an offer with 201."""


async def negotiate(
    http: aiohttp.ClientSession, url: str, token: str, pc: RTCPeerConnection
) -> float:
    """Offer (WHIP/WHEP), apply the answer; returns when the offer was sent."""
    await pc.setLocalDescription(await pc.createOffer())
    sent_at = time.monotonic()
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with http.post(url, data=pc.localDescription.sdp, headers=headers) as response:
        answer = await response.text()
        if response.status != 201:
            raise OfferRejected(f"{url} answered {response.status}: {answer[:200]}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return sent_at


class CountingViewer:
    """Receives video and audio like a real viewer but decodes nothing.

    The glue's ``ReceiverTap`` takes each frame as the jitter buffer completes
    it (after SRTP, NACK and RTCP feedback have run as usual); it is counted
    and dropped. A jitter-buffer reset sends a PLI, as aiortc's receiver would.
    """

    def __init__(self) -> None:
        self.pc = new_pc()
        self.video_frames = 0
        self.audio_frames = 0
        self.lost = 0  # here: jitter-buffer resets (damaged frames), each answered with a PLI
        self._pli: asyncio.Task[None] | None = None
        video = self.pc.addTransceiver("video", direction="recvonly")
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        self._video_tap = ReceiverTap(video.receiver, 90_000, self._on_video, self._on_damage,
                                      audio_prefetch=-1)
        ReceiverTap(audio.receiver, 48_000, self._on_audio, lambda: None, audio_prefetch=-1)

    def _on_video(self, codec: str, data: bytes, timestamp: int,
                  capture_time: float | None) -> None:
        self.video_frames += 1

    def _on_audio(self, codec: str, data: bytes, timestamp: int,
                  capture_time: float | None) -> None:
        self.audio_frames += 1

    @property
    def connected(self) -> bool:
        return bool(self.pc.connectionState == "connected")

    def _on_damage(self) -> None:
        self.lost += 1
        if self._pli is None or self._pli.done():
            self._pli = asyncio.ensure_future(self._video_tap.request_keyframe())

    async def connect(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        await negotiate(http, url, token, self.pc)

    async def close(self) -> None:
        if self._pli is not None:
            self._pli.cancel()
        await self.pc.close()


class DecodingViewer:
    """Decodes video like a real viewer and reads each frame's barcode."""

    def __init__(self) -> None:
        self.pc = new_pc()
        self.offer_sent_at: float | None = None
        self.first_frame_at: float | None = None
        self.decoded: list[tuple[int, float]] = []  # (barcode index, when decoded)
        self.audio_frames = 0
        self._first = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        consume = self._video if track.kind == "video" else self._audio
        self._tasks.append(asyncio.ensure_future(consume(track)))

    async def _video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):  # the track ended: the peer closed
            while True:
                frame = await track.recv()
                now = time.monotonic()
                self.decoded.append((read_barcode(frame), now))  # type: ignore[arg-type]
                if self.first_frame_at is None:
                    self.first_frame_at = now
                    self._first.set()

    async def _audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.audio_frames += 1

    @property
    def connected(self) -> bool:
        return bool(self.pc.connectionState == "connected")

    async def connect(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.offer_sent_at = await negotiate(http, url, token, self.pc)

    async def time_to_first_frame(self, timeout: float) -> float | None:
        """Seconds from sending the offer to the first decoded frame, or None."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), timeout)
        if self.first_frame_at is None or self.offer_sent_at is None:
            return None
        return self.first_frame_at - self.offer_sent_at

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await task
        await self.pc.close()
