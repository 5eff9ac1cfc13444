"""Finishing: a recording's segments become one seekable lecture file.

The segments (Matroska, written as the lecture went, perhaps cut short by a
crash) are remuxed, never transcoded, into one file: MP4 with the index at
the front for H.264, WebM with the cues at the front for VP8. Audio is shifted
by the correction a segment's sidecar names; every track's timestamps stay
strictly increasing across segments; a truncated tail is read up to its last
whole cluster. Then a poster (one decoded picture, JPEG) and the facts the
archive lists (duration, size, codecs, picture size) are taken from the result.

The stage. Rooms brought on stage were recorded beside the program
(``stage-*.mkv``, on the lecture's timeline, one segment per room's turn).
Their sound must be in the lecture itself — a discussion where the questions
cannot be heard is useless, and a phone plays one audio track — so over the
stretches where the stage has sound, and only there, the program's and the
stage's Opus are decoded, mixed and encoded again; the rest of the audio is
copied. Their pictures go, remuxed, into a second file (``stage.mp4`` or
``stage.webm``), the turns one after another, with the list of turns (where
each is in the lecture and in that file, and whose it is) in the result; the
library shows it as a picture-in-picture in step with the lecture.

Run as ``python -m recordings.finish ITEM_DIR``: the server starts it as a
child process so a long remux neither blocks the relay's event loop nor takes
the server down if a damaged file crashes the demuxer. It prints one JSON
object per line: ``{"progress": 0.42}`` as it goes, then ``{"result": {...}}``
or ``{"error": "..."}`` (exit status 1).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from recordings.digests import item_digests

logger = logging.getLogger(__name__)

MEDIA_NAMES = {"h264": "lecture.mp4", "vp8": "lecture.webm"}
STAGE_NAMES = {"h264": "stage.mp4", "vp8": "stage.webm"}
POSTER_NAME = "poster.jpg"
# What a finishing found, written before the parts are removed: a server that
# died after its child finished, but before it stored the result, finds it
# here at the next start instead of a folder without parts.
RESULT_NAME = "finished.json"
PR_SET_PDEATHSIG = 1  # prctl(2)
PARENT_VARIABLE = "ZHIXING_FINISH_PARENT"  # the server's pid, set when it starts us
POSTER_WIDTH = 640
POSTER_AT = 0.1  # share of the duration the poster is taken from (at most 60 s in)
MS_TIME_BASE = Fraction(1, 1000)  # Matroska's
OUTPUT_TIME_BASES = {"video": Fraction(1, 90_000), "audio": Fraction(1, 48_000)}
AUDIO_RATE = 48_000
OPUS_FRAME = 960  # samples of one 20 ms Opus frame
STAGE_GAP = AUDIO_RATE  # a stage silence longer than this (samples) ends a mixing stretch
CONTIGUOUS = 96  # samples: Matroska's millisecond timestamps round by up to half of this
PREROLL = 3  # program packets decoded before a stretch, to settle the decoder
ENCODER_DELAY = 312  # libopus's lookahead at 48 kHz, in samples
MIX_BITRATE = 64_000
MIX_COMPLEXITY = 5  # of 10: 35 % less CPU than 10, ample for speech at 64 kb/s
TURN_GAP = 0.04  # seconds between two turns in the stage file

Progress = Callable[[float], None]


class FinishError(Exception):
    """The recording cannot be finished; the message says why."""


@dataclass
class FinishResult:
    media_file: str
    duration: float
    size: int
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    poster: bool
    segments: int
    stage_file: str | None = None
    # The rooms' turns on stage: {"at": lecture seconds, "offset": seconds in
    # the stage file, "duration": seconds, "source": invitation id or None}.
    stage: list[dict[str, Any]] = field(default_factory=list)
    mixed_seconds: float = 0.0  # audio decoded, mixed and encoded again
    # {file name: Digest.json()} of the lecture, poster and stage files.
    digests: dict[str, dict[str, Any]] = field(default_factory=dict)


def segment_paths(item_dir: Path) -> list[Path]:
    return sorted((item_dir / "parts").glob("seg-*.mkv"))


def stage_paths(item_dir: Path) -> list[Path]:
    return sorted((item_dir / "parts").glob("stage-*.mkv"))


def _sidecar(segment: Path) -> dict[str, Any]:
    sidecar = segment.with_suffix(".json")
    try:
        values = json.loads(sidecar.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        logger.warning("%s: ignoring unreadable sidecar (%s)", sidecar, exc)
        return {}
    return values if isinstance(values, dict) else {}


def _audio_shift(segment: Path) -> float:
    try:
        return float(_sidecar(segment).get("audio_shift", 0.0))
    except (ValueError, TypeError):
        logger.warning("%s: ignoring an unreadable audio shift", segment.name)
        return 0.0


Route = tuple[str, Any, int, int, int]  # kind, input stream, 2·num, 2·den, offset


def _segment_packets(path: Path, shift: float) -> Iterator[tuple[Route, int, Any]]:
    """Every usable packet of a segment with its time in the output's time
    base (audio shifted by ``shift`` seconds), up to any damage at its end.

    The first video and the first audio stream are used. Ticks are computed
    in integers: round(dts · ratio) + shift = floor((2·dts·n + d) / 2d) + shift.
    """
    with av.open(str(path)) as source:
        routes: dict[int, Route] = {}
        for stream in source.streams:
            kind = str(stream.type)
            if kind not in ("video", "audio") or \
                    any(route[0] == kind for route in routes.values()):
                continue
            ratio = Fraction(stream.time_base or MS_TIME_BASE) / OUTPUT_TIME_BASES[kind]
            shift_ticks = round(shift / OUTPUT_TIME_BASES[kind]) if kind == "audio" else 0
            routes[stream.index] = (kind, stream, 2 * ratio.numerator, 2 * ratio.denominator,
                                    ratio.denominator + 2 * ratio.denominator * shift_ticks)
        try:
            for packet in source.demux():
                route = routes.get(packet.stream_index)
                dts = packet.dts
                if route is None or dts is None or packet.size == 0:
                    continue
                ticks = (dts * route[2] + route[4]) // route[3]
                if ticks >= 0:
                    yield route, ticks, packet
        except (av.error.FFmpegError, EOFError) as exc:
            # A segment cut short by a crash ends with a partial cluster.
            logger.info("%s: read up to the damage (%s)", path.name, exc)


def _stage_audio(paths: list[Path]) -> list[tuple[int, bytes]]:
    """The stage's Opus packets on the lecture's timeline (48 kHz ticks)."""
    packets: list[tuple[int, bytes]] = []
    for path in paths:
        try:
            for route, ticks, packet in _segment_packets(path, _audio_shift(path)):
                if route[0] == "audio":
                    packets.append((ticks, bytes(packet)))
        except (av.error.FFmpegError, OSError) as exc:
            logger.warning("%s: unreadable, its sound is not mixed in (%s)", path.name, exc)
    packets.sort(key=lambda entry: entry[0])
    return packets


@dataclass
class _Stretch:
    start: int  # ticks of the first stage packet
    end: int  # ticks just after the last one
    first: int  # index of the first stage packet


def _stretches(packets: list[tuple[int, bytes]]) -> list[_Stretch]:
    """Where the stage has sound: runs of packets without a gap over STAGE_GAP."""
    stretches: list[_Stretch] = []
    for index, (ticks, _) in enumerate(packets):
        if stretches and ticks - stretches[-1].end <= STAGE_GAP:
            stretches[-1].end = max(stretches[-1].end, ticks + OPUS_FRAME)
        else:
            stretches.append(_Stretch(ticks, ticks + OPUS_FRAME, index))
    return stretches


def _pcm(decoder: Any, resampler: Any, data: bytes) -> Any:
    """One Opus packet decoded to float32 stereo, shape (2, samples)."""
    planes = []
    try:
        for frame in decoder.decode(av.Packet(data)):
            if frame.format.name == "fltp" and frame.layout.name == "stereo":
                planes.append(frame.to_ndarray())  # what Opus decodes to: as it is
                continue
            for converted in resampler.resample(frame):
                planes.append(converted.to_ndarray())
    except av.error.FFmpegError as exc:
        logger.debug("undecodable Opus packet skipped (%s)", exc)
    if not planes:
        return np.zeros((2, 0), dtype=np.float32)
    return np.concatenate(planes, axis=1) if len(planes) > 1 else planes[0]


def _opus_decoder() -> tuple[Any, Any]:
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate = AUDIO_RATE
    decoder.layout = "stereo"
    return decoder, av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)


class _StageSound:
    """The stage's sound of one stretch, decoded as the program asks for it."""

    def __init__(self, packets: list[tuple[int, bytes]], stretch: _Stretch) -> None:
        self._packets = packets
        self._next = stretch.first
        self._end = stretch.end
        self._decoder, self._resampler = _opus_decoder()
        self._buffer = np.zeros((2, 0), dtype=np.float32)
        self._start = stretch.start  # ticks of the buffer's first sample

    def add_into(self, start: int, pcm: Any) -> None:
        """Add the stage's samples for [start, start + n) to ``pcm`` (2 × n)."""
        count = pcm.shape[1]
        end = start + count
        packets = self._packets
        while self._next < len(packets) and packets[self._next][0] < end and \
                packets[self._next][0] < self._end:
            ticks, data = packets[self._next]
            self._next += 1
            decoded = _pcm(self._decoder, self._resampler, data)
            buffered_end = self._start + self._buffer.shape[1]
            if ticks > buffered_end:  # a gap in the stage's sound: silence
                gap = np.zeros((2, ticks - buffered_end), dtype=np.float32)
                self._buffer = np.concatenate((self._buffer, gap, decoded), axis=1)
            else:  # overlapping (rounded) timestamps: keep what is there
                self._buffer = np.concatenate(
                    (self._buffer, decoded[:, buffered_end - ticks:]), axis=1)
        # Add the overlap of the buffer and [start, end).
        lo = max(start, self._start)
        hi = min(end, self._start + self._buffer.shape[1])
        if hi > lo:
            pcm[:, lo - start:hi - start] += self._buffer[:, lo - self._start:hi - self._start]
        # Forget what lies before this window.
        if start > self._start:
            drop = min(start - self._start, self._buffer.shape[1])
            self._buffer = self._buffer[:, drop:]
            self._start += drop


class _Mixer:
    """Mixes the stage's sound into the program's audio, stretch by stretch.

    ``take`` is given every program audio packet in time order; it returns
    False for one to copy as it is, or True when it took it to mix (the mixed
    packets come out through ``emit``, with their ticks). The encoder starts
    again at each stretch and after a gap in the program's audio, so the
    mixed packets keep the program's timing.

    Sample-exact: a player plays every packet's 960 samples one after the
    other, so the mixed packets must decode to exactly the samples of the
    packets they replace, or everything after drifts. Opus encodes with a
    lookahead of ``ENCODER_DELAY`` samples; a run is therefore fed from
    ``OPUS_FRAME - ENCODER_DELAY`` samples before its start (the program's
    own sound there), which makes the encoder's first packet a copy of the
    packet before the run: it is dropped, and the others fall exactly on the
    run's 20 ms frames. Packets past the run's end (the encoder's flush) are
    dropped too.
    """

    def __init__(self, stage: list[tuple[int, bytes]],
                 emit: Callable[[int, Any], None]) -> None:
        self._stage = stage
        self._stretches = _stretches(stage)
        self._index = 0
        self._emit = emit
        self._preroll: deque[bytes] = deque(maxlen=PREROLL)
        self._encoder: Any = None
        self._decoder: Any = None
        self._resampler: Any = None
        self._sound: _StageSound | None = None
        self._pending = np.zeros((2, 0), dtype=np.float32)
        self._pending_at = 0  # ticks of the first pending sample
        self._run_start = 0  # ticks where the current run of mixed packets starts
        self._expected = 0  # ticks where the next program packet should start
        self.mixed = 0  # samples mixed

    @property
    def stretches(self) -> int:
        return len(self._stretches)

    def take(self, ticks: int, packet: Any) -> bool:
        stretches = self._stretches
        while self._index < len(stretches) and stretches[self._index].end <= ticks:
            self._close()
            self._index += 1
        if self._index >= len(stretches) or ticks + OPUS_FRAME <= stretches[self._index].start:
            self._close()
            if self._index < len(stretches) and \
                    stretches[self._index].start - ticks <= (PREROLL + 1) * OPUS_FRAME:
                self._preroll.append(bytes(packet))
            return False
        if self._encoder is not None and abs(ticks - self._expected) > CONTIGUOUS:
            self._close(keep_stretch=True)  # a gap in the program's audio
        if self._encoder is None:
            self._open(ticks)
        assert self._sound is not None
        pcm = _pcm(self._decoder, self._resampler, bytes(packet))
        if pcm.shape[1] == 0:
            return True  # an undecodable packet: dropped, like a lost one
        self._sound.add_into(self._expected, pcm)
        np.clip(pcm, -1.0, 1.0, out=pcm)
        self._expected += pcm.shape[1]
        self.mixed += pcm.shape[1]
        self._pending = np.concatenate((self._pending, pcm), axis=1)
        while self._pending.shape[1] >= OPUS_FRAME:
            self._encode(self._pending[:, :OPUS_FRAME])
            self._pending = self._pending[:, OPUS_FRAME:]
            self._pending_at += OPUS_FRAME
        return True

    def close(self) -> None:
        """The end of the program's audio."""
        self._close()

    def _open(self, ticks: int) -> None:
        self._decoder, self._resampler = _opus_decoder()
        before = [np.zeros((2, OPUS_FRAME), dtype=np.float32)]
        for data in self._preroll:  # settle the decoder on what came just before
            before.append(_pcm(self._decoder, self._resampler, data))
        self._preroll.clear()
        lead = OPUS_FRAME - ENCODER_DELAY
        prefix = np.concatenate(before, axis=1)[:, -lead:]
        if self._sound is None:
            self._sound = _StageSound(self._stage, self._stretches[self._index])
        encoder: Any = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = AUDIO_RATE
        encoder.layout = "stereo"
        encoder.format = "flt"  # libopus takes interleaved samples
        encoder.bit_rate = MIX_BITRATE
        encoder.options = {"compression_level": str(MIX_COMPLEXITY)}
        encoder.time_base = Fraction(1, AUDIO_RATE)
        encoder.open()
        self._encoder = encoder
        self._run_start = ticks
        self._expected = ticks
        self._pending = np.array(prefix, dtype=np.float32)
        self._pending_at = ticks - lead

    def _encode(self, samples: Any) -> None:
        interleaved = np.ascontiguousarray(samples.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pending_at
        frame.time_base = Fraction(1, AUDIO_RATE)
        for packet in self._encoder.encode(frame):
            self._put(packet)

    def _put(self, packet: Any) -> None:
        ticks = int(packet.pts)
        if self._run_start <= ticks < self._expected:
            self._emit(ticks, packet)

    def _close(self, keep_stretch: bool = False) -> None:
        if self._encoder is not None:
            if self._pending.shape[1]:
                self._encode(self._pending)
            for packet in self._encoder.encode(None):
                self._put(packet)
            self._encoder = None
            self._decoder = self._resampler = None
        self._pending = np.zeros((2, 0), dtype=np.float32)
        if not keep_stretch:
            self._sound = None


def _probe(segment: Path) -> tuple[Any, Any] | None:
    """(video stream, audio stream) parameters of a segment, or None if unreadable."""
    try:
        with av.open(str(segment)) as container:
            video = next((s for s in container.streams.video), None)
            audio = next((s for s in container.streams.audio), None)
            if video is None:
                return None
            return video.codec_context.name, audio is not None
    except (av.error.FFmpegError, OSError) as exc:
        logger.warning("%s: unreadable, skipped (%s)", segment.name, exc)
        return None


def _readable(paths: list[Path], codec: str | None) -> tuple[list[Path], str | None]:
    """The segments that can be read and carry ``codec`` (the first one's if None)."""
    usable = []
    for path in paths:
        probed = _probe(path)
        if probed is None:
            continue
        name, _ = probed
        if codec is None:
            codec = name
        if name != codec:
            logger.warning("%s: %s in a %s recording, skipped", path.name, name, codec)
            continue
        usable.append(path)
    return usable, codec


class _Output:
    """A file being written: output streams made from the first input stream of
    each kind, and every track's timestamps forced strictly increasing."""

    def __init__(self, path: Path) -> None:
        mp4 = path.name.endswith(".mp4.partial")
        options = {"movflags": "+faststart"} if mp4 else {"cues_to_front": "1"}
        self.container: Any = av.open(str(path), "w", format="mp4" if mp4 else "webm",
                                      options=options)
        self.streams: dict[str, Any] = {}
        self.last: dict[str, int] = {}

    def add_streams(self, segments: list[Path]) -> None:
        """One output stream per kind, from the first segment that has it.

        All before the first packet: a muxer takes no new stream once it has
        written its header."""
        for path in segments:
            if len(self.streams) == 2:
                return
            try:
                with av.open(str(path)) as source:
                    for stream in source.streams:
                        kind = str(stream.type)
                        if kind in ("video", "audio") and kind not in self.streams:
                            out = self.container.add_stream_from_template(stream)
                            out.time_base = OUTPUT_TIME_BASES[kind]
                            self.streams[kind] = out
                            self.last[kind] = -1
            except (av.error.FFmpegError, OSError) as exc:
                logger.warning("%s: unreadable (%s)", path.name, exc)

    def put(self, kind: str, ticks: int, packet: Any) -> None:
        previous = self.last[kind]
        if ticks <= previous:
            ticks = previous + 1
        self.last[kind] = ticks
        packet.stream = self.streams[kind]
        packet.time_base = OUTPUT_TIME_BASES[kind]
        packet.pts = packet.dts = ticks
        packet.duration = 0
        self.container.mux(packet)

    def close(self) -> None:
        self.container.close()


def finish(item_dir: Path, progress: Progress | None = None) -> FinishResult:
    """Join the segments of ``item_dir/parts`` into the item's lecture file
    (with the stage's sound mixed in), and the stage's turns into its own."""
    report = progress or (lambda share: None)
    segments, codec = _readable(segment_paths(item_dir), None)
    if codec is None:
        raise FinishError("nothing was recorded (no readable segment with video)")
    if codec not in MEDIA_NAMES:
        raise FinishError(f"cannot finish a {codec} recording")
    stage_segments, _ = _readable(stage_paths(item_dir), codec)
    media_name = MEDIA_NAMES[codec]
    target = item_dir / media_name
    partial = item_dir / (media_name + ".partial")
    total = sum(path.stat().st_size for path in segments + stage_segments) or 1
    done_before = 0
    output = _Output(partial)
    mixer: _Mixer | None = None
    try:
        output.add_streams(segments)
        stage_sound = _stage_audio(stage_segments)
        if stage_sound:
            mixer = _Mixer(stage_sound, lambda ticks, packet: output.put("audio", ticks, packet))
        for path in segments:
            reported = time.monotonic()
            for route, ticks, packet in _segment_packets(path, _audio_shift(path)):
                kind = route[0]
                if kind == "audio" and mixer is not None and mixer.take(ticks, packet):
                    continue
                position = packet.pos
                output.put(kind, ticks, packet)
                if position and position > 0 and time.monotonic() - reported > 0.5:
                    reported = time.monotonic()
                    report(0.8 * (done_before + position) / total)
            done_before += path.stat().st_size
            report(0.8 * done_before / total)
        if mixer is not None:
            mixer.close()
        if "video" not in output.streams:
            raise FinishError("nothing was recorded (no video packets)")
    finally:
        output.close()
    os.replace(partial, target)
    report(0.85)
    turns: list[dict[str, Any]] = []
    stage_name: str | None = None
    if stage_segments:
        stage_name = STAGE_NAMES[codec]
        turns = _write_stage(stage_segments, item_dir / stage_name)
        if not turns:
            stage_name = None
    report(0.95)
    result = describe(item_dir, media_name)
    result.segments = len(segments)
    result.poster = make_poster(target, item_dir / POSTER_NAME, result.duration)
    result.stage_file = stage_name
    result.stage = turns
    result.mixed_seconds = round(mixer.mixed / AUDIO_RATE, 3) if mixer is not None else 0.0
    result.digests = item_digests(item_dir, (media_name, POSTER_NAME, stage_name))
    report(1.0)
    return result


def _write_stage(segments: list[Path], target: Path) -> list[dict[str, Any]]:
    """The stage's turns, one after another, into ``target``; their list."""
    partial = target.with_name(target.name + ".partial")
    output = _Output(partial)
    turns: list[dict[str, Any]] = []
    offset = 0.0  # seconds into the stage file where the next turn goes
    try:
        output.add_streams(segments)
        for path in segments:
            shift = _audio_shift(path)
            # The turn starts at its first picture (the segment's first keyframe).
            first = next((ticks for route, ticks, _ in _segment_packets(path, shift)
                          if route[0] == "video"), None)
            if first is None:
                continue
            at = float(first * OUTPUT_TIME_BASES["video"])
            end = at
            for route, ticks, packet in _segment_packets(path, shift):
                kind = route[0]
                seconds = float(ticks * OUTPUT_TIME_BASES[kind])
                if seconds < at:
                    continue  # sound from before the turn's first picture
                output.put(kind, round((seconds - at + offset) / OUTPUT_TIME_BASES[kind]),
                           packet)
                end = max(end, seconds)
            turns.append({"at": round(at, 3), "offset": round(offset, 3),
                          "duration": round(end - at, 3),
                          "source": _sidecar(path).get("source")})
            offset += end - at + TURN_GAP
    finally:
        output.close()
    if not turns or "video" not in output.streams:
        partial.unlink(missing_ok=True)
        return []
    os.replace(partial, target)
    return turns


def describe(item_dir: Path, media_name: str) -> FinishResult:
    """The archive's facts about a lecture file."""
    path = item_dir / media_name
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = (container.duration or 0) / av.time_base
        return FinishResult(
            media_file=media_name,
            duration=round(duration, 3),
            size=path.stat().st_size,
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
            width=video.codec_context.width,
            height=video.codec_context.height,
            poster=(item_dir / POSTER_NAME).exists(),
            segments=0,
        )


def make_poster(media: Path, poster: Path, duration: float) -> bool:
    """A JPEG of the first picture from a tenth into the lecture (at most 60 s in)."""
    at = min(duration * POSTER_AT, 60.0)
    try:
        with av.open(str(media)) as container:
            stream = container.streams.video[0]
            if at > 0:
                container.seek(int(at * av.time_base), backward=True)
            for frame in container.decode(stream):
                width = min(POSTER_WIDTH, frame.width)
                height = max(2, round(frame.height * width / frame.width / 2) * 2)
                picture = frame.reformat(width=width, height=height, format="yuvj420p")
                encoder: Any = av.CodecContext.create("mjpeg", "w")
                encoder.width, encoder.height = width, height
                encoder.pix_fmt = "yuvj420p"
                encoder.time_base = Fraction(1, 25)
                packets = list(encoder.encode(picture)) + list(encoder.encode(None))
                tmp = poster.with_suffix(".jpg.partial")
                tmp.write_bytes(b"".join(bytes(p) for p in packets))
                os.replace(tmp, poster)
                return True
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        logger.warning("%s: no poster (%s)", media.name, exc)
    return False


def remove_parts(item_dir: Path) -> None:
    shutil.rmtree(item_dir / "parts", ignore_errors=True)


def write_result(item_dir: Path, result: FinishResult) -> None:
    """``finished.json``, durably, before the parts it was made from go."""
    partial = item_dir / (RESULT_NAME + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(asdict(result), handle, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, item_dir / RESULT_NAME)


def finished_before(item_dir: Path) -> FinishResult | None:
    """The result of a finishing that completed (its parts are gone) but was
    never stored; None when there is none, or parts to finish from again."""
    if segment_paths(item_dir):
        return None
    try:
        result = FinishResult(**json.loads((item_dir / RESULT_NAME).read_text("utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return result if (item_dir / result.media_file).is_file() else None


def _die_with_parent() -> None:
    """A server killed while its child finishes takes the child with it: the
    next start finishes the item again from its parts, and two finishings of
    one item never write the same file at once."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: an orphan finishes on its own
    if os.environ.get(PARENT_VARIABLE, str(os.getppid())) != str(os.getppid()):
        sys.exit(1)  # the parent was gone before the call (we were re-parented)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m recordings.finish ITEM_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.nice(5)  # the relay in the parent comes first

    def progress(share: float) -> None:
        print(json.dumps({"progress": round(share, 3)}), flush=True)

    item_dir = Path(args[0])
    _die_with_parent()
    try:
        result = finished_before(item_dir) or finish(item_dir, progress)
    except FinishError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    except (av.error.FFmpegError, OSError) as exc:
        print(json.dumps({"error": f"remuxing failed: {exc}"}), flush=True)
        return 1
    write_result(item_dir, result)
    remove_parts(item_dir)
    print(json.dumps({"result": asdict(result)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
