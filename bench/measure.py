"""Measuring one relay: its publisher, verifier, counting viewers and windows.

Used by :mod:`bench.relay`. Every figure of a window is taken from outside the
relay process (psutil for its CPU and memory, the viewers for frames) except
the relay's own ingress bitrate, read from its API where it has one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import IO

import aiohttp
import psutil

from bench.peers import DecodingViewer, Endpoint
from bench.report import FOREIGN_CPU, SOURCE_FPS, RelayResult, Row, median
from bench.servers import RelayServer
from bench.source import Source
from bench.viewers import LagMonitor, ViewerPool

FLOW_TIMEOUT = 30.0  # for every new viewer to receive frames
RETRY_PAUSE = 5.0  # before measuring a contended window again
JOIN_TIMEOUT = 5.0  # for a late joiner's first decoded frame


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def busy_seconds() -> list[float]:
    """Per core: seconds not idle (steal included: time the VM did not get)."""
    return [t.user + t.nice + t.system + t.irq + t.softirq + t.steal
            for t in psutil.cpu_times(percpu=True)]


def cpu_seconds(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def _preference(row: Row) -> tuple[bool, float]:
    """Sort key of repeated windows: a full-rate source first, then least contention."""
    return row.source_fps < SOURCE_FPS, row.contention


class Bench:
    """Measures one relay; the figures go into ``result``."""

    def __init__(self, server: RelayServer, args: argparse.Namespace, http: aiohttp.ClientSession,
                 stderr: IO[bytes], cores: tuple[int | None, set[int]]) -> None:
        self.server = server
        self.cores = cores
        self.args = args
        self.http = http
        self.stderr = stderr
        self.result = RelayResult(server.name)
        self.endpoint: Endpoint | None = None
        self.source: Source | None = None
        self.verifier: DecodingViewer | None = None
        self.pool: ViewerPool | None = None
        self.lag = LagMonitor()

    async def run(self) -> RelayResult:
        args = self.args
        try:
            await self.server.start(self.http)
            self.endpoint = endpoint = await self.server.open_session(self.http)
            self.source = await Source.start(self.http, endpoint, args.source,
                                             int(args.bitrate * 1000), args.grain)
            await self._until(lambda: self.source is not None and self.source.connected, 20,
                              "the publisher to connect")
            log(f"{self.server.name}: publisher connected; letting its bitrate settle "
                f"for {args.settle:.0f} s")
            self.lag.start()
            await asyncio.sleep(args.settle)
            self.result.baseline = await self._measured(0)
            self._show(self.result.baseline)
            await self._ensure_peers()
            self.pool = ViewerPool(args.viewer_kind, endpoint.whep_url, endpoint.view_token,
                                   args.per_process, args.nice, self.stderr)
            for n in args.viewers:
                if self.result.saturated_at is not None:
                    continue
                await self._step(n)
        except asyncio.CancelledError:
            self.result.error = "interrupted"
            raise
        except Exception as exc:
            self.result.error = f"{type(exc).__name__}: {exc}"
            log(f"{self.server.name}: {self.result.error}")
        finally:
            await self.close()
            self.result.log_notes = self.server.notable_log_lines()
        return self.result

    async def _ensure_peers(self) -> list[str]:
        """(Re)connect the publisher and the verifier if the relay dropped them."""
        notes: list[str] = []
        assert self.source is not None and self.endpoint is not None
        if not self.source.connected:
            notes.append("the relay had dropped the publisher: published again")
            log(f"{self.server.name}: {notes[-1]}")
            with contextlib.suppress(Exception):
                await self.source.close()
            args = self.args
            self.source = await Source.start(self.http, self.endpoint, args.source,
                                             int(args.bitrate * 1000), args.grain)
            await self._until(lambda: self.source is not None and self.source.connected, 20,
                              "the publisher to connect again")
        if self.verifier is not None and self.verifier.connected:
            return notes
        if self.verifier is not None:
            notes.append("the relay had dropped the verifier viewer: joined again")
            log(f"{self.server.name}: {notes[-1]}")
            with contextlib.suppress(Exception):
                await self.verifier.close()
        self.verifier = DecodingViewer()
        await self.verifier.connect(self.http, self.endpoint.whep_url, self.endpoint.view_token)
        if await self.verifier.time_to_first_frame(FLOW_TIMEOUT) is None:
            raise RuntimeError("the verifier viewer decoded nothing")
        return notes

    async def _measured(self, n: int) -> Row:
        """A window at N viewers, measured again if other processes took a core of ours.

        Of several windows the one with a full-rate source and the least
        contention is kept.
        """
        best: Row | None = None
        notes: list[str] = []
        attempts = 0
        while attempts <= self.args.retries:
            attempts += 1
            if best is not None:
                log(f"{self.server.name}: N={n}: other processes used {best.contention:.0f} % "
                    f"of a core of ours; measuring again in {RETRY_PAUSE:.0f} s")
                await asyncio.sleep(RETRY_PAUSE)
                if n > 0:
                    notes += await self._ensure_peers()
            row = await self._measure(n)
            if best is None or _preference(row) < _preference(best):
                best = row
            if row.contention <= FOREIGN_CPU:
                break
        assert best is not None
        best.attempts = attempts
        best.errors = notes + best.errors
        return best

    async def _step(self, n: int) -> None:
        args = self.args
        assert self.pool is not None and self.endpoint is not None
        notes = await self._ensure_peers()
        log(f"{self.server.name}: connecting viewers up to N={n}")
        errors = await self.pool.grow_to(n - 1)
        await self._wait_for_flow()
        await asyncio.sleep(args.warmup)
        row = await self._measured(n)
        row.errors = notes + errors + row.errors
        row.joins_ms = [await self._late_join() for _ in range(args.joins)]
        self.result.rows[n] = row
        self._show(row)
        if self.server.name == "naive" and (
            row.cpu > args.saturated_cpu or (row.fps_median or 0.0) < args.saturated_fps
        ):
            self.result.saturated_at = n
            log(f"naive: saturated at N={n}; not escalating further")

    async def _until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def _wait_for_flow(self) -> None:
        """Until every counting viewer has frames (or the timeout: they count 0)."""
        assert self.pool is not None
        deadline = time.monotonic() + FLOW_TIMEOUT
        while time.monotonic() < deadline:
            snaps = await self.pool.snapshot()
            if all(count > 0 for snap in snaps for count in snap["video"]):
                return
            await asyncio.sleep(0.5)
        log(f"{self.server.name}: not every viewer receives video after {FLOW_TIMEOUT:.0f} s")

    async def _measure(self, n: int) -> Row:
        """One window of ``--duration`` seconds at N viewers."""
        source, server, pool, verifier = self.source, self.server, self.pool, self.verifier
        assert source is not None and self.endpoint is not None
        me = psutil.Process()
        loadgen = [me] + [psutil.Process(pid) for pid in (pool.pids if pool and n > 1 else [])]
        snaps0 = await pool.snapshot() if pool and n > 1 else []
        bytes0, frames0 = await source.video_bytes_sent(), source.frames_sent
        decoded0 = len(verifier.decoded) if verifier else 0
        self.lag.take()
        wall0, relay0, cores0 = time.monotonic(), server.cpu_seconds(), busy_seconds()
        loadgen0 = sum(cpu_seconds(p) for p in loadgen)
        await asyncio.sleep(self.args.duration)
        wall1, relay1, cores1 = time.monotonic(), server.cpu_seconds(), busy_seconds()
        loadgen1 = sum(cpu_seconds(p) for p in loadgen)
        rss = server.rss_mb()
        lag = self.lag.take()
        decoded = verifier.decoded[decoded0:] if verifier else []
        snaps1 = await pool.snapshot() if pool and n > 1 else []
        bytes1, frames1 = await source.video_bytes_sent(), source.frames_sent
        elapsed = wall1 - wall0
        row = Row(
            viewers=n, cpu=100 * (sum(relay1) - sum(relay0)) / elapsed, rss_mb=rss,
            cpu_system=100 * (relay1[1] - relay0[1]) / elapsed,
            source_fps=(frames1 - frames0) / elapsed, bitrate=8 * (bytes1 - bytes0) / elapsed,
            reported_bitrate=await server.reported_bitrate(self.http, self.endpoint),
            loadgen_cpu=100 * (loadgen1 - loadgen0) / elapsed, loadgen_lag_ms=1000 * lag,
        )
        busy = [100 * (b - a) / elapsed for a, b in zip(cores0, cores1, strict=True)]
        relay_core, loadgen_cores = self.cores
        if relay_core is not None:
            row.foreign_cpu = max(0.0, busy[relay_core] - row.cpu)
        row.loadgen_cores_busy = sum(busy[c] for c in loadgen_cores) / len(loadgen_cores)
        row.loadgen_foreign = max(0.0, sum(busy[c] for c in loadgen_cores) - row.loadgen_cpu)
        for before, after in zip(snaps0, snaps1, strict=True):
            span = after["t"] - before["t"]
            row.fps += [(b - a) / span for a, b in zip(before["video"], after["video"],
                                                       strict=True)]
            row.connected += after["connected"]
            row.lost += after["lost"] - before["lost"]
            row.loadgen_lag_ms = max(row.loadgen_lag_ms, 1000 * after["lag"])
        if verifier is not None:
            row.fps.append(sum(1 for _, t in decoded if wall0 <= t <= wall1) / elapsed)
            row.connected += verifier.pc.connectionState == "connected"
            latencies = [(t - sent) * 1000 for index, t in decoded
                         if (sent := source.sent_at(index)) is not None]
            row.latency_ms = median(latencies)
            unread = len(decoded) - len(latencies)
            if unread > 0.05 * len(decoded):
                row.errors.append(f"verifier: {unread} of {len(decoded)} decoded frames carry "
                                  "no barcode the publisher sent")
        if self.result.baseline is not None:
            row.relative_to(self.result.baseline)
        if not source.connected:
            row.errors.append("the relay dropped the publisher during the window")
        if verifier is not None and not verifier.connected:
            row.errors.append("the relay dropped the verifier viewer during the window")
        return row

    async def _late_join(self) -> float | None:
        """A fresh decoding viewer: ms from its offer to its first decoded frame."""
        assert self.endpoint is not None
        await asyncio.sleep(self.args.join_gap)
        viewer = DecodingViewer()
        try:
            await asyncio.wait_for(viewer.connect(self.http, self.endpoint.whep_url,
                                                  self.endpoint.view_token), FLOW_TIMEOUT)
            seconds = await viewer.time_to_first_frame(JOIN_TIMEOUT)
        except Exception as exc:
            log(f"{self.server.name}: late joiner failed: {exc!r}")
            seconds = None
        finally:
            await viewer.close()
        return None if seconds is None else 1000 * seconds

    def _show(self, row: Row) -> None:
        joins = ", ".join("-" if j is None else f"{j:.0f}" for j in row.joins_ms)
        log(f"{self.server.name}: N={row.viewers} cpu {row.cpu:.1f}% "
            f"per viewer {row.cpu_per_viewer or 0:.2f}% fps min {row.fps_min or 0:.1f} "
            f"median {row.fps_median or 0:.1f} rss {row.rss_mb:.0f} MB "
            f"latency {row.latency_ms or 0:.0f} ms joins [{joins}] ms "
            f"src {row.source_fps:.1f} fps {row.bitrate / 1000:.0f} kbps "
            f"loadgen {row.loadgen_cpu:.0f}% lag {row.loadgen_lag_ms:.0f} ms")

    async def close(self) -> None:
        self.lag.stop()
        if self.pool is not None:
            await self.pool.close()
        for peer in (self.verifier, self.source):
            if peer is not None:
                with contextlib.suppress(Exception):
                    await peer.close()
        await self.server.stop()
