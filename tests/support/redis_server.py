"""A real ``redis-server`` (Debian's) for the cluster tests: on a free
loopback port with its own folder, stopped (and restarted) by the test, ended
on exit."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.server_process import free_port


class RedisServer:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is missing (scripts/install-system-deps)"
        # Appendonly: what the edges wrote before a stop is there after it,
        # as with the compose file's Redis.
        self.process = await asyncio.create_subprocess_exec(
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--daemonize", "no", "--logfile", str(self.folder / "redis.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers():
            assert self.process.returncode is None, (self.folder / "redis.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not come up"
            await asyncio.sleep(0.05)

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), \
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(16).startswith(b"+PONG")
        return False

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def redis_server(folder: Path) -> AsyncIterator[RedisServer]:
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    server = RedisServer(folder, free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
