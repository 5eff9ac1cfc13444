"""A pre-encoded lecture clip for the recording benchmark, and its endless replay.

The recorder never decodes or encodes: what it costs depends on the encoded
frames it is given (their count and size), not on how they were made. So the
clip is encoded once (a few seconds of CPU) and replayed as often as needed,
with timestamps that keep advancing, by every part of the benchmark: the live
publisher, the in-process measurement and the synthetic hour.

The picture is a sliding gradient with a moving block and film grain that
changes every frame, so the encoder spends the bitrate it is given, as camera
noise makes it do; audio is a tone in 20 ms Opus frames, as browsers send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame, MediaKind
from streaming.keyframes import frame_size, is_keyframe

CODECS = ("H264", "VP8")
CLIP_SECONDS = 10  # a whole number of keyframe intervals and audio frames
FPS = 30
KEYFRAME_INTERVAL = 60  # frames: a keyframe every 2 s
AUDIO_FRAME = 960  # samples at 48 kHz: 20 ms
AUDIO_BITRATE = 32_000
GRAIN = 4  # amplitude of the grain added to the luma plane
GRAIN_FIELDS = 31  # distinct grain pictures, cycled (prime: no beat with the GOP)


@dataclass(frozen=True, slots=True)
class ClipFrame:
    kind: MediaKind
    data: bytes
    timestamp: int  # ticks of the track's clock rate from the clip's start
    keyframe: bool

    @property
    def seconds(self) -> float:
        rate = VIDEO_CLOCK_RATE if self.kind == "video" else AUDIO_CLOCK_RATE
        return self.timestamp / rate


@dataclass
class Clip:
    codec: str
    width: int
    height: int
    video: list[ClipFrame]
    audio: list[ClipFrame]
    seconds: int = CLIP_SECONDS
    encode_seconds: float = 0.0  # CPU spent making it

    @property
    def video_bitrate(self) -> float:
        return 8 * sum(len(f.data) for f in self.video) / self.seconds

    @property
    def audio_bitrate(self) -> float:
        return 8 * sum(len(f.data) for f in self.audio) / self.seconds

    def timeline(self) -> list[ClipFrame]:
        """Both tracks in the order they are captured (audio first on a tie)."""
        return sorted(self.video + self.audio,
                      key=lambda f: (f.seconds, f.kind == "video"))

    def replay(self, seconds: float, capture_base: float | None = None,
               start: float = 0.0) -> Iterator[tuple[float, EncodedFrame]]:
        """(media time, frame) for ``seconds`` of media, the clip looped.

        Timestamps advance across loops as one source's would. ``start`` is
        the media time to begin at (a multiple of the clip length). With
        ``capture_base``, frames carry a capture time on a sender clock (the
        time the sender reports would give them).
        """
        order = self.timeline()
        loop = int(start // self.seconds)
        while True:
            offset = loop * self.seconds
            for frame in order:
                at = offset + frame.seconds
                if at >= start + seconds:
                    return
                if at < start:
                    continue
                rate = VIDEO_CLOCK_RATE if frame.kind == "video" else AUDIO_CLOCK_RATE
                yield at, EncodedFrame(
                    frame.kind, self.codec if frame.kind == "video" else "opus", frame.data,
                    frame.timestamp + offset * rate, rate, frame.keyframe, None,
                    None if capture_base is None else capture_base + at)
            loop += 1


def _pictures(width: int, height: int, count: int) -> Iterator[av.VideoFrame]:
    rng = np.random.default_rng(1)
    grain = [rng.integers(-GRAIN, GRAIN + 1, (height, width), dtype=np.int16)
             for _ in range(GRAIN_FIELDS)]
    xs = np.arange(width, dtype=np.int16)
    chroma = np.full((height // 2) * (width // 2), 128, dtype=np.uint8).tobytes()
    block = height // 4
    for index in range(count):
        y = np.empty((height, width), dtype=np.int16)
        y[:, :] = ((xs + index * 4) % 200 + 28)[None, :]
        left = (index * 8) % (width - block)
        y[block:2 * block, left:left + block] = 230
        y += grain[index % GRAIN_FIELDS]
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(np.clip(y, 0, 255).astype(np.uint8).tobytes())
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = index * (VIDEO_CLOCK_RATE // FPS)
        frame.time_base = Fraction(1, VIDEO_CLOCK_RATE)
        yield frame


def _video_encoder(codec: str, width: int, height: int, bitrate: int) -> Any:
    encoder: Any
    if codec == "H264":
        # What a browser sends to an H.264 session: constrained baseline,
        # parameter sets in band before every IDR (no global header).
        encoder = av.CodecContext.create("libx264", "w")
        encoder.options = {
            "preset": "veryfast", "tune": "zerolatency", "profile": "baseline",
            "x264-params": (f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}:"
                            f"scenecut=0:vbv-maxrate={bitrate // 1000}:"
                            f"vbv-bufsize={bitrate // 1000}"),
        }
    else:
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.options = {
            "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
            "minrate": str(bitrate), "maxrate": str(bitrate), "bufsize": str(bitrate),
            "keyint_min": str(KEYFRAME_INTERVAL), "undershoot-pct": "100",
        }
        encoder.qmin, encoder.qmax = 2, 56
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.bit_rate = bitrate
    encoder.framerate = Fraction(FPS)
    encoder.time_base = Fraction(1, VIDEO_CLOCK_RATE)
    encoder.gop_size = KEYFRAME_INTERVAL
    encoder.thread_count = 1  # the driver has one core: libvpx's threads would spin on it
    return encoder


async def _encode_video(codec: str, width: int, height: int, bitrate: int) -> list[ClipFrame]:
    encoder = _video_encoder(codec, width, height, bitrate)
    packets: list[Any] = []
    for picture in _pictures(width, height, CLIP_SECONDS * FPS):
        packets += encoder.encode(picture)
        await asyncio.sleep(0)  # Ctrl-C stays prompt
    packets += encoder.encode(None)
    frames = []
    for packet in packets:
        data = bytes(packet)
        frames.append(ClipFrame("video", data, int(packet.pts), is_keyframe(codec, data)))
    frames.sort(key=lambda f: f.timestamp)
    if len(frames) != CLIP_SECONDS * FPS or not frames[0].keyframe:
        raise RuntimeError(f"{codec} encoder gave {len(frames)} frames "
                           f"(keyframe first: {frames[0].keyframe if frames else None})")
    if frame_size(codec, frames[0].data) != (width, height):
        raise RuntimeError(f"{codec} keyframe does not announce {width}x{height}")
    return frames


async def _encode_audio() -> list[ClipFrame]:
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = AUDIO_CLOCK_RATE
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = AUDIO_BITRATE
    encoder.time_base = Fraction(1, AUDIO_CLOCK_RATE)
    count = CLIP_SECONDS * AUDIO_CLOCK_RATE // AUDIO_FRAME
    packets: list[Any] = []
    for index in range(count):
        t = (np.arange(AUDIO_FRAME) + index * AUDIO_FRAME) / AUDIO_CLOCK_RATE
        tone = (np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16)
        pcm = np.repeat(tone, 2).reshape(1, -1)  # interleaved stereo
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_CLOCK_RATE
        frame.pts = index * AUDIO_FRAME
        frame.time_base = Fraction(1, AUDIO_CLOCK_RATE)
        packets += encoder.encode(frame)
        if index % 50 == 0:
            await asyncio.sleep(0)
    packets += encoder.encode(None)
    # The encoder's priming delay shifts its pts; a sender stamps frames 20 ms apart.
    frames = [ClipFrame("audio", bytes(p), i * AUDIO_FRAME, True)
              for i, p in enumerate(packets[:count])]
    if len(frames) != count:
        raise RuntimeError(f"the Opus encoder gave {len(frames)} of {count} frames")
    return frames


async def make_clip(codec: str, width: int, height: int, bitrate: int) -> Clip:
    """Encode the clip once (a few seconds of CPU at 1280x720)."""
    started = time.process_time()
    video = await _encode_video(codec, width, height, bitrate)
    audio = await _encode_audio()
    return Clip(codec, width, height, video, audio,
                encode_seconds=time.process_time() - started)
