"""Recording benchmark: what recording one 1 Mbps stream costs, and finishing an hour.

Run as ``.venv/bin/python -m bench.recording`` (``--quick`` for a smoke run).
Per video codec (H.264 and VP8 unless ``--codec`` says one), on a clip encoded
once (1 Mbps video at 30 fps with a keyframe every 2 s, plus 20 ms Opus
frames; ``bench.recording_clip``):

1. End to end: a real ``zhixing serve`` pinned to the first core, one
   publisher replaying the clip at real time from this process (other cores),
   no viewers; the relay's CPU over alternating windows without and with
   recording (``bench.recording_live``).
2. In process: a real ``Slot`` + ``Recorder`` fed the clip as fast as
   possible, with and without the recorder (and a do-nothing viewer), then the
   recorder at real-time pace with each ``take`` timed
   (``bench.recording_offline``).
3. Finishing: a synthetic lecture of ``--lecture-minutes`` (one hour) written
   through Slot + Recorder with an injected clock (one publisher reconnect:
   two segments), then ``python -m recordings.finish`` timed as the server
   runs it, next to ffmpeg's stream copy of the same segments.

Figures are medians over repeats, printed side by side with their baseline and
the targets (recording <= 0.2 % of a core; finishing an hour <= 10 s), never
asserted. Every process and temporary folder is removed at the end, also on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp
import psutil

from bench.measure import log
from bench.peers import loopback_only
from bench.recording_clip import (
    AUDIO_BITRATE,
    CODECS,
    FPS,
    KEYFRAME_INTERVAL,
    Clip,
    make_clip,
)
from bench.recording_live import LiveResult, measure_live
from bench.recording_offline import (
    FinishResult,
    InProcessResult,
    measure_in_process,
    synthesize,
    time_finish,
)
from bench.recording_report import CodecResult, render
from bench.relay import choose_cores
from bench.report import FOREIGN_CPU
from bench.servers import kill_leftovers

PARTS = ("live", "inproc", "finish")
FREE_NEEDED = 3 * 10**9  # bytes: an hour of parts, a finished copy, and room to spare
HOUR = 3600.0


def _disk_budget(workdir: Path, minutes: float, bitrate_kbps: float) -> tuple[float, str | None]:
    """The lecture length the free disk allows, and a note if it had to shrink."""
    free = shutil.disk_usage(workdir).free
    needed = FREE_NEEDED * (minutes * 60 / HOUR) * (bitrate_kbps / 1000)
    if free >= needed:
        return minutes, None
    scaled = max(1.0, minutes * free / needed)
    return scaled, (f"only {free / 1e9:.1f} GB free in {workdir.parent}: the synthetic lecture "
                    f"is {scaled:.0f} min instead of {minutes:.0f}; the 1-hour figure is "
                    "scaled linearly from it")


async def run(args: argparse.Namespace, cores: tuple[int | None, set[int]],
              results: list[CodecResult], notes: list[str]) -> None:
    relay_core = cores[0]
    loopback_only()
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="zhixing-bench-rec-") as tmp:
        workdir = Path(tmp)
        minutes, note = _disk_budget(workdir, args.lecture_minutes, args.bitrate)
        if note:
            log(note)
            notes.append(note)
        async with aiohttp.ClientSession() as http:
            for codec in args.codec:
                result = CodecResult(codec)
                results.append(result)
                log(f"--- {codec}: encoding the {args.width}x{args.height} clip")
                clip = result.clip = await make_clip(codec, args.width, args.height,
                                                     int(args.bitrate * 1000))
                log(f"{codec}: clip {clip.video_bitrate / 1000:.0f} kbps video + "
                    f"{clip.audio_bitrate / 1000:.0f} kbps Opus, encoded in "
                    f"{clip.encode_seconds:.1f} s of CPU")
                if "live" in args.parts:
                    result.live = LiveResult(codec)
                    log(f"{codec}: end to end, relay on core {relay_core}, {args.repeats} pairs "
                        f"of {args.duration:.0f} s windows")
                    await measure_live(clip, workdir, relay_core, http, args.repeats,
                                       args.duration, args.settle, args.retries, result.live)
                if "inproc" in args.parts:
                    result.in_process = InProcessResult(codec)
                    log(f"{codec}: in process, {args.inproc_repeats} x {args.media:.0f} s of "
                        f"media per config, then {args.paced:.0f} s paced")
                    await measure_in_process(clip, workdir, args.media, args.inproc_repeats,
                                             args.paced, result.in_process)
                if "finish" in args.parts:
                    result.finish = FinishResult(codec)
                    await _finishing(clip, workdir, relay_core, minutes, args, result.finish)


async def _finishing(clip: Clip, workdir: Path, core: int | None, minutes: float,
                     args: argparse.Namespace, result: FinishResult) -> None:
    master = workdir / f"lecture-{clip.codec.lower()}"
    try:
        log(f"{clip.codec}: writing a {minutes:.0f}-minute lecture through Slot + Recorder")
        result.synthetic = synth = await synthesize(clip, master, minutes * 60)
        log(f"{clip.codec}: {synth.media_seconds:.0f} s of lecture, {synth.segments} segments, "
            f"{synth.bytes / 1e6:.0f} MB in {synth.wall_seconds:.1f} s; finishing it "
            f"{args.finish_repeats} times (and ffmpeg as many)")
        await time_finish(clip, master, workdir, core, args.finish_repeats, result)
        for run in result.runs:
            log(f"{clip.codec}: {run.tool}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU, "
                f"{run.output_bytes / 1e6:.0f} MB")
    except asyncio.CancelledError:
        result.error = "interrupted"
        raise
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"{clip.codec}: finishing: {result.error}")
    finally:
        shutil.rmtree(master, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.recording", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def codecs(text: str) -> list[str]:
        names = [v.strip().upper() for v in text.split(",") if v.strip()]
        if not names or any(n not in CODECS for n in names):
            raise argparse.ArgumentTypeError(f"codecs are among {', '.join(CODECS)}")
        return names

    def parts(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        if not names or any(n not in PARTS for n in names):
            raise argparse.ArgumentTypeError(f"parts are among {', '.join(PARTS)}")
        return names

    def size(text: str) -> tuple[int, int]:
        width, _, height = text.partition("x")
        if not (width.isdigit() and height.isdigit()) or int(width) % 2 or int(height) % 2:
            raise argparse.ArgumentTypeError("a size is WIDTHxHEIGHT, both even")
        return int(width), int(height)

    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 5 s windows, 3 pairs, 20 s of media in process, "
                             "a 10-minute lecture")
    parser.add_argument("--codec", type=codecs, default=list(CODECS),
                        help="H264, VP8 or both, comma-separated (default H264,VP8)")
    parser.add_argument("--parts", type=parts, default=list(PARTS),
                        help="which parts to run: live, inproc, finish (default all)")
    parser.add_argument("--size", type=size, default=(1280, 720),
                        help="picture size of the clip (default 1280x720)")
    parser.add_argument("--bitrate", type=float, default=1000.0,
                        help="video bitrate of the clip, kbps (default 1000)")
    parser.add_argument("--duration", type=float, help="seconds per end-to-end window "
                        "(default 20; quick 5)")
    parser.add_argument("--repeats", type=int, help="end-to-end pairs of windows, off then on "
                        "(default 5; quick 3)")
    parser.add_argument("--settle", type=float, help="seconds between the publisher's "
                        "connection and the first window (default 5; quick 3)")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure an end-to-end pair again (up to this many times) when "
                             f"other processes took > {FOREIGN_CPU:.0f} %% of the relay's core "
                             "(default 2)")
    parser.add_argument("--media", type=float, help="seconds of media per in-process run "
                        "(default 60; quick 20)")
    parser.add_argument("--inproc-repeats", type=int, help="in-process runs per config "
                        "(default 7; quick 3)")
    parser.add_argument("--paced", type=float, help="seconds of the real-time paced in-process "
                        "run (default 20; quick 5; 0 = skip)")
    parser.add_argument("--lecture-minutes", type=float, help="length of the synthetic "
                        "lecture (default 60; quick 10)")
    parser.add_argument("--finish-repeats", type=int, default=3,
                        help="finishing runs (and ffmpeg runs) to take the median of "
                             "(default 3)")
    args = parser.parse_args(argv)
    defaults = {"duration": (20.0, 5.0), "repeats": (5, 3), "settle": (5.0, 3.0),
                "media": (60.0, 20.0), "inproc_repeats": (7, 3), "paced": (20.0, 5.0),
                "lecture_minutes": (60.0, 10.0)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.width, args.height = args.size
    if args.repeats < 1 or args.inproc_repeats < 1 or args.finish_repeats < 1:
        parser.error("repeats must be at least 1")
    return args


def _header(args: argparse.Namespace, results: list[CodecResult],
            cores: tuple[int | None, set[int]]) -> list[str]:
    clips = ", ".join(f"{r.codec} {r.clip.video_bitrate / 1000:.0f} kbps + Opus "
                      f"{r.clip.audio_bitrate / 1000:.0f} kbps" for r in results if r.clip)
    relay_core, driver_cores = cores
    return [
        f"Recording benchmark{' (quick)' if args.quick else ''}: clip {args.width}x{args.height}"
        f"@{FPS}, keyframe every {KEYFRAME_INTERVAL // FPS} s, Opus 20 ms frames "
        f"(asked {AUDIO_BITRATE // 1000} kbps); measured {clips or '-'}.",
        f"Setup: {psutil.cpu_count()} cores; relay and finishing pinned to core {relay_core}; "
        f"this process (publisher, in-process runs) on core(s) {sorted(driver_cores)}.",
    ]


def _notes(args: argparse.Namespace) -> list[str]:
    return [
        "",
        "Notes: the in-process figures include the writes to the page cache (system time); the "
        "kernel's later writeback to disk runs in its own threads and is counted nowhere. "
        "Finishing reads segments that were just written, from the page cache, as the server "
        "does right after a lecture.",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = choose_cores()
    os.sched_setaffinity(0, cores[1])  # before any thread: inherited by everything we start
    results: list[CodecResult] = []
    notes: list[str] = []
    status = 0
    try:
        asyncio.run(run(args, cores, results, notes))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; everything started has been stopped; partial figures follow")
        status = 130
    except Exception as exc:  # a bug or a broken set-up: still show what was measured
        log(f"stopped by {type(exc).__name__}: {exc}; partial figures follow")
        notes.append(f"stopped early: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        kill_leftovers()
    print(render(results, _header(args, results, cores), notes + _notes(args)), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
