"""The relay under test as its clients see it: the admin token, the ``Service``
handle the fixtures in tests/conftest.py yield, plain JSON calls, and a room
invited to a session."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from web.app import create_app
from web.config import Config

ADMIN_TOKEN = "test-admin-token"
ADMIN_PASSWORD = "test-admin-password"  # the admin account of ``admin_service``
API = "/api/v1"


@dataclass
class Service:
    base: str
    http: aiohttp.ClientSession
    app: Any

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def create_session(self, title: str = "第一讲", **extra: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.base}/api/v1/sessions", headers=self.admin,
                                  json={"title": title, **extra}) as response:
            assert response.status == 201, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def session(self, session_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/api/v1/sessions/{session_id}",
                                 headers=self.admin) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body


async def call_json(service: Service, method: str, path: str, body: Any = None,
                    token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    """(status, parsed JSON body, or the text if it is not JSON)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with service.http.request(method, f"{service.base}{path}", json=body,
                                    headers=headers) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text) if text else None
        except ValueError:
            return response.status, text


async def invite(service: Service, session: dict[str, Any], name: str,
                 org_path: str = "北仑区") -> dict[str, Any]:
    status, site = await call_json(service, "POST", f"{API}/sites",
                              {"name": name, "org_path": org_path})
    assert status == 201, site
    status, invitation = await call_json(service, "POST",
                                    f"{API}/sessions/{session['id']}/invitations",
                                    {"site_id": site["id"]})
    assert status == 201, invitation
    return invitation  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Service]:
    """The service of ``config`` on a loopback port, with a client; both ended on exit."""
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    finally:
        await server.close()
