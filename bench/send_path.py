"""The relay's send paths side by side: native (streaming/rtp_send.c) against Python.

Run as root: ``unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m
bench.send_path'``. The same ``zhixing serve`` runs once with ``--send-path
python`` and once with ``--send-path native``, pinned to the first core, with
the publisher and the counting viewers of :mod:`bench.relay` on the other(s);
this is repeated ``--rounds`` times, the order of the two paths swapped each
round, so that drift on a shared machine hits both. Per path and N: CPU per
viewer (marginal: over the publisher alone), medians over the rounds, the
ratio native / python, every viewer's fps and the packets the viewers missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp

from bench.measure import Bench, log
from bench.peers import loopback_only
from bench.relay import choose_cores
from bench.report import TARGET_FPS, RelayResult, Row, median
from bench.servers import ZhixingServer, kill_leftovers
from bench.source import SOURCES
from bench.viewers import VIEWER_KINDS

PATHS = ("python", "native")


class SendPathServer(ZhixingServer):
    """``zhixing serve --send-path PATH``."""

    def __init__(self, workdir: Path, core: int | None, path: str, round_: int) -> None:
        self.name = f"{path}-{round_}"
        self.path = path
        super().__init__(workdir, core)

    def command(self) -> list[str]:
        return [*super().command(), "--send-path", self.path]


async def run(args: argparse.Namespace, cores: tuple[int | None, set[int]],
              results: dict[str, list[RelayResult]]) -> None:
    relay_core, loadgen_cores = cores
    loopback_only()
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="zhixing-bench-") as tmp:
        workdir = Path(tmp)
        with (workdir / "viewers.log").open("wb") as viewer_log:
            async with aiohttp.ClientSession() as http:
                for round_ in range(args.rounds):
                    order = PATHS if round_ % 2 == 0 else PATHS[::-1]
                    for path in order:
                        log(f"--- round {round_ + 1}: --send-path {path} on core {relay_core}, "
                            f"load generator on core(s) {sorted(loadgen_cores)}")
                        server = SendPathServer(workdir, relay_core, path, round_ + 1)
                        bench = Bench(server, args, http, viewer_log, cores)
                        results[path].append(bench.result)
                        await bench.run()


def _rows(results: list[RelayResult], n: int) -> list[Row]:
    return [r.rows[n] for r in results if n in r.rows]


def _per_frame(result: RelayResult, row: Row) -> float | None:
    """µs of relay CPU (over the publisher alone) per video frame a viewer got.

    Unlike CPU per viewer this stays a cost when the relay saturates: a
    relay that delivers fewer frames then does less work for its CPU.
    """
    delivered = sum(row.fps)
    if result.baseline is None or not delivered:
        return None
    return (row.cpu - result.baseline.cpu) * 1e4 / delivered


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def render(results: dict[str, list[RelayResult]], args: argparse.Namespace,
           cores: tuple[int | None, set[int]]) -> str:
    lines = [
        "CPU per viewer: % of one core, (CPU at N - CPU with the publisher alone) / N; "
        f"median of {args.rounds} rounds (each round's figure in brackets)",
        "",
        f"{'N':>5}  {'path':<7} {'CPU %':>7} {'%/viewer':>9}  {'rounds':<22} "
        f"{'µs/frame':>8} {'fps min':>7} {'fps med':>7} {'lost':>6} {'sys %':>6}  limit",
    ]
    ratios: list[str] = []
    for n in args.viewers:
        per_path: dict[str, float | None] = {}
        per_frame: dict[str, float | None] = {}
        saturated = False
        for path in PATHS:
            rows = _rows(results[path], n)
            per_viewer = median(r.cpu_per_viewer for r in rows)
            per_path[path] = per_viewer
            per_frame[path] = median(_per_frame(result, result.rows[n])
                                     for result in results[path] if n in result.rows)
            saturated |= any((r.fps_min or 0.0) < TARGET_FPS for r in rows)
            rounds = ", ".join(_fmt(r.cpu_per_viewer) for r in rows)
            fps_min = min((r.fps_min for r in rows if r.fps_min is not None), default=None)
            limits = ",".join(sorted({r.limit for r in rows})) or "-"
            lines.append(
                f"{n:>5}  {path:<7} {_fmt(median(r.cpu for r in rows), '.1f'):>7} "
                f"{_fmt(per_viewer):>9}  [{rounds}]".ljust(56)
                + f"{_fmt(per_frame[path], '.0f'):>8} {_fmt(fps_min, '.1f'):>7} "
                f"{_fmt(median(r.fps_median for r in rows), '.1f'):>7} "
                f"{sum(r.lost for r in rows):>6} "
                f"{_fmt(median(r.cpu_system for r in rows), '.1f'):>6}  {limits}")
        python, native = per_path["python"], per_path["native"]
        if saturated:
            python, native = per_frame["python"], per_frame["native"]
            if python and native:
                ratios.append(f"N={n}: SATURATED (a viewer got < {TARGET_FPS} fps): CPU per "
                              f"viewer is capped; per frame delivered, native / python = "
                              f"{native / python:.2f}")
        elif python and native:
            ratios.append(f"N={n}: native / python = {native / python:.2f} "
                          f"({100 * (1 - native / python):.0f} % less CPU per viewer); "
                          f"per frame delivered {per_frame['native'] or 0:.0f} / "
                          f"{per_frame['python'] or 0:.0f} µs")
    lines += ["", *ratios, ""]
    for path in PATHS:
        for result in results[path]:
            for n, row in result.rows.items():
                if row.fps_min is not None and row.fps_min < TARGET_FPS:
                    lines.append(f"{result.name} N={n}: slowest viewer {row.fps_min:.1f} fps "
                                 f"(< {TARGET_FPS})")
                for error in row.errors:
                    lines.append(f"{result.name} N={n}: {error}")
            if result.error:
                lines.append(f"{result.name}: stopped early: {result.error}")
    relay_core, loadgen_cores = cores
    lines += [
        "",
        "limit: ok = the relay's core was its own and the load generator kept up; LOADGEN = "
        "the load generator was the limit; CONTENDED = other processes took a share of a "
        "core of ours; SOURCE = the publisher sent < 29 fps. lost: video packets the counting "
        "viewers missed (all rounds). sys %: the relay's kernel time. µs/frame: relay CPU "
        "over the publisher alone per video frame a viewer received (audio's cost included).",
        f"Setup: relay pinned to core {relay_core}; load generator on core(s) "
        f"{sorted(loadgen_cores)}; {args.duration:.0f} s windows; {args.viewer_kind} "
        f"counting viewers, {args.per_process} per process; VP8 640x480@30 at "
        f"{args.bitrate:.0f} kbps + Opus.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.send_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="100,500",
                        help="numbers of viewers N, comma-separated (default 100,500)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of both paths, the order swapped each round (default 2)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per measurement window (default 10)")
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds for the publisher's bitrate to settle (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds between adding viewers and measuring (default 3)")
    parser.add_argument("--viewer-kind", choices=VIEWER_KINDS, default="raw")
    parser.add_argument("--source", choices=SOURCES, default="fixed")
    parser.add_argument("--bitrate", type=float, default=1000.0,
                        help="video bitrate of the publisher, kbps (default 1000)")
    parser.add_argument("--grain", type=int, default=3)
    parser.add_argument("--per-process", type=int, default=50,
                        help="counting viewers per load-generator process (default 50)")
    parser.add_argument("--nice", type=int, default=5)
    parser.add_argument("--retries", type=int, default=1,
                        help="measure a contended window again, up to this many times")
    args = parser.parse_args(argv)
    args.viewers = sorted({int(v) for v in args.viewers.split(",") if v.strip()})
    # What bench.measure.Bench reads besides: no late joiners, never "saturated".
    args.joins, args.join_gap = 0, 0.0
    args.saturated_cpu, args.saturated_fps = float("inf"), 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = choose_cores()
    os.sched_setaffinity(0, cores[1])
    results: dict[str, list[RelayResult]] = {path: [] for path in PATHS}
    status = 0
    try:
        asyncio.run(run(args, cores, results))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; partial figures follow")
        status = 130
    finally:
        kill_leftovers()
    print(render(results, args, cores), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
