"""Real aiortc peers for tests and benchmarks: a publisher whose frames carry
their index as a barcode, and viewers that decode and read it back."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
BITS = 16
BLOCK = 16  # barcode cell size in pixels: survives lossy coding at any bitrate


def barcode_frame(index: int, width: int, height: int) -> av.VideoFrame:
    """A yuv420p picture: the index as BITS black/white cells in the top band,
    a moving gradient below (so the encoder has real motion to code)."""
    y = np.empty((height, width), dtype=np.uint8)
    xs = np.arange(width, dtype=np.uint16)
    # (index * 4) % 200 first: a large index must not overflow the uint16 sum.
    y[:, :] = ((xs + (index * 4) % 200) % 200 + 28).astype(np.uint8)[None, :]
    for bit in range(BITS):
        value = 235 if (index >> bit) & 1 else 16
        y[0:BLOCK * 2, bit * BLOCK:(bit + 1) * BLOCK] = value
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.planes[0].update(np.ascontiguousarray(y).tobytes())
    chroma = np.full((height // 2) * (width // 2), 128, dtype=np.uint8).tobytes()
    frame.planes[1].update(chroma)
    frame.planes[2].update(chroma)
    return frame


def read_barcode(frame: av.VideoFrame) -> int:
    y = frame.to_ndarray(format="gray")
    index = 0
    for bit in range(BITS):
        cell = y[BLOCK // 2:BLOCK + BLOCK // 2, bit * BLOCK + 4:(bit + 1) * BLOCK - 4]
        if cell.mean() > 128:
            index |= 1 << bit
    return index


class BarcodeTrack(MediaStreamTrack):
    """Video frames numbered from ``start``, paced at ``fps``."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30, start: int = 0):
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.index = start
        self._t0: float | None = None
        self._count = 0
        self.sent_at: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        due = self._t0 + self._count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = barcode_frame(self.index % (1 << BITS), self.width, self.height)
        frame.pts = int(self._count * 90000 / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.sent_at[self.index % (1 << BITS)] = time.monotonic()
        self.index += 1
        self._count += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """A tone (440 Hz unless told) in 20 ms Opus-sized frames."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self._t0: float | None = None
        self._count = 0
        self.frequency = frequency

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self._count * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        samples = 960
        t = (np.arange(samples) + self._count * samples) / 48000
        pcm = (np.sin(2 * math.pi * self.frequency * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._count * samples
        frame.time_base = fractions.Fraction(1, 48000)
        self._count += 1
        return frame


async def close_peer(pc: RTCPeerConnection, tasks: list[asyncio.Task[None]]) -> None:
    """End a test peer: its reading tasks first, then the connection."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
            await task
    await pc.close()


def new_pc() -> RTCPeerConnection:
    """A test peer that bundles as browsers do: aiortc's default policy
    (balanced) would leave its own second audio section on a transport that
    the answer's BUNDLE drops, and it would hear nothing there."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[],
                                              bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def post_offer(
    http: aiohttp.ClientSession, url: str, token: str, pc: RTCPeerConnection
) -> tuple[int, str, str | None]:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(
        url,
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, await response.text(), response.headers.get("Location")


class WhipRefused(AssertionError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"WHIP answered {status}: {text}")
        self.status = status


@dataclass
class TestPublisher:
    pc: RTCPeerConnection
    video: BarcodeTrack
    location: str | None

    async def close(self) -> None:
        await self.pc.close()


async def start_publisher(
    http: aiohttp.ClientSession,
    base: str,
    session_id: str,
    token: str,
    *,
    start: int = 0,
    width: int = 320,
    height: int = 240,
    codec: str | None = None,
    wrap_pc: Callable[[RTCPeerConnection], None] | None = None,
    tone: float = 440.0,
    resumes: str | None = None,
) -> TestPublisher:
    pc = new_pc()
    video = BarcodeTrack(width, height, start=start)
    video_transceiver = pc.addTransceiver(video, direction="sendonly")
    if codec is not None:
        from aiortc import RTCRtpSender

        caps = RTCRtpSender.getCapabilities("video").codecs
        video_transceiver.setCodecPreferences(
            [c for c in caps if c.mimeType.lower() in (f"video/{codec.lower()}", "video/rtx")]
        )
    pc.addTransceiver(ToneTrack(tone), direction="sendonly")
    if wrap_pc is not None:
        wrap_pc(pc)
    query = f"?resumes={resumes}" if resumes is not None else ""
    status, answer, location = await post_offer(http, f"{base}/whip/{session_id}{query}",
                                                token, pc)
    if status != 201:
        await pc.close()
        raise WhipRefused(status, answer)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return TestPublisher(pc, video, location)


@dataclass
class TestViewer:
    pc: RTCPeerConnection
    location: str | None
    indices: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each frame
    first_frame_at: float | None = None
    audio_frames: int = 0
    decode_errors: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    offers: int = 1

    async def close(self) -> None:
        await close_peer(self.pc, self.tasks)

    async def wait_for_frames(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.indices) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"viewer decoded {len(self.indices)} of {count} frames within {timeout} s "
                    f"(connection {self.pc.connectionState})"
                )
            await asyncio.sleep(0.05)


async def start_viewer(
    http: aiohttp.ClientSession, base: str, session_id: str, token: str
) -> TestViewer:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    viewer = TestViewer(pc, None)

    async def consume_video(track: MediaStreamTrack) -> None:
        while True:
            frame = await track.recv()
            now = time.monotonic()
            if viewer.first_frame_at is None:
                viewer.first_frame_at = now
            viewer.indices.append(read_barcode(frame))
            viewer.arrivals.append(now)

    async def consume_audio(track: MediaStreamTrack) -> None:
        while True:
            await track.recv()
            viewer.audio_frames += 1

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        consume = consume_video if track.kind == "video" else consume_audio
        viewer.tasks.append(asyncio.ensure_future(consume(track)))

    try:
        status, answer, location = await post_offer(http, f"{base}/whep/{session_id}", token,
                                                    pc)
    except BaseException:  # the server unreachable (a dead edge): no peer left open
        await pc.close()
        raise
    if status != 201:
        await pc.close()
        raise AssertionError(f"WHEP answered {status}: {answer}")
    viewer.location = location
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return viewer


def in_order(indices: list[int]) -> bool:
    """Strictly increasing (a viewer may skip frames, never go back or repeat)."""
    return all(b > a for a, b in itertools.pairwise(indices))


def make_lossy(pc: RTCPeerConnection, rate: float, seed: int = 7,
               direction: str = "send") -> list[int]:
    """Drop ``rate`` of the RTP packets (not RTCP) that ``pc`` sends or receives.

    ``send`` wraps each DTLS transport's send path before SRTP protection, so
    the loss hits media and retransmissions alike, as a lossy uplink would;
    ``receive`` drops after SRTP on the way in, as a lossy downlink would (the
    receiver then NACKs). Returns a one-element list counting dropped packets.
    """
    import random

    rng = random.Random(seed)
    dropped = [0]
    method = "_send_rtp" if direction == "send" else "_handle_rtp_data"
    wrapped: set[int] = set()
    for transceiver in pc.getTransceivers():
        side = transceiver.sender if direction == "send" else transceiver.receiver
        transport = side.transport
        if id(transport) in wrapped:
            continue
        wrapped.add(id(transport))
        original = getattr(transport, method)

        async def lossy(data: bytes, original: Callable = original,  # type: ignore[type-arg]
                        **kwargs: int) -> None:
            is_rtcp = len(data) > 1 and 192 <= data[1] <= 223
            if not is_rtcp and rng.random() < rate:
                dropped[0] += 1
                return
            await original(data, **kwargs)

        setattr(transport, method, lossy)
    return dropped


def make_bad_link(pc: RTCPeerConnection, loss: float, jitter: float,
                  seed: int = 5) -> list[int]:
    """A poor uplink on what ``pc`` sends, in user space (no netem here): each
    RTP packet (not RTCP) is lost with probability ``loss``, the others leave
    after a random delay of 0 to ``jitter`` seconds, so some overtake others
    as on a real jittery link. Returns a one-element list counting drops."""
    import random

    rng = random.Random(seed)
    dropped = [0]
    in_flight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    wrapped: set[int] = set()
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if id(transport) in wrapped:
            continue
        wrapped.add(id(transport))
        original = transport._send_rtp

        def later(data: bytes, original: Callable = original) -> None:  # type: ignore[type-arg]
            task = asyncio.ensure_future(original(data))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

        async def bad(data: bytes, later: Callable = later,  # type: ignore[type-arg]
                      original: Callable = original) -> None:  # type: ignore[type-arg]
            if len(data) > 1 and 192 <= data[1] <= 223:
                await original(data)  # RTCP goes as it is
                return
            if rng.random() < loss:
                dropped[0] += 1
                return
            loop.call_later(rng.uniform(0.0, jitter), later, data)

        transport._send_rtp = bad
    return dropped
