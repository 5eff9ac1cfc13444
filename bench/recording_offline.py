"""Recording CPU in process, a synthetic lecture, and the time to finish it.

In process, a real ``Slot`` and ``Recorder`` take the pre-encoded clip with a
clock injected that follows the media time, so an hour of lecture is written
in the time the muxer needs, and every time-driven path of the recorder
(free-space checks every 5 s, segment start after a gap) runs as it would
live. Finishing is timed as the server runs it: ``python -m recordings.finish
ITEM_DIR`` in a child process, pinned to the relay's core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.recording_clip import Clip
from bench.servers import ROOT, pinned, remember
from recordings.finish import MEDIA_NAMES, segment_paths
from recordings.recorder import Recorder
from streaming.aiortc_glue import make_packetizer
from streaming.frames import EncodedFrame
from streaming.slot import Slot

CONFIGS = ("none", "viewer", "recorder", "viewer+recorder")
CAPTURE_BASE = 3_900_000_000.0  # a sender's NTP clock, seconds (any value will do)
RECONNECT_GAP = 3.0  # seconds without a publisher in the synthetic lecture
WARM_UP = 2.0  # seconds of media before the steady state (the first segment is open)
PACED_REPEATS = 3  # pairs of paced runs, without and with the recorder
YIELD_EVERY = 2000  # frames between yields to the event loop (Ctrl-C stays prompt)


class _Source:
    """A FrameSource that ignores keyframe requests (the clip has one every 2 s)."""

    def __init__(self) -> None:
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


class _NullSink:
    """A viewer that takes frames and does nothing (the slot still packetizes for it)."""

    def deliver(self, frame: EncodedFrame) -> None:
        pass


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _new_slot(codec: str, clock: Callable[[], float]) -> tuple[Slot, _Source]:
    slot = Slot("program", codec, make_packetizer, clock=clock)
    source = _Source()
    slot.attach(source)
    return slot, source


# ---------------------------------------------------------------------- CPU in process


@dataclass
class InProcessResult:
    codec: str
    media_seconds: float = 0.0
    # Per config and repeat: CPU seconds (process_time) per second of media in
    # the steady state, after WARM_UP seconds of media (the segment is open).
    fast: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CONFIGS})
    start_ms: list[float] = field(default_factory=list)  # recorder: opening its segment
    stop_ms: list[float] = field(default_factory=list)  # recorder: the trailer, closing
    # Real-time pace: CPU per wall second of the whole process, without and
    # with the recorder, and inside recorder.take alone (call by call).
    paced_seconds: float = 0.0
    paced_off: float | None = None
    paced_on: float | None = None
    paced_on_off: float | None = None  # median of (with - without) over the pairs
    paced_take: float | None = None
    take_us: float | None = None  # median CPU of one take call, microseconds
    bytes_written: int = 0

    def median(self, config: str) -> float | None:
        values = self.fast[config]
        return statistics.median(values) if values else None


@dataclass
class _Run:
    warm_up: float  # CPU seconds for the frames before WARM_UP (the segment opens)
    steady: float  # CPU seconds for the rest
    stop: float  # CPU seconds of recorder.stop()
    written: int


def _push_all(config: str, clip: Clip, frames: list[tuple[float, EncodedFrame]],
              directory: Path) -> _Run:
    """Push ``frames`` through a fresh slot as fast as the CPU goes."""
    clock = _Clock()
    slot, source = _new_slot(clip.codec, clock)
    recorder: Recorder | None = None
    push = slot.push
    started = time.process_time()
    if "viewer" in config:
        slot.video.subscribe(_NullSink(), request_keyframe=False)
        slot.audio.subscribe(_NullSink(), request_keyframe=False)
    if "recorder" in config:
        recorder = Recorder(directory, slot, clock=clock)
        recorder.start()
    split = next(i for i, (at, _) in enumerate(frames) if at >= WARM_UP)
    for at, frame in frames[:split]:
        clock.now = at
        push(source, frame)
    warmed = time.process_time()
    for at, frame in frames[split:]:
        clock.now = at
        push(source, frame)
    steady = time.process_time()
    if recorder is not None:
        recorder.stop()
    stopped = time.process_time()
    slot.close()
    written = recorder.stats.bytes if recorder is not None else 0
    shutil.rmtree(directory, ignore_errors=True)
    return _Run(warmed - started, steady - warmed, stopped - steady, written)


async def measure_in_process(clip: Clip, workdir: Path, media_seconds: float, repeats: int,
                             paced_seconds: float, result: InProcessResult) -> None:
    """Each config ``repeats`` times over ``media_seconds`` of media, as fast as
    possible; then at real-time pace for ``paced_seconds``, without and with
    the recorder."""
    frames = list(clip.replay(media_seconds, CAPTURE_BASE))
    result.media_seconds = media_seconds
    steady_seconds = media_seconds - WARM_UP
    _push_all("viewer+recorder", clip, frames[:500], workdir / "warm-up")  # imports, caches
    for repeat in range(repeats):
        # Interleaved, so that a slow moment of the machine hits every config.
        runs = {}
        for config in CONFIGS:
            runs[config] = run = _push_all(config, clip, frames, workdir / f"inproc-{repeat}")
            result.fast[config].append(run.steady / steady_seconds)
            if run.written:
                result.bytes_written = run.written
            await asyncio.sleep(0)
        result.start_ms.append(1000 * (runs["recorder"].warm_up - runs["none"].warm_up))
        result.stop_ms.append(1000 * runs["recorder"].stop)
    if paced_seconds > 0:
        # Without and with the recorder, alternately, PACED_REPEATS times: the
        # figures are the medians (one run is at the mercy of the VM).
        offs, ons = [], []
        for repeat in range(PACED_REPEATS):
            offs.append((await _paced(clip, workdir / f"paced-off-{repeat}", paced_seconds,
                                      record=False)).process)
            ons.append((await _paced(clip, workdir / f"paced-on-{repeat}", paced_seconds,
                                     record=True)).process)
        # Timing every take costs two clock reads a call: measured apart, so
        # the whole-process figures above do not carry them.
        timed = await _paced(clip, workdir / "paced-timed", paced_seconds, record=True,
                             timed=True)
        result.paced_seconds = paced_seconds
        result.paced_off, result.paced_on = statistics.median(offs), statistics.median(ons)
        result.paced_on_off = statistics.median(on - off for on, off in zip(ons, offs,
                                                                              strict=True))
        result.paced_take = timed.take
        result.take_us = timed.take_us


@dataclass
class _Paced:
    process: float  # CPU seconds of the whole process per wall second
    take: float | None  # of which inside recorder.take
    take_us: float | None


async def _paced(clip: Clip, directory: Path, seconds: float, record: bool,
                 timed: bool = False) -> _Paced:
    """The slot at real-time pace for ``seconds`` after WARM_UP, with or without
    the recorder; ``timed``: each ``take`` is timed too, what the relay pays
    with caches gone cold between frames."""
    slot, source = _new_slot(clip.codec, time.monotonic)
    recorder = Recorder(directory, slot) if record else None
    calls: list[float] = []
    timing = [False]
    if recorder is not None and not timed:
        recorder.start()
    elif recorder is not None:
        take = recorder.take

        def timed_take(kind: Any, frame: EncodedFrame) -> None:
            if not timing[0]:
                take(kind, frame)
                return
            started = time.process_time()
            take(kind, frame)
            calls.append(time.process_time() - started)

        recorder.take = timed_take  # type: ignore[method-assign]
        recorder.start()
    begin = time.monotonic()
    wall0 = cpu0 = 0.0
    try:
        for at, frame in clip.replay(WARM_UP + seconds, CAPTURE_BASE):
            if at >= WARM_UP and not timing[0]:
                timing[0] = True
                wall0, cpu0 = time.monotonic(), time.process_time()
            delay = begin + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            slot.push(source, frame)
        elapsed = time.monotonic() - wall0
        process = time.process_time() - cpu0
    finally:
        if recorder is not None:
            recorder.stop()
        slot.close()
        shutil.rmtree(directory, ignore_errors=True)
    return _Paced(process / elapsed, sum(calls) / elapsed if calls else None,
                  1e6 * statistics.median(calls) if calls else None)


# ---------------------------------------------------------------------- the synthetic lecture


@dataclass
class Synthetic:
    media_seconds: float
    wall_seconds: float
    cpu_seconds: float
    segments: int
    bytes: int


async def synthesize(clip: Clip, item_dir: Path, seconds: float) -> Synthetic:
    """``seconds`` of lecture in ``item_dir/parts``: the publisher drops out at half
    time and a new one takes over after ``RECONNECT_GAP`` s (two segments)."""
    clock = _Clock()
    slot, first = _new_slot(clip.codec, clock)
    recorder = Recorder(item_dir, slot, clock=clock)
    recorder.start()
    wall0, cpu0 = time.monotonic(), time.process_time()
    half = round(seconds / 2 / clip.seconds) * clip.seconds
    count = 0
    try:
        for at, frame in clip.replay(half, CAPTURE_BASE):
            clock.now = at
            slot.push(first, frame)
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        slot.detach(first)
        second = _Source()
        resumed = half + RECONNECT_GAP
        clock.now = resumed
        slot.attach(second)  # a new source: its own timeline from 0, its own sender clock
        for at, frame in clip.replay(seconds - resumed, CAPTURE_BASE + 7200):
            clock.now = resumed + at
            slot.push(second, frame)
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    finally:
        recorder.stop()
        slot.close()
    if recorder.stats.failure:
        raise RuntimeError(f"the recorder failed: {recorder.stats.failure}")
    return Synthetic(
        media_seconds=recorder.stats.duration, wall_seconds=time.monotonic() - wall0,
        cpu_seconds=time.process_time() - cpu0, segments=recorder.stats.segments,
        bytes=sum(p.stat().st_size for p in segment_paths(item_dir)))


# ---------------------------------------------------------------------- finishing


@dataclass
class FinishRun:
    tool: str  # "finish" or "ffmpeg"
    wall: float
    cpu: float  # user + system of the child
    peak_rss_mb: float | None  # sampled every 50 ms
    output_bytes: int
    duration: float | None  # of the output, seconds (finish's own result)
    progress_lines: int = 0


@dataclass
class FinishResult:
    codec: str
    synthetic: Synthetic | None = None
    runs: list[FinishRun] = field(default_factory=list)
    error: str | None = None

    def of(self, tool: str) -> list[FinishRun]:
        return [r for r in self.runs if r.tool == tool]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _timed(command: list[str], core: int | None) -> tuple[float, float, float | None,
                                                                bytes, bytes]:
    """Run ``command`` pinned to ``core``: (wall s, CPU s, peak RSS MB, stdout, stderr)."""
    cpu0 = _children_cpu()
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *pinned(command, core), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    remember(proc.pid)
    peak = 0.0
    try:
        watched = psutil.Process(proc.pid)
        communicate = asyncio.ensure_future(proc.communicate())
        while not communicate.done():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, watched.memory_info().rss / 2**20)
            await asyncio.wait({communicate}, timeout=0.05)
        out, err = communicate.result()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {proc.returncode}: "
                           f"{(out + err).decode(errors='replace')[-400:]}")
    return wall, _children_cpu() - cpu0, peak or None, out, err


def _link_parts(master: Path, run_dir: Path, stage: bool = True) -> None:
    """A fresh item folder whose parts are hard links to the master's
    (finishing only reads them, then removes its own links); ``stage=False``
    leaves the stage's segments out."""
    (run_dir / "parts").mkdir(parents=True)
    for path in (master / "parts").iterdir():
        if stage or not path.name.startswith("stage-"):
            os.link(path, run_dir / "parts" / path.name)


async def time_finish(clip: Clip, master: Path, workdir: Path, core: int | None,
                      repeats: int, result: FinishResult) -> None:
    """``repeats`` runs of the project's finishing, then of ffmpeg's stream copy."""
    media_name = MEDIA_NAMES[clip.codec.lower()]
    for repeat in range(repeats):
        run_dir = workdir / f"finish-{repeat}"
        _link_parts(master, run_dir)
        wall, cpu, peak, out, _ = await _timed(
            [sys.executable, "-m", "recordings.finish", str(run_dir)], core)
        lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        final = lines[-1] if lines else {}
        if "result" not in final:
            raise RuntimeError(f"finishing gave no result: {final}")
        if (run_dir / "parts").exists():
            raise RuntimeError("finishing left the parts behind")
        result.runs.append(FinishRun("finish", wall, cpu, peak,
                                     int(final["result"]["size"]),
                                     float(final["result"]["duration"]),
                                     sum("progress" in line for line in lines)))
        shutil.rmtree(run_dir)
        await asyncio.sleep(0)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return
    listing = workdir / "concat.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in segment_paths(master)))
    muxer = (["-movflags", "+faststart"] if media_name.endswith(".mp4")
             else ["-cues_to_front", "1"])
    for repeat in range(repeats):
        output = workdir / f"ffmpeg-{repeat}-{media_name}"
        wall, cpu, peak, _, _ = await _timed(
            [ffmpeg, "-nostdin", "-v", "error", "-f", "concat", "-safe", "0", "-i",
             str(listing), "-c", "copy", *muxer, str(output)], core)
        result.runs.append(FinishRun("ffmpeg", wall, cpu, peak, output.stat().st_size, None))
        output.unlink()
