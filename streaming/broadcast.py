"""A broadcast: the live media of one session (its slots, publisher, uplinks and viewers).

Called a broadcast, not a room: everywhere else in the project a room is a
sub-classroom (分课堂), which is one of the viewers here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from streaming import aiortc_glue
from streaming.keyframe_requests import DEFAULT_INTERVAL
from streaming.peers import (
    LOW_SLOT,
    SUPPORTED_VIDEO_CODECS,
    Peer,
    PeerSettings,
    Publisher,
    Viewer,
    limit_bandwidth,
)
from streaming.quality import THREE_LEVELS, Level, QualityController
from streaming.slot import Slot
from streaming.transcoder import Transcoder

logger = logging.getLogger(__name__)

SLOT_NAMES = ("program", "stage")
# A room's uplink is for a question, not a lecture: its video is capped
# (the page also asks its camera for 360p).
UPLINK_VIDEO_KBPS = 500
MAX_REPLACED = 32  # replaced publishers remembered for their reconnections
QUALITY_INTERVAL = 1.0  # seconds between two readings of the viewers' feedback
LOW_IDLE = 10.0  # seconds without a viewer on the lower rendition before it stops


class BroadcastClosed(Exception):
    """The broadcast has ended; nobody can join it any more."""


class PublisherReplaced(Exception):
    """A publisher asked to resume after another one took the program over."""


class StageError(Exception):
    """The stage cannot take that room now; the message is safe to show."""


class Broadcast:
    """Holds one publisher (at most), the rooms' uplinks and any number of viewers.

    A second publisher replaces the first (a classroom PC coming back after a
    network drop): the slot switches source, viewers keep their connections.
    While the first is on air, the newcomer waits as ``pending_publisher``
    and takes over only once it is live (connected, first keyframe in): one
    that fails ICE or DTLS is dropped and the program never notices.

    An uplink is a sub-classroom's own camera and microphone, one per
    invitation (a new one replaces the old). It fills no slot, and costs no
    more than receiving it, until it is put on stage; at most one uplink is
    on stage. The stage follows the invitation: an uplink that replaces the
    one on stage takes the stage over; an uplink that goes away empties it.
    """

    def __init__(
        self,
        broadcast_id: str,
        video_codec: str,
        settings: PeerSettings,
        clock: Callable[[], float] = time.monotonic,
        keyframe_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if video_codec not in SUPPORTED_VIDEO_CODECS:
            raise ValueError(f"unsupported video codec {video_codec}")
        self.broadcast_id = broadcast_id
        self._clock = clock
        self._quality_task: asyncio.Task[None] | None = None
        # The lower rendition (流畅), made while some viewer needs it.
        self.low: Slot | None = None
        self.transcoder: Transcoder | None = None
        self._keyframe_interval = keyframe_interval
        self._low_unused_since: float | None = None
        self.video_codec = video_codec
        self.settings = settings
        self.slots = {
            name: Slot(name, video_codec, aiortc_glue.make_packetizer, clock, keyframe_interval)
            for name in SLOT_NAMES
        }
        self.publisher: Publisher | None = None
        self.pending_publisher: Publisher | None = None  # waits to replace ``publisher``
        self._closing: set[asyncio.Task[None]] = set()  # replaced publishers being closed
        # Publishers replaced by a live newcomer: resource id -> the newcomer's.
        self.replaced: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.viewers: dict[str, Viewer] = {}
        # Listeners of viewers' lifecycles: (viewer, "connected" | "closed").
        # "closed" comes for every viewer that was answered, connected or not.
        self.viewer_listeners: list[Callable[[Viewer, str], None]] = []
        self.publishers_accepted = 0
        self.uplinks: dict[str, Publisher] = {}  # invitation id -> its uplink
        self.uplink_video_kbps = UPLINK_VIDEO_KBPS
        self.muted: set[str] = set()  # invitations whose uplink is muted
        self.on_stage: str | None = None  # the invitation whose uplink fills the stage
        # A replay re-broadcasting a recorded turn on stage: the room's name.
        self.replayed_stage: str | None = None
        # Called (with no arguments) when uplinks, mutes or the stage change,
        # and when the broadcast closes.
        self.media_listeners: list[Callable[[], None]] = []
        self.closed = False

    @property
    def stage(self) -> Slot:
        return self.slots["stage"]

    @property
    def program(self) -> Slot:
        return self.slots["program"]

    @property
    def program_on_air(self) -> bool:
        """Whether the program slot is being filled now: a connected
        publisher, or another source (a replay) that says it is on air."""
        source = self.program.source
        if source is None or self.closed:
            return False
        if isinstance(source, Publisher):
            return source.connection_state == "connected"
        return bool(getattr(source, "on_air", True))

    async def publish(self, offer: str, resumes: str | None = None) -> tuple[str, str]:
        """Answer a publisher's offer; returns (resource id, answer SDP).

        ``resumes``: the resource an automatic reconnection comes back for.
        If a newer publisher replaced that one and is still on, the newer
        one keeps the program (:class:`PublisherReplaced`), so two presenter
        PCs never take the program from each other in turn; a fresh publish
        (no ``resumes``) always takes over.
        """
        self._check_open()
        if resumes is not None:
            successor = self.replaced.get(resumes)
            if successor is not None and self.publisher is not None \
                    and self.publisher.resource_id == successor:
                raise PublisherReplaced(successor)
        publisher = Publisher(_new_id(), self.program, self.settings, self._forget,
                              context=f"broadcast {self.broadcast_id}")
        publisher.on_live = self._publisher_live
        try:
            answer = await publisher.answer(offer)
        except BaseException:
            await publisher.close()
            raise
        if self.closed:
            # The broadcast ended while the offer was being answered.
            await publisher.close()
            raise BroadcastClosed(self.broadcast_id)
        self.publishers_accepted += 1
        current, stale = self.publisher, self.pending_publisher
        self.pending_publisher = None
        if current is not None and current.live and current.connection_state == "connected":
            # On air: it stays there until the newcomer is live (_publisher_live).
            self.pending_publisher = publisher
            logger.info("broadcast %s: publisher %s waits to replace %s until it is connected "
                        "and sends a keyframe", self.broadcast_id, publisher, current)
        else:
            # Nobody on air: the newcomer is the publisher now, on air from its first keyframe.
            self.publisher = publisher
            if current is not None:
                logger.info("broadcast %s: publisher %s replaces %s (not on air)",
                            self.broadcast_id, publisher, current)
                await current.close()
        if stale is not None:
            logger.info("broadcast %s: publisher %s gives way to %s before going live",
                        self.broadcast_id, stale, publisher)
            await stale.close()
        return publisher.resource_id, answer

    def _publisher_live(self, publisher: Publisher) -> None:
        """A publisher sent its first keyframe (it has already taken the slot)."""
        if publisher is not self.pending_publisher:
            return
        previous, self.publisher, self.pending_publisher = self.publisher, publisher, None
        logger.info("broadcast %s: publisher %s replaces %s", self.broadcast_id, publisher,
                    previous)
        if previous is not None:
            self.replaced[previous.resource_id] = publisher.resource_id
            while len(self.replaced) > MAX_REPLACED:
                self.replaced.popitem(last=False)
            task = asyncio.create_task(previous.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def publish_uplink(self, invitation_id: str, offer: str) -> tuple[str, str]:
        """Answer a room's uplink offer; returns (resource id, answer SDP).

        The uplink never fills the program slot: only :meth:`put_on_stage`
        gives it a slot at all.
        """
        self._check_open()
        uplink = Publisher(_new_id(), None, self.settings, self._forget,
                           video_codec=self.video_codec, context=f"broadcast {self.broadcast_id}")
        uplink.tag = invitation_id
        uplink.muted = invitation_id in self.muted
        uplink.on_connected = lambda _peer: self._changed()
        try:
            answer = await uplink.answer(offer)
        except BaseException:
            await uplink.close()
            raise
        if self.closed:
            await uplink.close()
            raise BroadcastClosed(self.broadcast_id)
        previous = self.uplinks.get(invitation_id)
        self.uplinks[invitation_id] = uplink
        if self.on_stage == invitation_id:
            uplink.move_to(self.stage)  # the room came back: it keeps the stage
        if previous is not None:
            logger.info("broadcast %s: uplink %s of %s replaces %s", self.broadcast_id, uplink,
                        invitation_id, previous)
            previous.move_to(None)
            await previous.close()
        self._changed()
        return uplink.resource_id, limit_bandwidth(answer, "video", self.uplink_video_kbps)

    def put_on_stage(self, invitation_id: str | None) -> None:
        """Fill the stage with that invitation's uplink (None: empty it).

        Switching from one room to another is this one call: the stage slot
        switches source (timestamps re-based, a keyframe asked of the new
        room); viewers renegotiate nothing.
        """
        if invitation_id is None:
            self.clear_stage()
            return
        uplink = self.uplinks.get(invitation_id)
        if uplink is None:
            raise StageError("this room sends no picture (no uplink)")
        if invitation_id in self.muted:
            raise StageError("this room's uplink is muted")
        if self.on_stage == invitation_id:
            return
        current = self.uplinks.get(self.on_stage) if self.on_stage is not None else None
        if current is not None:
            current.move_to(None)
        self.on_stage = invitation_id
        uplink.move_to(self.stage)
        logger.info("broadcast %s: %s on stage", self.broadcast_id, invitation_id)
        self._changed()

    def show_replayed_stage(self, name: str | None) -> None:
        """A replay's stage now shows a recorded turn of the room ``name``
        (None: no turn); its pictures come from the replay, not an uplink."""
        if name != self.replayed_stage:
            self.replayed_stage = name
            self._changed()

    def clear_stage(self) -> None:
        """Empty the stage: viewers' stage transceivers get nothing."""
        if self.on_stage is None:
            return
        current = self.uplinks.get(self.on_stage)
        logger.info("broadcast %s: %s off stage", self.broadcast_id, self.on_stage)
        self.on_stage = None
        if current is not None:
            current.move_to(None)
        self._changed()

    def mute_uplink(self, invitation_id: str, muted: bool) -> None:
        """Drop (or pass again) an invitation's uplink frames, now and for any
        uplink it sends later. A muted room leaves the stage."""
        if muted:
            self.muted.add(invitation_id)
            if self.on_stage == invitation_id:
                self.clear_stage()
        else:
            self.muted.discard(invitation_id)
        uplink = self.uplinks.get(invitation_id)
        if uplink is not None:
            uplink.muted = muted
        self._changed()

    async def close_uplink(self, invitation_id: str) -> bool:
        """Disconnect an invitation's uplink (a revoked link); whether there was one."""
        uplink = self.uplinks.get(invitation_id)
        if uplink is None:
            return False
        await uplink.close()
        return True

    async def view(self, offer: str, tag: str | None = None,
                   relay: bool = False) -> tuple[str, str]:
        """Answer a viewer's offer; returns (resource id, answer SDP).

        ``tag`` says who the viewer is (the invitation it came with). A
        ``relay`` (an edge pulling the session) always gets the full
        picture: the rooms behind it each have their own ladder there.
        """
        self._check_open()
        viewer = Viewer(_new_id(), [self.slots[name] for name in SLOT_NAMES], self.settings,
                        self._forget, context=f"broadcast {self.broadcast_id}")
        viewer.tag = tag
        viewer.quality = QualityController(clock=self._clock,
                                           ladder=(Level.FULL,) if relay else THREE_LEVELS)
        viewer.on_connected = self._viewer_connected
        try:
            answer = await viewer.answer(offer)
        except BaseException:
            await viewer.close()
            raise
        if self.closed:
            await viewer.close()
            raise BroadcastClosed(self.broadcast_id)
        self.viewers[viewer.resource_id] = viewer
        if self._quality_task is None or self._quality_task.done():
            self._quality_task = asyncio.create_task(self._watch_quality())
        return viewer.resource_id, answer

    async def _watch_quality(self) -> None:
        """Once a second, each connected viewer's feedback moves it along its
        ladder (streaming/quality.py); the lower rendition is made while some
        viewer is on it. Ends with the last viewer."""
        try:
            while not self.closed and self.viewers:
                await asyncio.sleep(QUALITY_INTERVAL)
                now = self._clock()
                full = self.program.video.stats.bitrate or None
                low = (self.low.video.stats.bitrate or None) if self.low is not None else None
                for viewer in list(self.viewers.values()):
                    if viewer.connection_state != "connected":
                        continue
                    # What the picture at its level takes now, as measured.
                    needed = low if viewer.level is Level.LOW else full
                    if viewer.quality.observe(viewer.quality_sample(now, needed)):
                        logger.info("broadcast %s: viewer %s (%s) now %s (its link: %s)",
                                    self.broadcast_id, viewer.resource_id,
                                    viewer.tag or "no invitation", viewer.level,
                                    viewer.quality.level)
                    self.apply_quality(viewer)
                await self._release_low_if_unused(now)
        finally:
            await self._close_low()

    def apply_quality(self, viewer: Viewer) -> None:
        """Give ``viewer`` the pictures of its level (making the lower rendition
        if it is the first to need it)."""
        if viewer.level is Level.LOW and self.low is None and not self.closed:
            self.low = Slot(LOW_SLOT, self.video_codec, aiortc_glue.make_packetizer, self._clock,
                            self._keyframe_interval)
            self.transcoder = Transcoder(self.program.video, self.low, self.video_codec)
            self.transcoder.start()
            logger.info("broadcast %s: lower rendition on (%s)", self.broadcast_id, viewer)
        viewer.apply_quality(self.program, self.low)

    async def _release_low_if_unused(self, now: float) -> None:
        if self.low is None:
            return
        if any(v.level is Level.LOW for v in self.viewers.values()):
            self._low_unused_since = None
            return
        if self._low_unused_since is None:
            self._low_unused_since = now
        elif now - self._low_unused_since >= LOW_IDLE:
            await self._close_low()

    async def _close_low(self) -> None:
        transcoder, low = self.transcoder, self.low
        self.transcoder = self.low = None
        self._low_unused_since = None
        for viewer in self.viewers.values():  # nobody is left on it (or sound only)
            viewer.apply_quality(self.program, None)
        if transcoder is not None:
            transcoder.close()
            await asyncio.to_thread(transcoder.join)
            logger.info("broadcast %s: lower rendition off (%d frames in, %d out)",
                        self.broadcast_id, transcoder.frames_in, transcoder.frames_out)
        if low is not None:
            low.close()

    def resource(self, resource_id: str) -> Peer | None:
        for publisher in (self.publisher, self.pending_publisher):
            if publisher is not None and publisher.resource_id == resource_id:
                return publisher
        for uplink in self.uplinks.values():
            if uplink.resource_id == resource_id:
                return uplink
        return self.viewers.get(resource_id)

    def is_publisher(self, peer: Peer | None) -> bool:
        """Whether ``peer`` sends to us (the program publisher or an uplink)."""
        return peer is not None and (
            peer is self.publisher or peer is self.pending_publisher
            or any(peer is u for u in self.uplinks.values()))

    async def close(self) -> None:
        """End the broadcast: every peer is disconnected."""
        self.closed = True
        peers: list[Peer] = list(self.viewers.values())
        peers += self.uplinks.values()
        watching = [self._quality_task] if self._quality_task is not None else []
        for task in watching:
            task.cancel()
        peers += [p for p in (self.publisher, self.pending_publisher) if p is not None]
        await asyncio.gather(*(peer.close() for peer in peers), *self._closing, *watching,
                             return_exceptions=True)
        for slot in self.slots.values():
            slot.close()
        self._changed()

    async def stats(self) -> dict[str, Any]:
        publisher = self.publisher
        viewers = list(self.viewers.values())
        program = self.program
        return {
            "publisher": await publisher.stats() if publisher is not None else None,
            "publisher_connected": publisher is not None
            and publisher.connection_state == "connected",
            "publishers_accepted": self.publishers_accepted,
            "ingress": {
                "video": program.video.stats.snapshot(),
                "audio": program.audio.stats.snapshot(),
            },
            "keyframe_requests_sent": program.video.keyframes.sent,
            "viewer_count": len(viewers),
            "viewers": [await viewer.stats() for viewer in viewers],
        }

    def _changed(self) -> None:
        for listener in list(self.media_listeners):
            try:
                listener()
            except Exception:
                logger.exception("media listener of broadcast %s failed", self.broadcast_id)

    def _check_open(self) -> None:
        if self.closed:
            raise BroadcastClosed(self.broadcast_id)

    def _viewer_connected(self, peer: Peer) -> None:
        if isinstance(peer, Viewer) and peer.resource_id in self.viewers:
            self._tell(peer, "connected")

    def _tell(self, viewer: Viewer, event: str) -> None:
        for listener in list(self.viewer_listeners):
            try:
                listener(viewer, event)
            except Exception:
                logger.exception("viewer listener failed on %s %s", viewer, event)

    async def _forget(self, peer: Peer) -> None:
        if peer is self.publisher:
            self.publisher = None
        elif peer is self.pending_publisher:
            self.pending_publisher = None
            logger.warning("broadcast %s: publisher %s went away before going live; the "
                           "program stays with %s", self.broadcast_id, peer, self.publisher)
        elif isinstance(peer, Publisher) and peer.tag is not None:
            if self.uplinks.get(peer.tag) is peer:
                del self.uplinks[peer.tag]
                if self.on_stage == peer.tag:
                    # The room went away: so does the stage.
                    logger.info("broadcast %s: %s off stage (its uplink closed)",
                                self.broadcast_id, peer.tag)
                    self.on_stage = None
                self._changed()
        elif isinstance(peer, Viewer) and self.viewers.pop(peer.resource_id, None) is not None:
            self._tell(peer, "closed")


def _new_id() -> str:
    return secrets.token_urlsafe(12)
