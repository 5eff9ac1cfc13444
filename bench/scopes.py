"""Scopes benchmark: what checking a district's scope costs an admin request.

    .venv/bin/python -m bench.scopes [--districts 20] [--towns 50] [--requests 300]

A city's catalog in one in-process app (a temporary data folder): districts ×
towns organization nodes, a site per town, a session per district inviting
its sites. The same requests are timed in one run as the baseline (the
city's bearer admin token: no tree is read) and as a district admin (login
cookie: the account, its subtree computed from the tree, every list filtered
by it), side by side with their ratio. Median and 95th percentile per
request, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from classroom.access.accounts import Admin
from classroom.access.roles import AccountRole
from classroom.db import ROOT_NODE
from web.app import create_app
from web.auth import COOKIE
from web.config import Config
from web.keys import ACCOUNTS, CATALOG, SCHOOL

TOKEN = "bench-admin-token"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed(app: Any, districts: int, towns: int) -> tuple[int, list[str]]:
    """The tree, the sites and a session per district; (district A's node, session ids)."""
    school = app[SCHOOL]
    catalog = app[CATALOG]
    sessions = []
    first = 0
    for d in range(districts):
        node = school.org.create({"name": f"区{d:02d}", "parent_id": ROOT_NODE})["id"]
        first = first or node
        session = school.schedule_session({"title": f"夜学 {d}", "organizer_id": node})
        sessions.append(session.id)
        with catalog.db.transaction():
            for t in range(towns):
                town = school.org.resolve_path(f"区{d:02d} / 镇{t:03d}", create=True)
                site = catalog.db.execute(
                    "INSERT INTO sites (name, org_path, org_node_id, created_at) "
                    "VALUES (?, ?, ?, 0)", (f"镇{t:03d}分课堂", f"区{d:02d} / 镇{t:03d}", town))
                catalog.db.execute(
                    "INSERT INTO invitations (id, session_id, site_id, expires_at, created_at) "
                    "VALUES (?, ?, ?, 4102444800, 0)", (f"i{d}-{t}", session.id, site))
    return first, sessions


async def timed(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
                count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        async with http.get(url, headers=headers) as reply:
            await reply.read()
            assert reply.status == 200, (url, reply.status)
        times.append((time.perf_counter() - start) * 1000)
    return times


def p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


async def run(districts: int, towns: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = Config(host="127.0.0.1", port=0, data_dir=Path(folder) / "data",
                        ice_hosts=["127.0.0.1"], admin_token=TOKEN)
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        try:
            app = server.app
            log(f"seeding {districts} districts × {towns} towns ...")
            node, sessions = seed(app, districts, towns)
            accounts = app[ACCOUNTS]
            account = accounts.create("bench-district", "bench-password-1",
                                      AccountRole.DISTRICT_ADMIN, node)
            cookie, _ = accounts.start_session(Admin(account.id, account.username,
                                                     AccountRole.DISTRICT_ADMIN, node))
            base = str(server.make_url("")).rstrip("/")
            city = {"Authorization": f"Bearer {TOKEN}"}
            district = {"Cookie": f"{COOKIE}={cookie}"}
            paths = {"sessions": "/api/v1/sessions", "sites": "/api/v1/sites",
                     "invitations": f"/api/v1/sessions/{sessions[0]}/invitations",
                     "org": "/api/v1/org"}
            print(f"{districts * towns} sites, {districts * (towns + 1) + 1} nodes, "
                  f"{requests} requests each; ms per request")
            print(f"{'request':<14}{'city p50':>10}{'p95':>8}{'district p50':>14}{'p95':>8}"
                  f"{'ratio p50':>11}")
            async with aiohttp.ClientSession() as http:
                for name, path in paths.items():
                    await timed(http, base + path, city, 5)  # warm up
                    baseline = await timed(http, base + path, city, requests)
                    scoped = await timed(http, base + path, district, requests)
                    b, s = statistics.median(baseline), statistics.median(scoped)
                    print(f"{name:<14}{b:>10.2f}{p95(baseline):>8.2f}{s:>14.2f}"
                          f"{p95(scoped):>8.2f}{s / b:>11.2f}", flush=True)
        finally:
            await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--districts", type=int, default=20)
    parser.add_argument("--towns", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.districts, args.towns, args.requests))


if __name__ == "__main__":
    main()
