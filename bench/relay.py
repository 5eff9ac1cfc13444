"""Relay benchmark: the zhixing relay against the stock aiortc pattern, side by side.

Run as ``.venv/bin/python -m bench.relay`` (``make bench``). Each relay runs as
a subprocess pinned to the first CPU core; this driver (the publisher, the
decoding viewers) and its counting-viewer processes run on the other core(s).
Everything stays on 127.0.0.1.

For each relay: the publisher alone (baseline), then N viewers for each N of
``--viewers``, adding viewers as N grows: one decoding verifier (barcode
latency) and N-1 cheap counting viewers spread over worker processes. Per N: a
window of ``--duration`` seconds for CPU, fps, memory and latency, then
``--joins`` late joiners one after the other. The naive relay stops escalating
once it saturates; the zhixing relay runs every N.
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
import psutil

from bench.measure import Bench, log
from bench.peers import loopback_only
from bench.report import (
    FOREIGN_CPU,
    LOADGEN_BUSY,
    LOADGEN_LAG_MS,
    RELAYS,
    SOURCE_FPS,
    RelayResult,
    render,
)
from bench.servers import SERVERS, kill_leftovers
from bench.source import SOURCES
from bench.viewers import VIEWER_KINDS


async def run(args: argparse.Namespace, cores: tuple[int | None, set[int]],
              report: list[str]) -> None:
    """Measure every relay; the table goes into ``report`` (even when interrupted)."""
    relay_core, loadgen_cores = cores
    loopback_only()
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results = {name: RelayResult(name) for name in RELAYS}
    with tempfile.TemporaryDirectory(prefix="zhixing-bench-") as tmp:
        workdir = Path(tmp)
        with (workdir / "viewers.log").open("wb") as viewer_log:
            async with aiohttp.ClientSession() as http:
                try:
                    for name in args.relays:
                        log(f"--- {name} relay on core {relay_core}, load generator on "
                            f"core(s) {sorted(loadgen_cores)}")
                        bench = Bench(SERVERS[name](workdir, relay_core), args, http,
                                      viewer_log, cores)
                        results[name] = bench.result  # kept even if interrupted
                        await bench.run()
                finally:
                    report.append(render(results, args.viewers, _notes(args, cores)))


def _notes(args: argparse.Namespace, cores: tuple[int | None, set[int]]) -> list[str]:
    relay_core, loadgen_cores = cores
    source = (f"the bench's libvpx encoder at a fixed {args.bitrate:.0f} kbps"
              if args.source == "fixed" else "aiortc's own encoder (REMB-steered)")
    viewers = ("raw (ICE + DTLS-SRTP, frames counted from RTP marker bits, RTCP RR each second)"
               if args.viewer_kind == "raw" else "aiortc RTCPeerConnection, receivers tapped")
    return [
        "",
        "limit: ok = the relay's core was its own and the load generator had headroom, so the "
        "figures are the relay's; "
        f"LOADGEN = the load generator's core is > {LOADGEN_BUSY:.0f} % busy or its event loops "
        f"lag > {LOADGEN_LAG_MS:.0f} ms (viewer fps may then understate the relay); "
        f"CONTENDED = other processes took > {FOREIGN_CPU:.0f} % of the relay's or the load "
        f"generator's core; SOURCE = the publisher sent < {SOURCE_FPS:.0f} fps (dropped or "
        "starved).",
        f"Setup: {psutil.cpu_count()} cores; relay pinned to core {relay_core}; load generator "
        f"on core(s) {sorted(loadgen_cores)}: this process (publisher, verifier, late joiners) "
        f"and counting viewers in processes of {args.per_process} at nice +{args.nice}; "
        f"{args.duration:.0f} s windows, {args.joins} late joins per N.",
        f"Source: aiortc publisher, 640x480@30 BarcodeTrack (film grain {args.grain}) in VP8 "
        f"from {source}, plus an Opus tone. Counting viewers: {viewers}.",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def numbers(text: str) -> list[int]:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
        if not values or values[0] < 1:
            raise argparse.ArgumentTypeError("viewer counts must be positive integers")
        return values

    def relays(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        if not names or any(n not in RELAYS for n in names):
            raise argparse.ArgumentTypeError(f"relays are among {', '.join(RELAYS)}")
        return names

    parser.add_argument("--viewers", type=numbers, default=[1, 10, 50, 100, 200],
                        help="numbers of viewers N, comma-separated; N counts the one "
                             "decoding verifier plus N-1 counting viewers "
                             "(default 1,10,50,100,200)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per measurement window (default 10)")
    parser.add_argument("--relays", type=relays, default=list(RELAYS),
                        help="which relays to run (default zhixing,naive)")
    parser.add_argument("--joins", type=int, default=3, help="late joins per N (default 3)")
    parser.add_argument("--join-gap", type=float, default=1.0,
                        help="seconds before each late join (default 1)")
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds for the publisher's bitrate to settle (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds between adding viewers and measuring (default 3)")
    parser.add_argument("--viewer-kind", choices=VIEWER_KINDS, default="raw",
                        help="counting viewers: raw (ICE + DTLS-SRTP, counts RTP headers; "
                             "default) or aiortc (RTCPeerConnection, receivers tapped)")
    parser.add_argument("--source", choices=SOURCES, default="fixed",
                        help="video encoder of the publisher: fixed (libvpx at --bitrate, "
                             "default) or aiortc (its own, REMB-steered)")
    parser.add_argument("--bitrate", type=float, default=1000.0,
                        help="video bitrate of the fixed source, kbps (default 1000)")
    parser.add_argument("--grain", type=int, default=3,
                        help="film grain amplitude in the picture, so that the encoder "
                             "spends its bitrate (default 3; 0 = plain BarcodeTrack)")
    parser.add_argument("--per-process", type=int, default=50,
                        help="counting viewers per load-generator process (default 50)")
    parser.add_argument("--nice", type=int, default=5,
                        help="niceness of the counting-viewer processes, so that the "
                             "publisher and verifier keep their pace (default 5)")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure a window again (up to this many times) when other "
                             f"processes took > {FOREIGN_CPU:.0f} %% of the relay's core "
                             "(default 2)")
    parser.add_argument("--saturated-cpu", type=float, default=95.0,
                        help="naive relay: stop escalating above this CPU %% (default 95)")
    parser.add_argument("--saturated-fps", type=float, default=15.0,
                        help="naive relay: stop escalating below this median fps (default 15)")
    return parser.parse_args(argv)


def choose_cores() -> tuple[int | None, set[int]]:
    """The relay gets the first allowed core, the load generator the others."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        log("warning: only one CPU core available; nothing is pinned")
        return None, set(allowed)
    return allowed[0], set(allowed[1:])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = choose_cores()
    os.sched_setaffinity(0, cores[1])  # before any thread: inherited by everything we start
    report: list[str] = []
    status = 0
    try:
        asyncio.run(run(args, cores, report))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; everything started has been stopped; partial figures follow")
        status = 130
    finally:
        kill_leftovers()
    if report:
        print(report[0], flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
