"""Learners (学员) benchmark: progress reports under load, and the completion report.

    .venv/bin/python -m bench.learning [--learners 1000] [--seconds 60]
                                       [--report-learners 5000] [--report-videos 34]

1. **Progress reports.** One ``zhixing serve`` (pinned to core 0) on a data
   folder made for the run: ``--learners`` learners, each with a personal
   link, assigned to a unit whose self-study video is an hour long. Clients
   (this process, on core 1) play as learners: each reports every 10 s the
   ranges it played (10 s more each time, at 1×), starting at a random moment
   of the first 10 s. Side by side, in the same run and at the same rate and
   spread, the **baseline**: the same clients asking ``GET /healthz`` (an
   answer with no database and no link check), so the figures say what a
   report costs over an HTTP round trip on this machine. Printed for each:
   requests, answers per second, p50 / p99 / max latency, the server's CPU
   (user + system seconds over wall seconds, % of one core).
2. **The completion report** (``classroom.learning.reports.build``) for
   ``--report-learners`` learners × ``--report-videos`` videos (two units,
   every learner with progress in every video, one reading read, a write-up
   each), median of 5 builds; the baseline is one SELECT that reads the same
   progress rows, the least any report must do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil

from classroom.access.roles import Scope
from classroom.access.signing import load_or_create_secret
from classroom.db import Database
from classroom.learning import reports
from classroom.learning.links import LinkClaims, LinkSigner

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
REPORT_EVERY = 10.0
VIDEO_SECONDS = 3600.0
ITEM_ID = "00000000000000aa"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- the data


def prepare(data: Path, learners: int) -> list[str]:
    """A data folder with ``learners`` learners on one unit; their link tokens."""
    data.mkdir(parents=True)
    db = Database(data / "zhixing.sqlite3")
    db.migrate()
    now = time.time()
    with db.transaction():
        db.execute("INSERT INTO units (id, name, created_at) VALUES (1, '基层治理专题', ?)",
                   (now,))
        db.execute("INSERT INTO archive_items (id, title, recorded_at, origin, state, "
                   "duration, media_file, created_at, updated_at, owner_id) VALUES "
                   "(?, '案例', ?, 'import', 'ready', ?, 'lecture.mp4', ?, ?, 1)",
                   (ITEM_ID, now, VIDEO_SECONDS, now, now))
        db.execute("INSERT INTO unit_videos (unit_id, item_id, position) VALUES (1, ?, 0)",
                   (ITEM_ID,))
        for n in range(1, learners + 1):
            db.execute("INSERT INTO learners (id, name, org_node_id, link_generation, "
                       "created_at) VALUES (?, ?, 1, 1, ?)", (n, f"学员{n}", now))
            db.execute("INSERT INTO learner_units (learner_id, unit_id, assigned_at) "
                       "VALUES (?, 1, ?)", (n, now))
    db.close()
    signer = LinkSigner(load_or_create_secret(data))
    return [signer.sign(LinkClaims(n, 1)) for n in range(1, learners + 1)]


def prepare_report(path: Path, learners: int, videos: int) -> None:
    """A catalog for the report: two units, ``videos`` videos in all, every
    learner assigned to both with progress in every video."""
    db = Database(path)
    db.migrate()
    now = time.time()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.executemany("INSERT INTO units (id, name, created_at) VALUES (?, ?, ?)",
                     [(1, "专题一", now), (2, "专题二", now)])
    conn.execute("INSERT INTO org_nodes (id, parent_id, name, kind, created_at) "
                 "VALUES (2, 1, '北仑区', 'district', ?)", (now,))
    items = [f"{n:016x}" for n in range(1, videos + 1)]
    conn.executemany("INSERT INTO archive_items (id, title, recorded_at, state, duration, "
                     "created_at, updated_at, owner_id) VALUES (?, ?, ?, 'ready', 1800, ?, ?, 1)",
                     [(i, f"视频{n}", now, now, now) for n, i in enumerate(items)])
    conn.executemany("INSERT INTO unit_videos (unit_id, item_id, position) VALUES (?, ?, ?)",
                     [(1 + n % 2, i, n) for n, i in enumerate(items)])
    conn.executemany("INSERT INTO reading_items (id, unit_id, title, created_at) "
                     "VALUES (?, ?, ?, ?)", [(n, 1 + n % 2, f"书{n}", now) for n in range(1, 7)])
    conn.executemany("INSERT INTO learners (id, name, org_node_id, created_at) "
                     "VALUES (?, ?, ?, ?)",
                     [(n, f"学员{n}", 1 + n % 2, now) for n in range(1, learners + 1)])
    conn.executemany("INSERT INTO learner_units (learner_id, unit_id, assigned_at) "
                     "VALUES (?, ?, ?)",
                     [(n, u, now) for n in range(1, learners + 1) for u in (1, 2)])
    rng = random.Random(7)
    conn.executemany(
        "INSERT INTO video_progress (learner_id, item_id, ranges, played, duration, "
        "position, completed_at, reported_at) VALUES (?, ?, '[[0, 1700]]', ?, 1800, ?, ?, ?)",
        [(n, i, p, p, now if p >= 1620 else None, now)
         for n in range(1, learners + 1) for i in items
         for p in (rng.choice((600.0, 1700.0)),)])
    conn.executemany("INSERT INTO reading_marks (learner_id, reading_id, read_at) "
                     "VALUES (?, 1, ?)", [(n, now) for n in range(1, learners + 1)])
    conn.executemany("INSERT INTO writeups (learner_id, unit_id, text, state, submitted_at) "
                     "VALUES (?, 1, '总结', 'accepted', ?)",
                     [(n, now) for n in range(1, learners + 1)])
    conn.commit()
    conn.close()
    db.close()


# ---------------------------------------------------------------------- the server


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(data: Path, port: int, core: int | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "web.cli", "serve", "--host", LOOPBACK, "--port",
               str(port), "--data", str(data), "--ice-host", LOOPBACK,
               "--log-level", "warning", "--workers", "1"]
    if core is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHIXING_")}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=(data.parent / "serve.log").open("wb"))


async def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


# ---------------------------------------------------------------------- the load


async def phase(name: str, base: str, tokens: list[str], seconds: float, pid: int,
                request: Callable[[aiohttp.ClientSession, str, int], Awaitable[int]],
                ) -> dict[str, float]:
    """Every learner sends ``request`` every 10 s for ``seconds``; latency and
    the server's CPU."""
    latencies: list[float] = []
    failures: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.monotonic() + 1.0
        end = start + seconds

        async def learner(index: int, token: str) -> None:
            at = start + random.random() * REPORT_EVERY
            turn = 0
            while at < end:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                turn += 1
                sent = time.perf_counter()
                try:
                    status = await request(http, token, turn)
                except aiohttp.ClientError:
                    status = 0
                latencies.append(time.perf_counter() - sent)
                if status != 200:
                    failures[status] = failures.get(status, 0) + 1
                at += REPORT_EVERY

        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(learner(n, t) for n, t in enumerate(tokens)))
        cpu = cpu_seconds(pid) - cpu_before
        wall = time.monotonic() - wall_before
    latencies.sort()
    if failures:
        log(f"{name}: answers other than 200: {failures}")

    def pct(p: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {"requests": len(latencies), "rate": len(latencies) / wall,
            "p50": pct(0.50), "p99": pct(0.99), "max": 1000 * latencies[-1],
            "cpu": 100 * cpu / wall, "failed": sum(failures.values())}


def reporter(base: str) -> Callable[[aiohttp.ClientSession, str, int], Awaitable[int]]:
    async def report(http: aiohttp.ClientSession, token: str, turn: int) -> int:
        body = {"item_id": ITEM_ID, "ranges": [[0, REPORT_EVERY * turn]],
                "position": REPORT_EVERY * turn}
        async with http.post(f"{base}/learn/{token}/progress", json=body) as response:
            await response.read()
            return response.status
    return report


def baseline(base: str) -> Callable[[aiohttp.ClientSession, str, int], Awaitable[int]]:
    async def health(http: aiohttp.ClientSession, token: str, turn: int) -> int:
        async with http.get(f"{base}/healthz") as response:
            await response.read()
            return response.status
    return health


# ---------------------------------------------------------------------- the report


def time_report(path: Path, runs: int = 5) -> tuple[float, float, int]:
    """(median build seconds, median baseline seconds, rows)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tree = {1: "", 2: "北仑区"}
    builds, bases, rows = [], [], 0
    for _ in range(runs):
        began = time.perf_counter()
        rows = len(reports.build(conn, Scope.city(), lambda n: tree.get(n, "")))
        builds.append(time.perf_counter() - began)
        began = time.perf_counter()
        conn.execute("SELECT learner_id, item_id, completed_at FROM video_progress").fetchall()
        bases.append(time.perf_counter() - began)
    conn.close()
    return statistics.median(builds), statistics.median(bases), rows


# ---------------------------------------------------------------------- main


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--report-learners", type=int, default=5000)
    parser.add_argument("--report-videos", type=int, default=34)
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    pin = not args.no_pin and cores >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as folder:
        data = Path(folder) / "data"
        log(f"preparing {args.learners} learners")
        tokens = prepare(data, args.learners)
        port = free_port()
        base = f"http://{LOOPBACK}:{port}"
        server = start_server(data, port, 0 if pin else None)
        try:
            await wait_ready(base, server)
            log(f"baseline: GET /healthz, {args.learners} clients every 10 s, "
                f"{args.seconds:.0f} s")
            base_figures = await phase("baseline", base, tokens, args.seconds, server.pid,
                                       baseline(base))
            log(f"progress: POST /learn/…/progress, {args.learners} learners every 10 s, "
                f"{args.seconds:.0f} s")
            progress_figures = await phase("progress", base, tokens, args.seconds, server.pid,
                                           reporter(base))
            kept = sqlite3.connect(data / "zhixing.sqlite3").execute(
                "SELECT COUNT(*), MAX(played) FROM video_progress").fetchone()
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log(f"report: {args.report_learners} learners x {args.report_videos} videos")
        catalog = Path(folder) / "report.sqlite3"
        prepare_report(catalog, args.report_learners, args.report_videos)
        build, floor, rows = time_report(catalog)

    print(f"\nProgress reports: {args.learners} learners, one report each every "
          f"{REPORT_EVERY:.0f} s for {args.seconds:.0f} s; server pinned to core 0, "
          f"clients on core 1" if pin else "\nProgress reports (not pinned)")
    print(f"{'':24}{'requests':>9}{'per s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'CPU %':>7}{'failed':>8}")
    for label, figures in (("baseline GET /healthz", base_figures),
                           ("progress report", progress_figures)):
        print(f"{label:24}{figures['requests']:>9.0f}{figures['rate']:>8.1f}"
              f"{figures['p50']:>8.1f}{figures['p99']:>8.1f}{figures['max']:>8.1f}"
              f"{figures['cpu']:>7.1f}{figures['failed']:>8.0f}")
    print(f"{'ratio report/baseline':24}{'':>9}{'':>8}"
          f"{progress_figures['p50'] / base_figures['p50']:>7.1f}x"
          f"{progress_figures['p99'] / base_figures['p99']:>7.1f}x{'':>8}"
          f"{progress_figures['cpu'] / max(base_figures['cpu'], 0.01):>6.1f}x")
    print(f"kept: {kept[0]} progress rows, the most played {kept[1]:.0f} s")
    print(f"\nCompletion report: {args.report_learners} learners x {args.report_videos} "
          f"videos ({rows} learner-unit rows), median of 5")
    print(f"  build {1000 * build:.0f} ms; baseline (one SELECT of the progress rows) "
          f"{1000 * floor:.0f} ms; ratio {build / floor:.1f}x")
    print("\nTargets (shown, not asserted): p99 of a report < 50 ms "
          f"{'met' if progress_figures['p99'] < 50 else 'MISSED'}; "
          f"report build < 2 s {'met' if build < 2 else 'MISSED'}")
    print(json.dumps({"baseline": base_figures, "progress": progress_figures,
                      "report_build_s": build, "report_floor_s": floor}), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
