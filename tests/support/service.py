"""The relay under test as its clients see it: the admin token, the ``Service``
handle the fixtures in tests/conftest.py yield, and plain JSON calls."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

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
