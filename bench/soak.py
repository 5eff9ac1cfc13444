"""Soak: a relay running for a long time while rooms come and go.

Run as ``.venv/bin/python -m bench.soak`` (as root, inside a loopback-only
namespace: ``unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m
bench.soak'``). A real ``zhixing serve`` relays a 640x480@30 VP8 publisher to
``--viewers`` raw viewers (ICE + DTLS-SRTP, frames counted from RTP headers);
every ``--churn`` seconds the oldest leaves (without a DELETE, as a room PC
that is switched off: the relay notices through ICE consent) and a new one
joins. The relay's resident memory and open file descriptors are sampled
every ``--sample`` seconds; the baseline is the sample after ``--warmup``,
taken in the same run, and each later sample is shown against it. The target
of the issue: both flat within ±5 % over 30 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import aiohttp
import psutil

from bench.peers import loopback_only
from bench.rawviewer import RawViewer
from bench.servers import ZhixingServer
from bench.source import Source

TARGET_DRIFT = 5.0  # percent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> list[str]:
    loopback_only()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="zhixing-soak-") as tmp:
        server = ZhixingServer(Path(tmp), None)
        viewers: deque[RawViewer] = deque()
        async with aiohttp.ClientSession() as http:
            source: Source | None = None
            try:
                await server.start(http)
                relay = psutil.Process(server.pid)
                endpoint = await server.open_session(http)
                source = await Source.start(http, endpoint, "fixed", 1_000_000, 3)

                async def join() -> None:
                    viewer = RawViewer()
                    viewers.append(viewer)
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            viewer.connect(http, endpoint.whep_url, endpoint.view_token), 15)

                for _ in range(args.viewers):
                    await join()
                started = time.monotonic()
                joins = 0
                baseline: tuple[float, int] | None = None
                header = f"{'minute':>7}{'RSS MB':>9}{'vs base':>9}{'fds':>6}{'vs base':>9}" \
                         f"{'joins':>7}{'playing':>9}"
                lines.append(header)
                next_sample = started + args.warmup
                while time.monotonic() - started < args.duration:
                    await asyncio.sleep(args.churn)
                    leaving = viewers.popleft()
                    await leaving.close()
                    await join()
                    joins += 1
                    if time.monotonic() < next_sample:
                        continue
                    next_sample += args.sample
                    rss = relay.memory_info().rss / 2**20
                    fds = relay.num_fds()
                    if baseline is None:
                        baseline = (rss, fds)
                    playing = sum(1 for v in viewers if v.video_frames > 0)
                    minute = (time.monotonic() - started) / 60
                    line = (f"{minute:>7.1f}{rss:>9.1f}{(rss / baseline[0] - 1) * 100:>+8.1f}%"
                            f"{fds:>6}{(fds / baseline[1] - 1) * 100:>+8.1f}%{joins:>7}"
                            f"{playing:>9}")
                    lines.append(line)
                    log(line)
                if baseline is not None and len(lines) > 2:
                    last = lines[-1].split()
                    rss_drift = float(last[2].rstrip("%"))
                    fd_drift = float(last[4].rstrip("%"))
                    worst = max(abs(rss_drift), abs(fd_drift))
                    lines.append(
                        f"over {args.duration / 60:.0f} min, {joins} joins and as many leaves: "
                        f"RSS {rss_drift:+.1f} %, open fds {fd_drift:+.1f} % against the "
                        f"sample at {args.warmup / 60:.0f} min; target ±{TARGET_DRIFT:.0f} %: "
                        + ("met" if worst <= TARGET_DRIFT else "MISSED"))
            finally:
                await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
                if source is not None:
                    await source.close()
                await server.stop()
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800.0,
                        help="seconds to run (default 1800: 30 minutes)")
    parser.add_argument("--viewers", type=int, default=20,
                        help="viewers connected at any time (default 20)")
    parser.add_argument("--churn", type=float, default=2.0,
                        help="seconds between one viewer leaving and a new one joining "
                             "(default 2)")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="seconds before the baseline sample (default 120)")
    parser.add_argument("--sample", type=float, default=60.0,
                        help="seconds between samples (default 60)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    lines = asyncio.run(run(parse_args(argv)))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
