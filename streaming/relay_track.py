"""A viewer's outgoing track: keyframe gating in front of the viewer's writer.

It is a sink of a slot track on one side; on the other it hands each frame
to the viewer's writer at once (:class:`streaming.aiortc_glue.ViewerWriter`),
with no queue and no task per viewer. A viewer that cannot keep up (its
socket buffer is full) only ever loses its own frames: it then waits for the
next keyframe, which it asks for.
"""

from __future__ import annotations

from typing import Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.frames import EncodedFrame
from streaming.slot import SlotTrack


class FrameWriter(Protocol):
    @property
    def ready(self) -> bool:
        """Whether frames sent now reach the viewer (negotiated, connected)."""

    def send(self, frame: EncodedFrame) -> bool:
        """Send a frame now; False when the viewer is backed up (dropped)."""

    def rebase(self, timestamp: int, clock_rate: int) -> None:
        """The next frame comes from another timeline: keep the output steady."""

    @property
    def batchable(self) -> bool:
        """Whether it could take its frames in a batch now (checked after
        each frame sent one by one)."""

    @property
    def frames_sent(self) -> int:
        """Frames it sent in batches so far."""

    def join_batch(self, slot_track: SlotTrack, owner: RelayTrack) -> Batch | None:
        """Join ``slot_track``'s batch from its next frame on (None: cannot)."""


class Batch(Protocol):
    """Where a writer sends frames together with other viewers' writers
    (``aiortc_glue.NativeBatch``): one slot track's frames to all its
    members in one call, none of them a sink of its own meanwhile."""

    def remove(self, owner: RelayTrack) -> None:
        """``owner`` takes its frames one by one again (or none)."""


class RelayTrack(MediaStreamTrack):
    """The ``MediaStreamTrack`` given to a viewer's sender.

    Frames are pushed (``deliver`` → ``writer.send``), never pulled: the
    sender's own RTP task, the only caller of ``recv()``, is replaced by the
    writer's, so ``recv()`` only reports that the track is push-driven.
    """

    def __init__(self, slot_track: SlotTrack) -> None:
        super().__init__()
        self.kind = slot_track.kind
        self._slot_track = slot_track
        self._writer: FrameWriter | None = None
        self._gated = True
        self._started = False
        self._delivered = 0  # frames sent one by one (not in a batch)
        self._batch: Batch | None = None
        self._batch_start = 0  # the writer's batched frame count when it joined
        self.overflows = 0
        self.keyframe_requests = 0
        self._rebase_next = False  # switched to another slot track: re-base the next frame
        self._paused = False  # off the slot track: this viewer gets sound only

    def bind(self, writer: FrameWriter) -> None:
        self._writer = writer

    @property
    def frames_delivered(self) -> int:
        """Frames handed to the viewer's writer (one by one or in a batch)."""
        if self._batch is not None and self._writer is not None:
            return self._delivered + self._writer.frames_sent - self._batch_start
        return self._delivered

    def _join_batch(self, writer: FrameWriter) -> None:
        """Take frames in the writer's batch from the next frame on: off the
        slot track's own sinks, so this viewer costs no Python per frame."""
        batch = writer.join_batch(self._slot_track, self)
        if batch is None:
            return
        self._batch = batch
        self._batch_start = writer.frames_sent
        self._slot_track.unsubscribe(self)

    def _leave_batch(self) -> None:
        batch = self._batch
        if batch is None:
            return
        batch.remove(self)
        self.left_batch(overflowed=False, resubscribe=False)

    def left_batch(self, overflowed: bool, resubscribe: bool = True) -> None:
        """The batch let this viewer go (it backed up, or its writer can no
        longer send natively): frames one by one again, from a keyframe."""
        if self._batch is None:
            return
        self._batch = None
        if self._writer is not None:
            self._delivered += self._writer.frames_sent - self._batch_start
        self._gated = True
        if overflowed:
            self.overflows += 1
        if resubscribe and self._started and not self._paused:
            self._slot_track.subscribe(self, request_keyframe=False)
            self._slot_track.request_keyframe()

    def start(self) -> None:
        """Subscribe to the slot track (once the viewer's answer is made)."""
        if not self._started and self.readyState == "live":
            self._started = True
            # The keyframe is asked for once the viewer is connected
            # (writer_ready): one asked for now would arrive too early.
            self._slot_track.subscribe(self, request_keyframe=False)

    @property
    def slot_track(self) -> SlotTrack:
        return self._slot_track

    def switch(self, slot_track: SlotTrack) -> None:
        """Take frames from another slot track (live ↔ timeshift for this
        viewer only), from its next keyframe, on this viewer's one timeline."""
        if slot_track is self._slot_track:
            return
        self._leave_batch()
        if self._started:
            self._slot_track.unsubscribe(self)
        self._slot_track = slot_track
        self._gated = self.kind == "video"
        self._rebase_next = True
        if self._started and not self._paused:
            slot_track.subscribe(self, request_keyframe=False)
            if self.kind == "video" and not slot_track.catch_up(self):
                slot_track.request_keyframe()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Send nothing until :meth:`resume` (a viewer on sound only): off the
        slot track, so the paused viewer costs nothing per frame."""
        if self._paused:
            return
        self._paused = True
        self._leave_batch()
        if self._started:
            self._slot_track.unsubscribe(self)

    def resume(self) -> None:
        """Send again, from the next keyframe (asked for now)."""
        if not self._paused:
            return
        self._paused = False
        self._gated = self.kind == "video"
        if self._started:
            self._slot_track.subscribe(self, request_keyframe=False)
            if not self._slot_track.catch_up(self):
                self._slot_track.request_keyframe()

    def writer_ready(self) -> None:
        """The viewer is connected: frames reach it from the next keyframe on
        (or at once from the slot's cache, for a source that cannot make one)."""
        self._gated = True
        if self._paused:
            return
        if not self._slot_track.catch_up(self):
            self._slot_track.request_keyframe()

    # FrameSink
    def deliver(self, frame: EncodedFrame) -> None:
        writer = self._writer
        if self._gated:
            if not frame.keyframe or writer is None or not writer.ready:
                return
            self._gated = False
        elif writer is None:
            return
        if self._rebase_next:
            self._rebase_next = False
            writer.rebase(frame.timestamp, frame.clock_rate)
        if writer.send(frame):
            self._delivered += 1
            if writer.batchable:
                self._join_batch(writer)
        else:
            # The viewer's socket is full: what follows would not decode
            # without what was just dropped. Start again from a keyframe.
            self.overflows += 1
            self._gated = True
            self._slot_track.request_keyframe()

    def viewer_requested_keyframe(self) -> None:
        """The viewer sent a PLI or FIR."""
        self.keyframe_requests += 1
        self._slot_track.request_keyframe()

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        raise MediaStreamError("RelayTrack is push-driven: frames go to its writer")

    def stop(self) -> None:
        self._leave_batch()
        if self._started:
            self._slot_track.unsubscribe(self)
            self._started = False
        super().stop()
