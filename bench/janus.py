"""This relay against Janus (Debian's 1.1.2, VideoRoom, two event loops), same run.

Run as root: ``.venv/bin/python -m bench.janus [--viewers 100,500] [--rounds 2]``.
It re-runs itself in a network namespace of its own (``unshare -n``) where a
veth pair carries a private address: Janus never offers a loopback address as
an ICE candidate, so every peer of both relays (publisher, viewers, relay's
``--ice-host``) uses that address, and both pay the same kernel path. Nothing
outside the namespace is touched; Janus reads a configuration written to a
temporary folder and is stopped after each run.

Each round runs the zhixing relay, then Janus (then the next round again in
that order), so that drift on the shared machine hits both. Per relay run:
the publisher alone (baseline); with ``--rtcp-case``, 10 plain counting
viewers, then 10 browser-like ones instead (RR + REMB each second, NACK on an
induced 1 % loss, PLI for a loss not repaired), to show what their RTCP
costs; then N counting viewers for each N of ``--viewers``. The relay is
pinned to the first core, the load generator to the others; CPU is the relay
process's own (psutil) over windows of ``--duration`` seconds. The table gives
medians over rounds; CPU per viewer is above the same run's baseline.

``--zx-arg`` passes an argument on to ``zhixing serve`` (repeat it), e.g.
``--zx-arg=--send-path --zx-arg=native``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil

from bench.janus_api import publish
from bench.measure import busy_seconds, log
from bench.peers import loopback_only
from bench.relay import choose_cores
from bench.report import median
from bench.servers import (
    JANUS_FEED,
    JANUS_ROOM,
    JanusServer,
    RelayServer,
    ZhixingServer,
    kill_leftovers,
)
from bench.source import Source
from bench.viewers import ViewerPool

RELAYS = ("zhixing", "janus")
SHORT = {"zhixing": "zx", "janus": "janus"}
ADDRESS = "10.98.0.1"  # the veth address every peer uses, inside the namespace only
NAMESPACE_MARK = "BENCH_JANUS_NETNS"
FLOW_TIMEOUT = 60.0
RTCP_VIEWERS = 10
PLAIN, BROWSER = "10 plain", "10 browser-like"
MIN_FPS = 29.5  # every viewer, for a row's ratio to count
MIN_SOURCE_FPS = 29.0
FOREIGN_CPU = 10.0  # % of the relay's core taken by other processes


@dataclass
class Window:
    cpu: float  # % of one core, the relay process
    foreign: float  # % of the relay's core used by others
    source_fps: float
    fps: list[float] = field(default_factory=list)
    lost: int = 0
    connected: int = 0
    nacks: int = 0
    plis: int = 0
    repaired: int = 0


Results = dict[tuple[str, str], list[Window]]  # (relay, case) -> one window per round


def viewer_kind(relay: str, browser: bool) -> str:
    if relay == "janus":
        return "janus-browser" if browser else "janus"
    return "browser" if browser else "raw"


class RelayRun:
    """One relay, started, published into, measured at every case, stopped."""

    def __init__(self, name: str, args: argparse.Namespace, http: aiohttp.ClientSession,
                 workdir: Path, core: int | None, viewer_log: IO[bytes]) -> None:
        self.name, self.args, self.http, self.core = name, args, http, core
        self.viewer_log = viewer_log
        self.server: RelayServer = (
            ZhixingServer(workdir, core, ice_host=ADDRESS, extra_args=args.zx_arg)
            if name == "zhixing" else JanusServer(workdir, core, ice_host=ADDRESS))
        self.source: Source | None = None

    async def run(self, results: Results) -> None:
        args = self.args
        try:
            await self.server.start(self.http)
            endpoint = await self.server.open_session(self.http)
            negotiator = None
            if isinstance(self.server, JanusServer):
                api = self.server.api

                async def negotiator(pc: Any) -> object:
                    return await publish(self.http, api, JANUS_ROOM, JANUS_FEED, pc)

            self.source = await Source.start(self.http, endpoint, "fixed",
                                             int(args.bitrate * 1000), args.grain, negotiator)
            deadline = time.monotonic() + 20
            while not self.source.connected:
                if time.monotonic() > deadline:
                    raise RuntimeError("the publisher did not connect")
                await asyncio.sleep(0.1)
            await asyncio.sleep(args.settle)
            self._keep(results, "0", await self._window(None))
            url = endpoint.whep_url if self.name == "zhixing" else endpoint.base
            if args.rtcp_case:
                for case, browser in ((PLAIN, False), (BROWSER, True)):
                    pool = ViewerPool(viewer_kind(self.name, browser), url, endpoint.view_token,
                                      args.per_process, args.nice, self.viewer_log)
                    try:
                        await self._grow(pool, RTCP_VIEWERS)
                        self._keep(results, case, await self._window(pool))
                    finally:
                        await pool.close()
            pool = ViewerPool(viewer_kind(self.name, False), url, endpoint.view_token,
                              args.per_process, args.nice, self.viewer_log)
            try:
                for n in args.viewers:
                    await self._grow(pool, n)
                    self._keep(results, str(n), await self._window(pool))
            finally:
                await pool.close()
        finally:
            if self.source is not None:
                with contextlib.suppress(Exception):
                    await self.source.close()
            await self.server.stop()

    def _keep(self, results: Results, case: str, window: Window) -> None:
        results.setdefault((self.name, case), []).append(window)
        fps = f"fps min {min(window.fps):.1f} median {median(window.fps):.1f}" \
            if window.fps else ""
        log(f"{self.name}: {case}: cpu {window.cpu:.1f}% (others on its core "
            f"{window.foreign:.0f}%) {fps} lost {window.lost} source {window.source_fps:.1f} fps"
            + (f" nacks {window.nacks} plis {window.plis} repaired {window.repaired}"
               if window.nacks else ""))

    async def _grow(self, pool: ViewerPool, n: int) -> None:
        log(f"{self.name}: connecting viewers up to {n}")
        errors = await pool.grow_to(n)
        if errors:
            log(f"{self.name}: connection errors: {errors}")
        deadline = time.monotonic() + FLOW_TIMEOUT
        while time.monotonic() < deadline:
            if all(c > 0 for snap in await pool.snapshot() for c in snap["video"]):
                break
            await asyncio.sleep(0.5)
        else:
            log(f"{self.name}: not every viewer receives video after {FLOW_TIMEOUT:.0f} s")
        await asyncio.sleep(self.args.warmup)

    async def _window(self, pool: ViewerPool | None) -> Window:
        assert self.source is not None and self.server.process is not None
        snaps0 = await pool.snapshot() if pool else []
        frames0 = self.source.frames_sent
        wall0, cores0 = time.monotonic(), busy_seconds()
        cpu0 = sum(self.server.cpu_seconds())
        await asyncio.sleep(self.args.duration)
        cpu1 = sum(self.server.cpu_seconds())
        wall1, cores1 = time.monotonic(), busy_seconds()
        snaps1 = await pool.snapshot() if pool else []
        elapsed = wall1 - wall0
        cpu = 100 * (cpu1 - cpu0) / elapsed
        foreign = 0.0
        if self.core is not None:
            foreign = max(0.0, 100 * (cores1[self.core] - cores0[self.core]) / elapsed - cpu)
        window = Window(cpu, foreign, (self.source.frames_sent - frames0) / elapsed)
        for before, after in zip(snaps0, snaps1, strict=True):
            span = after["t"] - before["t"]
            window.fps += [(b - a) / span for a, b in zip(before["video"], after["video"],
                                                          strict=True)]
            window.connected += after["connected"]
            for key in ("lost", "nacks", "plis", "repaired"):
                setattr(window, key, getattr(window, key) + after[key] - before[key])
        return window


def render(results: Results, args: argparse.Namespace) -> str:
    cases = ["0", *([PLAIN, BROWSER] if args.rtcp_case else []), *map(str, args.viewers)]
    rounds = args.rounds
    lines = [f"{'viewers':>16}  {'CPU% zx':>8} {'CPU% janus':>10}  {'%/v zx':>7} "
             f"{'%/v janus':>9} {'zx/janus':>8}  {'fps zx min/med':>15} "
             f"{'fps janus min/med':>17}  {'lost zx':>7} {'lost janus':>10}  limit"]

    def per_viewer(relay: str, case: str) -> list[float]:
        base, here = results.get((relay, "0"), []), results.get((relay, case), [])
        n = RTCP_VIEWERS if case in (PLAIN, BROWSER) else int(case)
        return [(w.cpu - b.cpu) / n for w, b in zip(here, base, strict=False)]

    for case in cases:
        row = [f"{case:>16} "]
        cpu = {r: median(w.cpu for w in results.get((r, case), [])) for r in RELAYS}
        row += [f"{_num(cpu['zhixing'], 1):>8}", f"{_num(cpu['janus'], 1):>10} "]
        if case == "0":
            row += [" " * 7, " " * 9, " " * 8 + " "]
        else:
            pv = {r: median(per_viewer(r, case)) for r in RELAYS}
            ratio = (pv["zhixing"] / pv["janus"]) if pv["zhixing"] is not None and pv["janus"] \
                else None
            row += [f"{_num(pv['zhixing'], 3):>7}", f"{_num(pv['janus'], 3):>9}",
                    f"{_num(ratio, 2):>8} "]
        for r in RELAYS:
            fps = [f for w in results.get((r, case), []) for f in w.fps]
            text = f"{min(fps):.1f}/{median(fps):.1f}" if fps else "-"
            row.append(f"{text:>{15 if r == 'zhixing' else 17}}")
        row[-1] += " "
        for r in RELAYS:
            lost = sum(w.lost for w in results.get((r, case), []))
            row.append(f"{lost:>{7 if r == 'zhixing' else 10}}")
        row.append(_limits(results, case))
        lines.append(" ".join(row))
    if args.rtcp_case:
        lines += ["", "What browser-like viewers' RTCP costs the relay (10 of them against "
                  "10 plain counting viewers, same run):"]
        for r in RELAYS:
            plain = [w.cpu for w in results.get((r, PLAIN), [])]
            browser = results.get((r, BROWSER), [])
            extra = median(b.cpu - p for b, p in zip(browser, plain, strict=False))
            rtcp = " ".join(f"{key} {sum(getattr(w, key) for w in browser)}"
                            for key in ("nacks", "plis", "repaired"))
            lines.append(f"  {SHORT[r]:>5}: +{_num(extra, 2)} % of a core for 10 viewers "
                         f"({_num(extra / RTCP_VIEWERS if extra is not None else None, 3)} "
                         f"%/viewer); over {rounds} round(s): {rtcp}, unrepaired "
                         f"{sum(w.lost for w in browser)}")
            if sum(w.nacks for w in browser) and not sum(w.repaired for w in browser):
                lines.append(f"         {SHORT[r]} retransmitted nothing that was NACKed: its "
                             "figure leaves out the retransmissions a repairing relay pays for")
    contended = [f"{SHORT[r]} {c} round {i + 1}: {w.foreign:.0f} %"
                 for (r, c), ws in results.items() for i, w in enumerate(ws)
                 if w.foreign > FOREIGN_CPU]
    lines += ["", f"Medians of {rounds} alternating round(s) (zx, janus, zx, janus ...), "
              f"{args.duration:.0f} s windows; %/v = CPU per viewer above the same run's "
              "publisher-alone baseline; fps: every counting viewer of every round; lost: "
              "video packets the counting viewers never got (browser-like: not repaired); "
              f"limit: ok = every viewer >= {MIN_FPS} fps, no loss, the relay's core its own "
              f"(others < {FOREIGN_CPU:.0f} %) and the source at full rate in every round.",
              f"Source: 640x480@30 VP8 at {args.bitrate:.0f} kbps (libvpx) + Opus; Janus "
              "1.1.2 (Debian), VideoRoom, HTTP API, two event loops; zhixing serve"
              f" {' '.join(args.zx_arg) or '(defaults)'}.",
              "Other processes on the relay's core (> 10 %): "
              + ("; ".join(contended) if contended else "none")]
    return "\n".join(lines)


def _limits(results: Results, case: str) -> str:
    """Why a row's ratio cannot be read as the relays' own: "ok" or the reasons."""
    reasons = []
    for r in RELAYS:
        windows = results.get((r, case), [])
        fps = [f for w in windows for f in w.fps]
        if fps and min(fps) < MIN_FPS:
            reasons.append(f"{SHORT[r]} fps<{MIN_FPS}")
        if case not in ("0", BROWSER) and any(w.lost > 0 for w in windows):
            reasons.append(f"{SHORT[r]} loss")
        if any(w.foreign > FOREIGN_CPU for w in windows):
            reasons.append(f"{SHORT[r]} core shared")
        if any(w.source_fps < MIN_SOURCE_FPS for w in windows):
            reasons.append(f"{SHORT[r]} source slow")
    return ", ".join(reasons) or "ok"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


async def run(args: argparse.Namespace, core: int | None, report: list[str]) -> None:
    loopback_only(ADDRESS)
    os.environ["BENCH_ICE_HOST"] = ADDRESS  # the viewer workers offer it too
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="zhixing-bench-janus-") as tmp:
        workdir = Path(tmp)
        try:
            with (workdir / "viewers.log").open("wb") as viewer_log:
                async with aiohttp.ClientSession() as http:
                    for round_ in range(args.rounds):
                        for name in args.relays:
                            log(f"--- round {round_ + 1}: {name}")
                            relay_dir = workdir / f"{name}-{round_}"
                            relay_dir.mkdir()
                            await RelayRun(name, args, http, relay_dir, core, viewer_log
                                           ).run(results)
        finally:
            report.append(render(results, args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.janus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def numbers(text: str) -> list[int]:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
        if not values or values[0] < 1:
            raise argparse.ArgumentTypeError("viewer counts must be positive integers")
        return values

    parser.add_argument("--viewers", type=numbers, default=[100, 500],
                        help="numbers of counting viewers N, comma-separated (default 100,500)")
    parser.add_argument("--relays", type=lambda t: [r for r in RELAYS if r in t.split(",")],
                        default=list(RELAYS), help="which relays (default zhixing,janus)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of both relays (default 2)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per measurement window (default 10)")
    parser.add_argument("--rtcp-case", action=argparse.BooleanOptionalAction, default=True,
                        help="measure 10 browser-like viewers against 10 plain ones "
                             "(default on)")
    parser.add_argument("--zx-arg", action="append", default=[], metavar="ARG",
                        help="an argument for 'zhixing serve' (repeat; use --zx-arg=--flag)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after the publisher connects (default 5)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds between viewers flowing and measuring (default 3)")
    parser.add_argument("--bitrate", type=float, default=1000.0,
                        help="video bitrate of the source, kbps (default 1000)")
    parser.add_argument("--grain", type=int, default=3, help="film grain of the picture")
    parser.add_argument("--per-process", type=int, default=50,
                        help="counting viewers per load-generator process (default 50)")
    parser.add_argument("--nice", type=int, default=5,
                        help="niceness of the viewer processes (default 5)")
    return parser.parse_args(argv)


def _in_namespace(argv: list[str]) -> int:
    """Run this module again in a new network namespace with a veth address."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        sys.exit("bench.janus needs root and unshare (util-linux): it makes a network "
                 "namespace of its own")
    script = (f"ip link set lo up && ip link add zxbench0 type veth peer name zxbench1 && "
              f"ip addr add {ADDRESS}/24 dev zxbench0 && ip link set zxbench0 up && "
              f"ip link set zxbench1 up && exec \"$0\" -m bench.janus \"$@\"")
    env = {**os.environ, NAMESPACE_MARK: "1"}
    return subprocess.call([unshare, "-n", "sh", "-c", script, sys.executable, *argv], env=env)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if os.environ.get(NAMESPACE_MARK) != "1":
        with contextlib.suppress(KeyboardInterrupt):
            return _in_namespace(argv)
        return 130
    relay_core, loadgen_cores = choose_cores()
    os.sched_setaffinity(0, loadgen_cores)
    log(f"relays on core {relay_core}, load generator on {sorted(loadgen_cores)}; "
        f"{psutil.cpu_count()} cores; peers on {ADDRESS} (veth, own namespace)")
    report: list[str] = []
    status = 0
    try:
        asyncio.run(run(args, relay_core, report))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; partial figures follow")
        status = 130
    finally:
        kill_leftovers()
    if report:
        print(report[0], flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
