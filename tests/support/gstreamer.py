"""Stock GStreamer peers (``gstreamer_peer.py``, run by Debian's Python) and
the network they need.

libnice, webrtcbin's ICE agent, never gathers candidates on a loopback
interface. Inside the suite's network namespace,
:func:`tests.support.netns.lan_address` gives the namespace a veth pair with
a private address, as a real machine has a LAN address; the relay offers it
too. Nothing in the GStreamer client is
changed for the relay.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.netns import lan_address
from tests.support.service import ADMIN_TOKEN, Service, running
from web.config import Config

SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-gi and python3-gst-1.0
PEER_SCRIPT = Path(__file__).with_name("gstreamer_peer.py")


def require_gstreamer() -> None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstWebRTC', '1.0'); "
         "from gi.repository import Gst; Gst.init(None); "
         "assert Gst.ElementFactory.find('webrtcbin') and Gst.ElementFactory.find('nicesrc')"],
        capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise RuntimeError("GStreamer's webrtcbin is missing: run scripts/install-system-deps "
                           f"(Debian's gstreamer1.0-plugins-bad, -nice, python3-gst-1.0): "
                           f"{probe.stderr.strip()[-300:]}")


@contextlib.asynccontextmanager
async def lan_service(data_dir: Path) -> AsyncIterator[Service]:
    """The relay under test, offering a LAN address (see :func:`lan_address`)
    as well as loopback."""
    require_gstreamer()
    with lan_address() as address:
        config = Config(host="127.0.0.1", port=0, data_dir=data_dir,
                        ice_hosts=[address, "127.0.0.1"], admin_token=ADMIN_TOKEN)
        async with running(config) as service:
            yield service


@dataclass
class GstPeer:
    """One ``gstreamer_peer.py`` process and what it printed."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    connected: bool = False
    frames: int = 0
    audio: int = 0
    error: str | None = None
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def _read_log(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.log.append(raw.decode(errors="replace").rstrip())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            self.lines.append(line)
            if line == "connected":
                self.connected = True
            elif line.startswith("frames "):
                _, frames, _, audio = line.split()
                self.frames, self.audio = int(frames), int(audio)
            elif line.startswith("error "):
                self.error = line[6:]

    async def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if self.error is not None or self.process.returncode is not None:
                raise AssertionError(f"GStreamer not {what}: {self.error or 'exited'}\n"
                                     + "\n".join(self.log))
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"GStreamer not {what} within {timeout} s: "
                                     f"{self.lines[-3:]}\n" + "\n".join(self.log))
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader


@contextlib.asynccontextmanager
async def gstreamer(mode: str, url: str, token: str, codec: str,
                    seconds: float = 60.0) -> AsyncIterator[GstPeer]:
    """``gstreamer_peer.py mode url token`` running; ended on exit."""
    process = await asyncio.create_subprocess_exec(
        # "--": a token may begin with "-" (token_urlsafe), which argparse would
        # take for an option.
        SYSTEM_PYTHON, str(PEER_SCRIPT), "--codec", codec, "--seconds", str(seconds),
        "--", mode, url, token, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GST_DEBUG": os.environ.get("GST_DEBUG", "1")})
    peer = GstPeer(process)
    peer._readers = [asyncio.create_task(peer._read()), asyncio.create_task(peer._read_log())]
    try:
        yield peer
    finally:
        await peer.close()
