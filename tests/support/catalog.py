"""The catalog through its HTTP API: one request (``call``) and one of everything
(``make_world``), for the API tests and the room page's."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from tests.support.service import ADMIN_TOKEN, Service

API = "/api/v1"


CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Reply:
    status: int
    body: bytes
    headers: Any

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    service: Service,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = ADMIN_TOKEN,
    content_type: str | None = None,
    allow_redirects: bool = True,
) -> Reply:
    """One request; a dict or list body is sent as JSON."""
    headers: dict[str, str] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data: bytes | None
    if isinstance(body, dict | list):
        data = json.dumps(body).encode()
        headers["Content-Type"] = content_type or "application/json"
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    if data is not None and content_type is not None:
        headers["Content-Type"] = content_type
    async with service.http.request(method, service.base + path, data=data, headers=headers,
                                    allow_redirects=allow_redirects) as response:
        return Reply(response.status, await response.read(), response.headers)


def created(reply: Reply) -> dict[str, Any]:
    assert reply.status == 201, (reply.status, reply.text)
    body: dict[str, Any] = reply.json()
    return body


def tampered(token: str) -> str:
    """The first character of the signature replaced: its high bits change."""
    payload, _, signature = token.partition(".")
    first = "A" if signature[0] != "A" else "B"
    return f"{payload}.{first}{signature[1:]}"


@dataclass
class World:
    """One of everything, created through the API."""

    unit: dict[str, Any]
    course: dict[str, Any]
    site: dict[str, Any]
    other_site: dict[str, Any]
    session: dict[str, Any]
    invitation: dict[str, Any]


async def make_world(service: Service) -> World:
    unit = created(await call(service, "POST", f"{API}/units",
                              {"name": "学习贯彻党的二十大精神", "description": "第一专题"}))
    course = created(await call(service, "POST", f"{API}/courses",
                                {"title": "中国式现代化", "lecturer": "王教授",
                                 "unit_id": unit["id"]}))
    site = created(await call(service, "POST", f"{API}/sites",
                              {"name": "新碶街道分课堂", "org_path": "北仑区 / 新碶街道"}))
    other_site = created(await call(service, "POST", f"{API}/sites",
                                    {"name": "大碶街道分课堂", "org_path": "北仑区 / 大碶街道"}))
    start = time.time() + 3600
    session = created(await call(service, "POST", f"{API}/sessions",
                                 {"title": "第一讲", "course_id": course["id"], "batch": "2025-01",
                                  "scheduled_start": start, "scheduled_end": start + 5400}))
    invitation = created(await call(service, "POST",
                                    f"{API}/sessions/{session['id']}/invitations",
                                    {"site_id": site["id"]}))
    return World(unit, course, site, other_site, session, invitation)
