"""The lower rendition: the program's frames decoded, scaled to 360 lines and
encoded again (real PyAV codecs), pushed into the low slot."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import av
import numpy as np
import pytest

from streaming import aiortc_glue
from streaming.frames import VIDEO_CLOCK_RATE, EncodedFrame
from streaming.keyframes import is_keyframe
from streaming.slot import Slot
from streaming.transcoder import Transcoder
from tests.support.fakes import FakeSource

ENCODERS = {"VP8": ("libvpx", {"deadline": "realtime", "cpu-used": "8"}),
            "H264": ("libx264", {"preset": "ultrafast", "tune": "zerolatency"})}


def program_frames(codec: str, count: int, width: int = 640,
                   height: int = 480) -> list[EncodedFrame]:
    name, options = ENCODERS[codec]
    encoder: Any = av.CodecContext.create(name, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
    encoder.framerate = 30
    encoder.bit_rate = 1_000_000
    encoder.options = options
    frames = []
    for index in range(count):
        picture = np.zeros((height, width, 3), np.uint8)
        picture[:, (index * 8) % width:(index * 8) % width + 40] = 255  # a moving bar
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = index * 3000
        for packet in encoder.encode(frame):
            data = bytes(packet)
            frames.append(EncodedFrame("video", codec, data, int(packet.pts), VIDEO_CLOCK_RATE,
                                       is_keyframe(codec, data)))
    return frames


async def push_and_wait(program: Slot, source: FakeSource, transcoder: Transcoder,
                        frame: EncodedFrame) -> None:
    program.push(source, frame)
    for _ in range(200):
        if transcoder.backlog == 0:
            await asyncio.sleep(0)  # let the frames it made reach the slot
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the transcoder never finished a frame")


class Collect:
    wants_payloads = False

    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []

    def deliver(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_the_program_comes_out_at_360_lines_and_decodes(codec: str) -> None:
    program = Slot("program", codec, aiortc_glue.make_packetizer)
    low = Slot("low", codec, aiortc_glue.make_packetizer)
    source = FakeSource()
    program.attach(source)
    transcoder = Transcoder(program.video, low, codec)
    transcoder.start()
    sink = Collect()
    low.video.subscribe(sink)
    try:
        frames = program_frames(codec, 70)
        frames, later = frames[:60], frames[60:]
        for frame in frames:  # one at a time: this checks what comes out, not the pace
            await push_and_wait(program, source, transcoder, frame)
        for _ in range(100):
            if transcoder.frames_out >= len(frames) - 2:
                break
            await asyncio.sleep(0.05)
        assert transcoder.frames_out >= len(frames) - 2, transcoder.frames_out
        assert sink.frames[0].keyframe
        decoder: Any = av.CodecContext.create({"VP8": "vp8", "H264": "h264"}[codec], "r")
        sizes = set()
        for frame in sink.frames:
            for picture in decoder.decode(av.Packet(frame.data)):
                sizes.add((picture.width, picture.height))
        assert sizes == {(480, 360)}
        # A viewer joining asks for a keyframe: the next frame out is one.
        count = len(sink.frames)
        low.video.request_keyframe()
        for frame in later:
            await push_and_wait(program, source, transcoder, frame)
        for _ in range(50):
            if len(sink.frames) > count:
                break
            await asyncio.sleep(0.05)
        assert sink.frames[count].keyframe
    finally:
        transcoder.close()
        await asyncio.to_thread(transcoder.join)
        assert program.video.sink_count == 0 and low.source is None


async def test_behind_it_skips_to_a_keyframe_and_asks_the_program_for_one() -> None:
    program = Slot("program", "VP8", aiortc_glue.make_packetizer)
    low = Slot("low", "VP8", aiortc_glue.make_packetizer)
    source = FakeSource()
    program.attach(source)
    transcoder = Transcoder(program.video, low, "VP8")
    transcoder.start()
    try:
        asked = source.keyframe_requests
        for frame in program_frames("VP8", 60):  # all at once: far faster than real time
            program.push(source, frame)
        assert transcoder.skipped > 0
        assert transcoder.frames_in <= 16  # the first keyframe and the backlog
        await asyncio.sleep(0.5)  # past the slot's keyframe-request coalescing
        assert source.keyframe_requests > asked
    finally:
        transcoder.close()
        await asyncio.to_thread(transcoder.join)
