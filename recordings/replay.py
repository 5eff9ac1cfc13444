"""Replay: an archived lecture as a live source of a slot.

``ArchiveSource`` demuxes a lecture file with PyAV (in a worker thread, a
second of media at a time) and pushes its packets, undecoded, into a slot at
the pace of their timestamps: each frame is due at ``start + (t - t0)`` on a
monotonic clock, so the replay neither bursts nor drifts (sleeping frame to
frame would add up every late wake-up). H.264 from MP4 goes through PyAV's
``h264_mp4toannexb`` bitstream filter, which puts the parameter sets in front
of every keyframe as a live sender would.

A file cannot make a keyframe when a viewer joins. The source says so
(``keyframes_on_demand = False``) and the slot keeps the frames since the
last keyframe, which a joining viewer gets at once (see
``SlotTrack.catch_up``), so nobody waits for the file's next keyframe.

``check_replayable`` tells, before a session is scheduled, whether an item
can be sent to WebRTC viewers at all (codec, audio, B-frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
from av.bitstream import BitStreamFilterContext

from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame, MediaKind
from streaming.slot import Slot

logger = logging.getLogger(__name__)

READ_AHEAD = 1.0  # seconds of media read per batch
LOW_WATER = 1.0  # read the next batch when less than this is buffered
MAX_LATE = 2.0  # a replay this far behind (a stalled disk) re-anchors instead of bursting
CODECS = {"h264": "H264", "vp8": "VP8"}
# Audio an imported lecture may have: converted to Opus as it is replayed (one
# audio stream per replay, at the source, never per viewer).
CONVERTIBLE = ("aac", "mp3", "mp3float", "vorbis")
OPUS_FRAME = 960  # 20 ms at 48 kHz


class _ToOpus:
    """Decodes a file's audio and encodes it as 20 ms Opus frames."""

    def __init__(self, stream: Any) -> None:
        self._decoder: Any = av.CodecContext.create(stream.codec_context.name, "r")
        self._decoder.extradata = stream.codec_context.extradata
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000)
        self._fifo = av.AudioFifo()
        self._encoder: Any = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate = 48_000
        self._encoder.layout = "stereo"
        self._encoder.format = "s16"
        self._encoder.bit_rate = 64_000
        self._encoder.time_base = Fraction(1, 48_000)
        self._start: float | None = None  # media seconds of the first sample
        self._samples = 0  # samples encoded since then

    def convert(self, packet: Any) -> Iterator[MediaFrame]:
        for decoded in self._decoder.decode(packet):
            if self._start is None and decoded.pts is not None:
                self._start = float(decoded.pts * decoded.time_base)
            for chunk in self._resampler.resample(decoded):
                chunk.pts = None
                self._fifo.write(chunk)
        while self._fifo.samples >= OPUS_FRAME:
            frame: Any = self._fifo.read(OPUS_FRAME)
            frame.pts = self._samples
            frame.sample_rate = 48_000
            self._samples += OPUS_FRAME
            for out in self._encoder.encode(frame):
                yield MediaFrame("audio", bytes(out),
                                 (self._start or 0.0) + float(out.pts) / 48_000, True)

    def reset(self) -> None:
        """After a seek: start the timeline again from the next decoded frame."""
        self._decoder.flush_buffers()
        self._fifo = av.AudioFifo()
        self._start = None


class ReplayError(Exception):
    """The file cannot be replayed (or stopped being readable); the text says why."""


@dataclass(slots=True)
class MediaFrame:
    kind: MediaKind
    data: bytes
    time: float  # seconds on the file's timeline
    keyframe: bool


@dataclass
class ReplayInfo:
    video_codec: str  # "H264" / "VP8"
    has_audio: bool
    duration: float


def check_replayable(path: Path) -> ReplayInfo:
    """What a replay of ``path`` would send, or ReplayError naming the obstacle."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ReplayError("the file has no video")
            video = container.streams.video[0]
            name = video.codec_context.name
            if name not in CODECS:
                raise ReplayError(f"video codec {name} cannot be sent to rooms (H.264 or VP8)")
            audio = container.streams.audio[0] if container.streams.audio else None
            if audio is not None and audio.codec_context.name not in ("opus", *CONVERTIBLE):
                raise ReplayError(f"audio codec {audio.codec_context.name} cannot be sent to "
                                  "rooms (Opus, or AAC/MP3/Vorbis converted to Opus)")
            # WebRTC carries no reordered frames: pts must equal dts.
            for count, packet in enumerate(container.demux(video)):
                if packet.pts is not None and packet.dts is not None and \
                        packet.pts != packet.dts:
                    raise ReplayError("the video has B-frames, which WebRTC cannot carry")
                if count >= 300:
                    break
            duration = (container.duration or 0) / av.time_base
            return ReplayInfo(CODECS[name], audio is not None, duration)
    except av.error.FFmpegError as exc:
        raise ReplayError(f"unreadable media file: {exc}") from exc


class MediaReader:
    """Frames of one media file, a batch at a time (blocking: use a thread)."""

    def __init__(self, path: Path | io.RawIOBase, audio: bool = True) -> None:
        """``audio=False``: the video alone (its audio is not even demuxed)."""
        self._file = path if isinstance(path, io.RawIOBase) else None
        container: Any
        try:
            if self._file is not None:
                container = av.open(self._file, format="matroska")
            else:
                container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            if self._file is not None:
                self._file.close()
            raise ReplayError(f"unreadable media file: {exc}") from exc
        self._container = container
        self._video = self._container.streams.video[0]
        self._audio = self._container.streams.audio[0] \
            if audio and self._container.streams.audio else None
        codec = self._video.codec_context.name
        self.video_codec = CODECS.get(codec, codec)
        self.duration = (self._container.duration or 0) / av.time_base
        extradata = self._video.codec_context.extradata or b""
        self._annexb: Any = None
        if codec == "h264" and extradata[:1] == b"\x01":
            self._annexb = BitStreamFilterContext("h264_mp4toannexb", self._video)
        self.kinds = {"video", "audio"} if self._audio is not None else {"video"}
        self._to_opus: _ToOpus | None = None
        if self._audio is not None and self._audio.codec_context.name in CONVERTIBLE:
            self._to_opus = _ToOpus(self._audio)
        streams = [self._video] + ([self._audio] if self._audio is not None else [])
        self._packets: Iterator[Any] = self._container.demux(streams)
        self.finished = False

    def _frames(self, packet: Any) -> Iterator[MediaFrame]:
        if packet.dts is None or packet.size == 0:
            return
        if packet.stream is self._video:
            packets = self._annexb.filter(packet) if self._annexb is not None else [packet]
            for out in packets:
                yield MediaFrame("video", bytes(out), float(out.pts * out.time_base),
                                 bool(out.is_keyframe))
        elif self._to_opus is not None:
            yield from self._to_opus.convert(packet)
        else:
            yield MediaFrame("audio", bytes(packet), float(packet.pts * packet.time_base), True)

    def read(self, seconds: float = READ_AHEAD) -> list[MediaFrame]:
        """The next frames, spanning about ``seconds``; [] at the end."""
        batch: list[MediaFrame] = []
        try:
            for packet in self._packets:
                batch.extend(self._frames(packet))
                if batch and batch[-1].time - batch[0].time >= seconds:
                    return batch
        except (av.error.FFmpegError, EOFError) as exc:
            if isinstance(exc, EOFError) or "End of file" in str(exc):
                self.finished = True
                return batch
            raise ReplayError(f"the file is damaged: {exc}") from exc
        self.finished = True
        return batch

    def seek(self, seconds: float) -> None:
        """Go to the keyframe at or before ``seconds``."""
        self._container.seek(max(0, int(seconds * av.time_base)), backward=True)
        if self._annexb is not None:
            self._annexb.flush()
        if self._to_opus is not None:
            self._to_opus.reset()
        streams = [self._video] + ([self._audio] if self._audio is not None else [])
        self._packets = self._container.demux(streams)
        self.finished = False

    def close(self) -> None:
        self._container.close()
        if self._file is not None:
            self._file.close()


class _Tail(io.RawIOBase):
    """A file still being written: a read at its end waits for more, until
    the writer is done with it (or the reader is closed)."""

    def __init__(self, path: Path, complete: Callable[[], bool], closed: threading.Event,
                 poll: float = 0.05) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._complete = complete
        self._closed = closed
        self._poll = poll

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        while True:
            count = self._file.readinto(buffer)
            if count:
                return count
            # Check "complete" before reading once more: what was written
            # before the writer finished is then surely seen.
            done = self._complete()
            count = self._file.readinto(buffer)
            if count or done or self._closed.is_set():
                return count or 0
            self._closed.wait(self._poll)

    def close(self) -> None:
        self._file.close()
        super().close()


class RecordingReader:
    """Frames of a recording while it is being made (timeshift, 时移).

    Reads the item's Matroska segments in order, following the last one as it
    grows; a segment is complete once a later one exists or the recording has
    stopped. Timestamps are the recording's own clock (continuous across
    segments). Blocking like ``MediaReader``: use a thread.
    """

    def __init__(self, parts: Path, recording: Callable[[], bool]) -> None:
        self._parts = parts
        self._recording = recording
        self._closed = threading.Event()
        self._index = 0
        self._container: Any = None
        self._reader: MediaReader | None = None
        self.video_codec = ""
        self.duration = 0.0
        self.finished = False
        self.kinds: set[str] = {"video"}
        if not self._open_next():
            raise ReplayError("nothing has been recorded yet")

    def _segment(self, index: int) -> Path:
        return self._parts / f"seg-{index:04d}.mkv"

    def _open_next(self) -> bool:
        index = self._index + 1
        path = self._segment(index)
        if not path.exists():
            return False
        following = self._segment(index + 1)

        def complete() -> bool:
            return following.exists() or not self._recording()

        tail = _Tail(path, complete, self._closed)
        try:
            self._reader = MediaReader(tail)
        except ReplayError:
            tail.close()
            raise
        self._index = index
        self.video_codec = self._reader.video_codec
        self.kinds = self._reader.kinds
        return True

    def read(self, seconds: float = READ_AHEAD) -> list[MediaFrame]:
        while self._reader is not None and not self._closed.is_set():
            batch = self._reader.read(seconds)
            if batch:
                return batch
            self._reader.close()
            self._reader = None
            if not self._open_next():
                break
        self.finished = True
        return []

    def seek(self, seconds: float) -> None:
        raise ReplayError("a recording in progress is watched from its beginning")

    def wake(self) -> None:
        """Make a read that waits for the recording to grow return now (any
        thread; the reader itself is closed by ``close`` in its own thread)."""
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
        if self._reader is not None:
            self._reader.close()
            self._reader = None


Sleep = Callable[[float], Awaitable[None]]


class FrameReader(Protocol):
    """What an archive source reads from (blocking calls, run in its thread)."""

    kinds: set[str]
    finished: bool
    duration: float

    def read(self, seconds: float = READ_AHEAD) -> list[MediaFrame]: ...

    def seek(self, seconds: float) -> None: ...

    def close(self) -> None: ...


class ArchiveSource:
    """Fills a slot from a media file in real time; one per replay."""

    keyframes_on_demand = False  # FrameSource: a file cannot make a keyframe now

    def __init__(
        self,
        slot: Slot,
        path: Path,
        *,
        on_end: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        run_blocking: Callable[..., Awaitable[Any]] | None = None,
        open_reader: Callable[[], FrameReader] | None = None,
    ) -> None:
        self.slot = slot
        self.path = path
        self._open_reader = open_reader or (lambda: MediaReader(path))
        self._on_end = on_end or (lambda: None)
        self._on_error = on_error or (lambda reason: None)
        self._clock = clock
        self._sleep = sleep
        # One worker thread per source: reads, seeks and the close run one
        # after another, never two at once on the same demuxer.
        self._executor: ThreadPoolExecutor | None = None
        self._run_blocking = run_blocking or self._in_thread
        self._reader: FrameReader | None = None
        self._task: asyncio.Task[None] | None = None
        self.state = "idle"  # idle, playing, paused, ended, failed, stopped
        self.error: str | None = None
        self.position = 0.0  # media seconds of the last frame pushed
        self.duration = 0.0
        self.frames_pushed = 0
        self.stalls = 0  # times the replay fell too far behind and re-anchored

    @property
    def on_air(self) -> bool:
        return self.state == "playing"

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="replay")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # FrameSource
    def request_keyframe(self) -> None:
        """A file has its keyframes where they are; the slot's cache covers joins."""

    # ---------------------------------------------------------------- control

    async def start(self, position: float = 0.0) -> None:
        """Open the file and start pushing from ``position`` (seconds)."""
        try:
            self._reader = await self._run_blocking(self._open_reader)
        except ReplayError as exc:
            self._fail(str(exc))
            return
        self.duration = self._reader.duration
        await self._begin(position)

    async def _begin(self, position: float) -> None:
        reader = self._reader
        assert reader is not None
        if position > 0:
            await self._run_blocking(reader.seek, position)
        self.slot.attach(self)  # a new stretch: re-based timeline, starts at a keyframe
        self.state = "playing"
        self._task = asyncio.create_task(self._run())

    async def pause(self) -> None:
        if self.state != "playing":
            return
        await self._halt()
        self.state = "paused"

    async def resume(self) -> None:
        if self.state == "paused":
            await self._begin(self.position)

    async def seek(self, position: float) -> None:
        """Continue from ``position`` (the keyframe at or before it)."""
        if self.state not in ("playing", "paused"):
            return
        await self._halt()
        await self._begin(max(0.0, min(position, self.duration)))

    async def stop(self) -> None:
        await self._halt()
        if self.state in ("playing", "paused", "idle"):
            self.state = "stopped"
        self.slot.detach(self)
        if self._reader is not None:
            reader, self._reader = self._reader, None
            if isinstance(reader, RecordingReader):
                reader.wake()  # a read waiting for the recording to grow returns
            # Closed in the reader's thread, after any read still in flight:
            # a demuxer closed under a running read crashes the process.
            await self._run_blocking(reader.close)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False)

    async def _halt(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---------------------------------------------------------------- pacing

    async def _run(self) -> None:
        """Push frames at their times, in time order across the tracks.

        A file's tracks need not be finely interleaved (muxers allow seconds
        of skew): frames are queued per track and the earliest head goes
        next, reading on until every track has a frame queued.
        """
        reader = self._reader
        assert reader is not None
        queues: dict[str, deque[MediaFrame]] = {kind: deque() for kind in reader.kinds}
        anchor_wall: float | None = None
        anchor_media = 0.0
        pending: asyncio.Future[Any] | None = None

        def take(batch: list[MediaFrame]) -> None:
            for item in batch:
                queues.setdefault(item.kind, deque()).append(item)

        def ready() -> bool:
            return reader.finished or all(queues.values())

        def ahead() -> float:
            heads = [queue for queue in queues.values() if queue]
            if not heads:
                return 0.0
            return min(queue[-1].time - queue[0].time for queue in heads)

        try:
            while True:
                if pending is None and not reader.finished and \
                        (not ready() or ahead() < LOW_WATER):
                    pending = asyncio.ensure_future(self._run_blocking(reader.read))
                if pending is not None and (not ready() or pending.done()):
                    take(await pending)
                    pending = None
                    continue
                waiting = [queue for queue in queues.values() if queue]
                if not waiting:
                    break  # the end of the file
                frame = min(waiting, key=lambda queue: queue[0].time).popleft()
                now = self._clock()
                if anchor_wall is None:
                    anchor_wall, anchor_media = now, frame.time
                due = anchor_wall + (frame.time - anchor_media)
                if due - now < -MAX_LATE:
                    # Far behind (the disk or the machine stalled): go on
                    # from here rather than sending seconds of frames at once.
                    logger.warning("replay of %s fell %.1f s behind: going on from here",
                                   self.path.name, now - due)
                    self.stalls += 1
                    anchor_wall, anchor_media = now, frame.time
                elif due > now:
                    await self._sleep(due - now)
                self._push(frame)
        except ReplayError as exc:
            self._fail(str(exc))
            return
        finally:
            if pending is not None:
                pending.cancel()
        self.state = "ended"
        self.slot.detach(self)
        self._on_end()

    def _push(self, frame: MediaFrame) -> None:
        video = frame.kind == "video"
        rate = VIDEO_CLOCK_RATE if video else AUDIO_CLOCK_RATE
        codec = self.slot.video.codec if video else "opus"
        self.slot.push(self, EncodedFrame(frame.kind, codec, frame.data,
                                          round(frame.time * rate), rate, frame.keyframe))
        self.position = frame.time
        self.frames_pushed += 1

    def _fail(self, reason: str) -> None:
        logger.error("replay of %s stopped: %s", self.path.name, reason)
        self.state = "failed"
        self.error = reason
        self.slot.detach(self)
        self._on_error(reason)


# ---------------------------------------------------------------------- the stage of a replay


@dataclass(frozen=True)
class Turn:
    """A room's turn on stage in a recording (see ``recordings.finish``)."""

    at: float  # seconds into the lecture
    offset: float  # seconds into the stage file
    duration: float
    name: str  # the room's name, for the pages


class _TurnReader:
    """The pictures of one turn of the stage file: video only (the rooms'
    sound is in the lecture already), up to the turn's end."""

    def __init__(self, path: Path, end: float) -> None:
        self._reader = MediaReader(path, audio=False)
        self._end = end
        self.duration = self._reader.duration
        self.kinds = self._reader.kinds
        self.finished = False

    def read(self, seconds: float = READ_AHEAD) -> list[MediaFrame]:
        frames = self._reader.read(seconds)
        if self._reader.finished or (frames and frames[-1].time >= self._end):
            self.finished = True
        return [frame for frame in frames if frame.time < self._end]

    def seek(self, seconds: float) -> None:
        self._reader.seek(seconds)
        self.finished = False

    def close(self) -> None:
        self._reader.close()


class StageFollower:
    """Re-broadcasts a recording's turns on stage along with its program.

    While the replay's program plays inside a turn, the stage slot shows that
    turn's pictures from the stage file, in step with the program; between
    turns, paused, or while a live room is on stage (``allowed``), the stage
    is empty. A turn entered more than ``JOIN_WINDOW`` after its start (a
    seek, a resume) is left out: the stage file has a keyframe at each turn's
    start but perhaps none after, and a picture late by the time since then
    would not fit the sound. ``on_turn`` hears of every change (the turn now
    shown, or None).
    """

    POLL = 0.05  # seconds between looks at the program's position
    JOIN_WINDOW = 0.5  # seconds into a turn it may still be started
    DRIFT = 1.0  # seconds out of step at which the stage is dropped

    def __init__(self, program: ArchiveSource, slot: Slot, path: Path, turns: list[Turn],
                 on_turn: Callable[[Turn | None], None],
                 allowed: Callable[[], bool] = lambda: True) -> None:
        self._program = program
        self._slot = slot
        self._path = path
        self._turns = sorted(turns, key=lambda turn: turn.at)
        self._on_turn = on_turn
        self._allowed = allowed
        self._source: ArchiveSource | None = None
        self._turn: Turn | None = None
        self._left_out: Turn | None = None
        self._task: asyncio.Task[None] | None = None
        self.turns_shown = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    def _turn_at(self, position: float) -> Turn | None:
        for turn in self._turns:
            if turn.at <= position < turn.at + turn.duration:
                return turn
        return None

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except ReplayError as exc:
                logger.warning("the stage of %s is left out: %s", self._path.name, exc)
                await self._drop()
                return
            await asyncio.sleep(self.POLL)

    async def _follow(self) -> None:
        program = self._program
        playing = program.state == "playing" and self._allowed()
        turn = self._turn_at(program.position) if playing else None
        source = self._source
        if source is not None:
            shown = self._turn
            assert shown is not None
            out_of_step = source.frames_pushed > 0 and abs(
                (source.position - shown.offset) - (program.position - shown.at)) > self.DRIFT
            if turn is not shown or source.state != "playing" or out_of_step:
                await self._drop()
        if turn is not self._left_out:
            self._left_out = None  # out of the turn left out: it may be played into again
        if self._source is not None or turn is None or turn is self._left_out:
            return
        into = program.position - turn.at
        if into > self.JOIN_WINDOW:
            self._left_out = turn
            return
        end = turn.offset + turn.duration
        source = ArchiveSource(self._slot, self._path,
                               open_reader=lambda: _TurnReader(self._path, end))
        self._source, self._turn = source, turn
        await source.start(turn.offset)
        if source.state != "playing":
            raise ReplayError(source.error or "the stage file could not be read")
        self.turns_shown += 1
        self._on_turn(turn)

    async def _drop(self) -> None:
        source, self._source = self._source, None
        if self._turn is not None:
            self._turn = None
            self._on_turn(None)
        if source is not None:
            await source.stop()
