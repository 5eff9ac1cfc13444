"""The recording benchmark's tables: figures side by side with their baselines."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.recording_clip import Clip
from bench.recording_live import LiveResult
from bench.recording_offline import FinishResult, InProcessResult
from bench.report import FOREIGN_CPU, _f, _table, median

TARGET_CPU = 0.2  # % of a core for recording one 1 Mbps stream
TARGET_FINISH = 10.0  # seconds to finish a 1-hour lecture


@dataclass
class CodecResult:
    codec: str
    clip: Clip | None = None
    live: LiveResult | None = None
    in_process: InProcessResult | None = None
    finish: FinishResult | None = None
    notes: list[str] = field(default_factory=list)


def _ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.{digits}f}x"


def _span(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{min(values):.{digits}f}..{max(values):.{digits}f}"


def _sd(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def _verdict(value: float | None, target: float, low: float | None = None,
             high: float | None = None) -> str:
    if value is None:
        return "not run"
    verdict = "met" if value <= target else "MISSED"
    if low is not None and high is not None and low <= target < high:
        verdict += " (inconclusive: the pairs lie on both sides of the target)"
    return verdict


# ---------------------------------------------------------------------- 1. end to end


def live_table(results: Sequence[CodecResult]) -> list[str]:
    header = [("codec", 5), ("pairs/tries", 11), ("CPU% off", 8), ("CPU% on", 7), ("on-off", 6),
              ("on/off", 6), ("on-off min..max", 15), ("sd off", 6), ("sys% off/on", 11),
              ("in kbps", 7), ("rec kbps", 8), ("other%", 6), ("limit", 9)]
    rows = []
    for result in results:
        live = result.live
        if live is None:
            continue
        off, on = live.of(False), live.of(True)
        diffs = live.differences()
        contended = [w for w in live.windows if w.foreign > FOREIGN_CPU]
        rows.append([
            live.codec, f"{len(diffs)}/{live.attempts}",
            _f(median(w.cpu for w in off), 2), _f(median(w.cpu for w in on), 2),
            _f(median(diffs), 2),
            _ratio(median(w.cpu for w in on), median(w.cpu for w in off)),
            _span(diffs), _f(_sd([w.cpu for w in off]), 2),
            f"{_f(median(w.cpu_system for w in off), 2)}/"
            f"{_f(median(w.cpu_system for w in on), 2)}",
            _f(median(w.ingress_kbps for w in live.windows), 0),
            _f(median(w.recorded_kbps for w in on), 0),
            _f(max((w.foreign for w in live.windows), default=None)),
            "CONTENDED" if contended else ("ok" if live.error is None else
                                           "interrupted" if live.error == "interrupted"
                                           else "failed"),
        ])
    return _table(header, rows)


LIVE_LEGEND = """\
CPU% = the relay process (zhixing serve, every thread: /proc/PID/task/*/schedstat) over a
  window, % of one core; off = publisher only, on = publisher + recording; median over the
  windows. pairs/tries = pairs kept / pairs measured (a contended pair is measured again).
on-off = median of the per-pair differences (= recording's cost); min..max = their spread;
  sd off = standard deviation of the off windows (the noise a difference must stand out of).
in kbps = the relay's own ingress video figure; rec kbps = what the recorder wrote (video + audio).
other% = the most other processes took of the relay's core in a window (CONTENDED > 10 %)."""


# ---------------------------------------------------------------------- 2. in process


def in_process_table(results: Sequence[CodecResult]) -> list[str]:
    header = [("codec", 5), ("no sink", 7), ("viewer", 6), ("recorder", 8),
              ("viewer+rec", 10), ("rec cost", 8), ("rec spread", 12), ("rec only", 8),
              ("rec/viewer", 10), ("start ms", 8), ("stop ms", 7), ("paced off/on", 12),
              ("on-off", 6), ("in take", 7), ("take us", 7)]
    rows = []
    for result in results:
        inproc = result.in_process
        if inproc is None or not inproc.fast["none"]:
            continue
        none, viewer = inproc.median("none"), inproc.median("viewer")
        recorder, both = inproc.median("recorder"), inproc.median("viewer+recorder")
        costs = [r - n for r, n in zip(inproc.fast["recorder"], inproc.fast["none"],
                                       strict=False)]
        only = None if both is None or viewer is None else both - viewer
        paced = inproc.paced_on_off

        def pct(value: float | None) -> str:
            return _f(None if value is None else 100 * value, 3)

        rows.append([
            inproc.codec, pct(none), pct(viewer), pct(recorder), pct(both),
            pct(median(costs)), _span([100 * c for c in costs], 3), pct(only),
            _ratio(only, None if viewer is None or none is None else viewer - none, 1),
            _f(median(inproc.start_ms), 1), _f(median(inproc.stop_ms), 1),
            f"{pct(inproc.paced_off)}/{pct(inproc.paced_on)}", pct(paced),
            pct(inproc.paced_take), _f(inproc.take_us, 1),
        ])
    return _table(header, rows)


IN_PROCESS_LEGEND = """\
Figures are % of one core for one real-time stream: CPU seconds (time.process_time) per
  second of media, in the steady state (after the first 2 s of media: the segment is open).
no sink / viewer / recorder / viewer+rec = slot.push of every frame, as fast as possible, with
  no sink, a do-nothing viewer (the slot packetizes for it), the recorder, or both; median
  over the repeats.
rec cost = recorder - no sink per repeat (what recording costs a relay with no viewers:
  muxing, writing, and the packetizing any sink triggers), median and min..max;
  rec only = viewer+rec - viewer (the recorder's own muxing and writing);
  rec/viewer = rec only over what the do-nothing viewer adds.
start ms = CPU to open a segment (the first 2 s of media, recorder - no sink); stop ms = CPU of
  recorder.stop() (trailer and cues), once per segment.
paced = at real-time pace (the relay's situation: caches cold between frames): the whole
  bench process without / with the recorder (pacing and the slot included; medians of
  3 alternating pairs), the median of their differences, and, from another run that
  times every call, the part inside recorder.take and the median CPU of one take call."""


# ---------------------------------------------------------------------- 3. finishing


def finish_table(results: Sequence[CodecResult], target_seconds: float) -> list[str]:
    header = [("codec", 5), ("tool", 6), ("runs", 4), ("lecture", 7), ("parts MB", 8),
              ("made in", 7), ("wall s", 6), ("min..max", 11), ("CPU s", 6), ("MB/s", 5),
              ("x real", 6), ("out MB", 6), ("RSS MB", 6), ("vs ffmpeg", 9),
              ("1 h est.", 8)]
    rows = []
    for result in results:
        finish = result.finish
        if finish is None or finish.synthetic is None:
            continue
        synth = finish.synthetic
        ffmpeg_wall = median(r.wall for r in finish.of("ffmpeg"))
        for tool in ("finish", "ffmpeg"):
            runs = finish.of(tool)
            if not runs:
                continue
            wall = median(r.wall for r in runs)
            assert wall is not None
            first = tool == "finish"
            rows.append([
                finish.codec if first else "", tool, str(len(runs)),
                f"{synth.media_seconds / 60:.0f} min" if first else "",
                _f(synth.bytes / 1e6, 0) if first else "",
                f"{synth.wall_seconds:.0f} s" if first else "",
                _f(wall, 2), _span([r.wall for r in runs]),
                _f(median(r.cpu for r in runs), 2), _f(synth.bytes / 1e6 / wall, 0),
                f"{synth.media_seconds / wall:.0f}x",
                _f((median(r.output_bytes for r in runs) or 0) / 1e6, 0),
                _f(median(r.peak_rss_mb for r in runs), 0),
                _ratio(wall, ffmpeg_wall, 1) if first else "1.0x",
                _f(wall * target_seconds / synth.media_seconds, 1),
            ])
    return _table(header, rows)


FINISH_LEGEND = """\
tool: finish = python -m recordings.finish ITEM_DIR, as the server runs it (a child pinned to
  the relay's core, nice +5); ffmpeg = the baseline: ffmpeg's concat demuxer with stream copy
  into the same container (index at the front), no poster, no timestamp repair.
lecture = media length of the synthetic recording (the clip looped, one publisher reconnect at
  half time: 2 segments); parts MB = its segments; made in = wall time to write them through
  Slot + Recorder with an injected clock.
wall s = median wall time of the child, min..max its spread; CPU s = the child's user + system;
MB/s = parts MB / wall s; x real = lecture length / wall s; out MB = the lecture file;
RSS MB = peak resident memory (sampled every 50 ms); 1 h est. = wall s scaled to one hour."""


# ---------------------------------------------------------------------- targets


def targets(results: Sequence[CodecResult], target_seconds: float) -> list[str]:
    lines = ["Targets (shown, not asserted):"]

    def line(what: str, target: str, value: str, verdict: str) -> None:
        lines.append(f"  {what:<40} {target:<20} {value:<26} {verdict}")

    for result in results:
        codec = result.codec
        live = result.live
        if live is not None:
            diffs = live.differences()
            value = median(diffs)
            low, high = (min(diffs), max(diffs)) if diffs else (None, None)
            line(f"recording CPU, end to end, {codec}", f"<= {TARGET_CPU} % of a core",
                 f"{_f(value, 2)} % (pairs {_span(diffs)})",
                 _verdict(value, TARGET_CPU, low, high))
        inproc = result.in_process
        if inproc is not None and inproc.fast["none"]:
            costs = [100 * (r - n) for r, n in zip(inproc.fast["recorder"], inproc.fast["none"],
                                                   strict=False)]
            value = median(costs)
            line(f"recording CPU, in process, {codec}", f"<= {TARGET_CPU} % of a core",
                 f"{_f(value, 3)} % ({_span(costs, 3)})", _verdict(value, TARGET_CPU))
            if inproc.paced_on_off is not None:
                paced = 100 * inproc.paced_on_off
                line(f"recording CPU, in process paced, {codec}",
                     f"<= {TARGET_CPU} % of a core",
                     f"{paced:.3f} % (in take {_f(100 * (inproc.paced_take or 0), 3)} %)",
                     _verdict(paced, TARGET_CPU))
        finish = result.finish
        if finish is not None and finish.synthetic is not None and finish.of("finish"):
            wall = median(r.wall for r in finish.of("finish"))
            assert wall is not None
            minutes = finish.synthetic.media_seconds / 60
            if abs(finish.synthetic.media_seconds - target_seconds) < 60:
                line(f"finishing a 1-hour lecture, {codec}", f"<= {TARGET_FINISH:.0f} s",
                     f"{wall:.2f} s ({wall / TARGET_FINISH:.2f} of target)",
                     _verdict(wall, TARGET_FINISH))
            else:
                estimate = wall * target_seconds / finish.synthetic.media_seconds
                line(f"finishing a 1-hour lecture, {codec}", f"<= {TARGET_FINISH:.0f} s",
                     f"~{estimate:.2f} s (from {minutes:.0f} min)",
                     _verdict(estimate, TARGET_FINISH) + " (estimated, scaled linearly)")
    return lines


def render(results: Sequence[CodecResult], header: Sequence[str], notes: Sequence[str],
           target_seconds: float = 3600.0) -> str:
    lines = list(header)
    if any(r.live is not None for r in results):
        lines += ["", "1. Recording CPU end to end (relay with vs without recording, one "
                  "publisher, no viewers)", *live_table(results), "", LIVE_LEGEND]
    if any(r.in_process is not None for r in results):
        lines += ["", "2. Recording CPU in process (% of one core for one real-time stream)",
                  *in_process_table(results), "", IN_PROCESS_LEGEND]
    if any(r.finish is not None for r in results):
        lines += ["", "3. Finishing a synthetic lecture", *finish_table(results, target_seconds),
                  "", FINISH_LEGEND]
    lines += ["", *targets(results, target_seconds)]
    for result in results:
        live = result.live
        if live is not None and live.pairs:
            sizes = [item["size"] / item["duration"] * 8 / 1000 for item in live.items
                     if item.get("duration")]
            lines.append(f"{result.codec} end to end: {len(live.items)} recordings finished "
                         f"by the relay ({_f(median(sizes), 0)} kbps of file per second); "
                         f"the publisher was at most {live.publisher_late_ms:.0f} ms behind "
                         f"its pace; the relay asked it for {live.keyframe_requests} "
                         "keyframes (not answered: the clip has one every 2 s).")
        for part, outcome in (("end to end", result.live), ("finishing", result.finish)):
            if outcome is not None and outcome.error:
                lines.append(f"{result.codec} {part}: stopped early: {outcome.error}")
        lines += [f"{result.codec}: {note}" for note in result.notes]
    lines += list(notes)
    return "\n".join(lines)
