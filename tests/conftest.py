from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.browser import Chromium, artifact_name, open_chromium
from web.app import create_app
from web.config import Config

ADMIN_TOKEN = "test-admin-token"
ADMIN_PASSWORD = "test-admin-password"  # the admin account of ``admin_service``


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


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN)
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, app)
    await server.close()


@pytest.fixture
async def admin_service(tmp_path: Path) -> AsyncIterator[Service]:
    """The service with the admin account's password set (ADMIN_PASSWORD), and a
    client that keeps cookies (for logging in)."""
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN,
                    admin_password=ADMIN_PASSWORD)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    await server.close()


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


@pytest.fixture
async def chromium(request: pytest.FixtureRequest) -> AsyncIterator[Chromium]:
    """A headless Chromium for this test only (see tests/browser.py)."""
    async with open_chromium(artifact_name(request.node.name)) as browser:
        yield browser
