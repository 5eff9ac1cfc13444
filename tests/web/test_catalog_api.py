"""The catalog through HTTP: units, courses, sites (and their CSV import),
sessions and invitation links, with real aiortc peers where a link is used,
persistence across a restart, and the OpenAPI document against the router."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from classroom.access.signing import SECRET_FILE, InvitationClaims, Signer
from tests.support.catalog import API, CJK, Reply, World, call, created, make_world, tampered
from tests.support.media import new_pc, post_offer, start_publisher, start_viewer
from tests.support.service import ADMIN_TOKEN, Service
from web.api.contract import OPENAPI
from web.app import DATABASE_FILE, create_app
from web.config import Config
from web.keys import SESSIONS

# --------------------------------------------------------------------------
# helpers


def assert_api_error(reply: Reply, status: int, *mentions: str) -> str:
    """A JSON error body with a short message that names what was wrong."""
    assert reply.status == status, (reply.status, reply.text)
    assert reply.headers["Content-Type"].startswith("application/json"), reply.headers
    body = reply.json()
    assert isinstance(body, dict) and "error" in body, body
    message = body["error"]
    assert isinstance(message, str) and 0 < len(message) <= 300, body
    assert "Traceback" not in message, message
    for mention in mentions:
        assert mention in message, (mention, message)
    return message


def assert_bilingual_page(reply: Reply, status: int) -> None:
    """A page for a person, in Chinese unless ?lang=en: says what is wrong."""
    assert reply.status == status, (reply.status, reply.text)
    assert reply.headers["Content-Type"].startswith("text/html"), reply.headers
    assert CJK.search(reply.text), reply.text
    assert "Traceback" not in reply.text


async def english_page(service: Service, join: str, status: int) -> str:
    """The same page with ?lang=en: what is wrong, in English."""
    reply = await call(service, "GET", f"{join}?lang=en", token=None, allow_redirects=False)
    assert reply.status == status, (reply.status, reply.text)
    assert "invitation link" in reply.text, reply.text
    return reply.text


async def ok(service: Service, method: str, path: str, body: Any = None) -> Any:
    reply = await call(service, method, path, body)
    assert reply.status == 200, (method, path, reply.status, reply.text)
    return reply.json()


async def listing(service: Service, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await ok(service, "GET", f"{API}/{kind}"))[kind]
    return rows


async def snapshot(service: Service) -> dict[str, Any]:
    """Everything the admin API can write, as the API shows it."""
    state: dict[str, Any] = {}
    for kind in ("units", "courses", "sites", "sessions"):
        state[kind] = await listing(service, kind)
    state["invitations"] = {
        session["id"]: (await ok(service, "GET",
                                 f"{API}/sessions/{session['id']}/invitations"))["invitations"]
        for session in state["sessions"]
    }
    return state


@contextlib.asynccontextmanager
async def unchanged(service: Service) -> AsyncIterator[dict[str, Any]]:
    before = await snapshot(service)
    yield before
    assert await snapshot(service) == before


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float,
                     what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def offer_status(
    service: Service, kind: str, session_id: str, token: str
) -> tuple[int, str]:
    """POST a real aiortc offer to /whip or /whep; a resource that gets
    created is deleted again and the peer connection is always closed."""
    pc = new_pc()
    try:
        direction = "sendonly" if kind == "whip" else "recvonly"
        pc.addTransceiver("video", direction=direction)
        pc.addTransceiver("audio", direction=direction)
        status, text, location = await post_offer(
            service.http, f"{service.base}/{kind}/{session_id}", token, pc)
        if status == 201:
            assert location is not None
            reply = await call(service, "DELETE", location, token=token)
            assert reply.status == 200, reply.text
        return status, text
    finally:
        await pc.close()


async def wait_closed(pc: RTCPeerConnection, timeout: float = 5) -> None:
    async def closed() -> bool:
        return pc.connectionState in ("closed", "failed")

    await wait_until(closed, timeout, f"peer connection closed (is {pc.connectionState})")


async def wait_connected(pc: RTCPeerConnection, timeout: float = 10) -> None:
    async def connected() -> bool:
        return pc.connectionState == "connected"

    await wait_until(connected, timeout, f"peer connection connected (is {pc.connectionState})")


# --------------------------------------------------------------------------
# units, courses, sites: CRUD and validation


# kind: (the required text field, a valid body, a valid change)
KINDS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "units": ("name", {"name": "党史学习教育", "description": "2025 年第一专题"},
              {"name": "党纪学习教育", "description": ""}),
    "courses": ("title", {"title": "新时代的伟大变革", "lecturer": "王教授"},
                {"title": "新时代新征程", "lecturer": "李教授"}),
    "sites": ("name", {"name": "新碶街道分课堂", "org_path": "北仑区 / 新碶街道"},
              {"name": "小港街道分课堂", "org_path": "北仑区 / 小港街道"}),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_crud(service: Service, kind: str) -> None:
    _, body, change = KINDS[kind]
    assert await listing(service, kind) == []
    reply = await call(service, "POST", f"{API}/{kind}", body)
    row = created(reply)
    assert isinstance(row["id"], int)
    assert {k: row[k] for k in body} == body
    assert reply.headers["Location"] == f"{API}/{kind}/{row['id']}"
    assert await ok(service, "GET", reply.headers["Location"]) == row
    assert await listing(service, kind) == [row]

    updated = await ok(service, "PATCH", f"{API}/{kind}/{row['id']}", change)
    if kind == "sites":  # a site moved to another path hangs on that path's node
        assert updated["org_node_id"] != row["org_node_id"]
        row = {**row, "org_node_id": updated["org_node_id"]}
    assert updated == {**row, **change}
    assert await ok(service, "GET", f"{API}/{kind}/{row['id']}") == updated
    assert await listing(service, kind) == [updated]
    # An empty change changes nothing.
    assert await ok(service, "PATCH", f"{API}/{kind}/{row['id']}", {}) == updated

    reply = await call(service, "DELETE", f"{API}/{kind}/{row['id']}")
    assert reply.status == 204, reply.text
    assert reply.body == b""
    for method, data in (("GET", None), ("PATCH", change), ("DELETE", None)):
        assert_api_error(await call(service, method, f"{API}/{kind}/{row['id']}", data), 404)
    assert await listing(service, kind) == []


BAD_TEXT: dict[str, Any] = {
    "missing": ...,
    "empty": "",
    "blank": "  \t ",
    "null": None,
    "number": 42,
    "list": ["名称"],
    "too long": "长" * 201,
}


@pytest.mark.parametrize("bad", list(BAD_TEXT))
@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_bad_name_or_title_is_422_and_writes_nothing(
    service: Service, kind: str, bad: str
) -> None:
    field, body, _ = KINDS[kind]
    existing = created(await call(service, "POST", f"{API}/{kind}", body))
    invalid = {k: v for k, v in body.items() if k != field}
    if BAD_TEXT[bad] is not ...:
        invalid[field] = BAD_TEXT[bad]
    async with unchanged(service):
        assert_api_error(await call(service, "POST", f"{API}/{kind}", invalid), 422, field)
        if bad != "missing":  # PATCH leaves an absent field alone
            assert_api_error(await call(service, "PATCH", f"{API}/{kind}/{existing['id']}",
                                        invalid), 422, field)


@pytest.mark.parametrize("kind", list(KINDS))
async def test_names_up_to_200_characters_and_texts_up_to_2000(
    service: Service, kind: str
) -> None:
    field, body, _ = KINDS[kind]
    row = created(await call(service, "POST", f"{API}/{kind}", {**body, field: "长" * 200}))
    assert row[field] == "长" * 200
    other = {"units": "description", "courses": "lecturer", "sites": "org_path"}[kind]
    limit = 200 if kind == "courses" else 2000
    async with unchanged(service):
        assert_api_error(await call(service, "POST", f"{API}/{kind}",
                                    {**body, field: "另一个", other: "长" * (limit + 1)}),
                         422, other)
    # Surrounding blanks are not part of a name.
    row = created(await call(service, "POST", f"{API}/{kind}", {**body, field: "  第二个 "}))
    assert row[field] == "第二个"


@pytest.mark.parametrize("unit_id", [999999, -1, 0, "abc", True, 1.5, [1], {"id": 1}, 2**70])
async def test_a_course_with_an_unknown_unit_is_422(service: Service, unit_id: Any) -> None:
    unit = created(await call(service, "POST", f"{API}/units", {"name": "专题一"}))
    course = created(await call(service, "POST", f"{API}/courses",
                                {"title": "课程一", "unit_id": unit["id"]}))
    assert course["unit_name"] == "专题一"
    async with unchanged(service):
        assert_api_error(await call(service, "POST", f"{API}/courses",
                                    {"title": "课程二", "unit_id": unit_id}), 422, "unit_id")
        assert_api_error(await call(service, "PATCH", f"{API}/courses/{course['id']}",
                                    {"unit_id": unit_id}), 422, "unit_id")


async def test_deleting_a_unit_or_course_keeps_what_refers_to_it(service: Service) -> None:
    unit = created(await call(service, "POST", f"{API}/units", {"name": "专题一"}))
    course = created(await call(service, "POST", f"{API}/courses",
                                {"title": "课程一", "unit_id": unit["id"]}))
    session = created(await call(service, "POST", f"{API}/sessions",
                                 {"title": "第一讲", "course_id": course["id"]}))
    assert (session["course_title"], session["unit_name"]) == ("课程一", "专题一")
    assert (await call(service, "DELETE", f"{API}/units/{unit['id']}")).status == 204
    course = await ok(service, "GET", f"{API}/courses/{course['id']}")
    assert (course["unit_id"], course["unit_name"]) == (None, None)
    assert (await call(service, "DELETE", f"{API}/courses/{course['id']}")).status == 204
    session = await ok(service, "GET", f"{API}/sessions/{session['id']}")
    assert (session["title"], session["course_id"], session["course_title"]) == \
        ("第一讲", None, None)


async def test_a_duplicate_site_is_422(service: Service) -> None:
    site = created(await call(service, "POST", f"{API}/sites",
                              {"name": "新碶街道分课堂", "org_path": "北仑区 / 新碶街道"}))
    async with unchanged(service):
        for org_path in ("北仑区 / 新碶街道", "北仑区/新碶街道", " 北仑区 ／ 新碶街道 /"):
            assert_api_error(await call(service, "POST", f"{API}/sites",
                                        {"name": " 新碶街道分课堂 ", "org_path": org_path}),
                             422, "name")
    # The same name elsewhere is another site; moving it onto the first is a duplicate.
    other = created(await call(service, "POST", f"{API}/sites",
                               {"name": "新碶街道分课堂", "org_path": "北仑区 / 大碶街道"}))
    async with unchanged(service):
        assert_api_error(await call(service, "PATCH", f"{API}/sites/{other['id']}",
                                    {"org_path": "北仑区/新碶街道"}), 422, "name")
    # Renaming a site to its own name is no duplicate.
    assert await ok(service, "PATCH", f"{API}/sites/{site['id']}",
                    {"name": "新碶街道分课堂"}) == site


async def test_org_paths_are_normalized(service: Service) -> None:
    site = created(await call(service, "POST", f"{API}/sites",
                              {"name": "新碶街道分课堂", "org_path": "北仑区/ 新碶街道 "}))
    assert site["org_path"] == "北仑区 / 新碶街道"
    site = await ok(service, "PATCH", f"{API}/sites/{site['id']}",
                    {"org_path": "  宁波市／北仑区//新碶街道  "})
    assert site["org_path"] == "宁波市 / 北仑区 / 新碶街道"
    assert (await listing(service, "sites"))[0]["org_path"] == "宁波市 / 北仑区 / 新碶街道"
    bare = created(await call(service, "POST", f"{API}/sites", {"name": "区委党校"}))
    assert bare["org_path"] == ""


def fullwidth(number: int) -> str:
    return "".join(chr(ord("０") + int(digit)) for digit in str(number))


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_non_integer_id_in_the_path_is_404(
    service: Service, kind: str, method: str
) -> None:
    _, body, change = KINDS[kind]
    row = created(await call(service, "POST", f"{API}/{kind}", body))
    ids = ["abc", "1.5", "1e3", "0x1", "%E4%B8%80", "99999999999999999999999",
           f"{row['id']}abc", f"%2B{row['id']}", fullwidth(row["id"]), f"%20{row['id']}"]
    async with unchanged(service):
        for row_id in ids:
            reply = await call(service, method, f"{API}/{kind}/{row_id}",
                               change if method == "PATCH" else None)
            assert_api_error(reply, 404)


# --------------------------------------------------------------------------
# every admin route wants the admin token


ADMIN_ROUTES: list[tuple[str, str, Callable[[World], Any]]] = [
    ("POST", "/api/v1/units", lambda w: {"name": "新专题"}),
    ("GET", "/api/v1/units", lambda w: None),
    ("GET", "/api/v1/units/{unit}", lambda w: None),
    ("PATCH", "/api/v1/units/{unit}", lambda w: {"name": "改名"}),
    ("DELETE", "/api/v1/units/{unit}", lambda w: None),
    ("POST", "/api/v1/courses", lambda w: {"title": "新课程"}),
    ("GET", "/api/v1/courses", lambda w: None),
    ("GET", "/api/v1/courses/{course}", lambda w: None),
    ("PATCH", "/api/v1/courses/{course}", lambda w: {"title": "改名"}),
    ("DELETE", "/api/v1/courses/{course}", lambda w: None),
    ("POST", "/api/v1/sites", lambda w: {"name": "新分课堂"}),
    ("GET", "/api/v1/sites", lambda w: None),
    ("GET", "/api/v1/sites/{site}", lambda w: None),
    ("PATCH", "/api/v1/sites/{site}", lambda w: {"name": "改名"}),
    ("DELETE", "/api/v1/sites/{site}", lambda w: None),
    ("POST", "/api/v1/sites/import", lambda w: "name,org_path\r\n霞浦街道分课堂,北仑区\r\n"),
    ("POST", "/api/v1/sessions", lambda w: {"title": "第二讲"}),
    ("GET", "/api/v1/sessions", lambda w: None),
    ("GET", "/api/v1/sessions/{session}", lambda w: None),
    ("PATCH", "/api/v1/sessions/{session}", lambda w: {"title": "改名"}),
    ("DELETE", "/api/v1/sessions/{session}", lambda w: None),
    ("POST", "/api/v1/sessions/{session}/start", lambda w: None),
    ("POST", "/api/v1/sessions/{session}/invitations",
     lambda w: {"site_id": w.other_site["id"]}),
    ("GET", "/api/v1/sessions/{session}/invitations", lambda w: None),
    ("DELETE", "/api/v1/invitations/{invitation}", lambda w: None),
    ("GET", "/api/v1/invitations/{invitation}/qr.svg", lambda w: None),
    ("GET", "/api/v1/me", lambda w: None),
]
PUBLIC_API_ROUTES = {("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/rtc-config")}
# The session's publish token or the admin token (tests/pages/test_presenter_page.py).
PRESENTER_API_ROUTES = {("GET", "/api/v1/sessions/{session_id}/presence")}
# The room's invitation token (tests/pages/test_room_page.py).
ROOM_API_ROUTES = {("GET", "/api/v1/room"), ("POST", "/api/v1/room/headcount"),
                   ("POST", "/api/v1/room/timeshift"), ("GET", "/api/v1/room/quality"),
                   ("POST", "/api/v1/room/quality")}  # quality: tests/web/test_quality.py
# The archive's routes: admin-only and reader routes (tests/web/test_archive_api.py).
ARCHIVE_API_ROUTES = {
    ("POST", "/api/v1/sessions/{session_id}/recording"),
    ("GET", "/api/v1/sessions/{session_id}/recording"),
    ("DELETE", "/api/v1/sessions/{session_id}/recording"),
    ("GET", "/api/v1/archive"), ("GET", "/api/v1/archive/{item_id}"),
    ("PATCH", "/api/v1/archive/{item_id}"), ("DELETE", "/api/v1/archive/{item_id}"),
    ("POST", "/api/v1/library-links"), ("GET", "/api/v1/library-links"),
    ("DELETE", "/api/v1/library-links/{link_id}"),
    # tests/web/test_replay_sessions.py
    ("POST", "/api/v1/sessions/{session_id}/replay"),
}
# The room wall's WebSocket: admin token or login cookie with this server's Origin
# (tests/web/test_wall_metrics.py).
WALL_API_ROUTES = {("GET", "/api/v1/sessions/{session_id}/wall/ws")}
# The room-events WebSocket (研讨): invitation, publish or admin token, or the login
# cookie with this server's Origin (tests/web/test_discussion.py).
DISCUSSION_API_ROUTES = {("GET", "/api/v1/sessions/{session_id}/events/ws")}
# The organization tree, accounts and the audit log: every role against every route
# (tests/web/test_scopes.py).
ACCESS_API_ROUTES = {
    ("GET", "/api/v1/org"), ("POST", "/api/v1/org"), ("POST", "/api/v1/org/import"),
    ("GET", "/api/v1/org/{node_id}"), ("PATCH", "/api/v1/org/{node_id}"),
    ("DELETE", "/api/v1/org/{node_id}"),
    ("GET", "/api/v1/accounts"), ("POST", "/api/v1/accounts"),
    ("PATCH", "/api/v1/accounts/{account_id}"),
    ("POST", "/api/v1/accounts/{account_id}/password"),
    ("GET", "/api/v1/audit"),
}
# Attendance and its reports: admin only, with query parameters
# (tests/classroom/test_attendance.py).
ATTENDANCE_API_ROUTES = {
    ("GET", "/api/v1/sessions/{session_id}/attendance"),
    ("GET", "/api/v1/sessions/{session_id}/attendance/chart.svg"),
    ("GET", "/api/v1/reports/units/{unit_id}"),
    ("GET", "/api/v1/reports/units/{unit_id}/chart.svg"),
    ("GET", "/api/v1/reports/districts"),
    ("GET", "/api/v1/reports/districts/chart.svg"),
    # split by organizer (tests/web/test_scopes.py)
    ("GET", "/api/v1/reports/organizers"), ("GET", "/api/v1/reports/organizers/chart.svg"),
}
# Course packages: admin only (tests/web/test_packages_api.py).
PACKAGE_API_ROUTES = {
    ("POST", "/api/v1/packages"), ("GET", "/api/v1/packages"),
    ("GET", "/api/v1/packages/{package_id}"), ("GET", "/api/v1/packages/{package_id}/file"),
    ("POST", "/api/v1/package-imports"),
}
# Learners (学员): every role against every route (tests/web/test_scopes.py), and
# tests/web/test_learners_api.py.
LEARNER_API_ROUTES = {
    ("GET", "/api/v1/learners"), ("POST", "/api/v1/learners"),
    ("POST", "/api/v1/learners/import"), ("GET", "/api/v1/learners/{learner_id}"),
    ("PATCH", "/api/v1/learners/{learner_id}"), ("DELETE", "/api/v1/learners/{learner_id}"),
    ("POST", "/api/v1/learners/{learner_id}/link"),
    ("GET", "/api/v1/learners/{learner_id}/link/qr.svg"),
    ("DELETE", "/api/v1/learners/{learner_id}/link"),
    ("POST", "/api/v1/learning/units/{unit_id}/assign"),
    ("POST", "/api/v1/learning/units/{unit_id}/unassign"),
    ("GET", "/api/v1/learning/units/{unit_id}/videos"),
    ("PUT", "/api/v1/learning/units/{unit_id}/videos"),
    ("GET", "/api/v1/learning/report"), ("GET", "/api/v1/learning/report/chart.svg"),
    ("GET", "/api/v1/learning/units/{unit_id}/readings"),
    ("POST", "/api/v1/learning/units/{unit_id}/readings"),
    ("PATCH", "/api/v1/learning/readings/{reading_id}"),
    ("DELETE", "/api/v1/learning/readings/{reading_id}"),
    ("PUT", "/api/v1/learning/readings/{reading_id}/file"),
    ("GET", "/api/v1/learning/writeups"),
    ("POST", "/api/v1/learning/writeups/{writeup_id}/review"),
    ("GET", "/api/v1/learning/writeups/{writeup_id}/attachment"),
    ("GET", "/api/v1/learning/surveys"), ("POST", "/api/v1/learning/surveys"),
    ("GET", "/api/v1/learning/surveys/{survey_id}"),
    ("POST", "/api/v1/learning/surveys/{survey_id}/recipients"),
    ("POST", "/api/v1/learning/surveys/{survey_id}/close"),
    ("GET", "/api/v1/learning/surveys/{survey_id}/export"),
    ("GET", "/api/v1/learning/surveys/{survey_id}/chart.svg"),
}
PLACEHOLDERS = {"unit": "row_id", "course": "row_id", "site": "row_id",
                "session": "session_id", "invitation": "invitation_id"}


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route but HEAD and static files."""
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD" or isinstance(route.resource, web.StaticResource):
            continue
        assert route.resource is not None
        # {name:regex} placeholders are {name} in OpenAPI.
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical)
        routes.add((route.method, path))
    return routes


def test_the_auth_table_names_every_admin_route(tmp_path: Path) -> None:
    app = create_app(Config(data_dir=tmp_path))
    table = {(method, re.sub(r"\{(\w+)\}", lambda m: "{" + PLACEHOLDERS[m[1]] + "}", path))
             for method, path, _ in ADMIN_ROUTES}
    assert len(table) == len(ADMIN_ROUTES)
    api_routes = {(m, p) for m, p in app_routes(app) if p.startswith("/api/")}
    assert table == (api_routes - PUBLIC_API_ROUTES - PRESENTER_API_ROUTES - ROOM_API_ROUTES
                     - ARCHIVE_API_ROUTES - WALL_API_ROUTES - ATTENDANCE_API_ROUTES
                     - DISCUSSION_API_ROUTES - PACKAGE_API_ROUTES - ACCESS_API_ROUTES
                     - LEARNER_API_ROUTES)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
async def test_every_admin_route_wants_the_admin_token(
    service: Service, world: World, method: str, path: str, body: Callable[[World], Any]
) -> None:
    url = path.format(unit=world.unit["id"], course=world.course["id"], site=world.site["id"],
                      session=world.session["id"], invitation=world.invitation["id"])
    data = body(world)
    content_type = "text/csv" if isinstance(data, str) else None
    async with unchanged(service) as before:
        assert before["sessions"][0]["state"] == "scheduled"
        for token in (None, "wrong-token", world.invitation["token"], ADMIN_TOKEN + "x"):
            reply = await call(service, method, url, data, token=token,
                               content_type=content_type)
            assert_api_error(reply, 401)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        for token in (world.session["view_token"], world.session["publish_token"]):
            reply = await call(service, method, url, data, token=token,
                               content_type=content_type)
            assert_api_error(reply, 403)
    # The very same request is fine with the admin token.
    reply = await call(service, method, url, data, content_type=content_type)
    assert 200 <= reply.status < 300, (reply.status, reply.text)


# --------------------------------------------------------------------------
# importing sites from CSV

GOOD_CSV = ("name,org_path\r\n"
            "新碶街道分课堂,北仑区/ 新碶街道 \r\n"
            "大碶街道分课堂,北仑区 / 大碶街道\r\n"
            "\"戚家山街道, 第二分课堂\",北仑区/戚家山街道\r\n")


async def import_csv(service: Service, data: bytes | str,
                     content_type: str | None = "text/csv") -> Reply:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return await call(service, "POST", f"{API}/sites/import", data, content_type=content_type)


@pytest.mark.parametrize("bom", [False, True], ids=["utf-8", "utf-8 with BOM"])
async def test_importing_sites(service: Service, bom: bool) -> None:
    existing = created(await call(service, "POST", f"{API}/sites",
                                  {"name": "区委党校", "org_path": "北仑区"}))
    data = (b"\xef\xbb\xbf" if bom else b"") + GOOD_CSV.encode()
    body = created(await import_csv(service, data, "text/csv; charset=utf-8"))
    assert body["imported"] == 3
    assert [(s["name"], s["org_path"]) for s in body["sites"]] == [
        ("新碶街道分课堂", "北仑区 / 新碶街道"),
        ("大碶街道分课堂", "北仑区 / 大碶街道"),
        ("戚家山街道, 第二分课堂", "北仑区 / 戚家山街道"),
    ]
    sites = await listing(service, "sites")
    assert len(sites) == 4
    assert existing in sites
    assert all(site in sites for site in body["sites"])
    assert not any(site["name"].startswith("\ufeff") for site in sites)


async def test_importing_a_name_only_csv(service: Service) -> None:
    body = created(await import_csv(service, " name \n区委党校\n霞浦街道分课堂\n"))
    assert body["imported"] == 2
    assert {(s["name"], s["org_path"]) for s in await listing(service, "sites")} == \
        {("区委党校", ""), ("霞浦街道分课堂", "")}


BAD_ROWS = {
    "empty name": ",北仑区 / 柴桥街道",
    "blank name": "   ,北仑区 / 柴桥街道",
    "name too long": "长" * 201 + ",北仑区 / 柴桥街道",
    "org_path too long": "柴桥街道分课堂," + "长" * 2001,
    "duplicate in the file": "新碶街道分课堂,北仑区/新碶街道",
    "duplicate of a stored site": "区委党校,北仑区",
}


@pytest.mark.parametrize("bad", list(BAD_ROWS))
async def test_a_csv_with_a_bad_row_imports_nothing(service: Service, bad: str) -> None:
    created(await call(service, "POST", f"{API}/sites", {"name": "区委党校", "org_path": "北仑区"}))
    lines = GOOD_CSV.splitlines()
    data = "\r\n".join([*lines[:3], BAD_ROWS[bad], *lines[3:]]) + "\r\n"
    async with unchanged(service) as before:
        assert len(before["sites"]) == 1
        message = assert_api_error(await import_csv(service, data), 422, "row 3")
        assert "row 1" not in message and "row 2" not in message and "row 4" not in message
    # Without it the same file goes in whole.
    assert created(await import_csv(service, GOOD_CSV))["imported"] == 3


async def test_every_bad_row_is_named(service: Service) -> None:
    data = "name,org_path\r\n,a\r\n甲,b\r\n甲,b\r\n乙,c\r\n" + "长" * 201 + ",d\r\n"
    async with unchanged(service):
        assert_api_error(await import_csv(service, data), 422, "row 1", "row 3", "row 5")


@pytest.mark.parametrize(
    "data",
    ["", "\ufeff", "name,org_path\r\n", "org_path\r\n北仑区\r\n", "名称,组织\r\n甲,乙\r\n",
     "name,org_path\r\n" + "x" * 140_000 + ",北仑区\r\n"],
    ids=["empty", "BOM only", "header only", "no name column", "Chinese header",
         "a field over the csv module's limit"],
)
async def test_a_csv_without_sites_is_422(service: Service, data: str) -> None:
    async with unchanged(service):
        assert_api_error(await import_csv(service, data), 422)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/vnd.ms-excel", None],
)
async def test_a_csv_import_with_a_wrong_content_type_is_415(
    service: Service, content_type: str | None
) -> None:
    async with unchanged(service):
        assert_api_error(await import_csv(service, GOOD_CSV, content_type), 415)


@pytest.mark.parametrize("encoding", ["gbk", "utf-16", "gb18030"])
async def test_a_csv_import_that_is_not_utf8_is_400(service: Service, encoding: str) -> None:
    async with unchanged(service):
        assert_api_error(await import_csv(service, GOOD_CSV.encode(encoding)), 400, "UTF-8")


async def test_an_oversized_csv_import_is_413(service: Service) -> None:
    data = "name,org_path\r\n" + "".join(f"分课堂{i},北仑区\r\n" for i in range(60_000))
    assert len(data.encode()) > 1024 * 1024
    async with unchanged(service):
        reply = await call(service, "POST", f"{API}/sites/import",
                           io.BytesIO(data.encode()), content_type="text/csv")
        assert_api_error(reply, 413)


# --------------------------------------------------------------------------
# sessions


async def test_a_scheduled_session(service: Service) -> None:
    unit = created(await call(service, "POST", f"{API}/units", {"name": "专题一"}))
    course = created(await call(service, "POST", f"{API}/courses",
                                {"title": "课程一", "lecturer": "王教授",
                                 "unit_id": unit["id"]}))
    start = int(time.time()) + 86400
    fields = {"title": "第一讲", "course_id": course["id"], "batch": "2025年春季第3期",
              "scheduled_start": start, "scheduled_end": start + 5400}
    reply = await call(service, "POST", f"{API}/sessions", fields)
    session = created(reply)
    assert reply.headers["Location"] == f"{API}/sessions/{session['id']}"
    assert {k: session[k] for k in fields} == fields
    assert session["state"] == "scheduled"
    assert (session["course_title"], session["lecturer"], session["unit_name"]) == \
        ("课程一", "王教授", "专题一")
    assert session["video_codec"] == "H264"
    assert session["started_at"] is None and session["ended_at"] is None
    stored = await ok(service, "GET", f"{API}/sessions/{session['id']}")
    assert stored["stats"]["viewer_count"] == 0
    assert {k: v for k, v in stored.items() if k != "stats"} == session
    assert [s["id"] for s in await listing(service, "sessions")] == [session["id"]]
    # Only a title is needed; no schedule is a schedule too.
    bare = created(await call(service, "POST", f"{API}/sessions", {"title": "临时加讲"}))
    assert (bare["course_id"], bare["batch"], bare["scheduled_start"]) == (None, "", None)


@pytest.mark.parametrize(
    "fields",
    [
        {"scheduled_start": 1767225600, "scheduled_end": 1767225600 - 60},
        {"scheduled_start": 1767225600, "scheduled_end": 1767225600},
        {"scheduled_start": "2026-01-01T08:00:00"},
        {"scheduled_start": 1767225600000},  # milliseconds
        {"scheduled_end": True},
        {"course_id": 999999},
        {"course_id": "第一课"},
        {"course_id": 2**70},  # beyond SQLite's integers
        {"presenter_id": 141807425834496645136384},
        {"batch": "期" * 51},
        {"video_codec": "AV1"},
    ],
    ids=lambda fields: json.dumps(fields, ensure_ascii=True)[:40],
)
async def test_invalid_session_fields_are_422(service: Service, fields: dict[str, Any]) -> None:
    field = next(iter(fields)) if "scheduled_end" not in fields else "scheduled_end"
    async with unchanged(service):
        assert_api_error(await call(service, "POST", f"{API}/sessions",
                                    {"title": "第一讲", **fields}), 422, field)


async def test_changing_a_session(service: Service) -> None:
    start = 1767225600
    session = await service.create_session(scheduled_start=start, scheduled_end=start + 3600,
                                           video_codec="VP8")
    path = f"{API}/sessions/{session['id']}"
    changed = await ok(service, "PATCH", path, {"title": "第一讲（改）", "batch": "二期"})
    assert changed == {**session, "title": "第一讲（改）", "batch": "二期"}
    assert (await service.session(session["id"]))["title"] == "第一讲（改）"
    async with unchanged(service):
        for video_codec in ("H264", "VP8"):  # fixed once created, even to the same value
            assert_api_error(await call(service, "PATCH", path, {"video_codec": video_codec}),
                             422, "video_codec")
        # The end is checked against the stored start, and the other way round.
        assert_api_error(await call(service, "PATCH", path, {"scheduled_end": start - 1}),
                         422, "scheduled_end")
        assert_api_error(await call(service, "PATCH", path, {"scheduled_start": start + 3600}),
                         422, "scheduled_end")
        assert_api_error(await call(service, "PATCH", path, {"title": ""}), 422, "title")
        assert_api_error(await call(service, "PATCH", f"{API}/sessions/no-such-session",
                                    {"title": "x"}), 404)
    moved = await ok(service, "PATCH", path, {"scheduled_start": start + 7200,
                                              "scheduled_end": start + 9000})
    assert (moved["scheduled_start"], moved["scheduled_end"]) == (start + 7200, start + 9000)


@pytest.mark.webrtc
async def test_starting_and_ending_a_session(service: Service) -> None:
    session = await service.create_session()
    path = f"{API}/sessions/{session['id']}"
    started = await ok(service, "POST", path + "/start")
    assert started["state"] == "live"
    assert started["started_at"] is not None
    # Starting again changes nothing.
    assert await ok(service, "POST", path + "/start") == started
    assert (await service.session(session["id"]))["state"] == "live"
    assert (await offer_status(service, "whip", session["id"], session["publish_token"]))[0] \
        == 201

    reply = await call(service, "DELETE", path)
    assert reply.status == 204, reply.text
    ended = await service.session(session["id"])
    assert ended["state"] == "ended"
    assert ended["ended_at"] is not None and ended["started_at"] == started["started_at"]
    assert ended["stats"] is None
    assert (await offer_status(service, "whip", session["id"], session["publish_token"]))[0] \
        == 410
    assert (await offer_status(service, "whep", session["id"], session["view_token"]))[0] == 410
    async with unchanged(service):
        assert_api_error(await call(service, "POST", path + "/start"), 422)
    # Ending twice is harmless; an unknown session is 404.
    assert (await call(service, "DELETE", path)).status == 204
    assert (await service.session(session["id"]))["ended_at"] == ended["ended_at"]
    for method, suffix in (("POST", "/start"), ("DELETE", ""), ("GET", "/invitations")):
        assert_api_error(await call(service, method, f"{API}/sessions/nope{suffix}"), 404)


# --------------------------------------------------------------------------
# invitations


async def test_inviting_sites(service: Service, world: World) -> None:
    session_id = world.session["id"]
    invitation = world.invitation
    assert set(invitation) >= {"id", "url", "token", "expires_at"}
    assert invitation["url"] == f"{service.base}/join/{invitation['token']}"
    assert (invitation["session_id"], invitation["site_id"]) == (session_id, world.site["id"])
    assert invitation["revoked_at"] is None
    # By default a link lasts 30 days past the scheduled end.
    assert invitation["expires_at"] == world.session["scheduled_end"] + 30 * 86400
    expires_at = time.time() + 7 * 86400
    other = created(await call(service, "POST", f"{API}/sessions/{session_id}/invitations",
                               {"site_id": world.other_site["id"], "expires_at": expires_at}))
    assert other["expires_at"] == expires_at
    assert other["token"] != invitation["token"]
    listed = (await ok(service, "GET", f"{API}/sessions/{session_id}/invitations"))["invitations"]
    # Ordered by org_path: 大碶 before 新碶.
    assert [(i["id"], i["site_name"], i["org_path"], i["token"], i["connected"])
            for i in listed] == [
        (other["id"], "大碶街道分课堂", "北仑区 / 大碶街道", other["token"], False),
        (invitation["id"], "新碶街道分课堂", "北仑区 / 新碶街道", invitation["token"], False),
    ]


@pytest.mark.parametrize(
    "fields",
    [{}, {"site_id": None}, {"site_id": 999999}, {"site_id": "新碶"}, {"site_id": [1]},
     {"site_id": 2**70}, {"expires_at": 1700000000}, {"expires_at": "tomorrow"},
     {"expires_at": 1}],
    ids=lambda fields: json.dumps(fields)[:40],
)
async def test_invalid_invitations_are_422(
    service: Service, world: World, fields: dict[str, Any]
) -> None:
    body = {"site_id": world.other_site["id"], **fields}
    if not fields:
        del body["site_id"]
    field = next(iter(fields), "site_id")
    async with unchanged(service):
        assert_api_error(await call(service, "POST",
                                    f"{API}/sessions/{world.session['id']}/invitations", body),
                         422, field)


async def test_an_invitation_expiring_now_is_422(service: Service, world: World) -> None:
    async with unchanged(service):
        assert_api_error(await call(service, "POST",
                                    f"{API}/sessions/{world.session['id']}/invitations",
                                    {"site_id": world.other_site["id"],
                                     "expires_at": time.time()}), 422, "expires_at")


async def test_an_ended_session_invites_nobody(service: Service, world: World) -> None:
    path = f"{API}/sessions/{world.session['id']}"
    assert (await call(service, "DELETE", path)).status == 204
    async with unchanged(service):
        assert_api_error(await call(service, "POST", path + "/invitations",
                                    {"site_id": world.other_site["id"]}), 422)
        assert_api_error(await call(service, "POST", f"{API}/sessions/nope/invitations",
                                    {"site_id": world.other_site["id"]}), 404)
        assert_api_error(await call(service, "DELETE", f"{API}/invitations/nope"), 404)


async def invitations(service: Service, session_id: str) -> dict[str, dict[str, Any]]:
    body = await ok(service, "GET", f"{API}/sessions/{session_id}/invitations")
    return {item["id"]: item for item in body["invitations"]}


async def viewer_count(service: Service, session_id: str) -> int:
    count: int = (await service.session(session_id))["stats"]["viewer_count"]
    return count


@pytest.mark.webrtc
async def test_an_invitation_link_views_until_it_is_revoked(
    service: Service, world: World
) -> None:
    session = world.session
    invitation = world.invitation
    other = created(await call(service, "POST", f"{API}/sessions/{session['id']}/invitations",
                               {"site_id": world.other_site["id"]}))
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewer = None
    try:
        viewer = await start_viewer(service.http, service.base, session["id"],
                                    invitation["token"])
        await viewer.wait_for_frames(10, timeout=15)
        assert viewer.audio_frames > 0

        async def connected() -> bool:
            return (await invitations(service, session["id"]))[invitation["id"]]["connected"]

        await wait_until(connected, 10, "the invitation shows connected")
        assert not (await invitations(service, session["id"]))[other["id"]]["connected"]
        assert await viewer_count(service, session["id"]) == 1
        room = service.app[SESSIONS].get(session["id"]).broadcast
        assert [v.tag for v in room.viewers.values()] == [invitation["id"]]

        reply = await call(service, "DELETE", f"{API}/invitations/{invitation['id']}")
        assert reply.status == 204, reply.text
        await wait_closed(viewer.pc)

        async def nobody() -> bool:
            return await viewer_count(service, session["id"]) == 0

        await wait_until(nobody, 5, "the viewer count drops to 0")
        revoked = (await invitations(service, session["id"]))[invitation["id"]]
        assert revoked["revoked_at"] is not None and not revoked["connected"]
        status, text = await offer_status(service, "whep", session["id"], invitation["token"])
        assert status == 410 and "revoked" in text, (status, text)
        assert await viewer_count(service, session["id"]) == 0
        # Revoking again is harmless; the publisher was never touched.
        assert (await call(service, "DELETE", f"{API}/invitations/{invitation['id']}")).status \
            == 204
        assert (await invitations(service, session["id"]))[invitation["id"]]["revoked_at"] \
            == revoked["revoked_at"]
        assert publisher.pc.connectionState == "connected"
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.close()


@pytest.mark.webrtc
async def test_revoking_one_site_leaves_the_others_watching(
    service: Service, world: World
) -> None:
    session = world.session
    other = created(await call(service, "POST", f"{API}/sessions/{session['id']}/invitations",
                               {"site_id": world.other_site["id"]}))
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewers = []
    try:
        for token in (world.invitation["token"], other["token"], session["view_token"]):
            viewers.append(await start_viewer(service.http, service.base, session["id"], token))
        await asyncio.gather(*(v.wait_for_frames(10, timeout=15) for v in viewers))
        assert await viewer_count(service, session["id"]) == 3
        reply = await call(service, "DELETE", f"{API}/invitations/{world.invitation['id']}")
        assert reply.status == 204, reply.text
        await wait_closed(viewers[0].pc)
        assert await viewer_count(service, session["id"]) == 2
        for viewer in viewers[1:]:
            decoded = len(viewer.indices)
            await viewer.wait_for_frames(decoded + 15, timeout=10)
            assert viewer.pc.connectionState == "connected"
        listed = await invitations(service, session["id"])
        assert not listed[world.invitation["id"]]["connected"]
        assert listed[other["id"]]["connected"]
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


@pytest.mark.webrtc
async def test_tokens_that_are_not_for_this_use(service: Service, world: World) -> None:
    session = world.session
    token = world.invitation["token"]
    second = await service.create_session("第二讲")
    forged = Signer(b"another server's secret, 32 bytes").sign(InvitationClaims(
        world.invitation["id"], session["id"], world.invitation["expires_at"]))
    payload, _, signature = token.partition(".")
    cases = [
        ("whep", session["id"], tampered(token), 401),
        ("whep", session["id"], token[:-4], 401),
        ("whep", session["id"], payload + ".", 401),
        ("whep", session["id"], "." + signature, 401),
        ("whep", session["id"], forged, 401),
        ("whep", second["id"], token, 403),  # session A's link on session B
        ("whip", second["id"], token, 403),
        ("whep", "no-such-session", token, 404),
    ]
    async with unchanged(service):
        for kind, session_id, bearer, status in cases:
            got, text = await offer_status(service, kind, session_id, bearer)
            assert got == status, (kind, session_id, bearer, got, text)
        for session_id in (session["id"], second["id"]):
            assert await viewer_count(service, session_id) == 0
            assert (await service.session(session_id))["stats"]["publishers_accepted"] == 0
    # The genuine token still views, and publishes its room's uplink only
    # (tests/web/test_discussion.py): never the program.
    assert (await offer_status(service, "whep", session["id"], token))[0] == 201
    assert (await offer_status(service, "whip", session["id"], token))[0] == 201
    assert (await service.session(session["id"]))["stats"]["publishers_accepted"] == 0


@pytest.mark.webrtc
async def test_inviting_a_site_again_replaces_its_link(service: Service, world: World) -> None:
    session = world.session
    old = world.invitation
    viewer = await start_viewer(service.http, service.base, session["id"], old["token"])
    try:
        await wait_connected(viewer.pc)
        new = created(await call(service, "POST",
                                 f"{API}/sessions/{session['id']}/invitations",
                                 {"site_id": world.site["id"]}))
        assert new["id"] != old["id"] and new["token"] != old["token"]
        await wait_closed(viewer.pc)
        assert await viewer_count(service, session["id"]) == 0
        listed = await invitations(service, session["id"])
        assert list(listed) == [new["id"]]
        assert (await offer_status(service, "whep", session["id"], old["token"]))[0] == 410
        assert (await call(service, "GET", f"/join/{old['token']}", token=None,
                           allow_redirects=False)).status == 410
        assert (await offer_status(service, "whep", session["id"], new["token"]))[0] == 201
    finally:
        await viewer.close()


@pytest.mark.webrtc
async def test_an_invitation_stops_working_when_it_expires(
    service: Service, world: World
) -> None:
    expires_at = time.time() + 2
    invitation = created(await call(service, "POST",
                                    f"{API}/sessions/{world.session['id']}/invitations",
                                    {"site_id": world.other_site["id"],
                                     "expires_at": expires_at}))
    assert invitation["expires_at"] == expires_at
    join = f"/join/{invitation['token']}"
    assert (await call(service, "GET", join, token=None, allow_redirects=False)).status == 200
    status, text = await offer_status(service, "whep", world.session["id"], invitation["token"])
    assert status == 201, text
    assert time.time() < expires_at, "the checks above took too long to prove anything"
    await asyncio.sleep(expires_at - time.time() + 0.5)
    status, text = await offer_status(service, "whep", world.session["id"], invitation["token"])
    assert status == 410 and "expired" in text, (status, text)
    reply = await call(service, "GET", join, token=None, allow_redirects=False)
    assert_bilingual_page(reply, 410)
    assert "expired" in await english_page(service, join, 410)
    # The other site's link is not affected.
    assert (await offer_status(service, "whep", world.session["id"],
                               world.invitation["token"]))[0] == 201


# --------------------------------------------------------------------------
# /join/{token}


async def test_a_join_link_opens_the_room_page(service: Service, world: World) -> None:
    token = world.invitation["token"]
    reply = await call(service, "GET", f"/join/{token}", token=None, allow_redirects=False)
    assert reply.status == 200, reply.text
    assert "Location" not in reply.headers
    assert "<video" in reply.text and 'src="/static/room.js"' in reply.text
    # The URL the API hands out is that link.
    async with service.http.get(world.invitation["url"], allow_redirects=False) as response:
        assert response.status == 200
        assert await response.text() == reply.text


async def test_a_revoked_or_replaced_link_gets_a_410_page(
    service: Service, world: World
) -> None:
    token = world.invitation["token"]
    assert (await call(service, "DELETE", f"{API}/invitations/{world.invitation['id']}")).status \
        == 204
    reply = await call(service, "GET", f"/join/{token}", token=None, allow_redirects=False)
    assert_bilingual_page(reply, 410)
    assert "revoked" in await english_page(service, f"/join/{token}", 410)

    # A site invited again: its old link is withdrawn (expiry: see the test above).
    other = created(await call(service, "POST",
                               f"{API}/sessions/{world.session['id']}/invitations",
                               {"site_id": world.other_site["id"]}))
    join = f"/join/{other['token']}"
    assert (await call(service, "GET", join, token=None, allow_redirects=False)).status == 200
    created(await call(service, "POST", f"{API}/sessions/{world.session['id']}/invitations",
                       {"site_id": world.other_site["id"]}))
    reply = await call(service, "GET", join, token=None, allow_redirects=False)
    assert_bilingual_page(reply, 410)
    assert "withdrawn" in await english_page(service, join, 410)


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b", "...", "%E9%82%80%E8%AF%B7.%E9%93%BE%E6%8E%A5", "x" * 600 + ".y",
     "tampered", "forged", "view token"],
)
async def test_a_join_link_that_is_not_ours_is_403(
    service: Service, world: World, token: str
) -> None:
    if token == "tampered":
        token = tampered(world.invitation["token"])
    elif token == "forged":
        token = Signer(b"another server's secret, 32 bytes").sign(InvitationClaims(
            world.invitation["id"], world.session["id"], world.invitation["expires_at"]))
    elif token == "view token":
        token = world.session["view_token"]
    reply = await call(service, "GET", f"/join/{token}", token=None, allow_redirects=False)
    assert_bilingual_page(reply, 403)
    assert "Location" not in reply.headers


# --------------------------------------------------------------------------
# persistence across a restart


@contextlib.asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[Service]:
    """The app on ``data_dir``, stopped (rooms closed, database closed) on exit."""
    config = Config(host="127.0.0.1", port=0, data_dir=data_dir, ice_hosts=["127.0.0.1"],
                    admin_token=ADMIN_TOKEN)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    finally:
        await server.close()


def without_base(state: dict[str, Any], base: str) -> Any:
    """The state with the server's address (a new port after a restart) left out."""
    return json.loads(json.dumps(state).replace(base, "BASE"))


@pytest.mark.webrtc
async def test_everything_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running(data_dir) as first:
        world = await make_world(first)
        live = await ok(first, "POST", f"{API}/sessions/{world.session['id']}/start")
        ended = await first.create_session("已结束的一讲")
        assert (await call(first, "DELETE", f"{API}/sessions/{ended['id']}")).status == 204
        before = without_base(await snapshot(first), first.base)
        assert (await offer_status(first, "whep", world.session["id"],
                                   world.invitation["token"]))[0] == 201

    database = data_dir / DATABASE_FILE
    secret = data_dir / SECRET_FILE
    assert database.is_file() and database.stat().st_size > 0
    assert secret.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.stat().st_uid == os.getuid()
    secret_bytes = secret.read_bytes()
    assert len(secret_bytes) >= 32

    async with running(data_dir) as second:
        after = await snapshot(second)
        assert without_base(after, second.base) == before
        assert after["units"] == [world.unit]
        assert after["courses"] == [world.course]
        assert {s["id"] for s in after["sites"]} == {world.site["id"], world.other_site["id"]}
        stored = await second.session(world.session["id"])
        assert stored["state"] == "live" and stored["started_at"] == live["started_at"]
        assert stored["publish_token"] == world.session["publish_token"]
        assert stored["stats"]["viewer_count"] == 0  # peers do not survive a restart
        [invitation] = after["invitations"][world.session["id"]]
        assert invitation["token"] == world.invitation["token"]
        assert invitation["url"] == f"{second.base}/join/{world.invitation['token']}"

        for kind, token in (("whip", world.session["publish_token"]),
                            ("whep", world.session["view_token"]),
                            ("whep", world.invitation["token"])):
            status, text = await offer_status(second, kind, world.session["id"], token)
            assert status == 201, (kind, text)
        reply = await call(second, "GET", f"/join/{world.invitation['token']}", token=None,
                           allow_redirects=False)
        assert reply.status == 200
        # An ended session stays ended, its tokens with it.
        assert (await offer_status(second, "whep", ended["id"], ended["view_token"]))[0] == 410
        assert (await offer_status(second, "whip", ended["id"], ended["publish_token"]))[0] \
            == 410
        # New rows continue the numbering.
        unit = created(await call(second, "POST", f"{API}/units", {"name": "专题二"}))
        assert unit["id"] > world.unit["id"]
    assert secret.read_bytes() == secret_bytes


# --------------------------------------------------------------------------
# the OpenAPI document


PAGE_ROUTES = {("GET", "/"), ("GET", "/healthz"), ("GET", "/join/{token}"),
               ("GET", "/login"), ("POST", "/login"), ("POST", "/logout"),
               ("GET", "/present/{session_id}"), ("GET", "/admin"),
               ("GET", "/library/k/{token}"), ("GET", "/library"),
               ("GET", "/library/watch/{item_id}"), ("GET", "/admin/wall/{session_id}"),
               ("GET", "/admin/reports"), ("GET", "/learn/{token}")}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def documented_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in OPENAPI["paths"].items()
            for method in item if method in METHODS}


def test_the_openapi_document_describes_every_route(tmp_path: Path) -> None:
    app = create_app(Config(data_dir=tmp_path))
    routes = app_routes(app) - PAGE_ROUTES
    documented = documented_routes()
    assert sorted(routes - documented) == [], "routes missing from the OpenAPI document"
    assert sorted(documented - routes) == [], "documented operations that do not exist"


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = OPENAPI
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_the_openapi_document_is_consistent() -> None:
    for ref in refs(OPENAPI):
        resolve(ref)
    admin = {(method, re.sub(r"\{(\w+)\}", lambda m: "{" + PLACEHOLDERS[m[1]] + "}", path))
             for method, path, _ in ADMIN_ROUTES}
    for path, item in OPENAPI["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            params = item.get("parameters", []) + operation.get("parameters", [])
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == names, (where, declared, names)
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), where
            if (method.upper(), path) in admin:
                assert operation.get("security") == [{"bearer": []}], where
                assert {"401", "403"} <= set(responses), where
            if method in ("post", "patch") and "requestBody" in operation:
                content = operation["requestBody"]["content"]
                assert content, where
                if "application/json" in content:
                    assert {"400", "415", "422"} <= set(responses), where
            if names and (method.upper(), path) in admin:
                assert "404" in responses, where
    for name in ("Unit", "Course", "Site", "Session", "Invitation"):
        schema = OPENAPI["components"]["schemas"][name]
        assert schema["type"] == "object" and "id" in schema["properties"], name


async def test_the_openapi_document_is_served(service: Service) -> None:
    reply = await call(service, "GET", f"{API}/openapi.json", token=None)
    assert reply.status == 200
    assert reply.json() == json.loads(json.dumps(OPENAPI))


@pytest.mark.webrtc
async def test_deleting_a_site_disconnects_the_room_watching_through_it(
    service: Service, world: World
) -> None:
    session = world.session
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewer = None
    try:
        viewer = await start_viewer(service.http, service.base, session["id"],
                                    world.invitation["token"])
        await viewer.wait_for_frames(10, timeout=15)
        reply = await call(service, "DELETE", f"{API}/sites/{world.invitation['site_id']}")
        assert reply.status == 204, reply.text
        await wait_closed(viewer.pc)

        async def nobody() -> bool:
            return await viewer_count(service, session["id"]) == 0

        await wait_until(nobody, 5, "the viewer count drops to 0")
        status, _ = await offer_status(service, "whep", session["id"], world.invitation["token"])
        assert status == 410
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.close()
