"""A room: the live media of one session (its slots, publisher and viewers)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from streaming import aiortc_glue
from streaming.keyframe_requests import DEFAULT_INTERVAL
from streaming.peers import SUPPORTED_VIDEO_CODECS, Peer, PeerSettings, Publisher, Viewer
from streaming.slot import Slot

logger = logging.getLogger(__name__)

SLOT_NAMES = ("program", "stage")


class RoomClosed(Exception):
    """The room has ended; nobody can join it any more."""


class Room:
    """Holds one publisher (at most) and any number of viewers.

    A second publisher replaces the first (a classroom PC coming back after a
    network drop): the slot switches source, viewers keep their connections.
    """

    def __init__(
        self,
        room_id: str,
        video_codec: str,
        settings: PeerSettings,
        clock: Callable[[], float] = time.monotonic,
        keyframe_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if video_codec not in SUPPORTED_VIDEO_CODECS:
            raise ValueError(f"unsupported video codec {video_codec}")
        self.room_id = room_id
        self.video_codec = video_codec
        self.settings = settings
        self.slots = {
            name: Slot(name, video_codec, aiortc_glue.make_packetizer, clock, keyframe_interval)
            for name in SLOT_NAMES
        }
        self.publisher: Publisher | None = None
        self.viewers: dict[str, Viewer] = {}
        # Listeners of viewers' lifecycles: (viewer, "connected" | "closed").
        # "closed" comes for every viewer that was answered, connected or not.
        self.viewer_listeners: list[Callable[[Viewer, str], None]] = []
        self.publishers_accepted = 0
        self.closed = False

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

    async def publish(self, offer: str) -> tuple[str, str]:
        """Answer a publisher's offer; returns (resource id, answer SDP)."""
        self._check_open()
        publisher = Publisher(_new_id(), self.program, self.settings, self._forget)
        try:
            answer = await publisher.answer(offer)
        except BaseException:
            await publisher.close()
            raise
        if self.closed:
            # The room ended while the offer was being answered.
            await publisher.close()
            raise RoomClosed(self.room_id)
        previous, self.publisher = self.publisher, publisher
        self.publishers_accepted += 1
        if previous is not None:
            logger.info("room %s: publisher %s replaces %s", self.room_id, publisher, previous)
            await previous.close()
        return publisher.resource_id, answer

    async def view(self, offer: str, tag: str | None = None) -> tuple[str, str]:
        """Answer a viewer's offer; returns (resource id, answer SDP).

        ``tag`` says who the viewer is (the invitation it came with).
        """
        self._check_open()
        viewer = Viewer(_new_id(), [self.slots[name] for name in SLOT_NAMES], self.settings,
                        self._forget)
        viewer.tag = tag
        viewer.on_connected = self._viewer_connected
        try:
            answer = await viewer.answer(offer)
        except BaseException:
            await viewer.close()
            raise
        if self.closed:
            await viewer.close()
            raise RoomClosed(self.room_id)
        self.viewers[viewer.resource_id] = viewer
        return viewer.resource_id, answer

    def resource(self, resource_id: str) -> Peer | None:
        if self.publisher is not None and self.publisher.resource_id == resource_id:
            return self.publisher
        return self.viewers.get(resource_id)

    async def close(self) -> None:
        """End the room: every peer is disconnected."""
        self.closed = True
        peers: list[Peer] = list(self.viewers.values())
        if self.publisher is not None:
            peers.append(self.publisher)
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        for slot in self.slots.values():
            slot.close()

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

    def _check_open(self) -> None:
        if self.closed:
            raise RoomClosed(self.room_id)

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
        elif isinstance(peer, Viewer) and self.viewers.pop(peer.resource_id, None) is not None:
            self._tell(peer, "closed")


def _new_id() -> str:
    return secrets.token_urlsafe(12)
