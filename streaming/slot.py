"""A slot: a named place in a room that one source fills at a time.

Sinks subscribe to a slot's audio and video tracks, never to a source, so a
source can be replaced without any sink noticing more than a keyframe wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame, MediaKind
from streaming.keyframe_requests import DEFAULT_INTERVAL, KeyframeRequester
from streaming.protocols import BatchSink, FrameSink, FrameSource
from streaming.rebase import TimestampRebaser

logger = logging.getLogger(__name__)

Packetizer = Callable[[EncodedFrame], list[bytes]]

RATE_WINDOW = 2.0  # seconds over which ingress bitrate and frame rate are reported
MAX_GOP_FRAMES = 900  # frames kept for joiners (30 s at 30 fps)


class TrackStats:
    """Ingress counters of one slot track, with rates over a sliding window."""

    __slots__ = ("_clock", "_window_bytes", "_window_frames", "_window_start", "bitrate",
                 "bytes", "fps", "frames", "keyframes")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.frames = 0
        self.bytes = 0
        self.keyframes = 0
        self.bitrate = 0.0
        self.fps = 0.0
        self._window_start = clock()
        self._window_frames = 0
        self._window_bytes = 0

    def add(self, frame: EncodedFrame) -> None:
        size = len(frame.data)
        self.frames += 1
        self.bytes += size
        self.keyframes += frame.keyframe
        self._window_frames += 1
        self._window_bytes += size
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW:
            self.fps = self._window_frames / elapsed
            self.bitrate = self._window_bytes * 8 / elapsed
            self._window_start = now
            self._window_frames = 0
            self._window_bytes = 0

    def snapshot(self) -> dict[str, float | int]:
        if self._clock() - self._window_start > 2 * RATE_WINDOW:
            # Nothing arrived for a while: the rates are stale.
            self.fps = 0.0
            self.bitrate = 0.0
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "keyframes": self.keyframes,
            "fps": round(self.fps, 2),
            "bitrate": round(self.bitrate),
        }


class SlotTrack:
    """One kind of media in a slot: re-bases, packetizes once, fans out."""

    def __init__(
        self,
        slot: Slot,
        kind: MediaKind,
        codec: str,
        packetizer: Packetizer,
        clock: Callable[[], float],
        keyframe_interval: float,
    ) -> None:
        self.slot = slot
        self.kind = kind
        self.codec = codec
        self.clock_rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE
        self._packetize = packetizer
        self._rebaser = TimestampRebaser(self.clock_rate, clock)
        # A tuple, replaced on every change: a sink may leave or join while
        # push() goes through the sinks (a viewer moving into a batch).
        self._sinks: tuple[FrameSink, ...] = ()
        self._packetized_for = 0  # sinks that send RTP (not a recorder)
        # Sinks that stand for many viewers each (aiortc_glue.NativeBatch),
        # by kind; first among the sinks, so that a viewer which joins one
        # during a push gets that frame from its own deliver, not twice.
        self._batches: dict[object, BatchSink] = {}
        # For a source that cannot make keyframes (a file): the frames since
        # the last keyframe, packetized, for a viewer that joins (catch_up).
        self._gop: list[EncodedFrame] | None = None
        # Video only: after damage (a jitter-buffer reset at the source) or a
        # source switch, frames are useless to everyone until the next keyframe.
        self._needs_keyframe = kind == "video"
        self.keyframes = KeyframeRequester(slot.request_keyframe_from_source,
                                           keyframe_interval, clock)
        self.stats = TrackStats(clock)

    @property
    def sink_count(self) -> int:
        """Sinks taking this track's frames, a batch's viewers each counted."""
        batches = self._batches.values()
        return len(self._sinks) - len(batches) + sum(len(batch) for batch in batches)

    def subscribe(self, sink: FrameSink, request_keyframe: bool = True) -> None:
        """Add a sink; it starts on the next keyframe, which is asked for now
        unless the sink will ask itself once it can take frames."""
        if sink not in self._sinks:
            self._sinks = (*self._sinks, sink)
            self._packetized_for += getattr(sink, "wants_payloads", True)
        if request_keyframe:
            self.request_keyframe()

    def unsubscribe(self, sink: FrameSink) -> None:
        if sink in self._sinks:
            self._sinks = tuple(s for s in self._sinks if s is not sink)
            self._packetized_for -= getattr(sink, "wants_payloads", True)

    def batch(self, kind: object, make: Callable[[], BatchSink]) -> BatchSink:
        """The batch sink of ``kind`` on this track (made by ``make`` the
        first time), which frames reach before any other sink."""
        batch = self._batches.get(kind)
        if batch is None:
            batch = self._batches[kind] = make()
            self._sinks = (batch, *self._sinks)
        return batch

    def request_keyframe(self) -> None:
        if self.kind == "video":
            self.keyframes.request()

    def mark_damaged(self) -> None:
        """The source lost picture data: hold everything until a keyframe."""
        if self.kind == "video":
            self._needs_keyframe = True
            self.keyframes.request()

    def switch_source(self, keyframes_on_demand: bool = True) -> None:
        self._rebaser.switch_source()
        if self.kind == "video":
            self._needs_keyframe = True
            self._gop = None if keyframes_on_demand else []

    def catch_up(self, sink: FrameSink) -> bool:
        """Give ``sink`` the frames since the last keyframe at once, if the
        source cannot make a keyframe now; False if there is nothing to give
        (then a keyframe has to be asked for)."""
        if not self._gop:
            return False
        for frame in self._gop:
            sink.deliver(frame)
        return True

    def push(self, frame: EncodedFrame) -> None:
        """Called for each frame of the current source, on its own timeline."""
        self.stats.add(frame)
        if frame.keyframe:
            if self.kind == "video":
                self.keyframes.keyframe_arrived()
            self._needs_keyframe = False
        elif self._needs_keyframe:
            return
        out = frame.restamped(self._rebaser.map(frame.timestamp))
        gop = self._gop
        if gop is not None:
            if frame.keyframe:
                gop.clear()
            if len(gop) < MAX_GOP_FRAMES:
                out.payloads = self._packetize(out)
                gop.append(out)
            else:
                gop.clear()  # an unusually long GOP: joiners wait for a keyframe
        if not self._sinks:
            return
        if out.payloads is None and (self._packetized_for or any(self._batches.values())):
            out.payloads = self._packetize(out)  # for the viewers' RTP (a batch's members too)
        for sink in self._sinks:
            sink.deliver(out)

    def close(self) -> None:
        self.keyframes.close()
        for batch in self._batches.values():
            batch.close()
        self._batches.clear()
        self._sinks = ()
        self._packetized_for = 0
        self._gop = None


class Slot:
    """A named slot ("program", "stage") of a room: at most one source at a time."""

    def __init__(
        self,
        name: str,
        video_codec: str,
        packetizers: Callable[[str], Packetizer],
        clock: Callable[[], float] = time.monotonic,
        keyframe_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.name = name
        self._source: FrameSource | None = None
        self.video = SlotTrack(self, "video", video_codec, packetizers(video_codec), clock,
                               keyframe_interval)
        self.audio = SlotTrack(self, "audio", "opus", packetizers("opus"), clock,
                               keyframe_interval)

    @property
    def source(self) -> FrameSource | None:
        return self._source

    def track(self, kind: MediaKind) -> SlotTrack:
        return self.video if kind == "video" else self.audio

    def attach(self, source: FrameSource, ask_keyframe: bool = True) -> None:
        """Make ``source`` the one that fills this slot (replacing any other).

        Video waits for the new source's next keyframe, which is asked for
        unless the source is about to push one anyway (``ask_keyframe``)."""
        self._source = source
        on_demand = getattr(source, "keyframes_on_demand", True)
        for track in (self.video, self.audio):
            track.switch_source(on_demand)
        if ask_keyframe:
            self.video.keyframes.request()

    def detach(self, source: FrameSource) -> None:
        """Empty the slot if ``source`` still fills it."""
        if self._source is source:
            self._source = None

    def push(self, source: FrameSource, frame: EncodedFrame) -> None:
        """A frame from ``source``; frames of a replaced source are dropped."""
        if source is self._source:
            (self.video if frame.kind == "video" else self.audio).push(frame)

    def request_keyframe_from_source(self) -> None:
        if self._source is not None:
            self._source.request_keyframe()

    def close(self) -> None:
        self._source = None
        self.video.close()
        self.audio.close()
