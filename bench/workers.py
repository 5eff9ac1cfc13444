"""``zhixing serve --workers 2`` against ``--workers 1``: the same viewers, split.

Run as root inside a loopback-only namespace::

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m bench.workers'

For each configuration, in alternating order (``--rounds``): ``zhixing
serve`` (``--workers 1`` or ``2``; the workers report over their sockets, as
on one box by default, or through a real ``redis-server`` with
``--transport redis``), a
320x240@30 barcode publisher and ``--viewers`` raw counting viewers
(bench/rawviewer.py: ICE, DTLS-SRTP, RTCP, frames counted from RTP headers,
no decoding) on one room's invitation, each offer redirected by the main
process. Printed side by side: viewers per process, the slowest and median
viewer's fps, the CPU of the main process and of each worker, the total, and
the capacity per box it implies: one process holds 100 % of a core; with two
workers, the two cores less the main process's share, divided by the
workers' CPU per viewer.

The load generator runs on the same two cores, shared with other work: the
figures carry that noise, and the capacity is an extrapolation from CPU per
viewer, not a measured saturation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.peers import loopback_only
from bench.viewers import ViewerPool
from tests.support.media import start_publisher
from tests.support.redis_server import redis_server
from tests.support.server_process import free_port, zhixing_serve

ADMIN = "bench-workers-admin"
STARVED = 27.0  # median fps below which a round's source was starved
NO_LIMITS = ["--max-peers-per-invitation", "0", "--max-peers-per-view-token", "0",
             "--max-pending-per-address", "0", "--max-pending", "0", "--log-level", "warning"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def one(workers: int, viewers: int, window: float, transport: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        folder = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        async with contextlib.AsyncExitStack() as stack:
            coordination: list[str] = []
            if transport == "redis":
                redis = await stack.enter_async_context(redis_server(folder / "redis"))
                coordination = ["--redis", redis.url]
            http = await stack.enter_async_context(aiohttp.ClientSession())
            main = await stack.enter_async_context(zhixing_serve(
                folder / "data", port, ADMIN,
                extra=[*coordination, "--workers", str(workers), *NO_LIMITS]))
            admin = {"Authorization": f"Bearer {ADMIN}"}
            async with http.post(f"{base}/api/v1/sessions", headers=admin,
                                 json={"title": "bench", "video_codec": "VP8"}) as reply:
                session = await reply.json()
            async with http.post(f"{base}/api/v1/sites", headers=admin,
                                 json={"name": "bench", "org_path": "北仑区"}) as reply:
                site = await reply.json()
            async with http.post(f"{base}/api/v1/sessions/{session['id']}/invitations",
                                 headers=admin, json={"site_id": site["id"]}) as reply:
                room = await reply.json()
            if workers > 1:  # every worker in the directory before the rooms come
                await asyncio.sleep(2.0)
            publisher = await start_publisher(http, base, session["id"],
                                              session["publish_token"])
            pool = ViewerPool("raw", f"{base}/whep/{session['id']}", room["token"], 100, 5,
                              sys.stderr.buffer)
            try:
                errors = await pool.grow_to(viewers)
                if errors:
                    log(f"{len(errors)} viewers failed: {errors[:3]}")
                await asyncio.sleep(3.0)  # settled
                server = psutil.Process(main.pid)
                processes = [server] + [p for p in server.children(recursive=True)
                                        if "edge" in " ".join(p.cmdline())]
                first = await pool.snapshot()
                before = [cpu(p) for p in processes]
                started = time.monotonic()
                await asyncio.sleep(window)
                last = await pool.snapshot()
                after = [cpu(p) for p in processes]
                elapsed = time.monotonic() - started
                split = []
                for worker in range(1, workers + 1 if workers > 1 else 1):
                    async with http.get(f"http://127.0.0.1:{port + worker}/healthz") as reply:
                        split.append((await reply.json())["viewers"])
            finally:
                await pool.close()
                await publisher.close()
    fps = []
    for a, b in zip(first, last, strict=True):
        for start, end in zip(a["video"], b["video"], strict=True):
            fps.append((end - start) / (b["t"] - a["t"]))
    shares = [100 * (b - a) / elapsed for a, b in zip(before, after, strict=True)]
    return {"workers": workers, "viewers": len(fps), "split": split or [len(fps)],
            "fps_min": min(fps) if fps else 0.0, "fps_median": statistics.median(fps) if fps
            else 0.0, "main": shares[0], "worker_cpu": shares[1:], "total": sum(shares)}


def capacity(result: dict[str, Any]) -> float:
    """Viewers a 2-core box would hold at this CPU per viewer."""
    if result["workers"] == 1:
        return 100.0 * result["viewers"] / max(result["main"], 1e-9)
    per_viewer = sum(result["worker_cpu"]) / max(result["viewers"], 1)
    return (200.0 - result["main"]) / max(per_viewer, 1e-9)


async def run(args: argparse.Namespace) -> list[str]:
    loopback_only()
    results: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for round_ in range(args.rounds):
        for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):
            log(f"round {round_ + 1}: --workers {workers}, {args.viewers} viewers")
            results[workers].append(await one(workers, args.viewers, args.window,
                                               args.transport))
            got = results[workers][-1]
            log(f"  split {got['split']}, fps min {got['fps_min']:.1f}, main "
                f"{got['main']:.1f} %, workers {[round(c, 1) for c in got['worker_cpu']]}")
    lines = [f"{args.viewers} raw viewers on one invitation, {args.rounds} alternating "
             f"round(s) of {args.window:.0f} s, workers over {args.transport}, every round "
             "shown:",
             f"  {'':12} {'split':>12} {'fps min/med':>12} {'main %':>7} {'workers %':>14} "
             f"{'total %':>8} {'box holds':>10}"]
    for workers, r in [(w, r) for w in (1, 2) for r in results[w]]:
        lines.append(
            f"  --workers {workers} {'/'.join(map(str, r['split'])):>12} "
            f"{r['fps_min']:5.1f}/{r['fps_median']:4.1f} {r['main']:7.1f} "
            f"{'/'.join(f'{c:.1f}' for c in r['worker_cpu']) or '-':>14} {r['total']:8.1f} "
            f"{capacity(r):10.0f}")
    # A round whose viewers got far less than 30 fps had its source starved
    # (the publisher shares the machine): its CPU says nothing of the split.
    valid = {w: [r for r in rs if r["fps_median"] >= STARVED] or rs for w, rs in results.items()}
    one_total = statistics.median(r["total"] for r in valid[1])
    two_total = statistics.median(r["total"] for r in valid[2])
    ratio = statistics.median(capacity(r) for r in valid[2]) / statistics.median(
        capacity(r) for r in valid[1])
    slowest = min(r["fps_min"] for rs in results.values() for r in rs)
    lines += [
        f"  (rounds with a median below {STARVED:.0f} fps left out of these ratios)",
        f"  total relay CPU, 2 workers / 1: {two_total / one_total:.2f}   target ≤ 1.10: "
        f"{'met' if two_total <= 1.10 * one_total else 'MISSED'}",
        f"  capacity per box, 2 workers / 1: {ratio:.2f}×   target ≥ 1.8×: "
        f"{'met' if ratio >= 1.8 else 'MISSED'} (extrapolated from CPU per viewer)",
        f"  slowest viewer: {slowest:.1f} fps   target ≥ 29.5: "
        f"{'met' if slowest >= 29.5 else 'MISSED'}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--transport", choices=("local", "redis"), default="local",
                        help="how the workers report: their sockets (one box's default) "
                             "or a real redis-server")
    args = parser.parse_args()
    print("\n".join(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
