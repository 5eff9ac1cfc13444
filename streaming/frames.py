"""The one currency of the relay: an encoded, undecoded media frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import av

MediaKind = Literal["audio", "video"]

VIDEO_CLOCK_RATE = 90_000
AUDIO_CLOCK_RATE = 48_000


@dataclass(slots=True, eq=False)
class EncodedFrame:
    """One complete encoded frame (a video picture or an audio packet).

    ``timestamp`` counts ``clock_rate`` ticks on the timeline of whoever holds
    the frame: a source stamps frames on its own timeline, a slot re-stamps
    them onto the slot's monotonic timeline before fanning out.

    Once a slot has fanned a frame out it is shared by every sink and must not
    be changed; ``payloads`` (the RTP payloads, packetized once for all
    viewers) is filled by the slot before fan-out.
    """

    kind: MediaKind
    codec: str
    data: bytes
    timestamp: int
    clock_rate: int
    keyframe: bool
    payloads: list[bytes] | None = field(default=None, repr=False)
    # When the frame was captured, in seconds on the sender's wall clock (the
    # NTP time of its RTCP sender reports); None until the source knows it.
    # Audio and video of one publisher share that clock: the recorder aligns
    # the two tracks with it.
    capture_time: float | None = None
    # The payloads as the native send path takes them (one buffer and its
    # offsets), made by the first viewer that sends the frame that way.
    native: Any = field(default=None, repr=False)

    def restamped(self, timestamp: int) -> EncodedFrame:
        """A copy on another timeline (the data bytes are shared, not copied)."""
        return EncodedFrame(
            self.kind, self.codec, self.data, timestamp, self.clock_rate, self.keyframe,
            None, self.capture_time,
        )

    def to_packet(self) -> av.Packet:  # type: ignore[type-arg]
        """A fresh PyAV packet for muxing (``mux()`` rewrites packets in place)."""
        packet = av.Packet(self.data)
        packet.pts = self.timestamp
        packet.dts = self.timestamp
        packet.time_base = Fraction(1, self.clock_rate)
        packet.is_keyframe = self.keyframe
        return packet
