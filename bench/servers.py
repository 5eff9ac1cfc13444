"""The relays under test, each a subprocess pinned to one CPU core.

Both listen on 127.0.0.1 only and offer only 127.0.0.1 as ICE candidate. Every
process started here is remembered by :data:`STARTED` so that the driver can
kill whatever is left even after an unexpected error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import aiohttp
import psutil

from bench.janus_api import create_room
from bench.peers import LOOPBACK, Endpoint

ROOT = Path(__file__).resolve().parents[1]  # the project: subprocesses run from here
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

STARTED: list[psutil.Process] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(command: list[str], core: int | None) -> list[str]:
    """``command`` run on one core (taskset execs it: the pid stays the relay's)."""
    if core is None:
        return command
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is needed to pin the relay to a core")
    return [taskset, "-c", str(core), *command]


def remember(pid: int) -> None:
    """Note a process we started, for :func:`kill_leftovers`."""
    with contextlib.suppress(psutil.Error):
        STARTED.append(psutil.Process(pid))


def kill_leftovers() -> None:
    """Kill every process this benchmark started that is still running."""
    for process in STARTED:
        with contextlib.suppress(psutil.Error):
            if process.is_running():
                process.kill()
    STARTED.clear()


def clean_env() -> dict[str, str]:
    """The environment without any ZHIXING_* setting (no STUN/TURN sneaks in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ZHIXING_")}


class RelayServer:
    """A relay subprocess: start, health check, process figures, stop."""

    name = "relay"

    def __init__(self, workdir: Path, core: int | None) -> None:
        self.workdir = workdir
        self.core = core
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.log_path = workdir / f"{self.name}.log"
        self._log: IO[bytes] | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.process: psutil.Process | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return clean_env()

    async def open_session(self, http: aiohttp.ClientSession) -> Endpoint:
        raise NotImplementedError

    async def reported_bitrate(self, http: aiohttp.ClientSession,
                               endpoint: Endpoint) -> float | None:
        """The relay's own figure for the ingress video bitrate, if it has one."""
        return None

    async def start(self, http: aiohttp.ClientSession) -> None:
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *pinned(self.command(), self.core), stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log, stderr=self._log, env=self.env(), cwd=ROOT)
        self.process = psutil.Process(self.proc.pid)
        remember(self.proc.pid)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.base}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start; end of its log:\n{self.log_tail()}")

    def notable_log_lines(self, keep: int = 5) -> list[str]:
        """The relay's last warnings, errors and peer closings, for the report."""
        words = ("WARNING", "ERROR", "Traceback", "closing", "expired", "failed")
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            notable = [line for line in lines if any(word in line for word in words)]
            if len(notable) > keep:
                return [f"({len(notable) - keep} more before)", *notable[-keep:]]
            return notable
        return []

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the relay process, all threads."""
        assert self.process is not None
        times = self.process.cpu_times()
        return float(times.user), float(times.system)

    def rss_mb(self) -> float:
        assert self.process is not None
        return float(self.process.memory_info().rss) / 2**20

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class ZhixingServer(RelayServer):
    """The project's relay: ``zhixing serve``."""

    name = "zhixing"

    def __init__(self, workdir: Path, core: int | None, ice_host: str = LOOPBACK,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(workdir, core)
        self.admin_token = secrets.token_urlsafe(24)
        self.ice_host = ice_host
        self.extra_args = list(extra_args)  # passed on to ``zhixing serve``

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("zhixing")
        serve = [str(script)] if script.exists() else [sys.executable, "-m", "web.cli"]
        return [*serve, "serve", "--host", LOOPBACK, "--port", str(self.port),
                "--ice-host", self.ice_host, "--data", str(self.workdir / "zhixing-data"),
                # Hundreds of viewers from one address on one view token: a load
                # generator, not a leaked link.
                "--max-peers-per-view-token", "0", "--max-pending-per-address", "0",
                "--max-pending", "0", "--workers", "1", *self.extra_args]

    def env(self) -> dict[str, str]:
        return {**clean_env(), "ZHIXING_ADMIN_TOKEN": self.admin_token}

    @property
    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def open_session(self, http: aiohttp.ClientSession) -> Endpoint:
        async with http.post(f"{self.base}/api/v1/sessions", headers=self._admin,
                             json={"title": "bench", "video_codec": "VP8"}) as response:
            if response.status != 201:
                raise RuntimeError(f"creating a session: {response.status} "
                                   f"{await response.text()}")
            session = await response.json()
        return Endpoint(self.base, session["id"], session["publish_token"],
                        session["view_token"])

    async def reported_bitrate(self, http: aiohttp.ClientSession,
                               endpoint: Endpoint) -> float | None:
        url = f"{self.base}/api/v1/sessions/{endpoint.session_id}"
        async with http.get(url, headers=self._admin) as response:
            if response.status != 200:
                return None
            body = await response.json()
        return float(body["stats"]["ingress"]["video"]["bitrate"])


class NaiveServer(RelayServer):
    """The baseline: ``bench/naive_relay.py`` (stock ``MediaRelay``)."""

    name = "naive"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.naive_relay", "--port", str(self.port)]

    async def open_session(self, http: aiohttp.ClientSession) -> Endpoint:
        return Endpoint(self.base, "bench", "naive", "naive")


JANUS_LIBRARIES = Path("/usr/lib/x86_64-linux-gnu/janus")
JANUS_ROOM, JANUS_FEED = 1234, 1


class JanusServer(RelayServer):
    """Debian's Janus with the VideoRoom plugin and the HTTP transport only.

    Its configuration is written to the bench's temporary folder (``/etc/janus``
    is never read): two event loops shared by all handles, warnings only in
    its log, no admin API, no recording, no session timeout (viewers then need
    no keep-alives), the NACK queue at its default. Janus never offers a
    loopback address as an ICE candidate, so ``ice_host`` (a veth address of the
    bench's network namespace) is the one interface it gathers on.
    """

    name = "janus"

    def __init__(self, workdir: Path, core: int | None, ice_host: str,
                 event_loops: int = 2) -> None:
        super().__init__(workdir, core)
        self.ice_host = ice_host
        self.event_loops = event_loops
        self.folder = workdir / "janus"
        self.api = f"{self.base}/janus"

    def _configure(self) -> Path:
        folder = self.folder
        for sub in ("conf", "plugins", "transports", "events", "loggers"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for sub, library in (("plugins", "libjanus_videoroom.so"),
                             ("transports", "libjanus_http.so")):
            link = folder / sub / library
            if not link.exists():
                link.symlink_to(JANUS_LIBRARIES / sub / library)
        conf = folder / "conf"
        (conf / "janus.jcfg").write_text(f"""general: {{
\tconfigs_folder = "{conf}"
\tplugins_folder = "{folder / 'plugins'}"
\ttransports_folder = "{folder / 'transports'}"
\tevents_folder = "{folder / 'events'}"
\tloggers_folder = "{folder / 'loggers'}"
\tdebug_level = 3
\tsession_timeout = 0
\tevent_loops = {self.event_loops}
\tinterface = "{self.ice_host}"
}}
media: {{
}}
nat: {{
\tnice_debug = false
\tice_enforce_list = "{self.ice_host}"
}}
events: {{
\tbroadcast = false
}}
""")
        (conf / "janus.transport.http.jcfg").write_text(f"""general: {{
\tjson = "plain"
\tbase_path = "/janus"
\thttp = true
\tport = {self.port}
\tip = "{LOOPBACK}"
\thttps = false
}}
admin: {{
\tadmin_http = false
\tadmin_https = false
}}
""")
        (conf / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
        return conf / "janus.jcfg"

    def command(self) -> list[str]:
        janus = shutil.which("janus")
        if janus is None:
            raise RuntimeError("janus is not installed (scripts/install-bench-deps)")
        config = self._configure()
        return [janus, "-C", str(config), "-F", str(config.parent), "-o"]

    async def start(self, http: aiohttp.ClientSession) -> None:
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *pinned(self.command(), self.core), stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log, stderr=self._log, env=clean_env(), cwd=self.folder)
        self.process = psutil.Process(self.proc.pid)
        remember(self.proc.pid)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.api}/info") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"janus did not start; end of its log:\n{self.log_tail()}")

    async def open_session(self, http: aiohttp.ClientSession) -> Endpoint:
        await create_room(http, self.api, JANUS_ROOM)
        return Endpoint(self.api, str(JANUS_ROOM), "", f"{JANUS_ROOM}:{JANUS_FEED}")


SERVERS: dict[str, type[RelayServer]] = {"zhixing": ZhixingServer, "naive": NaiveServer}
