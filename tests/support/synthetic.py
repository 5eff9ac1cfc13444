"""Synthetic encoded streams for recorder tests: flashes and beeps at known times.

Video: a dark picture that turns white for one frame at every flash; audio: a
1 kHz beep that starts at the same capture instant. Both are really encoded
(libx264 / libvpx, libopus), and each frame carries the timestamps a
publisher's receiver would give it: RTP-style ticks from 0 per track, the
sender's capture time (what RTCP sender reports yield) and an arrival time.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from streaming.frames import EncodedFrame

FPS = 30
SAMPLE_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms
BEEP_SECONDS = 0.1


@dataclass
class Timed:
    frame: EncodedFrame
    arrival: float  # seconds on the receiver's clock


def _video_encoder(codec: str, width: int, height: int) -> Any:
    if codec == "H264":
        encoder: Any = av.CodecContext.create("libx264", "w")
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                           "x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0"}
    else:
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "threads": "2",
                           "kf-max-dist": str(FPS),
                           "kf-min-dist": str(FPS), "lag-in-frames": "0"}
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 90_000)
    encoder.framerate = FPS
    encoder.bit_rate = 500_000
    return encoder


def flash_times(seconds: float, video_start: float, every: float = 1.0) -> list[float]:
    """Capture times (sender clock, relative to the sender's epoch) of the flashes."""
    first = video_start + 0.5
    count = int((seconds - 0.5) / every)
    return [round((first + n * every) * FPS) / FPS for n in range(count)]


def encode_video(codec: str, seconds: float, flashes: list[float], video_start: float,
                 width: int = 320, height: int = 240) -> list[tuple[int, bytes, bool, float]]:
    """(ticks, data, keyframe, capture seconds) per frame; white at the flashes."""
    encoder = _video_encoder(codec, width, height)
    flash_frames = {round((t - video_start) * FPS) for t in flashes}
    out = []
    frames = int(seconds * FPS)
    for index in range(frames + 1):
        if index < frames:
            level = 235 if index in flash_frames else 40
            picture = av.VideoFrame.from_ndarray(
                np.full((height, width, 3), level, np.uint8), format="rgb24"
            ).reformat(format="yuv420p")
            picture.pts = index * 90_000 // FPS
            packets = encoder.encode(picture)
        else:
            packets = encoder.encode(None)
        for packet in packets:
            ticks = int(packet.pts)
            out.append((ticks, bytes(packet), bool(packet.is_keyframe),
                        video_start + ticks / 90_000))
    return out


def encode_audio(seconds: float, flashes: list[float],
                 tone: float = 1000.0) -> list[tuple[int, bytes, float]]:
    """(ticks, data, capture seconds) per 20 ms Opus frame; beeps of ``tone`` Hz
    at the flashes."""
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.time_base = Fraction(1, SAMPLE_RATE)
    total = int(seconds * SAMPLE_RATE)
    t = np.arange(total) / SAMPLE_RATE
    signal = np.zeros(total)
    for start in flashes:
        window = (t >= start) & (t < start + BEEP_SECONDS)
        signal[window] = 0.5 * np.sin(2 * np.pi * tone * (t[window] - start))
    samples = (signal * 32767).astype(np.int16)
    out = []
    for offset in range(0, total - AUDIO_FRAME + 1, AUDIO_FRAME):
        chunk = av.AudioFrame.from_ndarray(samples[offset:offset + AUDIO_FRAME].reshape(1, -1),
                                           format="s16", layout="mono")
        chunk.sample_rate = SAMPLE_RATE
        chunk.pts = offset
        for packet in encoder.encode(chunk):
            out.append((int(packet.pts), bytes(packet), packet.pts / SAMPLE_RATE))
    return out


def stream(codec: str, seconds: float, *, video_start: float = 0.3,
           sender_epoch: float = 3_900_000_000.0, video_delay: float = 0.12,
           audio_delay: float = 0.02, reports_after: float = 0.0,
           width: int = 320, height: int = 240,
           tone: float = 1000.0) -> tuple[list[Timed], list[float]]:
    """Frames of both tracks in arrival order, and the flash capture times.

    The sender captures audio from 0 and video from ``video_start`` (seconds);
    each track's ticks start at 0 like a receiver's. Video arrives
    ``video_delay`` after capture, audio ``audio_delay``: aligning by arrival
    would be off by the difference; the sender's clock is exact. Capture
    times are known (sender reports) only from ``reports_after`` on.
    """
    flashes = flash_times(seconds - video_start, video_start)
    frames: list[Timed] = []
    for ticks, data, key, captured in encode_video(codec, seconds - video_start, flashes,
                                                   video_start, width, height):
        frame = EncodedFrame("video", codec, data, ticks, 90_000, key, None,
                             sender_epoch + captured if captured >= reports_after else None)
        frames.append(Timed(frame, captured + video_delay))
    for ticks, data, captured in encode_audio(seconds, flashes, tone):
        frame = EncodedFrame("audio", "opus", data, ticks, SAMPLE_RATE, True, None,
                             sender_epoch + captured if captured >= reports_after else None)
        frames.append(Timed(frame, captured + audio_delay))
    frames.sort(key=lambda timed: timed.arrival)
    return frames, flashes


def tone_levels(path: str, tone: float, window: float = 0.05) -> list[tuple[float, float]]:
    """(start seconds, amplitude of ``tone`` Hz) per ``window`` of a file's
    first audio track (first channel): where a tone can be heard."""
    samples: list[Any] = []
    first: float | None = None
    with av.open(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            if first is None and frame.pts is not None:
                first = float(frame.pts * stream.time_base)
            for converted in resampler.resample(frame):
                samples.append(converted.to_ndarray()[0])
    signal = np.concatenate(samples) if samples else np.zeros(0)
    size = int(window * SAMPLE_RATE)
    t = np.arange(size) / SAMPLE_RATE
    probe = np.exp(-2j * np.pi * tone * t)
    levels = []
    for offset in range(0, len(signal) - size + 1, size):
        amplitude = 2 * abs(np.dot(signal[offset:offset + size], probe)) / size
        levels.append(((first or 0.0) + offset / SAMPLE_RATE, float(amplitude)))
    return levels


def measure_av_offsets(path: str) -> tuple[list[float], list[float]]:
    """(flash times, beep onset times) in seconds of the media file's timeline."""
    flashes: list[float] = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            luma = frame.to_ndarray(format="gray")
            if luma.mean() > 150 and frame.pts is not None:
                flashes.append(float(frame.pts * stream.time_base))
    beeps: list[float] = []
    with av.open(path) as container:
        stream = container.streams.audio[0]
        chunks, starts = [], []
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            chunks.append(np.abs(data).max(axis=0) if data.ndim > 1 else np.abs(data))
            starts.append(float(frame.pts * stream.time_base))
        quiet_until = -1.0
        for chunk, start in zip(chunks, starts, strict=True):
            loud = np.nonzero(chunk > 0.1 * (32767 if chunk.dtype.kind == "i" else 1.0))[0]
            for index in loud:
                at = start + index / stream.codec_context.sample_rate
                if at > quiet_until:
                    beeps.append(at)
                quiet_until = at + 0.3
    return flashes, beeps


def make_lecture(path: str, seconds: float, codec: str = "H264", *, fps: int = FPS,
                 gop_seconds: float = 2.0, width: int = 320, height: int = 240,
                 audio: str | None = "opus") -> None:
    """A lecture file like the archive holds: barcoded frames (their index,
    readable by ``tests.support.media.read_barcode``) and a tone; MP4 for H.264
    (index first), WebM for VP8. No B-frames, keyframes every ``gop_seconds``."""
    from tests.support.media import barcode_frame

    options = {"movflags": "+faststart"} if codec == "H264" else {}
    with av.open(path, "w", format="mp4" if codec == "H264" else "webm",
                 options=options) as out:
        video: Any = out.add_stream("libx264" if codec == "H264" else "libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        gop = max(1, round(gop_seconds * fps))
        if codec == "H264":
            video.options = {"preset": "ultrafast", "profile": "baseline", "bf": "0",
                             "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        else:
            video.options = {"deadline": "realtime", "cpu-used": "8", "threads": "2",
                             "kf-max-dist": str(gop),
                             "kf-min-dist": str(gop), "lag-in-frames": "0"}
        video.bit_rate = 300_000
        sound: Any = None
        if audio is not None:
            sound = out.add_stream("libopus" if audio == "opus" else audio, rate=SAMPLE_RATE)
            sound.layout = "mono"
        frames = round(seconds * fps)
        for index in range(frames):
            picture = barcode_frame(index, width, height)
            picture.pts = index
            picture.time_base = Fraction(1, fps)
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        if sound is not None:
            total = int(seconds * SAMPLE_RATE)
            step = 960
            t = np.arange(total) / SAMPLE_RATE
            samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            for offset in range(0, total - step + 1, step):
                chunk = av.AudioFrame.from_ndarray(samples[offset:offset + step].reshape(1, -1),
                                                   format="s16", layout="mono")
                chunk.sample_rate = SAMPLE_RATE
                chunk.pts = offset
                chunk.time_base = Fraction(1, SAMPLE_RATE)
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
