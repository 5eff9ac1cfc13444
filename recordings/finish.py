"""Finishing: a recording's segments become one seekable lecture file.

The segments (Matroska, written as the lecture went, perhaps cut short by a
crash) are remuxed, never transcoded, into one file: MP4 with the index at
the front for H.264, WebM with the cues at the front for VP8. Audio is shifted
by the correction a segment's sidecar names; every track's timestamps stay
strictly increasing across segments; a truncated tail is read up to its last
whole cluster. Then a poster (one decoded picture, JPEG) and the facts the
archive lists (duration, size, codecs, picture size) are taken from the result.

Run as ``python -m recordings.finish ITEM_DIR``: the server starts it as a
child process so a long remux neither blocks the relay's event loop nor takes
the server down if a damaged file crashes the demuxer. It prints one JSON
object per line: ``{"progress": 0.42}`` as it goes, then ``{"result": {...}}``
or ``{"error": "..."}`` (exit status 1).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

logger = logging.getLogger(__name__)

MEDIA_NAMES = {"h264": "lecture.mp4", "vp8": "lecture.webm"}
POSTER_NAME = "poster.jpg"
POSTER_WIDTH = 640
POSTER_AT = 0.1  # share of the duration the poster is taken from (at most 60 s in)
MS_TIME_BASE = Fraction(1, 1000)  # Matroska's
OUTPUT_TIME_BASES = {"video": Fraction(1, 90_000), "audio": Fraction(1, 48_000)}

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


def segment_paths(item_dir: Path) -> list[Path]:
    return sorted((item_dir / "parts").glob("seg-*.mkv"))


def _audio_shift(segment: Path) -> float:
    sidecar = segment.with_suffix(".json")
    try:
        return float(json.loads(sidecar.read_text())["audio_shift"])
    except FileNotFoundError:
        return 0.0
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: ignoring unreadable sidecar (%s)", sidecar, exc)
        return 0.0


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


def finish(item_dir: Path, progress: Progress | None = None) -> FinishResult:
    """Join the segments of ``item_dir/parts`` into the item's lecture file."""
    report = progress or (lambda share: None)
    segments = []
    codec = None
    for path in segment_paths(item_dir):
        probed = _probe(path)
        if probed is None:
            continue
        name, _ = probed
        if codec is None:
            codec = name
        if name != codec:
            logger.warning("%s: %s in a %s recording, skipped", path.name, name, codec)
            continue
        segments.append(path)
    if codec is None:
        raise FinishError("nothing was recorded (no readable segment with video)")
    if codec not in MEDIA_NAMES:
        raise FinishError(f"cannot finish a {codec} recording")
    media_name = MEDIA_NAMES[codec]
    target = item_dir / media_name
    partial = item_dir / (media_name + ".partial")
    total = sum(path.stat().st_size for path in segments) or 1
    done_before = 0
    options = ({"movflags": "+faststart"} if media_name.endswith(".mp4")
               else {"cues_to_front": "1"})
    container_format = "mp4" if media_name.endswith(".mp4") else "webm"
    with av.open(str(partial), "w", format=container_format, options=options) as output:
        out_streams: dict[str, Any] = {}
        last: dict[str, int] = {}
        for path in segments:
            shift = _audio_shift(path)
            with av.open(str(path)) as source:
                # Per input stream: (kind, output stream, numerator, denominator,
                # offset) so that output ticks = (dts * num + offset) // den in
                # integers (no Fraction arithmetic per packet).
                routes: dict[int, tuple[str, Any, int, int, int]] = {}
                for stream in source.streams:
                    kind = str(stream.type)
                    if kind not in ("video", "audio") or \
                            any(route[0] == kind for route in routes.values()):
                        continue
                    if kind not in out_streams:
                        template = output.add_stream_from_template(stream)
                        template.time_base = OUTPUT_TIME_BASES[kind]
                        out_streams[kind] = template
                        last[kind] = -1
                    ratio = Fraction(stream.time_base or MS_TIME_BASE) / OUTPUT_TIME_BASES[kind]
                    shift_ticks = round(shift / OUTPUT_TIME_BASES[kind]) if kind == "audio" else 0
                    # round(dts * ratio) + shift, as floor((2·dts·n + d) / 2d) + shift
                    routes[stream.index] = (kind, out_streams[kind], 2 * ratio.numerator,
                                            2 * ratio.denominator,
                                            ratio.denominator + 2 * ratio.denominator * shift_ticks)
                reported = time.monotonic()
                try:
                    for packet in source.demux():
                        route = routes.get(packet.stream_index)
                        dts = packet.dts
                        if route is None or dts is None or packet.size == 0:
                            continue
                        kind, out_stream, numerator, denominator, offset = route
                        ticks = (dts * numerator + offset) // denominator
                        if ticks < 0:
                            continue
                        previous = last[kind]
                        if ticks <= previous:
                            ticks = previous + 1
                        last[kind] = ticks
                        packet.stream = out_stream
                        packet.time_base = OUTPUT_TIME_BASES[kind]
                        packet.pts = packet.dts = ticks
                        packet.duration = 0
                        output.mux(packet)
                        position = packet.pos
                        if position and position > 0 and time.monotonic() - reported > 0.5:
                            reported = time.monotonic()
                            report(0.9 * (done_before + position) / total)
                except (av.error.FFmpegError, EOFError) as exc:
                    # A segment cut short by a crash ends with a partial cluster.
                    logger.info("%s: read up to the damage (%s)", path.name, exc)
            done_before += path.stat().st_size
            report(0.9 * done_before / total)
        if "video" not in out_streams:
            raise FinishError("nothing was recorded (no video packets)")
    os.replace(partial, target)
    report(0.95)
    result = describe(item_dir, media_name)
    result.segments = len(segments)
    result.poster = make_poster(target, item_dir / POSTER_NAME, result.duration)
    report(1.0)
    return result


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
    try:
        result = finish(item_dir, progress)
    except FinishError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    except (av.error.FFmpegError, OSError) as exc:
        print(json.dumps({"error": f"remuxing failed: {exc}"}), flush=True)
        return 1
    remove_parts(item_dir)
    print(json.dumps({"result": asdict(result)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
