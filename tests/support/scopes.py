"""Two districts and one account of each role, for the scope tests: the city
and 北仑区 (district A) and 鄞州区 (district B), each with a site, a session
and a ready archive item; every role logged in (a login session made
directly, without scrypt), and a request as any of them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from classroom.access.accounts import Admin
from classroom.access.roles import AccountRole
from classroom.db import ROOT_NODE
from tests.support.catalog import Reply, created
from tests.support.service import ADMIN_TOKEN, Service
from web.auth import COOKIE, CSRF_HEADER
from web.keys import ACCOUNTS, ARCHIVE

API = "/api/v1"
ROLES = ("city", "district_a", "district_b", "presenter", "auditor", "anonymous")
# The tables a request could change, for "nothing changed".
TABLES = ("org_nodes", "sites", "sessions", "invitations", "archive_items", "admins",
          "login_sessions", "library_links", "units", "courses", "learners", "learner_units",
          "unit_videos", "reading_items", "reading_marks", "writeups",
          "surveys", "survey_recipients", "survey_answers")


@dataclass
class Login:
    account_id: int | None
    cookie: str | None
    csrf: str | None

    def headers(self) -> dict[str, str]:
        if self.cookie is None:
            return {}
        return {"Cookie": f"{COOKIE}={self.cookie}", CSRF_HEADER: self.csrf or ""}


@dataclass
class Districts:
    service: Service
    a: dict[str, Any]  # org nodes
    b: dict[str, Any]
    logins: dict[str, Login] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)

    async def call(self, role: str, method: str, path: str, body: Any = None,
                   content_type: str | None = None) -> Reply:
        """A request as ``role`` (its login cookie and CSRF token, this server's Origin)."""
        headers = {"Origin": self.service.base, **self.logins[role].headers()}
        data: bytes | None = None
        if isinstance(body, dict | list):
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif isinstance(body, str):
            data = body.encode()
            headers["Content-Type"] = content_type or "text/csv"
        async with self.service.http.request(method, self.service.base + path, data=data,
                                             headers=headers) as response:
            return Reply(response.status, await response.read(), response.headers)

    async def ok(self, role: str, method: str, path: str, body: Any = None) -> Any:
        reply = await self.call(role, method, path, body)
        assert reply.status in (200, 201), (role, method, path, reply.status, reply.text)
        return reply.json()

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        db = self.service.app[ACCOUNTS].db
        return {table: [tuple(row.values()) for row in db.all(
            f"SELECT * FROM {table} ORDER BY rowid")] for table in TABLES}


async def _as_city(service: Service, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with service.http.request(method, service.base + path, json=body,
                                    headers=headers) as response:
        reply = Reply(response.status, await response.read(), response.headers)
    return created(reply) if method == "POST" else reply.json()


def _login(service: Service, username: str, role: AccountRole, node: int) -> Login:
    """An account with a login session (no password: nobody logs in with it)."""
    accounts = service.app[ACCOUNTS]
    row = accounts.db.one("SELECT id FROM admins WHERE username = ?", (username,))
    if row is None:
        account_id = accounts.db.execute(
            "INSERT INTO admins (username, password_hash, created_at, role, org_node_id) "
            "VALUES (?, 'no-login', ?, ?, ?)", (username, time.time(), role.value, node))
    else:
        account_id = int(row["id"])
    token, session = accounts.start_session(Admin(account_id, username, role, node))
    return Login(account_id, token, session.csrf_token)


async def make_districts(service: Service) -> Districts:
    a = await _as_city(service, "POST", f"{API}/org", {"name": "北仑区", "parent_id": ROOT_NODE})
    b = await _as_city(service, "POST", f"{API}/org", {"name": "鄞州区", "parent_id": ROOT_NODE})
    world = Districts(service, a, b)
    world.logins = {
        "city": _login(service, "admin", AccountRole.CITY_ADMIN, ROOT_NODE),
        "district_a": _login(service, "beilun", AccountRole.DISTRICT_ADMIN, a["id"]),
        "district_b": _login(service, "yinzhou", AccountRole.DISTRICT_ADMIN, b["id"]),
        "presenter": _login(service, "lecturer-a", AccountRole.PRESENTER, a["id"]),
        "auditor": _login(service, "auditor", AccountRole.AUDITOR, ROOT_NODE),
        "anonymous": Login(None, None, None),
    }
    ids = world.ids
    site_a = await world.ok("district_a", "POST", f"{API}/sites",
                            {"name": "新碶街道分课堂", "org_path": "北仑区 / 新碶街道"})
    site_b = await world.ok("district_b", "POST", f"{API}/sites",
                            {"name": "首南街道分课堂", "org_path": "鄞州区 / 首南街道"})
    ids["site_a"], ids["site_b"] = site_a["id"], site_b["id"]
    ids["town_a"] = site_a["org_node_id"]
    city_session = await _as_city(service, "POST", f"{API}/sessions", {"title": "市级专题第一讲"})
    ids["city_session"] = city_session["id"]
    for key, site in (("city_inv_a", site_a), ("city_inv_b", site_b)):
        invitation = await _as_city(service, "POST",
                                    f"{API}/sessions/{city_session['id']}/invitations",
                                    {"site_id": site["id"]})
        ids[key] = invitation["id"]
    for district, site in (("a", site_a), ("b", site_b)):
        role = f"district_{district}"
        extra = {"presenter_id": world.logins["presenter"].account_id} if district == "a" else {}
        session = await world.ok(role, "POST", f"{API}/sessions",
                                 {"title": f"夜学 {district}", **extra})
        ids[f"session_{district}"] = session["id"]
        invitation = await world.ok(role, "POST", f"{API}/sessions/{session['id']}/invitations",
                                    {"site_id": site["id"]})
        ids[f"inv_{district}"] = invitation["id"]
    archive = service.app[ARCHIVE]
    for key, owner in (("item_city", ROOT_NODE), ("item_a", a["id"]), ("item_b", b["id"])):
        ids[key] = archive.create_item(title=f"录像 {key}", recorded_at=time.time(),
                                       origin="import", state="ready", owner_id=owner)["id"]
    ids["node_a"], ids["node_b"] = a["id"], b["id"]
    ids["presenter"] = world.logins["presenter"].account_id
    return world
