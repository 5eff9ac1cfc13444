"""A city for the tests: a real ``redis-server``, a real ``zhixing serve`` (the
origin, with Redis and an edge token) and real ``zhixing edge`` processes for
the districts, on loopback; every process ended on exit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.redis_server import RedisServer, redis_server
from tests.support.server_process import free_port, tail, zhixing_edge, zhixing_serve

ADMIN = "edges-test-admin-token"
EDGE_TOKEN = "edges-test-edge-token"
DISTRICTS = {"edge-beilun": "北仑区", "edge-yinzhou": "鄞州区"}


@dataclass
class City:
    tmp: Path
    http: aiohttp.ClientSession
    redis: RedisServer
    origin: str
    origin_log: Path
    origin_process: asyncio.subprocess.Process
    edges: dict[str, str] = field(default_factory=dict)  # name -> base URL
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    closing: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.origin}{path}", json=body,
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as reply:
            assert reply.status < 300, (reply.status, await reply.text())
            return await reply.json() if reply.status != 204 else None

    async def invite(self, session: dict[str, Any], name: str, org_path: str) -> dict[str, Any]:
        site = await self.call("POST", "/api/v1/sites", {"name": name, "org_path": org_path})
        invitation: dict[str, Any] = await self.call(
            "POST", f"/api/v1/sessions/{session['id']}/invitations", {"site_id": site["id"]})
        return invitation

    async def start_edge(self, name: str, *, token: str = EDGE_TOKEN) -> None:
        port = free_port()
        process = await self.closing.enter_async_context(zhixing_edge(
            port, origin=self.origin, token=token, secret=self.tmp / "data" / "server-secret",
            district=DISTRICTS[name], name=name, redis=self.redis.url,
            log=self.tmp / f"{name}.log"))
        self.edges[name] = f"http://127.0.0.1:{port}"
        self.processes[name] = process

    async def edge_health(self, name: str) -> dict[str, Any]:
        async with self.http.get(f"{self.edges[name]}/healthz") as reply:
            body: dict[str, Any] = await reply.json()
            return body

    async def where(self, session: dict[str, Any], token: str) -> str | None:
        """Where the origin sends this room now: the edge's base URL, or
        None for the origin itself (a bodiless POST: the redirect comes first)."""
        async with self.http.post(f"{self.origin}/whep/{session['id']}",
                                  headers={"Authorization": f"Bearer {token}"},
                                  allow_redirects=False) as reply:
            if reply.status == 307:
                return reply.headers["Location"].split("/whep/")[0]
            assert reply.status == 415, (reply.status, await reply.text())
            return None

    async def wait_where(self, session: dict[str, Any], token: str, wanted: str | None,
                         timeout: float = 10.0) -> float:
        started = time.monotonic()
        while (found := await self.where(session, token)) != wanted:
            assert time.monotonic() - started < timeout, (found, wanted, self.logs())
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    def logs(self) -> str:
        parts = [f"--- origin\n{tail(self.origin_log)}"]
        parts += [f"--- {name}\n{tail(self.tmp / f'{name}.log')}" for name in self.edges]
        return "\n".join(parts)


@contextlib.asynccontextmanager
async def city(tmp: Path, edges: tuple[str, ...] = tuple(DISTRICTS),
               origin_flags: tuple[str, ...] = ()) -> AsyncIterator[City]:
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        redis = await stack.enter_async_context(redis_server(tmp / "redis"))
        port = free_port()
        log = tmp / "origin.log"
        origin = await stack.enter_async_context(zhixing_serve(
            tmp / "data", port, ADMIN, log=log,
            extra=["--redis", redis.url, "--edge-token", EDGE_TOKEN, *origin_flags]))
        town = City(tmp, http, redis, f"http://127.0.0.1:{port}", log, origin)
        stack.push_async_exit(town.closing)
        for name in edges:
            await town.start_edge(name)
        yield town
