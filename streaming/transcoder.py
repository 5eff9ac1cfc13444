"""The lower rendition (流畅): one decode and one encode per broadcast.

The one place where the relay transcodes. A :class:`Transcoder` is a sink of
the program's video and the source of the broadcast's ``low`` slot: it
decodes the program, scales it to 360 lines and encodes it again in the
program's codec at about 400 kbps, for every viewer whose link cannot take
the full picture. The broadcast makes it when the first viewer needs it and
closes it when the last one has left that level, so it costs nothing while
every room takes the full picture.

Decoding and encoding run in a thread of their own (PyAV releases the GIL);
frames go back to the event loop to be pushed into the slot. When the thread
falls behind, whole pictures are skipped up to the next keyframe of the
program (the encoder then makes its own keyframe), so the delay never grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import threading
from typing import Any

import av

from streaming.frames import VIDEO_CLOCK_RATE, EncodedFrame
from streaming.slot import Slot, SlotTrack

logger = logging.getLogger(__name__)

LOW_HEIGHT = 360
LOW_BITRATE = 400_000  # bits per second
MAX_BACKLOG = 15  # frames waiting to be decoded before pictures are skipped
_DECODERS = {"H264": "h264", "VP8": "vp8"}
_ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    # What a phone decodes best: constrained baseline, no B-frames, one slice.
    "H264": ("libx264", {"preset": "veryfast", "tune": "zerolatency",
                         "x264-params": "keyint=infinite:repeat-headers=1"}),
    "VP8": ("libvpx", {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0",
                       "error-resilient": "1", "kf-max-dist": "9999"}),
}
_STOP = object()


class Transcoder:
    """Fills ``slot`` with the program's video at 360 lines (see the module)."""

    wants_payloads = False  # a sink that sends no RTP itself

    def __init__(self, program: SlotTrack, slot: Slot, codec: str,
                 height: int = LOW_HEIGHT, bitrate: int = LOW_BITRATE) -> None:
        if codec not in _ENCODERS:
            raise ValueError(f"no lower rendition for {codec}")
        self.codec = codec
        self._program = program
        self.slot = slot
        self._height = height
        self._bitrate = bitrate
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._backlog = 0
        self._skipping = True  # until the program's first keyframe
        self._keyframe_wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="transcoder", daemon=True)
        self._closed = False
        self.frames_in = 0
        self.frames_out = 0
        self.skipped = 0

    @property
    def backlog(self) -> int:
        """Frames handed to the thread and not yet done."""
        return self._backlog

    def start(self) -> None:
        self.slot.attach(self)
        self._thread.start()
        self._program.subscribe(self)  # asks the program for a keyframe to start on

    # FrameSink (of the program)
    def deliver(self, frame: EncodedFrame) -> None:
        if self._closed:
            return
        if not self._skipping and self._backlog >= MAX_BACKLOG:
            # Behind: skip whole pictures up to a keyframe, asked for now.
            self._skipping = True
            self._program.request_keyframe()
        if self._skipping:
            if not frame.keyframe:
                self.skipped += 1
                return
            self._skipping = False
        self._backlog += 1
        self.frames_in += 1
        self._queue.put(frame)

    # FrameSource (of the low slot)
    def request_keyframe(self) -> None:
        self._keyframe_wanted.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._program.unsubscribe(self)
        self.slot.detach(self)
        self._queue.put(_STOP)

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the thread (after :meth:`close`)."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the thread
    def _run(self) -> None:
        decoder: Any = av.CodecContext.create(_DECODERS[self.codec], "r")
        encoder: Any = None
        size: tuple[int, int] | None = None
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                frame: EncodedFrame = item
                try:
                    pictures = decoder.decode(av.Packet(frame.data))
                except av.error.FFmpegError as exc:
                    logger.debug("transcoder: cannot decode a frame (%s)", exc)
                    pictures = []
                for picture in pictures:
                    wanted = _scaled(picture.width, picture.height, self._height)
                    if encoder is None or size != wanted:
                        encoder, size = self._encoder(*wanted), wanted
                        self._keyframe_wanted.set()
                    small = picture.reformat(width=wanted[0], height=wanted[1],
                                             format="yuv420p", interpolation="FAST_BILINEAR")
                    small.pts = frame.timestamp
                    if self._keyframe_wanted.is_set():
                        self._keyframe_wanted.clear()
                        small.pict_type = av.video.frame.PictureType.I
                    for packet in encoder.encode(small):
                        out = EncodedFrame("video", self.codec, bytes(packet), frame.timestamp,
                                           VIDEO_CLOCK_RATE, bool(packet.is_keyframe), None,
                                           frame.capture_time)
                        self._loop.call_soon_threadsafe(self._push, out)
                self._loop.call_soon_threadsafe(self._done_one)
        except Exception:
            logger.exception("transcoder of %s stopped", self.codec)
        finally:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._thread_ended)

    def _encoder(self, width: int, height: int) -> Any:
        name, options = _ENCODERS[self.codec]
        encoder: Any = av.CodecContext.create(name, "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        encoder.framerate = 30
        encoder.bit_rate = self._bitrate
        encoder.options = dict(options)
        if name == "libx264":
            encoder.profile = "Constrained Baseline"
        return encoder

    # --- back on the event loop
    def _push(self, frame: EncodedFrame) -> None:
        if not self._closed:
            self.frames_out += 1
            self.slot.push(self, frame)

    def _done_one(self) -> None:
        self._backlog -= 1

    def _thread_ended(self) -> None:
        if not self._closed:  # it failed: the slot is left empty, viewers keep their level
            self.slot.detach(self)


def _scaled(width: int, height: int, target: int) -> tuple[int, int]:
    """(width, height) at ``target`` lines (never larger), both even."""
    if height <= target:
        return width - width % 2, height - height % 2
    scaled_width = round(width * target / height)
    return scaled_width - scaled_width % 2, target
