"""The lower rendition's cost: one broadcast's program at 640×480@30, 1 Mbps,
pushed at real-time pace into its slot, with and without the transcoder that
makes the 360-line rendition (streaming/transcoder.py).

The same process, the same pre-encoded clip (bench.recording_clip), windows
alternating (without, with, without, with …) so that drift hits both; the
figure is the process's CPU time per second of wall clock (a share of one
core), medians of the windows. With the transcoder off no thread runs and no
frame is decoded: its cost is 0 whenever no room needs the rendition.

    .venv/bin/python -m bench.transcode [--codec VP8 H264] [--windows 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.recording_clip import Clip, make_clip
from streaming import aiortc_glue
from streaming.frames import VIDEO_CLOCK_RATE, EncodedFrame
from streaming.slot import Slot
from streaming.transcoder import Transcoder
from tests.support.fakes import FakeSource

TARGET = 0.25  # of one core, for 640×480@30 → 360 lines


async def window(clip: Clip, seconds: float, transcode: bool) -> tuple[float, int]:
    """CPU share of one core over ``seconds`` of the clip at real time; frames out."""
    program = Slot("program", clip.codec, aiortc_glue.make_packetizer)
    low = Slot("low", clip.codec, aiortc_glue.make_packetizer)
    source = FakeSource()
    program.attach(source)
    transcoder = Transcoder(program.video, low, clip.codec) if transcode else None
    if transcoder is not None:
        transcoder.start()
    frames = clip.video
    start_cpu, start = time.process_time(), time.monotonic()
    index, loops = 0, 0
    while (elapsed := time.monotonic() - start) < seconds:
        frame = frames[index % len(frames)]
        due = loops * clip.seconds + frame.seconds
        if due > elapsed:
            await asyncio.sleep(due - elapsed)
        stamp = frame.timestamp + loops * clip.seconds * VIDEO_CLOCK_RATE
        program.push(source, EncodedFrame("video", clip.codec, frame.data, stamp,
                                          VIDEO_CLOCK_RATE, frame.keyframe))
        index += 1
        if index % len(frames) == 0:
            loops += 1
    cpu = time.process_time() - start_cpu
    out = 0
    if transcoder is not None:
        transcoder.close()
        await asyncio.to_thread(transcoder.join)
        out = transcoder.frames_out
    program.close()
    low.close()
    return cpu / seconds, out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", nargs="+", default=["VP8", "H264"])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"{'codec':6} {'without':>9} {'with':>9} {'transcoder':>11} {'frames out':>11}  target")
    for codec in args.codec:
        clip = await make_clip(codec, 640, 480, 1_000_000)
        without, with_, outs = [], [], []
        for _ in range(args.windows):
            without.append((await window(clip, args.seconds, False))[0])
            share, out = await window(clip, args.seconds, True)
            with_.append(share)
            outs.append(out / args.seconds)
        base, full = statistics.median(without), statistics.median(with_)
        cost = full - base
        verdict = "met" if cost <= TARGET else "MISSED"
        print(f"{codec:6} {base:9.1%} {full:9.1%} {cost:11.1%} {statistics.median(outs):9.1f}/s"
              f"  <= {TARGET:.0%} of a core: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
