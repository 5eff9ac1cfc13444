"""WebRTC peers of a room: the publisher (a source) and the viewers (sinks).

Both answer an SDP offer (WHIP/WHEP: the client offers, we answer with all
our candidates, since aiortc does not trickle). A publisher's receivers are
tapped for undecoded frames; a viewer's senders are fed pre-packetized frames
from the room's slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import InternalError, InvalidAccessError, OperationError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from streaming import aiortc_glue
from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame, MediaKind
from streaming.keyframes import is_keyframe
from streaming.quality import Level, QualityController, Sample
from streaming.relay_track import RelayTrack
from streaming.slot import Slot

logger = logging.getLogger(__name__)

SUPPORTED_VIDEO_CODECS = ("H264", "VP8")
LOW_SLOT = "low"  # the name of a broadcast's lower-rendition slot
MAX_SDP_BYTES = 32 * 1024
# Seconds after a viewer connects by which every negotiated sender has started.
SENDER_START_GRACE = 3.0


class OfferError(Exception):
    """An offer the room cannot answer; the message is safe to show a client."""


class MalformedOffer(OfferError):
    """Not a usable SDP offer at all."""


class MissingMedia(OfferError):
    """A well-formed offer without the media the endpoint needs."""


class UnsupportedCodec(OfferError):
    """No codec in common with the room."""


@dataclass
class PeerSettings:
    """How peers are built: ICE servers and lifecycle limits."""

    ice_servers: list[RTCIceServer] = field(default_factory=list)
    connect_timeout: float = 30.0  # seconds to reach "connected" before giving up
    audio_prefetch: int = 0
    # "native": viewers' packets go out through streaming/rtp_send.c; "python":
    # through aiortc_glue.ViewerWriter's Python loop (the same packets).
    send_path: str = "native"

    def configuration(self, bundle: bool = True) -> RTCConfiguration:
        """ICE servers always explicit: aiortc's default would add a public
        STUN server. Bundling: every section of a bundling offer (browsers,
        OBS, aiortc) on one transport (max-bundle); aiortc's default
        (balanced) gives a kind's second section a transport of its own that
        the offer's BUNDLE group then drops, so a stage's audio never starts.
        An offer without a BUNDLE group gets a transport per section."""
        policy = RTCBundlePolicy.MAX_BUNDLE if bundle else RTCBundlePolicy.MAX_COMPAT
        return RTCConfiguration(iceServers=list(self.ice_servers), bundlePolicy=policy)


def codec_preferences(kind: MediaKind, video_codec: str) -> list[RTCRtpCodecCapability]:
    """The codecs a room accepts for ``kind``: one video codec (plus RTX) or Opus.

    For H.264 only packetization-mode 1 with a (constrained) baseline
    profile: that is what every WebRTC H.264 encoder sends and decoder takes.
    """
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    if kind == "audio":
        return [c for c in capabilities if c.mimeType.lower() == "audio/opus"]
    wanted = f"video/{video_codec}".lower()
    chosen = [
        c
        for c in capabilities
        if c.mimeType.lower() == wanted
        and (video_codec != "H264" or str(c.parameters.get("packetization-mode")) == "1")
    ]
    # Prefer constrained baseline (42e0..) over baseline (4200..).
    chosen.sort(key=lambda c: str(c.parameters.get("profile-level-id", "")) != "42e01f")
    chosen += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return chosen


def offers_bundle(description: aiortc_sdp.SessionDescription) -> bool:
    """Whether the offer groups its sections in one BUNDLE (RFC 9143)."""
    return any(group.semantic == "BUNDLE" and group.items for group in description.group)


def parse_offer(sdp: str) -> aiortc_sdp.SessionDescription:
    if len(sdp.encode("utf-8", "replace")) > MAX_SDP_BYTES:
        raise MalformedOffer(f"SDP offer larger than {MAX_SDP_BYTES} bytes")
    if not sdp.lstrip().startswith("v=0"):
        raise MalformedOffer("not an SDP offer (it must start with v=0)")
    session_part = sdp.split("\nm=", 1)[0]
    session_types = {line.strip()[:2] for line in session_part.splitlines()}
    for required in ("o=", "s=", "t="):
        if required not in session_types:
            raise MalformedOffer(f"malformed SDP offer: the session has no {required} line")
    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # the parser raises whatever the bad text provokes
        raise MalformedOffer(f"malformed SDP offer: {exc}") from exc
    if not description.media:
        raise MissingMedia("the offer has no media sections")
    # aiortc trusts what follows and fails deep inside (500s, half-closed
    # connections) if it does not hold: check it here.
    mids = [media.rtp.muxId for media in description.media]
    for media in description.media:
        if media.kind not in ("audio", "video", "application"):
            raise MalformedOffer(f"unsupported media section m={media.kind[:20]}")
        if media.kind in ("audio", "video") and not (
            media.ice and media.ice.usernameFragment and media.dtls and media.dtls.fingerprints
        ):
            raise MalformedOffer("the offer lacks ICE credentials or a DTLS fingerprint")
    if not all(mids) or len(set(mids)) != len(mids):
        raise MalformedOffer("every media section needs an a=mid of its own")
    if [media.kind for media in description.media].count("application") > 1:
        raise MalformedOffer("at most one application (data channel) section")
    for group in description.group:
        if any(str(item) not in mids for item in group.items):
            raise MalformedOffer(f"a=group:{group.semantic[:20]} names an unknown a=mid")
    return description


def limit_bandwidth(sdp: str, kind: MediaKind, kbps: int) -> str:
    """``sdp`` with ``b=AS``/``b=TIAS`` lines capping every ``kind`` section.

    In an answer, these ask the offerer's encoder to send no more (browsers
    follow them); the lines go after the section's c= line (RFC 8866 order).
    """
    lines = sdp.splitlines()
    out: list[str] = []
    section: str | None = None
    for line in lines:
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        if section == kind and line.startswith("b="):
            continue  # ours replace any the answer had
        out.append(line)
        if section == kind and line.startswith("c="):
            out += [f"b=AS:{kbps}", f"b=TIAS:{kbps * 1000}"]
    return "\r\n".join(out) + "\r\n"


class Peer:
    """Common lifecycle of the publisher and the viewers."""

    def __init__(
        self,
        resource_id: str,
        settings: PeerSettings,
        on_closed: Callable[[Peer], Awaitable[None]],
        context: str = "",
    ) -> None:
        self.resource_id = resource_id
        self.context = context  # whose peer this is ("broadcast …"), for logs
        self._settings = settings
        self.pc = self._new_connection(bundle=True)
        self._on_closed = on_closed
        self._closed = False
        self._watchdog: asyncio.Task[None] | None = None
        # Called once, when the connection first reaches "connected".
        self.on_connected: Callable[[Peer], None] | None = None
        self.connected_at: float | None = None  # time.time() of that moment

    def _new_connection(self, bundle: bool) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._settings.configuration(bundle))
        pc.on("connectionstatechange", self._state_changed)
        return pc

    async def _fit_bundling(self, description: aiortc_sdp.SessionDescription) -> None:
        """Before any transceiver: an offer that does not bundle gets a
        connection with a transport per section instead of the bundled one."""
        if offers_bundle(description):
            return
        unused, self.pc = self.pc, self._new_connection(bundle=False)
        unused.remove_listener("connectionstatechange", self._state_changed)
        await unused.close()

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    async def _negotiate(self, offer: str) -> str:
        """Apply the offer and return our answer (with all candidates)."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except OperationError as exc:
            raise UnsupportedCodec(
                "no codec in common: " + str(exc).replace("Failed to set remote ", "")
            ) from exc
        except (ValueError, InternalError, InvalidAccessError) as exc:
            raise MalformedOffer(f"unusable SDP offer: {exc}") from exc
        self._prepare()
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self._watchdog = asyncio.create_task(self._watch_connect())
        return str(self.pc.localDescription.sdp)

    def _prepare(self) -> None:
        """Hook between applying the offer and creating the answer."""

    def _connected(self) -> None:
        """Hook: the connection reached "connected" (once)."""

    async def _watch_connect(self) -> None:
        await asyncio.sleep(self._settings.connect_timeout)
        if self.pc.connectionState != "connected":
            logger.warning("%s did not connect within %.0f s, closing: %s", self.describe(),
                           self._settings.connect_timeout, aiortc_glue.failure_cause(self.pc))
            await self.close()

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        logger.debug("%s connection %s", self, state)
        if state == "connected" and self.connected_at is None and not self._closed:
            self.connected_at = time.time()
            self._connected()
            if self.on_connected is not None:
                self.on_connected(self)
        if state == "failed" and not self._closed:
            logger.warning("%s failed: %s", self.describe(), aiortc_glue.failure_cause(self.pc))
        if state in ("failed", "closed"):
            await self.close()

    @property
    def role(self) -> str:
        return "viewer"

    def describe(self) -> str:
        """Who this peer is, for an operator's log: role, resource and context."""
        where = f" of {self.context}" if self.context else ""
        return f"{self.role} {self.resource_id}{where}"

    async def add_candidate(self, candidate: Any) -> None:
        await self.pc.addIceCandidate(candidate)

    async def close(self) -> None:
        """Close the connection and forget the peer; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        self._release()
        await self.pc.close()
        await self._on_closed(self)

    def _release(self) -> None:
        """Hook: detach from slots before the connection closes."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.resource_id})"


class Publisher(Peer):
    """A WHIP publisher: fills a slot with its audio and video.

    A publisher goes **live** with the first video keyframe it sends, which
    proves ICE and DTLS done and a picture to show: only then does it take
    its slot (replacing whoever filled it), and only then is ``on_live``
    called. Until then its frames are dropped. So a newcomer that never
    connects (a failed DTLS handshake, a firewall) never blanks the program.

    The program publisher's slot is the program. A room's uplink starts with
    no slot at all (its frames are dropped as they come out of the jitter
    buffer, before anything else is done with them) and moves to the stage
    slot and back with :meth:`move_to`.
    """

    def __init__(
        self,
        resource_id: str,
        slot: Slot | None,
        settings: PeerSettings,
        on_closed: Callable[[Peer], Awaitable[None]],
        video_codec: str | None = None,
        context: str = "",
    ) -> None:
        super().__init__(resource_id, settings, on_closed, context)
        if video_codec is None:
            if slot is None:
                raise ValueError("a publisher without a slot needs its video codec")
            video_codec = slot.video.codec
        self.video_codec = video_codec
        self.slot = slot
        self.tag: str | None = None  # the invitation of a room's uplink
        # While muted, frames are dropped whatever the slot.
        self.muted = False
        self.live = False  # a first video keyframe arrived: see the class docstring
        # Called once, when the publisher goes live.
        self.on_live: Callable[[Publisher], None] | None = None
        self._video_tap: aiortc_glue.ReceiverTap | None = None
        self._pli_task: asyncio.Task[None] | None = None

    @property
    def role(self) -> str:
        return "publisher" if self.tag is None else f"uplink of {self.tag}"

    async def answer(self, offer: str) -> str:
        description = parse_offer(offer)
        kinds: list[MediaKind] = ["video" if m.kind == "video" else "audio"
                                  for m in description.media if m.kind in ("audio", "video")]
        if kinds.count("video") != 1 or kinds.count("audio") > 1:
            raise MissingMedia("a publisher offers exactly one video and at most one audio track")
        for media in description.media:
            if media.kind in ("audio", "video") and media.direction not in ("sendonly", "sendrecv"):
                raise MissingMedia(f"the {media.kind} track of a publisher must be sendonly")
        await self._fit_bundling(description)
        # In the offer's order: bundled, the first transceiver's transport is
        # the one aiortc starts ICE on, with the first section's credentials,
        # which the BUNDLE group tags (browsers offer audio first).
        for kind in kinds:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(kind, self.video_codec))
        return await self._negotiate(offer)

    def move_to(self, slot: Slot | None) -> None:
        """Fill ``slot`` from now on (None: no slot, frames dropped).

        The old slot is emptied; the new one switches source, which re-bases
        its timestamps and asks this publisher for a keyframe.
        """
        if slot is self.slot:
            return
        if self.slot is not None:
            self.slot.detach(self)
        self.slot = slot
        if slot is not None and self.live and not self._closed:
            slot.attach(self)

    def _prepare(self) -> None:
        for transceiver in self.pc.getTransceivers():
            self._tap(transceiver)

    def _connected(self) -> None:
        # Browsers start with a keyframe, but it may have been lost: ask.
        if not self.live:
            self.request_keyframe()

    def _go_live(self) -> None:
        self.live = True
        if self.slot is not None:
            # The keyframe that made us live comes next: no need to ask.
            self.slot.attach(self, ask_keyframe=False)
        logger.debug("%s live", self.describe())
        if self.on_live is not None:
            self.on_live(self)

    def _tap(self, transceiver: RTCRtpTransceiver) -> None:
        receiver: RTCRtpReceiver = transceiver.receiver
        kind: MediaKind = "video" if transceiver.kind == "video" else "audio"
        clock_rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE

        def on_frame(codec: str, data: bytes, timestamp: int,
                     capture_time: float | None) -> None:
            if not self.live:
                if kind == "audio" or self._closed or not is_keyframe(codec, data):
                    return
                self._go_live()
            slot = self.slot
            if slot is None or self.muted:
                return  # an uplink off stage, or muted: drop before any work
            slot.push(self, EncodedFrame(kind, codec, data, timestamp, clock_rate,
                                         is_keyframe(codec, data), None, capture_time))

        def on_damage() -> None:
            slot = self.slot
            if slot is not None and slot.source is self:
                slot.video.mark_damaged()

        tap = aiortc_glue.ReceiverTap(receiver, clock_rate, on_frame, on_damage,
                                      audio_prefetch=self._settings.audio_prefetch)
        if kind == "video":
            self._video_tap = tap

    # FrameSource
    def request_keyframe(self) -> None:
        if self._video_tap is None or self._closed:
            return
        if self._pli_task is None or self._pli_task.done():
            self._pli_task = asyncio.create_task(self._video_tap.request_keyframe())

    def _release(self) -> None:
        if self.slot is not None:
            self.slot.detach(self)
        if self._pli_task is not None:
            self._pli_task.cancel()

    async def stats(self) -> dict[str, Any]:
        report: dict[str, Any] = {"connection": self.connection_state}
        for transceiver in self.pc.getTransceivers():
            for stat in (await transceiver.receiver.getStats()).values():
                if stat.type == "inbound-rtp":
                    report[f"{transceiver.kind}_packets_received"] = stat.packetsReceived
                    report[f"{transceiver.kind}_packets_lost"] = stat.packetsLost
                    report[f"{transceiver.kind}_jitter"] = stat.jitter
        return report


@dataclass
class _Outgoing:
    kind: str
    slot_name: str
    track: RelayTrack
    sender: RTCRtpSender
    counters: aiortc_glue.SenderCounters
    writer: aiortc_glue.ViewerWriter


class Viewer(Peer):
    """A WHEP viewer: one sender per offered track, fed from the room's slots.

    The offer's first audio and video sections take the first slot (program),
    the second ones the second slot (stage), and so on; a viewer negotiates
    once and keeps its transceivers while sources come and go.
    """

    def __init__(
        self,
        resource_id: str,
        slots: list[Slot],
        settings: PeerSettings,
        on_closed: Callable[[Peer], Awaitable[None]],
        context: str = "",
    ) -> None:
        super().__init__(resource_id, settings, on_closed, context)
        self.slots = slots
        self.outgoing: list[_Outgoing] = []
        self.tag: str | None = None  # who this viewer is (an invitation id), if known
        self._sender_check: asyncio.Task[None] | None = None
        self.quality = QualityController()

    def _connected(self) -> None:
        self._sender_check = asyncio.create_task(self._check_senders())

    async def _check_senders(self) -> None:
        """A sender negotiated but never started (no transport under it) sends
        nothing, silently: say so, once, a little after connecting."""
        await asyncio.sleep(SENDER_START_GRACE)
        for out in self.outgoing:
            if not out.writer.ready and not self._closed:
                logger.warning("%s (%s): its %s %s sender was negotiated but never started:"
                               " it sends nothing", self, self.tag or "no invitation",
                               out.slot_name, out.kind)

    async def answer(self, offer: str) -> str:
        description = parse_offer(offer)
        media = [m for m in description.media if m.kind in ("audio", "video")]
        if not any(m.kind == "video" and m.direction in ("recvonly", "sendrecv") for m in media):
            raise MissingMedia("a viewer's offer must receive video")
        await self._fit_bundling(description)
        seen = {"audio": 0, "video": 0}
        for section in media:
            kind: MediaKind = "video" if section.kind == "video" else "audio"
            index = seen[kind]
            seen[kind] += 1
            if index >= len(self.slots) or section.direction not in ("recvonly", "sendrecv"):
                self.pc.addTransceiver(kind, direction="inactive")
                continue
            slot = self.slots[index]
            track = RelayTrack(slot.track(kind))
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(kind, slot.video.codec))
            writer, counters = aiortc_glue.attach_sender(
                transceiver.sender, track.viewer_requested_keyframe, track.writer_ready,
                native=self._settings.send_path == "native")
            track.bind(writer)
            self.outgoing.append(_Outgoing(kind, slot.name, track, transceiver.sender, counters,
                                           writer))
        try:
            answer = await self._negotiate(offer)
        except OfferError:
            self._release()
            raise
        for out in self.outgoing:
            out.track.start()
        return answer

    def switch_slot(self, slot_name: str, slot: Slot) -> None:
        """Feed this viewer's ``slot_name`` transceivers from ``slot`` instead
        (timeshift for one room); no renegotiation, one steady timeline."""
        for out in self.outgoing:
            if out.slot_name == slot_name:
                out.track.switch(slot.track(out.track.kind))  # type: ignore[arg-type]

    @property
    def level(self) -> Level:
        """What this viewer gets now: the picture and sound, or sound only."""
        return self.quality.effective

    def quality_state(self) -> dict[str, Any]:
        """What it gets, what its link can take, and whether the room chose
        sound only (the room page's 高清 / 流畅 / 仅声音, wherever it watches)."""
        return {"level": str(self.level), "link": str(self.quality.level),
                "audio_only": self.quality.chosen_audio_only}

    def apply_quality(self, program: Slot | None = None, low: Slot | None = None) -> None:
        """Make this viewer's pictures match :attr:`level` (idempotent).

        Sound only pauses every picture. The lower rendition feeds the
        program picture from ``low`` while it would come from the live
        ``program`` (a viewer in timeshift keeps its own); the full level
        brings it back from ``low`` to ``program``.
        """
        level = self.quality.effective
        for out in self.outgoing:
            if out.kind != "video":
                continue
            if level is Level.AUDIO:
                out.track.pause()
                continue
            if out.slot_name == "program" and program is not None:
                current = out.track.slot_track.slot
                # Live (the program, or a lower rendition of it, this one or
                # one closed since); a timeshift slot is left alone.
                if current is program or current.name == LOW_SLOT:
                    wanted = low if level is Level.LOW and low is not None else program
                    out.track.switch(wanted.video)
            out.track.resume()

    def quality_sample(self, now: float, needed_bps: float | None) -> Sample:
        """This second's feedback from the viewer, for its controller: the
        worst fresh loss of its program sound and (if flowing) picture."""
        stale = self.quality.rules.stale_after
        losses: list[float] = []
        remb: float | None = None
        for out in self.outgoing:
            if out.slot_name != self.slots[0].name or (out.kind == "video" and out.track.paused):
                continue
            counters = out.counters
            if counters.fraction_lost is not None and counters.report_at is not None \
                    and now - counters.report_at <= stale:
                losses.append(counters.fraction_lost)
            if out.kind == "video" and counters.remb_bitrate is not None:
                remb = float(counters.remb_bitrate)
        return Sample(max(losses) if losses else None, remb, needed_bps)

    def watching(self, slot_name: str) -> Slot | None:
        """The slot this viewer's ``slot_name`` video now comes from."""
        for out in self.outgoing:
            if out.slot_name == slot_name and out.kind == "video":
                return out.track.slot_track.slot
        return None

    def _release(self) -> None:
        if self._sender_check is not None and self._sender_check is not asyncio.current_task():
            self._sender_check.cancel()
        for out in self.outgoing:
            out.track.stop()

    async def stats(self) -> dict[str, Any]:
        report: dict[str, Any] = {"id": self.resource_id, "connection": self.connection_state,
                                  "tag": self.tag}
        for out in self.outgoing:
            entry: dict[str, Any] = {
                "frames_sent": out.track.frames_delivered,
                "overflows": out.track.overflows,
                "plis": out.counters.keyframe_requests,
                "nacks": out.counters.nacked_packets,
                "retransmitted": out.counters.retransmitted_packets,
                "remb": out.counters.remb_bitrate,
                "packets_sent": 0,
                "rtt": None,
            }
            with contextlib.suppress(ConnectionError):
                for stat in (await out.sender.getStats()).values():
                    if stat.type == "outbound-rtp":
                        entry["packets_sent"] = stat.packetsSent
                        entry["bytes_sent"] = stat.bytesSent
                    elif stat.type == "remote-inbound-rtp":
                        entry["rtt"] = stat.roundTripTime
                        entry["packets_lost"] = stat.packetsLost
                        entry["fraction_lost"] = stat.fractionLost
                        # Interarrival jitter, reported in RTP timestamp units.
                        entry["jitter"] = stat.jitter / (
                            VIDEO_CLOCK_RATE if out.kind == "video" else AUDIO_CLOCK_RATE)
            report[f"{out.slot_name}_{out.kind}"] = entry
        return report
