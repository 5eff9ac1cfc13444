"""The seams of the relay: what a source and a sink of encoded frames are.

Sources fill a slot (a live publisher, an archive replay, an upstream origin);
sinks subscribe to a slot's tracks (a viewer's sender, the recorder, an edge
link). Neither side knows the other; the slot in between re-bases timestamps,
fans frames out and routes keyframe requests upstream.
"""

from __future__ import annotations

from typing import Protocol

from streaming.frames import EncodedFrame


class FrameSource(Protocol):
    """Something that fills a slot with frames (it calls ``Slot.push``).

    A source that cannot produce a keyframe on request (a file) says so with
    a class attribute ``keyframes_on_demand = False``: the slot then keeps
    the frames since the last keyframe for viewers who join.
    """

    def request_keyframe(self) -> None:
        """Ask for a keyframe soon. Called at most once per throttle interval."""


class FrameSink(Protocol):
    """Something that takes a slot track's frames.

    A sink that does not send RTP (a recorder) may say so with a class
    attribute ``wants_payloads = False``: frames then reach it without
    ``payloads`` unless another sink needs them.
    """

    def deliver(self, frame: EncodedFrame) -> None:
        """Take one frame. Called on the event loop for every frame of the
        track: it must not block, await or change the frame."""


class BatchSink(FrameSink, Protocol):
    """A sink that stands for many viewers of one slot track at once (the
    native send path's batch): the slot counts its members as sinks and
    closes it with the track."""

    def __len__(self) -> int:
        """The viewers it sends to now."""

    def close(self) -> None:
        """Let every member go (the track is closing)."""
