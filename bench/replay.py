"""Replay (重播) benchmark: a late joiner's first frame, replay against live.

    .venv/bin/python -m bench.replay [--joins 15] [--seconds 90]

One ``zhixing serve`` (pinned to core 0). Three sessions side by side in one
run, each with VP8 at 640x480@30:

* live: an aiortc publisher (the baseline: a joiner's keyframe comes from
  the publisher after a PLI);
* replay, keyframe every 2 s;
* replay, keyframe every 10 s (a file with long GOPs, where waiting for the
  file's next keyframe would cost up to 10 s).

The lectures are imported with ``zhixing archive import`` as an admin would.
Late joiners (decoding aiortc viewers, on core 1) arrive one by one at random
moments; each figure is the time from its offer to its first decoded frame.
Also printed: how far each replay's end was from the file's duration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np

from bench.peers import DecodingViewer, Endpoint
from bench.servers import ZhixingServer, kill_leftovers
from bench.source import Source

WIDTH, HEIGHT, FPS = 640, 480, 30
JOIN_TIMEOUT = 12.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_lecture(path: Path, seconds: float, gop_seconds: float) -> None:
    """A VP8/Opus WebM: a moving picture with grain, keyframes every ``gop_seconds``."""
    gop = round(gop_seconds * FPS)
    rng = np.random.default_rng(1)
    with av.open(str(path), "w", format="webm") as out:
        video: Any = out.add_stream("libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = 1_000_000
        video.options = {"deadline": "realtime", "cpu-used": "8", "threads": "1",
                         "kf-max-dist": str(gop), "kf-min-dist": str(gop),
                         "lag-in-frames": "0"}
        audio: Any = out.add_stream("libopus", rate=48_000)
        audio.layout = "mono"
        xs = np.arange(WIDTH, dtype=np.int32)
        for index in range(round(seconds * FPS)):
            row = ((xs + index * 4) % 200 + 28).astype(np.uint8)
            luma = np.repeat(row[None, :], HEIGHT, axis=0)
            grain = rng.integers(0, 6, size=luma.shape, dtype=np.uint8)
            picture = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            picture.planes[0].update((luma + grain).tobytes())
            chroma = bytes([128]) * ((WIDTH // 2) * (HEIGHT // 2))
            picture.planes[1].update(chroma)
            picture.planes[2].update(chroma)
            picture.pts = index
            picture.time_base = Fraction(1, FPS)
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(960) / 48_000) * 32767).astype(
            np.int16)
        for index in range(round(seconds * 50)):
            chunk = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16",
                                               layout="mono")
            chunk.sample_rate = 48_000
            chunk.pts = index * 960
            chunk.time_base = Fraction(1, 48_000)
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def import_lecture(server: ZhixingServer, path: Path, title: str) -> str:
    """The archive item id of ``path``, imported by the CLI as an admin would."""
    script = Path(sys.executable).with_name("zhixing")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "web.cli"]
    out = subprocess.run([*command, "archive", "import", str(path), "--title", title,
                          "--data", str(server.workdir / "zhixing-data")],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[0]


async def api(http: aiohttp.ClientSession, server: ZhixingServer, method: str, path: str,
              body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with http.request(method, f"{server.base}{path}", json=body,
                            headers=headers) as response:
        text = await response.text()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {text}")
        return json.loads(text) if text else None


async def late_joins(http: aiohttp.ClientSession, endpoint: Endpoint, joins: int,
                     gap: tuple[float, float]) -> list[float | None]:
    results: list[float | None] = []
    for _ in range(joins):
        await asyncio.sleep(random.uniform(*gap))
        viewer = DecodingViewer()
        try:
            await viewer.connect(http, f"{endpoint.base}/whep/{endpoint.session_id}",
                                 endpoint.view_token)
            seconds = await viewer.time_to_first_frame(JOIN_TIMEOUT)
        except Exception as exc:
            log(f"late joiner failed: {exc!r}")
            seconds = None
        finally:
            await viewer.close()
        results.append(None if seconds is None else 1000 * seconds)
    return results


def summary(values: list[float | None]) -> str:
    got = sorted(v for v in values if v is not None)
    if not got:
        return "no frame"
    p90 = got[min(len(got) - 1, round(0.9 * (len(got) - 1)))]
    return (f"{statistics.median(got):7.0f} {p90:7.0f} {got[-1]:7.0f}"
            f"   {len(values) - len(got)}/{len(values)}")


async def run(args: argparse.Namespace) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="zhixing-bench-replay-") as folder:
        work = Path(folder)
        lectures = {}
        for gop in (2.0, 10.0):
            path = work / f"gop{gop:.0f}.webm"
            log(f"encoding a {args.seconds:.0f} s lecture with a keyframe every {gop:.0f} s")
            make_lecture(path, args.seconds, gop)
            lectures[gop] = path
        server = ZhixingServer(work, core=0)
        async with aiohttp.ClientSession() as http:
            await server.start(http)
            source = None
            try:
                items = {gop: import_lecture(server, path, f"gop {gop:.0f} s")
                         for gop, path in lectures.items()}
                live = await server.open_session(http)
                source = await Source.start(http, live, "fixed", 1_000_000, 3)
                replays = {}
                for gop, item in items.items():
                    session = await api(http, server, "POST", "/api/v1/sessions",
                                        {"title": f"重播 {gop:.0f} s", "replay_item_id": item})
                    replays[gop] = (session, Endpoint(server.base, session["id"],
                                                      session["publish_token"],
                                                      session["view_token"]))
                started = {}
                for gop, (session, _) in replays.items():
                    before = time.time()
                    await api(http, server, "POST", f"/api/v1/sessions/{session['id']}/replay",
                              {"action": "start"})
                    started[gop] = (before + time.time()) / 2
                await asyncio.sleep(3)
                gap = (0.5, max(1.0, (args.seconds - 10) / args.joins - 0.5))
                log(f"{args.joins} late joiners per session, one every {gap[0]}..{gap[1]:.1f} s")
                live_joins, *replay_joins = await asyncio.gather(
                    late_joins(http, live, args.joins, gap),
                    *(late_joins(http, endpoint, args.joins, gap)
                      for _, endpoint in replays.values()))
                ends = {}
                for gop, (session, _) in replays.items():
                    # The session's own end time (the server ends it with the file).
                    while True:
                        body = await api(http, server, "GET",
                                         f"/api/v1/sessions/{session['id']}")
                        if body["state"] == "ended" and body["ended_at"] is not None:
                            ends[gop] = float(body["ended_at"]) - started[gop]
                            break
                        if time.time() - started[gop] > args.seconds + 30:
                            break
                        await asyncio.sleep(0.2)
                durations = {gop: (await api(http, server, "GET",
                                             f"/api/v1/archive/{item}"))["duration"]
                             for gop, item in items.items()}
            finally:
                if source is not None:
                    await source.close()
                await server.stop()
                notable = server.notable_log_lines(8)
    print(f"Replay benchmark: VP8 {WIDTH}x{HEIGHT}@{FPS} ~1 Mbps + Opus, one zhixing serve on "
          "core 0, decoding aiortc viewers on core 1.")
    print("Late joiner: ms from the WHEP offer to the first decoded frame")
    print(f"{'session':<24} {'median':>7} {'p90':>7} {'max':>7}   failed")
    print(f"{'live (PLI to publisher)':<24} {summary(live_joins)}")
    for gop, joins in zip(replays, replay_joins, strict=True):
        print(f"{f'replay, GOP {gop:.0f} s':<24} {summary(joins)}")
    print("Replay pacing: the session's end (its ended_at) against the file's duration")
    for gop in replays:
        if gop in ends:
            print(f"  GOP {gop:.0f} s: {durations[gop]:.3f} s file, session ended after "
                  f"{ends[gop]:.3f} s ({ends[gop] - durations[gop]:+.3f} s)")
    if notable:
        print("The server's last warnings:")
        for line in notable:
            print(f"  {line}")
    target = [v for joins in replay_joins for v in joins if v is not None]
    if target:
        median = statistics.median(target)
        print(f"Target (shown, not asserted): replay late joiner, no wait for the file's "
              f"keyframe: median {median:.0f} ms vs live "
              f"{statistics.median([v for v in live_joins if v is not None] or [0]):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=15, help="late joiners per session")
    parser.add_argument("--seconds", type=float, default=90.0, help="lecture length")
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    finally:
        kill_leftovers()


if __name__ == "__main__":
    main()
