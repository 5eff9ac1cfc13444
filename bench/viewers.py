"""Counting viewers in worker processes, and the driver's handle on them.

A worker runs as ``python -m bench.viewers`` and holds many counting viewers:
:class:`~bench.rawviewer.RawViewer` (``raw``, the default) or
:class:`~bench.peers.CountingViewer` (``aiortc``). It reads one JSON command per line on
stdin and answers with one JSON line on stdout:

  {"cmd": "add", "count": 10, "kind": "raw", "url": ..., "token": ...}
      -> {"errors": [...]}
  {"cmd": "snap"}  -> {"t": <monotonic>, "video": [...], "audio": [...],
                       "lost": n, "connected": n, "lag": <max loop delay, s>}
  {"cmd": "quit"}  -> {"bye": true}

A worker ignores SIGINT (its driver ends it) and exits when stdin closes, so
it never outlives the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

import aiohttp

from bench.janus_api import JanusBrowserLikeViewer, JanusRawViewer
from bench.peers import LOOPBACK, CountingViewer, loopback_only
from bench.rawviewer import BrowserLikeViewer, RawViewer
from bench.servers import ROOT, remember

CONNECT_CONCURRENCY = 8
VIEWER_KINDS = ("raw", "aiortc")  # for WHEP relays (bench.relay)
CONNECT_TIMEOUT = 30.0
CALL_TIMEOUT = 180.0


class LagMonitor:
    """The largest event-loop delay since the last ``take()``: a sign of overload."""

    PERIOD = 0.05

    def __init__(self) -> None:
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.PERIOD)
            self.max_lag = max(self.max_lag, time.monotonic() - before - self.PERIOD)

    def take(self) -> float:
        lag, self.max_lag = self.max_lag, 0.0
        return lag

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


# --------------------------------------------------------------------------
# the worker process


class Counting(Protocol):
    video_frames: int
    audio_frames: int
    lost: int

    @property
    def connected(self) -> bool: ...

    async def connect(self, http: aiohttp.ClientSession, url: str, token: str) -> None: ...

    async def close(self) -> None: ...


VIEWER_FACTORIES: dict[str, Callable[[], Counting]] = {
    "raw": RawViewer, "aiortc": CountingViewer, "browser": BrowserLikeViewer,
    "janus": JanusRawViewer, "janus-browser": JanusBrowserLikeViewer,
}


class _Worker:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.viewers: list[Counting] = []
        self.lag = LagMonitor()

    async def add(self, count: int, kind: str, url: str, token: str) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def join() -> None:
            viewer: Counting = VIEWER_FACTORIES[kind]()
            self.viewers.append(viewer)  # kept even if it fails: it then counts 0 fps
            async with gate:
                await asyncio.wait_for(viewer.connect(self.http, url, token), CONNECT_TIMEOUT)

        results = await asyncio.gather(*(join() for _ in range(count)), return_exceptions=True)
        return {"errors": [repr(r) for r in results if isinstance(r, BaseException)][:5]}

    def snap(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "video": [v.video_frames for v in self.viewers],
            "audio": [v.audio_frames for v in self.viewers],
            "lost": sum(v.lost for v in self.viewers),
            "connected": sum(v.connected for v in self.viewers),
            "lag": self.lag.take(),
            # browser-like viewers' RTCP: NACK packets, PLIs, losses repaired
            "nacks": sum(getattr(v, "nacks", 0) for v in self.viewers),
            "plis": sum(getattr(v, "plis", 0) for v in self.viewers),
            "repaired": sum(getattr(v, "repaired", 0) for v in self.viewers),
        }

    async def close(self) -> None:
        self.lag.stop()
        await asyncio.gather(*(v.close() for v in self.viewers), return_exceptions=True)


def _reply(out: IO[str], answer: dict[str, Any]) -> None:
    out.write(json.dumps(answer) + "\n")
    out.flush()


async def _serve() -> None:
    loopback_only(os.environ.get("BENCH_ICE_HOST", LOOPBACK))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as http:
        worker = _Worker(http)
        worker.lag.start()
        try:
            while line := await reader.readline():
                command = json.loads(line)
                if command["cmd"] == "add":
                    _reply(sys.stdout, await worker.add(int(command["count"]), command["kind"],
                                                        command["url"], command["token"]))
                elif command["cmd"] == "snap":
                    _reply(sys.stdout, worker.snap())
                elif command["cmd"] == "quit":
                    break
        finally:
            await worker.close()
    _reply(sys.stdout, {"bye": True})


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    niceness = int(os.environ.get("BENCH_VIEWER_NICE", "0"))
    if niceness:
        os.nice(niceness)
    asyncio.run(_serve())


# --------------------------------------------------------------------------
# the driver's side


class ViewerProcess:
    """One worker process seen from the driver."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.size = 0

    @classmethod
    async def start(cls, niceness: int, stderr: IO[bytes]) -> ViewerProcess:
        env = {**os.environ, "BENCH_VIEWER_NICE": str(niceness)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.viewers", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env, cwd=ROOT)
        remember(proc.pid)
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), CALL_TIMEOUT)
        if not line:
            raise RuntimeError(f"viewer process {self.pid} exited ({self.proc.returncode})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call({"cmd": "quit"}), 30)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


class ViewerPool:
    """Counting viewers spread over worker processes of ``per_process`` each."""

    def __init__(self, kind: str, url: str, token: str, per_process: int, niceness: int,
                 stderr: IO[bytes]) -> None:
        self.kind, self.url, self.token = kind, url, token
        self.per_process = per_process
        self.niceness = niceness
        self.stderr = stderr
        self.processes: list[ViewerProcess] = []

    @property
    def size(self) -> int:
        return sum(p.size for p in self.processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def grow_to(self, total: int) -> list[str]:
        """Connect viewers until there are ``total``; returns connection errors."""
        plan: list[tuple[ViewerProcess, int]] = []
        missing = total - self.size
        for process in self.processes:
            take = min(missing, self.per_process - process.size)
            if take > 0:
                plan.append((process, take))
                missing -= take
        while missing > 0:
            process = await ViewerProcess.start(self.niceness, self.stderr)
            self.processes.append(process)
            take = min(missing, self.per_process)
            plan.append((process, take))
            missing -= take

        async def add(process: ViewerProcess, count: int) -> list[str]:
            process.size += count
            answer = await process.call({"cmd": "add", "count": count, "kind": self.kind,
                                         "url": self.url, "token": self.token})
            errors: list[str] = answer["errors"]
            return errors

        results = await asyncio.gather(*(add(p, n) for p, n in plan))
        return [error for errors in results for error in errors]

    async def snapshot(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(p.call({"cmd": "snap"}) for p in self.processes)))

    async def close(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)
        self.processes.clear()


if __name__ == "__main__":
    main()
