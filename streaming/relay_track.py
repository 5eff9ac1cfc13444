"""A viewer's outgoing track: a bounded, keyframe-gated queue of shared frames.

It is a sink of a slot track on one side and an aiortc ``MediaStreamTrack`` on
the other (the viewer's ``RTCRtpSender`` awaits ``recv()``). A slow viewer only
ever loses its own frames: on overflow its queue is flushed and it waits for
the next keyframe, which it asks for.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.frames import EncodedFrame
from streaming.slot import SlotTrack

DEFAULT_MAX_QUEUE = {"video": 60, "audio": 100}  # about 2 s of either


class RelayTrack(MediaStreamTrack):
    def __init__(self, slot_track: SlotTrack, max_queue: int | None = None) -> None:
        super().__init__()
        self.kind = slot_track.kind
        self._slot_track = slot_track
        self._max_queue = max_queue or DEFAULT_MAX_QUEUE[slot_track.kind]
        self._queue: deque[EncodedFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._gated = True
        self.frames_delivered = 0
        self.overflows = 0
        self.keyframe_requests = 0
        self._started = False

    def start(self) -> None:
        """Subscribe to the slot track (once the viewer's answer is made)."""
        if not self._started and self.readyState == "live":
            self._started = True
            self._slot_track.subscribe(self)

    # FrameSink
    def deliver(self, frame: EncodedFrame) -> None:
        if self._gated:
            if not frame.keyframe:
                return
            self._gated = False
        queue = self._queue
        if len(queue) >= self._max_queue:
            queue.clear()
            self.overflows += 1
            if not frame.keyframe:
                self._gated = True
                self._slot_track.request_keyframe()
                return
        queue.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # MediaStreamTrack
    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        queue = self._queue
        while not queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self.frames_delivered += 1
        return queue.popleft()

    def viewer_requested_keyframe(self) -> None:
        """The viewer sent a PLI or FIR."""
        self.keyframe_requests += 1
        self._slot_track.request_keyframe()

    def stop(self) -> None:
        if self._started:
            self._slot_track.unsubscribe(self)
        super().stop()
        self._queue.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
