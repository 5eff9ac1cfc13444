"""The recorder: a sink of a slot that muxes its frames into the archive as they come.

Nothing is decoded or encoded: the same encoded frames a viewer gets are
muxed into Matroska files (one *segment* per source and picture size) under
the item's ``parts/`` folder. Matroska is written cluster by cluster (at most
``CLUSTER_MS`` each) straight to an unbuffered file, so a killed process loses
at most the cluster being built; a truncated Matroska file still demuxes up to
its last whole cluster. Finishing (``recordings.finish``) later joins the
segments into one seekable file.

Timeline. A recording has one clock in milliseconds, starting at its first
keyframe. A segment starts at a video keyframe; its video keeps the source's
own frame spacing; its audio is placed against the video by the sender's
wall clock (the NTP time of the publisher's RTCP sender reports, carried in
``EncodedFrame.capture_time``) or, until the sender has reported, by arrival
time. When the sender's reports turn up after a segment was aligned by
arrival, the exact correction is written next to the segment
(``seg-0001.json``) and applied by finishing. A segment that follows a gap
(publisher reconnect) starts where wall time says, so the archive keeps the
lecture's real length, and every track's timestamps only ever go up.

Cost. The relay hands the recorder every frame between sending it to the
viewers; ``take`` only notes it (with its arrival and source), and twice a
second the frames noted are placed and muxed together, with the code and data
still in the caches. The muxer holds the cluster being built in memory
anyway, so a crash loses no more than a cluster and a batch.

Supervision. A writer that fails (an I/O error, a muxer error) is closed and a
new segment starts at the next keyframe; more than ``MAX_RESTARTS`` failures
in ``RESTART_WINDOW`` seconds, or a full disk, stop the recording for good
with the reason. The owner hears of every such event through ``on_event``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av

from streaming.frames import EncodedFrame, MediaKind
from streaming.keyframes import frame_size
from streaming.slot import Slot

logger = logging.getLogger(__name__)

CLUSTER_MS = 1000
BATCH_MS = 500  # frames are muxed this many milliseconds at a time
BATCH_SECONDS = BATCH_MS / 1000  # of arrival: frames are placed and muxed together
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
MIN_FREE_BYTES = 64 * 1024 * 1024  # stop before the disk is completely full
FREE_CHECK_INTERVAL = 5.0
# A sender wall clock that moves by more than this against its media clock
# between two frames was set, not drifting.
SENDER_STEP = 1.0
SEGMENT_PATTERN = "seg-{:04d}.mkv"
STAGE_PATTERN = "stage-{:04d}.mkv"  # the stage slot's segments, same timeline
MS = Fraction(1, 1000)

EventCallback = Callable[[str, str], None]
Origin = Callable[[], float | None]
Label = Callable[[object | None], str | None]


def update_sidecar(segment: Path, **values: Any) -> None:
    """Merge ``values`` into the JSON written next to a segment (atomically)."""
    sidecar = segment.with_suffix(".json")
    try:
        current = json.loads(sidecar.read_text())
        if not isinstance(current, dict):
            current = {}
    except (FileNotFoundError, ValueError):
        current = {}
    current.update(values)
    tmp = sidecar.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current))
    os.replace(tmp, sidecar)


class RecordingStopped(Exception):
    """The recording ended for good (disk full, too many writer failures)."""


@dataclass
class RecorderStats:
    segments: int = 0
    restarts: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    bytes: int = 0
    duration: float = 0.0  # seconds of media written so far
    failure: str | None = None
    restart_times: list[float] = field(default_factory=list)


def _video_template(codec: str, keyframe: bytes, size: tuple[int, int]) -> Any:
    """An input container whose video stream describes ``keyframe``.

    Its stream is the template of the segment's video track, so the track
    header carries the sender's own parameters (H.264: its SPS/PPS as avcC)
    and PyAV does not open an encoder (which would put an encoder's own
    parameter sets in the file, and cost an encoder start per segment).
    """
    if codec.upper() == "H264":
        return av.open(io.BytesIO(keyframe), format="h264")
    # VP8: a one-frame IVF file.
    width, height = size
    header = struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, b"VP80", width, height, 30, 1, 1, 0)
    frame = struct.pack("<IQ", len(keyframe), 0) + keyframe
    return av.open(io.BytesIO(header + frame), format="ivf")


class SegmentWriter:
    """One Matroska file: a video track and an Opus track, millisecond timestamps."""

    def __init__(self, path: Path, video_codec: str, keyframe: bytes,
                 size: tuple[int, int]) -> None:
        self.path = path
        template = _video_template(video_codec, keyframe, size)
        self._file: BinaryIO = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        try:
            self._container: Any = av.open(
                self._file, "w", format="matroska",
                options={"cluster_time_limit": str(CLUSTER_MS), "flush_packets": "1"},
            )
            video: Any = self._container.add_stream_from_template(template.streams.video[0])
            video.time_base = MS
            audio: Any = self._container.add_stream("opus", rate=48_000)
            audio.layout = "stereo"
            audio.time_base = MS
        except BaseException:
            self._file.close()
            raise
        finally:
            template.close()
        self._streams = {"video": video, "audio": audio}
        self._last: dict[str, int] = {"video": -1, "audio": -1}
        self._pending: list[tuple[MediaKind, bytes, int, bool]] = []
        self.closed = False

    def fileno(self) -> int:
        return self._file.fileno()

    def write(self, kind: MediaKind, data: bytes, pts_ms: int, keyframe: bool) -> None:
        """Take one frame; timestamps are forced strictly increasing per track.

        Frames are muxed in batches of ``BATCH_MS``: one call into the muxer
        per half second instead of one per frame (the muxer holds the
        cluster being built in memory anyway, so a crash loses no more).
        """
        pts_ms = max(pts_ms, self._last[kind] + 1)
        self._last[kind] = pts_ms
        pending = self._pending
        pending.append((kind, data, pts_ms, keyframe))
        if pts_ms - pending[0][2] >= BATCH_MS:
            self.flush()

    def flush(self) -> None:
        """Mux what was taken so far."""
        pending, self._pending = self._pending, []
        streams = self._streams
        mux = self._container.mux_one
        new_packet = av.Packet
        for kind, data, pts_ms, keyframe in pending:
            # No time base set: the muxer gives an unset one its stream's
            # (milliseconds) without a conversion from a Fraction per packet.
            packet = new_packet(data)
            packet.pts = packet.dts = pts_ms
            if keyframe:
                packet.is_keyframe = True
            packet.stream = streams[kind]
            mux(packet)

    def last_ms(self, kind: MediaKind) -> int:
        return self._last[kind]

    def close(self) -> None:
        """Write the trailer (cues, duration); safe to call twice and after a failure."""
        if self.closed:
            return
        self.closed = True
        try:
            try:
                self.flush()
            finally:
                self._container.close()
        finally:
            self._file.close()


class _TrackSink:
    """The FrameSink the recorder subscribes to one slot track."""

    wants_payloads = False  # muxes whole frames: the slot need not packetize for it

    def __init__(self, recorder: Recorder, kind: MediaKind) -> None:
        self._recorder = recorder
        self._kind = kind

    def deliver(self, frame: EncodedFrame) -> None:
        self._recorder.take(self._kind, frame)


class Recorder:
    """Records one slot into ``directory/parts`` until :meth:`stop`.

    The program slot's recorder starts the recording's clock at its first
    keyframe. The stage slot's recorder (``pattern=STAGE_PATTERN``) takes that
    clock as its ``origin``, so its segments sit on the lecture's timeline:
    each is one room's time on stage, starting where wall time says, and its
    sidecar names the room (``label`` of the slot's source).
    """

    def __init__(
        self,
        directory: Path,
        slot: Slot,
        on_event: EventCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        free_space: Callable[[Path], int] | None = None,
        min_free_bytes: int = MIN_FREE_BYTES,
        pattern: str = SEGMENT_PATTERN,
        origin: Origin | None = None,
        label: Label | None = None,
    ) -> None:
        self.directory = directory
        self.parts = directory / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self._slot = slot
        self._codec = slot.video.codec
        self._on_event = on_event or (lambda kind, detail: None)
        self._clock = clock
        self._free_space = free_space or (lambda path: shutil.disk_usage(path).free)
        self._min_free = min_free_bytes
        self._pattern = pattern
        self._origin = origin
        self._label = label
        self.stats = RecorderStats()
        self._sinks = {"video": _TrackSink(self, "video"), "audio": _TrackSink(self, "audio")}
        self._writer: SegmentWriter | None = None
        self._last_ms: int | None = None  # the last timestamp of closed segments
        self._source: object | None = None  # the slot source of the current segment
        self._size: tuple[int, int] | None = None
        self._started_at: float | None = None  # our clock at the recording's 0 ms
        self._segment_start = 0.0  # seconds on the recording clock
        self._video_origin = 0  # slot timestamp of the segment's first keyframe
        # Per source: min(arrival - media time) per track, and the video
        # track's sender clock offset (capture time - media time).
        self._observed_source: object | None = None
        self._arrival: dict[str, float] = {}
        self._video_sender: float | None = None
        self._audio_offset: float | None = None  # arrival mode: seconds to add
        self._audio_by_sender = False
        self._corrected = False
        # The sender's wall clock against its media clock (capture time -
        # media time) per track, and the steps its wall clock made (an NTP
        # correction on the presenter PC), taken out of every capture time so
        # the lecture's sound stays put.
        self._sender_offset: dict[str, float] = {}
        self._sender_step = 0.0
        self._next_free_check = 0.0
        # Frames taken but not yet placed: (kind, frame, arrival, slot source).
        self._pending: list[tuple[MediaKind, EncodedFrame, float, object | None]] = []
        self.running = False

    @property
    def started_at(self) -> float | None:
        """Our clock at the recording's 0 ms (None until the first keyframe)."""
        return self._started_at

    # ---------------------------------------------------------------- control

    def start(self) -> None:
        """Subscribe to the slot; writing starts at the next keyframe (asked for now)."""
        self.running = True
        self._slot.video.subscribe(self._sinks["video"])
        self._slot.audio.subscribe(self._sinks["audio"], request_keyframe=False)

    def stop(self) -> None:
        """Unsubscribe and close the current segment properly."""
        if not self.running:
            return
        self._drain()
        if not self.running:
            return  # the drain failed the recording: it is stopped already
        self.running = False
        self._slot.video.unsubscribe(self._sinks["video"])
        self._slot.audio.unsubscribe(self._sinks["audio"])
        self._close_writer()

    def flush(self) -> None:
        """Mux the frames taken so far (the source may have gone quiet)."""
        self._drain()
        writer = self._writer
        if writer is None or writer.closed:
            return
        try:
            writer.flush()
        except Exception as exc:
            with contextlib.suppress(RecordingStopped):
                self._writer_failed(exc)

    def sync_to_disk(self) -> int | None:
        """A duplicate of the current segment's descriptor, for an fsync off
        the event loop (the caller closes it), or None."""
        writer = self._writer
        if writer is None or writer.closed:
            return None
        return os.dup(writer.fileno())

    # ---------------------------------------------------------------- frames

    def take(self, kind: MediaKind, frame: EncodedFrame) -> None:
        """Note a frame with its arrival and source; every ``BATCH_MS`` the
        frames noted are placed and muxed together.

        The relay calls this for every frame, between sending it to the
        viewers: noting costs a tuple, and the real work runs twice a second
        with its code and data still in the caches, instead of 80 times a
        second cold. A crash loses no more than before: the muxer holds the
        cluster being built (≤ 1 s) in memory anyway.
        """
        if not self.running:
            return
        now = self._clock()
        pending = self._pending
        pending.append((kind, frame, now, self._slot.source))
        if now - pending[0][2] >= BATCH_SECONDS:
            self._drain()

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        stats = self.stats
        written = stats.video_frames + stats.audio_frames
        for kind, frame, now, source in pending:
            if not self.running:
                return  # stopped for good on the way
            self._take(kind, frame, now, source)
        if stats.video_frames + stats.audio_frames != written and \
                pending[-1][2] >= self._next_free_check:
            # Once a batch, not once a frame: a clock read per frame cost more.
            with contextlib.suppress(RecordingStopped):
                self._check_free_space()
            if not self.running:
                return
        writer = self._writer
        if writer is not None and not writer.closed:
            try:
                writer.flush()
            except RecordingStopped:
                pass
            except Exception as exc:
                with contextlib.suppress(RecordingStopped):
                    self._writer_failed(exc)

    def _take(self, kind: MediaKind, frame: EncodedFrame, now: float,
              source: object | None) -> None:
        self._observe(kind, frame, now, source)
        try:
            if kind == "video":
                self._take_video(frame, now, source)
            elif self._writer is not None:
                self._take_audio(frame)
        except RecordingStopped:
            pass
        except Exception as exc:  # the writer failed: supervise
            with contextlib.suppress(RecordingStopped):
                self._writer_failed(exc)

    def _observe(self, kind: MediaKind, frame: EncodedFrame, now: float,
                 source: object | None) -> None:
        if source is not self._observed_source:
            # A new source has timestamps and a sender clock of its own.
            self._observed_source = source
            self._arrival.clear()
            self._video_sender = None
            self._sender_offset.clear()
            self._sender_step = 0.0
        media = frame.timestamp / frame.clock_rate
        arrival = now - media
        if arrival < self._arrival.get(kind, arrival + 1):
            self._arrival[kind] = arrival
        captured = self._sender_time(frame)
        if captured is not None:
            # The sender's wall clock against its own media clock (both set
            # by the sender, so no network delay or stall moves this).
            offset = captured - media
            last = self._sender_offset.get(kind)
            if last is not None and abs(offset - last) > SENDER_STEP:
                # A media clock drifts by milliseconds a minute: the sender's
                # wall clock was set (its reports jumped). Keep its old scale.
                self._sender_step += offset - last
                logger.warning("recording %s: the sender's clock jumped by %.1f s; "
                               "the lecture keeps its timeline", self.directory.name,
                               offset - last)
                captured -= offset - last
                offset = last
            self._sender_offset[kind] = offset
        if kind == "video" and captured is not None and self._video_sender is None:
            # Fixed per source: the video clock of a WebRTC sender is its wall
            # clock, so one anchor serves; audio follows its own reports.
            self._video_sender = captured - media

    def _sender_time(self, frame: EncodedFrame) -> float | None:
        """The frame's capture time on the sender's clock, without its steps."""
        if frame.capture_time is None:
            return None
        return frame.capture_time - self._sender_step

    def _take_video(self, frame: EncodedFrame, now: float, source: object | None) -> None:
        if self._writer is not None and frame.keyframe:
            size = frame_size(self._codec, frame.data)
            if source is not self._source or (size is not None and size != self._size):
                self._close_writer()  # a new source or picture size: a new segment
        elif self._writer is not None and source is not self._source:
            self._close_writer()
            self._slot.video.request_keyframe()
        if self._writer is None:
            if not frame.keyframe:
                return
            self._open_segment(frame, now, source)
        writer = self._writer
        if writer is None:
            return  # the timeline has not started yet (no program keyframe)
        seconds = self._segment_start + (frame.timestamp - self._video_origin) / frame.clock_rate
        self._write(writer, frame, seconds)

    def _take_audio(self, frame: EncodedFrame) -> None:
        writer = self._writer
        assert writer is not None
        video_origin = self._video_origin / 90_000
        captured = self._sender_time(frame)
        if self._audio_offset is None and not self._audio_by_sender:
            if captured is not None and self._video_sender is not None:
                self._audio_by_sender = True
            elif "video" in self._arrival and "audio" in self._arrival:
                self._audio_offset = (self._segment_start - video_origin
                                      + self._arrival["audio"] - self._arrival["video"])
            else:
                return
        media = frame.timestamp / frame.clock_rate
        if self._audio_by_sender and captured is not None and self._video_sender is not None:
            # Both tracks on the sender's clock: follows the sender's reports,
            # so an audio clock that drifts from the video clock stays in sync.
            seconds = (self._segment_start - video_origin
                       + captured - self._video_sender)
        else:
            if self._audio_offset is None:
                return
            seconds = media + self._audio_offset
            if not self._corrected and captured is not None and \
                    self._video_sender is not None:
                exact = (self._segment_start - video_origin
                         + captured - self._video_sender)
                self._record_correction(writer, exact - seconds)
        if seconds < self._segment_start:
            return  # from before the segment's first picture
        self._write(writer, frame, seconds)

    def _write(self, writer: SegmentWriter, frame: EncodedFrame, seconds: float) -> None:
        pts = round(seconds * 1000)
        writer.write(frame.kind, frame.data, pts, frame.keyframe)
        stats = self.stats
        stats.bytes += len(frame.data)
        if frame.kind == "video":
            stats.video_frames += 1
        else:
            stats.audio_frames += 1
        if seconds > stats.duration:
            stats.duration = seconds

    def _record_correction(self, writer: SegmentWriter, shift: float) -> None:
        """The sender has reported since this segment's audio was placed by
        arrival: note the exact correction next to it, for finishing to apply."""
        self._corrected = True
        update_sidecar(writer.path, audio_shift=round(shift, 4))
        logger.info("recording %s: %s audio is %+.0f ms off by the sender's reports",
                    self.directory.name, writer.path.name, shift * 1000)

    # ---------------------------------------------------------------- segments

    def _open_segment(self, frame: EncodedFrame, now: float, source: object | None) -> None:
        if self._origin is not None and self._started_at is None:
            self._started_at = self._origin()
            if self._started_at is None:
                return  # the timeline we follow has not started
        self._check_free_space()
        size = frame_size(self._codec, frame.data) or self._size or (640, 360)
        index = self.stats.segments + 1
        path = self.parts / self._pattern.format(index)
        writer = SegmentWriter(path, self._codec, frame.data, size)
        self.stats.segments = index
        if self._started_at is None:
            self._started_at = now
            start_ms = 0
        else:
            # After a gap the segment starts where wall time says, never
            # before what was already written.
            start_ms = round((now - self._started_at) * 1000)
        if self._last_ms is not None:
            start_ms = max(start_ms, self._last_ms + 1)
        self._writer = writer
        self._source = source
        self._size = size
        if self._label is not None:
            update_sidecar(path, source=self._label(source))
        self._segment_start = start_ms / 1000
        self._video_origin = frame.timestamp
        self._audio_offset = None
        self._audio_by_sender = False
        self._corrected = False
        logger.info("recording %s: segment %d at %d ms (%dx%d)", self.directory.name, index,
                    start_ms, *size)
        self._on_event("segment", path.name)

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        self._source = None
        if writer is None:
            return
        self._last_ms = max(writer.last_ms("video"), writer.last_ms("audio"), self._last_ms or 0)
        try:
            writer.close()
        except Exception as exc:
            logger.warning("recording %s: closing %s failed: %s", self.directory.name,
                           writer.path.name, exc)

    # ---------------------------------------------------------------- supervision

    def _check_free_space(self) -> None:
        self._next_free_check = self._clock() + FREE_CHECK_INTERVAL
        try:
            free = self._free_space(self.parts)
        except OSError:
            return
        if free < self._min_free:
            self._fail(f"disk full: {free // (1024 * 1024)} MiB left in the data folder")

    def _writer_failed(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._fail(f"disk full: {exc}")
            return
        self._close_writer()
        now = self._clock()
        stats = self.stats
        stats.restart_times = [t for t in stats.restart_times if now - t < RESTART_WINDOW]
        stats.restart_times.append(now)
        stats.restarts += 1
        logger.warning("recording %s: writer failed (%s), restarting", self.directory.name, exc)
        if len(stats.restart_times) > MAX_RESTARTS:
            self._fail(f"the writer failed {len(stats.restart_times)} times within "
                       f"{RESTART_WINDOW:.0f} s; last error: {exc}")
            return
        self._on_event("restart", str(exc))
        self._slot.video.request_keyframe()

    def _fail(self, reason: str) -> None:
        self.stats.failure = reason
        logger.error("recording %s stopped: %s", self.directory.name, reason)
        self.stop()
        self._on_event("failed", reason)
        raise RecordingStopped(reason)
