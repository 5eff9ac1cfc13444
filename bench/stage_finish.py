"""What the discussion (研讨) costs at finishing: a lecture with rooms on stage
against the same lecture without them.

Run as ``.venv/bin/python -m bench.stage_finish`` (``--quick`` for a smoke
run). A lecture of ``--minutes`` is written through Slot + Recorder with an
injected clock (as ``bench.recording`` does), and beside it a stage of
``--turns`` rooms' turns adding up to ``--stage-minutes`` (the same clip, in
the stage slot, recorded by the stage recorder on the lecture's timeline).
Then ``python -m recordings.finish`` runs, as the server runs it, on the
lecture alone (the baseline: a pure remux) and on the lecture with its stage
(the stage's sound mixed into the lecture's audio over the turns, its
pictures into the stage file). Medians over ``--repeats``, side by side, with
the extra seconds per minute of stage sound. Nothing is asserted; the
temporary folder is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.measure import log
from bench.recording_clip import Clip, make_clip
from bench.recording_offline import (
    CAPTURE_BASE,
    _Clock,
    _link_parts,
    _new_slot,
    _Source,
    _timed,
    synthesize,
)
from recordings.recorder import STAGE_PATTERN, Recorder


@dataclass
class Run:
    wall: float
    cpu: float
    peak_rss_mb: float | None
    mixed_seconds: float
    turns: int


async def add_stage(clip: Clip, item_dir: Path, lecture_seconds: float, turns: int,
                    stage_seconds: float) -> int:
    """``turns`` turns of ``stage_seconds`` in all, spread over the lecture's
    second half, recorded by a stage recorder on the lecture's timeline.
    Returns the number of stage segments written."""
    clock = _Clock()
    slot, nobody = _new_slot(clip.codec, clock)
    slot.detach(nobody)
    # The lecture's recorder started its clock at its first keyframe, at 0 on
    # the injected clock (``synthesize`` starts there).
    recorder = Recorder(item_dir, slot, clock=clock, pattern=STAGE_PATTERN,
                        origin=lambda: 0.0, label=lambda source: "bench-room")
    recorder.start()
    length = stage_seconds / turns
    gap = (lecture_seconds / 2 - stage_seconds) / turns
    if gap < 1:
        raise SystemExit("the stage does not fit in the lecture's second half")
    at = lecture_seconds / 2
    try:
        for turn in range(turns):
            room = _Source()
            slot.attach(room)  # a new room: its own timeline and sender clock
            for media, frame in clip.replay(length, CAPTURE_BASE + 10_000 * (turn + 1)):
                clock.now = at + media
                slot.push(room, frame)
            slot.detach(room)
            at += length + gap
            await asyncio.sleep(0)
    finally:
        recorder.stop()
        slot.close()
    if recorder.stats.failure:
        raise RuntimeError(f"the stage recorder failed: {recorder.stats.failure}")
    return recorder.stats.segments


async def time_finishing(master: Path, workdir: Path, with_stage: bool,
                         repeats: int) -> list[Run]:
    runs = []
    for repeat in range(repeats):
        run_dir = workdir / f"{'stage' if with_stage else 'plain'}-{repeat}"
        _link_parts(master, run_dir, stage=with_stage)
        wall, cpu, peak, out, _ = await _timed(
            [sys.executable, "-m", "recordings.finish", str(run_dir)], None)
        final = json.loads(out.decode().strip().splitlines()[-1])
        if "result" not in final:
            raise RuntimeError(f"finishing gave no result: {final}")
        result = final["result"]
        runs.append(Run(wall, cpu, peak, float(result["mixed_seconds"]), len(result["stage"])))
        shutil.rmtree(run_dir)
    return runs


async def run(args: argparse.Namespace, workdir: Path) -> None:
    print(f"{'codec':>5}  {'finishing':<22} {'wall s':>7} {'CPU s':>7} {'RSS MB':>7} "
          f"{'mixed s':>8} {'turns':>5} {'x plain':>8}")
    for codec in args.codec:
        log(f"{codec}: encoding the clip")
        clip = await make_clip(codec, 1280, 720, 1_000_000)
        master = workdir / f"lecture-{codec.lower()}"
        lecture = args.minutes * 60
        log(f"{codec}: writing a {args.minutes:.0f}-minute lecture and "
            f"{args.stage_minutes:.0f} minutes of stage in {args.turns} turns")
        await synthesize(clip, master, lecture)
        await add_stage(clip, master, lecture, args.turns, args.stage_minutes * 60)
        plain = await time_finishing(master, workdir, False, args.repeats)
        staged = await time_finishing(master, workdir, True, args.repeats)
        base = statistics.median(r.wall for r in plain)
        for name, runs in ((f"lecture only ({args.minutes:.0f} min)", plain),
                           (f"+ stage ({args.stage_minutes:.0f} min)", staged)):
            wall = statistics.median(r.wall for r in runs)
            cpu = statistics.median(r.cpu for r in runs)
            peaks = [r.peak_rss_mb for r in runs if r.peak_rss_mb]
            peak = f"{max(peaks):7.0f}" if peaks else f"{'-':>7}"
            print(f"{codec:>5}  {name:<22} {wall:7.2f} {cpu:7.2f} {peak} "
                  f"{runs[0].mixed_seconds:8.1f} {runs[0].turns:5d} {wall / base:7.2f}x")
        extra = statistics.median(r.wall for r in staged) - base
        mixed = staged[0].mixed_seconds / 60 or 1
        print(f"{codec:>5}  the stage costs {extra:.1f} s more: {extra / mixed:.2f} s per minute "
              f"of stage sound mixed")
        shutil.rmtree(master, ignore_errors=True)
    print("\nwall s / CPU s = medians of `python -m recordings.finish` (a child, as the server "
          "runs it, nice +5);\nmixed s = seconds of audio decoded, mixed and encoded again "
          "(the rest is copied); x plain = wall time over the lecture without its stage.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", nargs="+", default=["H264", "VP8"], choices=["H264", "VP8"])
    parser.add_argument("--minutes", type=float, default=60.0, help="the lecture's length")
    parser.add_argument("--stage-minutes", type=float, default=10.0,
                        help="the rooms' time on stage, in all")
    parser.add_argument("--turns", type=int, default=10, help="rooms' turns on stage")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 6 minutes with 1 minute of stage, once")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.stage_minutes, args.turns, args.repeats = 6.0, 1.0, 3, 1
    workdir = Path(tempfile.mkdtemp(prefix="zhixing-stage-bench-"))
    try:
        asyncio.run(run(args, workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
