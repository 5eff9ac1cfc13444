"""District edges: the latency an edge adds, and what edges cost the origin.

Run as root inside a loopback-only namespace::

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m bench.edges'

A real ``redis-server``, a real ``zhixing serve`` (the origin) and one real
``zhixing edge`` (tests/support/city.py), a 320x240@30 barcode publisher
(tests/support/media.py). Printed, each against its baseline of the same run:

* **Latency**: capture (the publisher's frame leaving its track) → decoded at
  a viewer, for a viewer on the origin and one through the edge at the same
  time, over the same frames (medians and 90th percentiles); the target is
  at most 20 ms added.
* **Origin CPU**: the origin process's CPU with ``--pulls`` WHEP pulls of
  the edges' kind (``streaming/upstream.py`` with the edge token) against as
  many ordinary viewers (the same client with the session's view token),
  in alternating phases of ``--phase`` seconds, minus the idle phase (the
  publisher alone). The clients do not decode, so both phases load the
  origin alike; the target is within 10 %.

The machine is shared: the load generator, the edge and Redis run on the
same cores as the origin, so the figures carry that noise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.peers import loopback_only
from streaming.peers import PeerSettings
from streaming.upstream import Upstream
from tests.support.city import EDGE_TOKEN, City, city
from tests.support.media import TestPublisher, start_publisher, start_viewer


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def latencies(publisher: TestPublisher, viewer: Any, after: float) -> dict[int, float]:
    """Per frame index, decoded-at minus captured-at (ms), frames after ``after``."""
    found: dict[int, float] = {}
    for index, arrived in zip(viewer.indices, viewer.arrivals, strict=True):
        sent = publisher.video.sent_at.get(index)
        if sent is not None and arrived >= after:
            found[index] = (arrived - sent) * 1000
    return found


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_latency(town: City, session: dict[str, Any], room_token: str,
                          publisher: TestPublisher, seconds: float) -> list[str]:
    direct = await start_viewer(town.http, town.origin, session["id"], session["view_token"])
    through = await start_viewer(town.http, town.origin, session["id"], room_token)
    try:
        await direct.wait_for_frames(60, 30)
        await through.wait_for_frames(60, 30)
        after = time.monotonic() + 1.0  # past the first keyframe's catch-up
        await asyncio.sleep(seconds + 1.0)
        a = latencies(publisher, direct, after)
        b = latencies(publisher, through, after)
    finally:
        await direct.close()
        await through.close()
    common = sorted(set(a) & set(b))
    if len(common) < 30:
        return [f"latency: only {len(common)} frames seen by both viewers"]
    da = [a[i] for i in common]
    db = [b[i] for i in common]
    added = [b[i] - a[i] for i in common]
    median_added = statistics.median(added)
    verdict = "met" if median_added <= 20 else "MISSED"
    return [
        f"capture → decoded, {len(common)} frames seen by both viewers:",
        f"  {'':24} {'median':>8} {'p90':>8}",
        f"  {'direct (origin)':24} {statistics.median(da):8.1f} {quantile(da, 0.9):8.1f} ms",
        f"  {'through the edge':24} {statistics.median(db):8.1f} {quantile(db, 0.9):8.1f} ms",
        f"  {'added, frame by frame':24} {median_added:8.1f} {quantile(added, 0.9):8.1f} ms"
        f"   target ≤ 20 ms median: {verdict}",
    ]


async def pulls(town: City, session: dict[str, Any], token: str, count: int,
                settings: PeerSettings) -> list[Upstream]:
    """``count`` WHEP pulls that tap and drop (no decoding), with ``token``."""

    async def exchange(offer: str) -> str:
        async with town.http.post(f"{town.origin}/whep/{session['id']}", data=offer,
                                  headers={"Content-Type": "application/sdp",
                                           "Authorization": f"Bearer {token}"}) as reply:
            text = await reply.text()
            if reply.status != 201:
                raise RuntimeError(f"WHEP {reply.status}: {text}")
            return text

    made = []
    for index in range(count):
        upstream = Upstream(f"bench {index}", settings, exchange)
        await upstream.start()
        made.append(upstream)
    deadline = time.monotonic() + 20
    while any(u.pc.connectionState != "connected" or u.frames == 0 for u in made):
        if time.monotonic() > deadline:
            raise RuntimeError("pulls did not start")
        await asyncio.sleep(0.1)
    return made


async def origin_cpu(process: psutil.Process, seconds: float) -> float:
    """The origin's CPU (percent of one core) over ``seconds``."""
    before = process.cpu_times()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / (time.monotonic() - started)


async def measure_cpu(town: City, session: dict[str, Any], count: int, phase: float,
                      rounds: int) -> list[str]:
    process = psutil.Process(town.origin_process.pid)
    settings = PeerSettings()
    kinds = {"edges": EDGE_TOKEN, "viewers": session["view_token"]}
    figures: dict[str, list[float]] = {"idle": [], "edges": [], "viewers": []}
    for round_ in range(rounds):
        figures["idle"].append(await origin_cpu(process, phase))
        order = ("edges", "viewers") if round_ % 2 == 0 else ("viewers", "edges")
        for kind in order:
            peers = await pulls(town, session, kinds[kind], count, settings)
            try:
                await asyncio.sleep(1.0)  # settled
                figures[kind].append(await origin_cpu(process, phase))
            finally:
                for peer in peers:
                    await peer.close()
            await asyncio.sleep(1.0)
        log(f"round {round_ + 1}: idle {figures['idle'][-1]:.1f} %, edges "
            f"{figures['edges'][-1]:.1f} %, viewers {figures['viewers'][-1]:.1f} %")
    idle = statistics.median(figures["idle"])
    edges = statistics.median(figures["edges"]) - idle
    viewers = statistics.median(figures["viewers"]) - idle
    ratio = edges / viewers if viewers > 0 else float("nan")
    verdict = "met" if ratio <= 1.10 else "MISSED"
    return [
        f"origin CPU, % of one core (median of {rounds} alternating phases of {phase:.0f} s):",
        f"  idle (publisher only)        {idle:6.1f}",
        f"  + {count} edges pulling        {edges:6.1f}  ({edges / count:.2f} per pull)",
        f"  + {count} ordinary viewers     {viewers:6.1f}  ({viewers / count:.2f} per viewer)",
        f"  edges / viewers              {ratio:6.2f}   target ≤ 1.10: {verdict}",
    ]


async def run(args: argparse.Namespace) -> list[str]:
    loopback_only()
    with tempfile.TemporaryDirectory(prefix="bench-edges-") as tmp:
        async with city(Path(tmp), edges=("edge-beilun",), origin_flags=(
                "--max-peers-per-view-token", "0", "--log-level", "warning")) as town:
            session = await town.call("POST", "/api/v1/sessions", {"title": "bench"})
            room = await town.invite(session, "新碶街道分课堂", "北仑区 / 新碶街道")
            await town.wait_where(session, room["token"], town.edges["edge-beilun"])
            publisher = await start_publisher(town.http, town.origin, session["id"],
                                              session["publish_token"])
            try:
                log("latency: a viewer on the origin and one through the edge")
                lines = await measure_latency(town, session, room["token"], publisher,
                                              args.seconds)
                await asyncio.sleep(2.0)  # the edge's pull stays: it is in every phase
                log(f"origin CPU: {args.pulls} pulls against {args.pulls} viewers")
                lines += await measure_cpu(town, session, args.pulls, args.phase, args.rounds)
            finally:
                await publisher.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="latency: seconds of frames compared (default 20)")
    parser.add_argument("--pulls", type=int, default=10,
                        help="edges (and viewers) in the CPU phases (default 10)")
    parser.add_argument("--phase", type=float, default=10.0,
                        help="seconds of each CPU phase (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of idle / edges / viewers (default 3)")
    args = parser.parse_args()
    lines = asyncio.run(run(args))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
