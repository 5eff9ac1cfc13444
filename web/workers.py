"""``zhixing serve --workers N``: the rooms' viewers spread over N processes.

One process forwards on one core. With ``--workers N`` (by default one a
core; ``--workers 1`` is this process alone) the main process keeps
everything it had — WHIP, recording, the catalog, the pages, the sockets,
the viewers of the session's view token — and starts N
worker processes, each a ``zhixing edge`` (``web/edge.py``) on loopback's
view of this box: it listens on PORT+i, pulls each live session from the main
process once over WHEP (the same upstream as a district's edge), and takes
the district ``*`` (every site, after the edges of a site's own district).
A room's WHEP POST to the public URL is answered ``307`` to the least loaded
worker (its load as its entry said, plus the rooms sent to it since), which
browsers follow as they do for an edge; attendance, the wall, revocations
and session ends reach and come from workers as from edges: over Redis
with ``--redis`` (where district edges need it anyway), else over a
socketpair per worker (``classroom/live/local_cluster.py``), so one box never
needs Redis.

Without ``--public-url``, a worker's URL in the directory is loopback's
(``http://127.0.0.1:PORT+i``) and a room is sent to the host it reached the
main process at, with the worker's port (:func:`as_seen_from`).

The workers die with the main process (``PR_SET_PDEATHSIG``) and are stopped
(SIGINT, then SIGKILL) when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from classroom.access.signing import SECRET_FILE
from classroom.live.cluster import ALL_SITES, Cluster
from classroom.live.local_cluster import LocalOrigin
from web.config import Config

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_TIMEOUT = 15.0


def worker_url(config: Config, index: int) -> str:
    """Where rooms reach worker ``index``: the public URL's host, port PORT+index."""
    port = config.port + index
    if config.public_url:
        parts = urlsplit(config.public_url)
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{host}:{port}"
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    return f"http://{host}:{port}"


def as_seen_from(config: Config, url: str, request_origin: str) -> str:
    """``url`` (an edge's URL or origin) as a room that reached this process
    at ``request_origin`` reaches it: a worker's loopback URL, given when no
    public URL is set, gets the request's host; anything else is unchanged."""
    if config.public_url or config.workers <= 1:
        return url
    parts, seen = urlsplit(url), urlsplit(request_origin)
    port = parts.port
    if port is None or not config.port < port <= config.port + config.workers \
            or f"{parts.scheme}://{parts.netloc}" != worker_url(config, port - config.port) \
            or not seen.hostname:
        return url
    host = f"[{seen.hostname}]" if ":" in seen.hostname else seen.hostname
    return parts._replace(scheme=seen.scheme, netloc=f"{host}:{port}").geturl()


PARENT_VARIABLE = "ZHIXING_WORKER_OF"  # the main process's pid, in a worker's environment


def die_with_parent() -> None:
    """In a worker (called first thing): the main process's death stops it,
    and a worker whose parent was gone before that call stops at once."""
    parent = os.environ.get(PARENT_VARIABLE)
    if parent is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent != str(os.getppid()):
        sys.exit(1)


async def _start(config: Config, index: int, token: str,
                 local: LocalOrigin | None) -> asyncio.subprocess.Process:
    origin_host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    command = [sys.executable, "-m", "web.cli", "edge",
               "--origin", f"http://{origin_host}:{config.port}",
               "--secret", str(Path(config.data_dir) / SECRET_FILE),
               "--district", ALL_SITES, "--name", f"worker-{index}",
               "--public-url", worker_url(config, index),
               "--host", config.host, "--port", str(config.port + index),
               "--log-level", config.log_level]
    for address in config.ice_hosts or []:
        command += ["--ice-host", address]
    env = {**os.environ, "ZHIXING_EDGE_TOKEN": token, PARENT_VARIABLE: str(os.getpid())}
    for name in ("ZHIXING_ORIGIN", "ZHIXING_DISTRICT", "ZHIXING_NODE_NAME", "ZHIXING_PORT",
                 "ZHIXING_PUBLIC_URL", "ZHIXING_REDIS_URL"):
        env.pop(name, None)
    if local is None:
        command += ["--redis", str(config.redis_url)]
        return await asyncio.create_subprocess_exec(*command, env=env)
    mine, theirs = socket.socketpair()
    try:
        command += ["--cluster-fd", str(theirs.fileno())]
        process = await asyncio.create_subprocess_exec(*command, env=env,
                                                       pass_fds=(theirs.fileno(),))
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()  # the worker has its copy: its death closes the pair
    local.add_worker(mine)
    return process


def context(config: Config, cluster: Callable[[web.Application], Cluster]
            ) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that runs the workers beside the application
    (``cluster`` is the school's, built before)."""

    async def workers(app: web.Application) -> AsyncIterator[None]:
        if config.workers <= 1:
            yield
            return
        assert config.edge_token is not None  # create_app makes one for the workers
        # With --redis, workers coordinate through it as edges do.
        school_cluster = cluster(app)
        local = school_cluster if isinstance(school_cluster, LocalOrigin) else None
        processes = []
        try:
            for index in range(1, config.workers + 1):
                processes.append(await _start(config, index, config.edge_token, local))
            logger.info("%d workers on ports %d-%d", config.workers, config.port + 1,
                        config.port + config.workers)
            yield
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
            for process in processes:
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                except TimeoutError:
                    process.kill()
                    await process.wait()

    return workers
