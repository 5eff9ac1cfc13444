"""Importing: an existing lecture video becomes an archive item's media file.

A file the library's players can play as it is — H.264 video with AAC or
Opus audio, or VP8 video with Opus or Vorbis audio — is remuxed, never
transcoded: H.264 into MP4 with the index at the front, VP8 into WebM with the
cues at the front, exactly like a finished recording. Only the first video
and the first audio stream are kept (subtitles, second audio tracks, cover
pictures and data streams are dropped). Anything else is refused with what
was found, unless transcoding was asked for: then what the players cannot
play is converted (video to H.264 with libx264, audio to AAC) into MP4, and a
stream that can stay as it is stays.

Timestamps are moved so the lecture starts at 0, each stream's decoding times
strictly increase and presentation times are kept (B-frames stay in order).

The input is read by FFmpeg's file protocol and a fixed list of demuxers
only, so a playlist or a reference movie cannot make it open another file or
a URL. The output goes to the folder the caller names (the item's, chosen by
the server), under the archive's own file names, written as ``.partial``
first; on any failure the folder is removed again. No HTTP, no SQL here.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from recordings.digests import item_digests
from recordings.finish import MEDIA_NAMES, POSTER_NAME, FinishResult, describe, make_poster

logger = logging.getLogger(__name__)

Progress = Callable[[float], None]

# Demuxers an import may use: containers of lecture videos, plus common audio
# files so that those get a "no video" answer rather than "not a media file".
# Playlist and reference formats (hls, concat, dash, image2, ...) are left out.
# Raw elementary streams (h264, hevc, m4v, mpegvideo) are left out too: they
# carry no timestamps, so B-frames could not be put back in order.
DEMUXERS = "mov,matroska,webm,avi,mpegts,mpeg,flv,asf,ogg,rm,dv,mxf,nut,ivf,wav,mp3,aac,flac,w64"
INPUT_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": DEMUXERS}

PLAYABLE_AUDIO = {"mp4": ("aac", "opus"), "webm": ("opus", "vorbis")}
PLAYABLE_PIX_FMTS = ("yuv420p", "yuvj420p")  # 8-bit 4:2:0, what every browser decodes

ENCODED_VIDEO_TIME_BASE = Fraction(1, 90_000)
X264_OPTIONS = {"preset": "veryfast", "crf": "23"}
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
AAC_FRAME_SIZE = 1024
AAC_BIT_RATES = {1: 96_000, 2: 128_000}

MAX_PENDING = 64  # packets without a dts held back (B-frame reordering is at most 16)
REPORT_STEP = 0.01  # progress is reported when it moved by at least this share


class ImportFailed(Exception):
    """The file could not be imported; the message says why."""


class NotImportable(ImportFailed):
    """The file is not a lecture video the archive can take (as it is).

    ``transcodable`` says whether transcoding would make it one.
    """

    def __init__(self, message: str, transcodable: bool = False) -> None:
        super().__init__(message)
        self.transcodable = transcodable


@dataclass(frozen=True)
class Plan:
    """What importing a file will do."""

    media_name: str  # the item's file: lecture.mp4 or lecture.webm
    video_index: int
    audio_index: int | None
    video_codec: str  # as found, e.g. "h264"
    audio_codec: str | None
    copy_video: bool  # False: transcoded to H.264
    copy_audio: bool  # False: transcoded to AAC

    @property
    def container_format(self) -> str:
        return "mp4" if self.media_name.endswith(".mp4") else "webm"

    @property
    def transcodes(self) -> bool:
        return not (self.copy_video and self.copy_audio)


# ---------------------------------------------------------------------- probing


def _regular_file(source: Path) -> Path:
    """The absolute path of an existing regular file (never a FIFO or device)."""
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise NotImportable("no such file") from None
    except OSError as exc:
        raise NotImportable(f"cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise NotImportable("not a regular file")
    # Absolute, so FFmpeg can never take a name like "http:x.mp4" for a URL.
    return Path(os.path.abspath(source))


@contextmanager
def _open_input(source: Path) -> Iterator[Any]:
    path = _regular_file(source)
    try:
        container = av.open(str(path), "r", container_options=INPUT_OPTIONS)
    except av.error.FFmpegError as exc:
        raise NotImportable(f"not a media file that can be read ({exc.strerror})") from None
    except OSError as exc:
        raise NotImportable(f"cannot read it ({exc.strerror})") from None
    try:
        yield container
    finally:
        container.close()


def _codec(stream: Any) -> str:
    context = stream.codec_context
    return str(context.codec.canonical_name) if context is not None else "unknown"


def _picture_problem(container: Any, video: Any) -> str | None:
    """Why the library's players cannot be given this H.264 or VP8 video as it is."""
    context = video.codec_context
    if _codec(video) == "h264":
        if context.format is not None and context.format.name not in PLAYABLE_PIX_FMTS:
            return f"in {context.format.name}, not 8-bit 4:2:0"
        if container.format.name == "avi" and context.has_b_frames:
            # AVI keeps the decoding order only: when pictures are shown is a guess.
            return "with B-frames in an AVI file, which does not record when pictures are shown"
    return None


def _found(container: Any, video: Any, audio: Any) -> str:
    def name(stream: Any) -> str:
        if stream.codec_context is None:
            return "(no decoder)"
        codec = stream.codec_context.codec
        return f"{codec.long_name} [{codec.canonical_name}]"

    text = f"video {name(video)}"
    if video.codec_context is not None:
        problem = _picture_problem(container, video)
        text += f" {problem}" if problem else ""
    return text + (f", audio {name(audio)}" if audio is not None else ", no audio")


def _first_picture_stream(container: Any) -> Any:
    """The first video stream that is not a cover picture."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def plan(container: Any, transcode: bool = False) -> Plan:
    """Decide how to import an opened file; raises NotImportable."""
    video = _first_picture_stream(container)
    audio = container.streams.audio[0] if container.streams.audio else None
    if video is None:
        found = f"audio {_codec(audio)}" if audio is not None else "no audio either"
        raise NotImportable(f"no video in it ({found})")
    video_codec = _codec(video)
    audio_codec = _codec(audio) if audio is not None else None
    audio_index = audio.index if audio is not None else None
    copy_video = video_codec in MEDIA_NAMES and _picture_problem(container, video) is None
    for container_format, codec in (("mp4", "h264"), ("webm", "vp8")):
        if copy_video and video_codec == codec and \
                audio_codec in (None, *PLAYABLE_AUDIO[container_format]):
            return Plan(MEDIA_NAMES[codec], video.index, audio_index, video_codec,
                        audio_codec, copy_video=True, copy_audio=True)
    if video.codec_context is None or (audio is not None and audio.codec_context is None):
        raise NotImportable(f"no decoder for it ({_found(container, video, audio)})")
    if not transcode:
        raise NotImportable(
            f"{_found(container, video, audio)}: the library plays H.264 video with AAC or "
            "Opus audio and VP8 video with Opus or Vorbis audio as they are",
            transcodable=True)
    return Plan(MEDIA_NAMES["h264"], video.index, audio_index, video_codec, audio_codec,
                copy_video=copy_video and video_codec == "h264",
                copy_audio=audio_codec in (None, *PLAYABLE_AUDIO["mp4"]))


def probe(source: Path, transcode: bool = False) -> Plan:
    """How ``source`` would be imported; raises NotImportable with the reason."""
    with _open_input(source) as container:
        return plan(container, transcode)


# ---------------------------------------------------------------------- importing


def import_file(source: Path, item_dir: Path, *, transcode: bool = False,
                progress: Progress | None = None) -> FinishResult:
    """Import ``source`` into ``item_dir``, a new item's folder (which must not exist).

    Returns the archive's facts about the result; raises ImportFailed (or
    NotImportable) with the reason, leaving no folder behind.
    """
    report = progress or (lambda share: None)
    with _open_input(source) as container:
        chosen = plan(container, transcode)
        try:
            item_dir.mkdir()  # the archive's root exists; the item's folder is new
        except OSError as exc:
            raise ImportFailed(f"cannot make the item's folder: {exc}") from exc
        try:
            target = item_dir / chosen.media_name
            partial = item_dir / (chosen.media_name + ".partial")
            _Conversion(container, chosen, partial, report).run()
            os.replace(partial, target)
            report(0.95)
            result = describe(item_dir, chosen.media_name)
            result.poster = make_poster(target, item_dir / POSTER_NAME, result.duration)
            result.digests = item_digests(item_dir, (chosen.media_name, POSTER_NAME))
        except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
            shutil.rmtree(item_dir, ignore_errors=True)
            verb = "transcoding" if chosen.transcodes else "remuxing"
            raise ImportFailed(f"{verb} failed: {exc}") from exc
        except BaseException:
            shutil.rmtree(item_dir, ignore_errors=True)
            raise
    logger.info("%s imported into %s (%s, %.1f s)", source, item_dir.name,
                "transcoded" if chosen.transcodes else "remuxed", result.duration)
    report(1.0)
    return result


@dataclass
class _Track:
    """One output stream and what has been written to it."""

    output: Any
    last_time: int | None = None  # copied: last dts; encoded: last picture pts
    packets: int = 0
    pending: list[Any] = field(default_factory=list)  # copied packets waiting for a dts


@dataclass
class _PictureClock:
    """The time of each decoded picture, as libavcodec's best-effort timestamp.

    Pictures leave the decoder in the order they are shown, but their pts is
    only as good as the container's (AVI's are guesses that go back and
    forth). The pts is trusted unless it went backwards more often than the
    decoding times did.
    """

    faulty_pts: int = 0
    faulty_dts: int = 0
    last_pts: int | None = None
    last_dts: int | None = None

    def guess(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if self.faulty_pts <= self.faulty_dts:
            return pts if pts is not None else dts
        # None (pictures flushed at the end have no dts): the caller puts the
        # picture one frame after the last.
        return dts


class _Conversion:
    """One pass over the input: copy or transcode its two streams into ``partial``."""

    def __init__(self, container: Any, chosen: Plan, partial: Path, report: Progress) -> None:
        self.input = container
        self.plan = chosen
        self.partial = partial
        self._report = report
        self._reported = 0.0
        self._size = max(os.stat(container.name).st_size, 1)
        self._duration = (container.duration or 0) / av.time_base
        self.video: Any = container.streams[chosen.video_index]
        self.audio: Any = container.streams[chosen.audio_index] \
            if chosen.audio_index is not None else None
        # The lecture starts at 0: the earlier of the two streams' first
        # presentation times becomes 0 (in seconds, exact).
        starts = [Fraction(stream.start_time) * stream.time_base
                  for stream in (self.video, self.audio)
                  if stream is not None and stream.start_time is not None]
        self.offset = min(starts) if starts else Fraction(0)
        self._seen_keyframe = False
        # AVI records no presentation times (the demuxer guesses them):
        # there the decoding times are trusted from the start.
        self._picture_clock = _PictureClock(faulty_pts=int(container.format.name == "avi"))
        self._next_audio_pts: int | None = None
        self._resampler: Any = None
        self._resampler_input: tuple[str, str, int] | None = None

    def run(self) -> None:
        options = ({"movflags": "+faststart"} if self.plan.container_format == "mp4"
                   else {"cues_to_front": "1"})
        with av.open(str(self.partial), "w", format=self.plan.container_format,
                     container_options=options) as output:
            video = _Track(self._add_video(output))
            audio = _Track(self._add_audio(output)) if self.audio is not None else None
            # Writing the header fixes each stream's time base; copied packets
            # are then retimed straight into it.
            output.start_encoding()
            streams = [s for s in (self.video, self.audio) if s is not None]
            for packet in self.input.demux(streams):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                self._progress(packet)
                if packet.stream.index == self.video.index:
                    self._video_packet(output, video, packet)
                elif audio is not None:
                    self._audio_packet(output, audio, packet)
            for track in (video, audio):
                if track is not None:
                    self._release(output, track, None)
            self._flush(output, video, audio)
            if video.packets == 0:
                raise ImportFailed("the file has no picture that could be read")
        self._report(0.9)

    # -------------------------------------------------------------- set-up

    def _add_video(self, output: Any) -> Any:
        if self.plan.copy_video:
            return output.add_stream_from_template(self.video)
        source = self.video.codec_context
        rate = self.video.average_rate or self.video.guessed_rate or Fraction(25)
        stream = output.add_stream("libx264", rate=rate, options=dict(X264_OPTIONS))
        # 4:2:0 needs even sizes.
        stream.width = max(2, source.width - source.width % 2)
        stream.height = max(2, source.height - source.height % 2)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = ENCODED_VIDEO_TIME_BASE
        if source.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = source.sample_aspect_ratio
        return stream

    def _add_audio(self, output: Any) -> Any:
        assert self.audio is not None
        if self.plan.copy_audio:
            return output.add_stream_from_template(self.audio)
        source = self.audio.codec_context
        rate = source.sample_rate if source.sample_rate in AAC_RATES else 48000
        channels = 1 if source.channels == 1 else 2
        stream = output.add_stream("aac", rate=rate)
        stream.layout = "mono" if channels == 1 else "stereo"
        stream.format = "fltp"
        stream.bit_rate = AAC_BIT_RATES[channels]
        stream.codec_context.time_base = Fraction(1, rate)
        return stream

    # -------------------------------------------------------------- packets

    def _progress(self, packet: Any) -> None:
        if packet.pos is not None and packet.pos > 0:
            share = packet.pos / self._size
        elif packet.pts is not None and packet.time_base is not None and self._duration > 0:
            share = float(packet.pts * packet.time_base - self.offset) / self._duration
        else:
            return
        share = min(max(share, 0.0), 1.0) * 0.9  # the rest is the index, facts and poster
        if share - self._reported >= REPORT_STEP:
            self._reported = share
            self._report(share)

    def _video_packet(self, output: Any, track: _Track, packet: Any) -> None:
        if self.plan.copy_video:
            # A file cut in the middle of a group of pictures starts with
            # frames that cannot be shown: start at the first keyframe.
            if not self._seen_keyframe and not packet.is_keyframe:
                return
            self._seen_keyframe = True
            self._copy(output, track, packet)
            return
        for frame in packet.decode():
            self._encode_video(output, track, frame)

    def _audio_packet(self, output: Any, track: _Track, packet: Any) -> None:
        if self.plan.copy_audio:
            self._copy(output, track, packet)
            return
        for frame in packet.decode():
            self._encode_audio(output, track, frame)

    def _copy(self, output: Any, track: _Track, packet: Any) -> None:
        """Mux a copied packet, retimed into the output stream's time base.

        A packet without a decoding time (Matroska stores none, and the
        demuxer infers it only once it has seen the reordering) waits for the
        next one that has it and is then counted back from there.
        """
        if packet.dts is None:
            track.pending.append(packet)
            if len(track.pending) > MAX_PENDING:
                self._release(output, track, None)
            return
        dts = self._ticks(packet.dts, packet.time_base, track)
        self._release(output, track, dts)
        self._write(output, track, packet, dts)

    def _release(self, output: Any, track: _Track, next_dts: int | None) -> None:
        """Write the waiting packets: back from ``next_dts``, or on from the last one."""
        waiting, track.pending = track.pending, []
        if not waiting:
            return
        steps = [self._step(packet, track) for packet in waiting]
        if next_dts is not None:
            dts = next_dts - sum(steps)
        elif track.last_time is not None:
            dts = track.last_time + steps[0]
        elif waiting[0].pts is not None:
            dts = self._ticks(waiting[0].pts, waiting[0].time_base, track)
        else:
            dts = 0  # a stream without any timestamps
        for packet, step in zip(waiting, steps, strict=True):
            self._write(output, track, packet, dts)
            dts += step

    def _write(self, output: Any, track: _Track, packet: Any, dts: int) -> None:
        # Decoding times strictly increase; a presentation time is kept
        # unless it would come before its decoding time (a damaged file).
        if track.last_time is not None and dts <= track.last_time:
            dts = track.last_time + 1
        pts = self._ticks(packet.pts, packet.time_base, track) \
            if packet.pts is not None else dts
        duration = self._step(packet, track) if packet.duration else 0
        track.last_time = dts
        packet.stream = track.output
        packet.time_base = track.output.time_base
        packet.dts = dts
        packet.pts = max(pts, dts)
        packet.duration = duration
        output.mux(packet)
        track.packets += 1

    def _ticks(self, value: int, time_base: Fraction, track: _Track) -> int:
        """A time of the input, moved to start at 0, in the output's time base."""
        out_base: Fraction = track.output.time_base
        return round((value * time_base - self.offset) / out_base)

    def _step(self, packet: Any, track: _Track) -> int:
        """A packet's duration in the output's time base (at least 1)."""
        seconds: Fraction | None = None
        if packet.duration:
            seconds = packet.duration * packet.time_base
        elif packet.stream.average_rate:
            seconds = 1 / Fraction(packet.stream.average_rate)
        if seconds is None:
            return 1
        out_base: Fraction = track.output.time_base
        return max(1, round(seconds / out_base))

    def _encode_video(self, output: Any, track: _Track, frame: Any) -> None:
        stream = track.output
        time = self._picture_time(frame)
        if time is None:
            # No time at all: one frame interval after the previous picture.
            ticks = 0 if track.last_time is None else \
                track.last_time + round(1 / (stream.codec_context.framerate
                                             * ENCODED_VIDEO_TIME_BASE))
        else:
            ticks = round((time - self.offset) / ENCODED_VIDEO_TIME_BASE)
        if track.last_time is not None and ticks <= track.last_time:
            return  # a repeated or backward time: the picture is dropped
        track.last_time = ticks
        picture = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
        picture.pts = ticks
        picture.time_base = ENCODED_VIDEO_TIME_BASE
        self._mux(output, track, stream.encode(picture))

    def _picture_time(self, frame: Any) -> Fraction | None:
        """When a decoded picture is shown, in seconds of the input."""
        best = self._picture_clock.guess(frame.pts, frame.dts)
        if best is None:
            return None
        # Frames flushed out of the decoder come without a time base.
        time_base: Fraction = frame.time_base or self.video.time_base
        return best * time_base

    def _encode_audio(self, output: Any, track: _Track, frame: Any) -> None:
        stream = track.output
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is not None and key != self._resampler_input:
            # The input's sample format or layout changed: start a new resampler.
            self._write_audio(output, track, self._resampler.resample(None))
            self._resampler = None
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format="fltp", layout=stream.layout.name, rate=stream.sample_rate,
                frame_size=AAC_FRAME_SIZE)
            self._resampler_input = key
        if self._next_audio_pts is None:
            # Audio keeps its place against the picture at its start; after
            # that its samples follow each other without gaps.
            start = 0.0
            time_base = frame.time_base or self.audio.time_base
            if frame.pts is not None and time_base is not None:
                start = float(frame.pts * time_base - self.offset)
            self._next_audio_pts = max(0, round(start * stream.sample_rate))
        self._write_audio(output, track, self._resampler.resample(frame))

    def _write_audio(self, output: Any, track: _Track, frames: list[Any]) -> None:
        stream = track.output
        for frame in frames:
            assert self._next_audio_pts is not None
            frame.pts = self._next_audio_pts
            frame.time_base = Fraction(1, stream.sample_rate)
            self._next_audio_pts += frame.samples
            self._mux(output, track, stream.encode(frame))

    def _mux(self, output: Any, track: _Track, packets: list[Any]) -> None:
        for packet in packets:
            output.mux(packet)
            track.packets += 1

    def _flush(self, output: Any, video: _Track, audio: _Track | None) -> None:
        if not self.plan.copy_video:
            for frame in self.video.codec_context.decode(None):
                self._encode_video(output, video, frame)
            self._mux(output, video, video.output.encode(None))
        if audio is not None and self.audio is not None and not self.plan.copy_audio:
            for frame in self.audio.codec_context.decode(None):
                self._encode_audio(output, audio, frame)
            if self._resampler is not None:
                self._write_audio(output, audio, self._resampler.resample(None))
            self._mux(output, audio, audio.output.encode(None))
