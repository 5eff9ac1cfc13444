"""A real ``zhixing serve`` in a process of its own, for the tests that kill it,
restart it or give it a disk of its own; ended (SIGINT, then SIGKILL) on exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def _wait_healthy(process: asyncio.subprocess.Process, port: int,
                        log: Path | None) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            assert process.returncode is None, \
                "the server exited" + (f":\n{tail(log)}" if log is not None else "")
            assert time.monotonic() < deadline, "the server did not come up"
            await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process, timeout: float) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def zhixing_edge(port: int, *, origin: str, token: str, secret: Path, district: str,
                       name: str, redis: str, log: Path | None = None,
                       stop_timeout: float = 15.0) -> AsyncIterator[asyncio.subprocess.Process]:
    """``zhixing edge`` on 127.0.0.1:``port`` for ``district``, up once
    /healthz answers; ended like ``zhixing_serve``."""
    command = [sys.executable, "-m", "web.cli", "edge", "--host", "127.0.0.1", "--port",
               str(port), "--origin", origin, "--secret", str(secret), "--district", district,
               "--name", name, "--redis", redis, "--ice-host", "127.0.0.1",
               "--public-url", f"http://127.0.0.1:{port}"]
    env = {**os.environ, "ZHIXING_EDGE_TOKEN": token}
    with contextlib.ExitStack() as files:
        out = files.enter_context(log.open("ab")) if log is not None \
            else asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)
    try:
        await _wait_healthy(process, port, log)
        yield process
    finally:
        await _stop(process, stop_timeout)


@contextlib.asynccontextmanager
async def zhixing_serve(data: Path, port: int, token: str, *, log: Path | None = None,
                        wrapper: Sequence[str] = (), extra: Sequence[str] = (),
                        workers: int | None = 1, stop_timeout: float = 20.0
                        ) -> AsyncIterator[asyncio.subprocess.Process]:
    """``serve`` on 127.0.0.1:``port`` with ``token`` as the admin token, up
    once /healthz answers; its output appended to ``log`` (or dropped).
    ``wrapper`` runs before the command (``unshare …``). One process (``--workers
    1``) unless ``extra`` says otherwise, or ``workers`` is None (the default:
    one a core)."""
    env = {**os.environ, "ZHIXING_ADMIN_TOKEN": token, "ZHIXING_ADMIN_PASSWORD": "pw-" + token}
    env.pop("ZHIXING_WORKERS", None)
    command = [*wrapper, sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--data", str(data), "--ice-host", "127.0.0.1",
               *(["--workers", str(workers)] if workers is not None else []), *extra]
    with contextlib.ExitStack() as files:
        out = files.enter_context(log.open("ab")) if log is not None \
            else asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                assert process.returncode is None, \
                    "the server exited" + (f":\n{tail(log)}" if log is not None else "")
                assert time.monotonic() < deadline, "the server did not come up"
                await asyncio.sleep(0.1)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), stop_timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
