"""An upstream: a session's program and stage pulled from another relay over WHEP.

An edge (or a worker) does not receive the lecture from the presenter: it is
a WHEP viewer of the origin, once per session, and it fills its own
broadcast's slots with what it receives. To those slots an upstream is one
more :class:`~streaming.protocols.FrameSource`: the frames come out of the
same receiver tap as a WHIP publisher's (``aiortc_glue.ReceiverTap``: NACK,
RR and REMB towards the origin as aiortc does them, no decoding), and a
keyframe request of the local slot goes upstream as a PLI, which the
origin's own coalescing turns into at most one PLI to the presenter.

No HTTP here: the offer → answer exchange is a callable the caller injects
(``web/edge.py`` POSTs it to the origin's WHEP endpoint).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from streaming import aiortc_glue
from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame, MediaKind
from streaming.keyframes import is_keyframe
from streaming.peers import SUPPORTED_VIDEO_CODECS, PeerSettings
from streaming.slot import Slot

logger = logging.getLogger(__name__)

# The slots an upstream fills, in the order of the offer's sections (the
# origin gives a viewer's first audio and video the program, the second the stage).
UPSTREAM_SLOTS = ("program", "stage")

Exchange = Callable[[str], Awaitable[str]]


class UpstreamRefused(Exception):
    """The origin would not (or could not) answer; the message says why."""


class _SlotFeed:
    """The source of one local slot: the upstream's audio and video of it."""

    keyframes_on_demand = True

    def __init__(self, upstream: Upstream, name: str) -> None:
        self._upstream = upstream
        self.name = name
        self.slot: Slot | None = None
        self.video_tap: aiortc_glue.ReceiverTap | None = None
        self._pli: asyncio.Task[None] | None = None

    # FrameSource
    def request_keyframe(self) -> None:
        tap = self.video_tap
        if tap is None or self._upstream.closed:
            return
        if self._pli is None or self._pli.done():
            self._pli = asyncio.create_task(tap.request_keyframe())

    def push(self, frame: EncodedFrame) -> None:
        if self.slot is not None:
            self.slot.push(self, frame)

    def stop(self) -> None:
        if self.slot is not None:
            self.slot.detach(self)
        if self._pli is not None:
            self._pli.cancel()


class Upstream:
    """One WHEP pull of a session from another relay, filling local slots.

    ``start()`` negotiates (and learns the session's video codec from the
    answer); ``attach()`` then gives it the slots to fill. ``on_closed`` is
    called once when the connection fails or closes (the origin ended the
    session, or went away): the owner decides whether to pull again.
    """

    def __init__(self, name: str, settings: PeerSettings, exchange: Exchange,
                 on_closed: Callable[[Upstream], None] | None = None) -> None:
        self.name = name  # whose pull this is, for logs
        self._settings = settings
        self._exchange = exchange
        self._on_closed = on_closed
        self.closed = False
        self.video_codec: str | None = None
        self.frames = 0  # frames received, for stats and tests
        self.feeds = {slot: _SlotFeed(self, slot) for slot in UPSTREAM_SLOTS}
        self.pc = RTCPeerConnection(settings.configuration(bundle=True))
        self.pc.on("connectionstatechange", self._state_changed)
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Offer, have the origin answer, apply it; returns the video codec."""
        for feed in self.feeds.values():
            for kind in ("audio", "video"):
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                self._tap(feed, "video" if kind == "video" else "audio", transceiver.receiver)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        try:
            answer = await self._exchange(self.pc.localDescription.sdp)
            codec = answer_video_codec(answer)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except BaseException:
            await self.close(notify=False)
            raise
        self.video_codec = codec
        self._watchdog = asyncio.create_task(self._watch_connect())
        return codec

    def attach(self, slots: dict[str, Slot]) -> None:
        """Fill these local slots (by name) from now on; each switches source."""
        for name, feed in self.feeds.items():
            slot = slots.get(name)
            if slot is not None and not self.closed:
                feed.slot = slot
                slot.attach(feed)

    def _tap(self, feed: _SlotFeed, kind: MediaKind, receiver: object) -> None:
        clock_rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE

        def on_frame(codec: str, data: bytes, timestamp: int,
                     capture_time: float | None) -> None:
            self.frames += 1
            feed.push(EncodedFrame(kind, codec, data, timestamp, clock_rate,
                                   is_keyframe(codec, data), None,
                                   capture_time))

        def on_damage() -> None:
            slot = feed.slot
            if slot is not None and slot.source is feed:
                slot.video.mark_damaged()

        # A video frame goes on at its last packet: the cascade adds no
        # frame interval of waiting for the next one.
        tap = aiortc_glue.ReceiverTap(receiver, clock_rate, on_frame,  # type: ignore[arg-type]
                                      on_damage, audio_prefetch=self._settings.audio_prefetch,
                                      release_on_marker=True)
        if kind == "video":
            feed.video_tap = tap

    async def _watch_connect(self) -> None:
        await asyncio.sleep(self._settings.connect_timeout)
        if self.pc.connectionState != "connected":
            logger.warning("upstream %s did not connect within %.0f s: %s", self.name,
                           self._settings.connect_timeout, aiortc_glue.failure_cause(self.pc))
            await self.close()

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            logger.info("upstream %s connected", self.name)
            for feed in self.feeds.values():
                feed.request_keyframe()
        elif state in ("failed", "closed") and not self.closed:
            if state == "failed":
                logger.warning("upstream %s failed: %s", self.name,
                               aiortc_glue.failure_cause(self.pc))
            else:
                logger.info("upstream %s closed by the other side", self.name)
            await self.close()

    async def close(self, notify: bool = True) -> None:
        """Stop filling the slots and close the connection; safe twice."""
        if self.closed:
            return
        self.closed = True
        for feed in self.feeds.values():
            feed.stop()
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        await self.pc.close()
        if notify and self._on_closed is not None:
            try:
                self._on_closed(self)
            except Exception:
                logger.exception("upstream %s: its close listener failed", self.name)


def answer_video_codec(answer: str) -> str:
    """The video codec an origin's answer chose (its first video section's
    first codec), checked against what a relay forwards."""
    try:
        description = aiortc_sdp.SessionDescription.parse(answer)
    except Exception as exc:  # the parser raises whatever the bad text provokes
        raise UpstreamRefused(f"the origin's answer is not SDP: {exc}") from exc
    for media in description.media:
        if media.kind == "video" and media.rtp.codecs:
            codec = media.rtp.codecs[0].mimeType.split("/", 1)[-1]
            for known in SUPPORTED_VIDEO_CODECS:
                if codec.upper() == known.upper():
                    return known
            raise UpstreamRefused(f"the origin answered with video codec {codec[:20]}")
    raise UpstreamRefused("the origin's answer has no video")
