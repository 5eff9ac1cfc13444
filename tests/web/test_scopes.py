"""Roles and scopes on the server: every admin API route × {city admin, district A
admin, district B admin, presenter, auditor, no login}; what each list shows each
role; the organization tree's bad input; accounts; the audit log."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from typing import Any

import pytest

from classroom.live.wall import scoped_snapshot
from tests.support.scopes import ROLES, Districts, make_districts
from tests.support.service import Service
from tests.web.test_catalog_api import (
    ARCHIVE_API_ROUTES,
    ATTENDANCE_API_ROUTES,
    DISCUSSION_API_ROUTES,
    PUBLIC_API_ROUTES,
    WALL_API_ROUTES,
    app_routes,
)
from web.app import create_app
from web.config import Config
from web.keys import ACCOUNTS

API = "/api/v1"
READERS = {"city", "district_a", "district_b", "auditor"}
EVERYONE = READERS | {"presenter"}
MANAGERS = {"city", "district_a", "district_b"}
A = {"city", "district_a"}  # who manages district A's objects
A_READ = A | {"auditor"}  # ... and who reads them


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {name} from Districts.ids
    allowed: frozenset[str]
    body: Any = None

    @property
    def route(self) -> str:
        """The route's template, as the application names it."""
        names = {"session_a": "session_id", "session_b": "session_id",
                 "city_session": "session_id", "inv_a": "invitation_id",
                 "city_inv_b": "invitation_id", "site_a": "row_id", "site_b": "row_id",
                 "item_a": "item_id", "item_b": "item_id", "item_city": "item_id",
                 "node_a": "node_id", "town_a": "node_id", "empty_a": "node_id",
                 "presenter": "account_id", "unit": "row_id", "course": "row_id",
                 "course_a": "row_id",
                 "link": "link_id", "report_unit": "unit_id", "export": "package_id",
                 "learner_a": "learner_id", "reading": "reading_id",
                 "writeup_a": "writeup_id", "survey": "survey_id"}
        return re.sub(r"\{(\w+)\}", lambda m: "{" + names[m[1]] + "}", self.path)


def case(method: str, path: str, allowed: set[str], body: Any = None) -> Case:
    return Case(method, path, frozenset(allowed), body)


CSV_SITES_A = "name,org_path\r\n大碶街道分课堂,北仑区 / 大碶街道\r\n"
CSV_LEARNERS_A = "name,org_path\r\n新学员,北仑区\r\n"
CSV_ORG_A = "code,name,parent,kind\r\nt1,霞浦街道,北仑区,town\r\n"
DAYS = "from=2000-01-01&to=2000-12-31"

CASES: list[Case] = [
    # sessions
    case("GET", "/api/v1/sessions", EVERYONE),
    case("POST", "/api/v1/sessions", MANAGERS, {"title": "新场次"}),
    case("GET", "/api/v1/sessions/{session_a}", A_READ | {"presenter"}),
    case("GET", "/api/v1/sessions/{city_session}", READERS),  # read-only from below
    case("PATCH", "/api/v1/sessions/{session_a}", A, {"title": "改名"}),
    case("PATCH", "/api/v1/sessions/{city_session}", {"city"}, {"title": "改名"}),
    case("POST", "/api/v1/sessions/{session_a}/start", A),
    case("POST", "/api/v1/sessions/{session_a}/replay", A, {"action": "pause"}),
    case("POST", "/api/v1/sessions/{session_a}/invitations", A, {"site_id": "{site_a}"}),
    case("POST", "/api/v1/sessions/{city_session}/invitations", {"city"},
         {"site_id": "{site_a}"}),
    case("GET", "/api/v1/sessions/{session_a}/invitations", A_READ),
    case("GET", "/api/v1/sessions/{city_session}/invitations", READERS),  # own rooms only
    case("DELETE", "/api/v1/invitations/{inv_a}", A),
    case("DELETE", "/api/v1/invitations/{city_inv_b}", {"city"}),
    case("GET", "/api/v1/invitations/{inv_a}/qr.svg", A),
    case("DELETE", "/api/v1/sessions/{session_a}", A),
    # the catalog: units and courses are the city's, sites each district's
    case("GET", "/api/v1/units", READERS),
    case("POST", "/api/v1/units", {"city"}, {"name": "专题"}),
    case("GET", "/api/v1/units/{unit}", READERS),
    case("PATCH", "/api/v1/units/{unit}", {"city"}, {"name": "专题二"}),
    case("DELETE", "/api/v1/units/{unit}", {"city"}),
    case("GET", "/api/v1/courses", READERS),
    case("POST", "/api/v1/courses", MANAGERS, {"title": "课程"}),  # a district's lecturers
    case("GET", "/api/v1/courses/{course}", READERS),  # the city's
    case("GET", "/api/v1/courses/{course_a}", A_READ),
    case("PATCH", "/api/v1/courses/{course}", {"city"}, {"title": "课程二"}),
    case("PATCH", "/api/v1/courses/{course_a}", A, {"title": "课程三"}),
    case("DELETE", "/api/v1/courses/{course}", {"city"}),
    case("DELETE", "/api/v1/courses/{course_a}", A),
    case("GET", "/api/v1/sites", READERS),
    case("POST", "/api/v1/sites", A, {"name": "新站", "org_path": "北仑区 / 新碶街道"}),
    case("GET", "/api/v1/sites/{site_a}", A_READ),
    case("PATCH", "/api/v1/sites/{site_a}", A, {"name": "新碶分课堂"}),
    # District B cannot move its own site into district A.
    case("PATCH", "/api/v1/sites/{site_b}", {"city"}, {"org_path": "北仑区 / 新碶街道"}),
    case("DELETE", "/api/v1/sites/{site_a}", A),
    case("POST", "/api/v1/sites/import", A, CSV_SITES_A),
    # the archive
    case("POST", "/api/v1/sessions/{session_a}/recording", A),
    case("GET", "/api/v1/sessions/{session_a}/recording", A_READ),
    case("DELETE", "/api/v1/sessions/{session_a}/recording", A),
    case("GET", "/api/v1/archive", READERS),
    case("GET", "/api/v1/archive/{item_a}", A_READ),
    case("GET", "/api/v1/archive/{item_city}", READERS),  # the city's ready lectures
    case("PATCH", "/api/v1/archive/{item_a}", A, {"title": "改名"}),
    case("PATCH", "/api/v1/archive/{item_city}", {"city"}, {"title": "改名"}),
    case("DELETE", "/api/v1/archive/{item_a}", A),
    case("GET", "/archive/{item_b}/media", {"city", "district_b", "auditor"}),
    case("GET", "/archive/{item_b}/poster.jpg", {"city", "district_b", "auditor"}),
    case("GET", "/archive/{item_b}/stage", {"city", "district_b", "auditor"}),
    case("POST", "/api/v1/library-links", {"city"}, {"label": "干部"}),
    case("GET", "/api/v1/library-links", {"city"}),
    case("DELETE", "/api/v1/library-links/{link}", {"city"}),
    # attendance and reports
    case("GET", "/api/v1/sessions/{session_a}/attendance", A_READ),
    case("GET", "/api/v1/sessions/{session_a}/attendance/chart.svg", A_READ),
    case("GET", "/api/v1/sessions/{city_session}/attendance", READERS),  # own rooms only
    case("GET", "/api/v1/reports/units/{report_unit}", READERS),
    case("GET", "/api/v1/reports/units/{report_unit}/chart.svg", READERS),
    case("GET", f"/api/v1/reports/districts?prefix=北仑区&{DAYS}", A_READ),
    case("GET", f"/api/v1/reports/districts/chart.svg?prefix=北仑区&{DAYS}", A_READ),
    case("GET", f"/api/v1/reports/organizers?{DAYS}", READERS),
    case("GET", f"/api/v1/reports/organizers/chart.svg?{DAYS}", READERS),
    # the wall and the room events (sockets; without Upgrade they answer one state)
    case("GET", "/api/v1/sessions/{session_a}/wall/ws", A_READ),
    case("GET", "/api/v1/sessions/{city_session}/wall/ws", READERS),  # own rooms only
    case("GET", "/api/v1/sessions/{session_a}/events/ws", A),
    # the organization tree
    case("GET", "/api/v1/org", READERS),
    case("POST", "/api/v1/org", A, {"name": "大碶街道", "parent_id": "{node_a}"}),
    case("POST", "/api/v1/org/import", A, CSV_ORG_A),
    case("GET", "/api/v1/org/{node_a}", A_READ),
    case("PATCH", "/api/v1/org/{town_a}", A, {"name": "新碶"}),
    case("PATCH", "/api/v1/org/{node_a}", {"city"}, {"name": "北仑"}),  # not its own node
    case("DELETE", "/api/v1/org/{empty_a}", A),
    # accounts and the audit log
    case("GET", "/api/v1/accounts", MANAGERS),
    case("POST", "/api/v1/accounts", A,
         {"username": "new-presenter", "role": "presenter", "org_node_id": "{node_a}"}),
    case("PATCH", "/api/v1/accounts/{presenter}", A, {"disabled": True}),
    case("POST", "/api/v1/accounts/{presenter}/password", A, {}),
    case("GET", "/api/v1/audit", {"city"}),
    # course packages: the city's (a district server imports as its own city admin)
    case("GET", "/api/v1/packages", {"city"}),
    case("POST", "/api/v1/packages", {"city"}, {"item_ids": ["{item_city}"]}),
    case("GET", "/api/v1/packages/{export}", {"city"}),  # none such: 404 for the city
    case("GET", "/api/v1/packages/{export}/file", {"city"}),
    case("POST", "/api/v1/package-imports", {"city"}, "not a package"),
    case("GET", "/api/v1/me", EVERYONE),
    # learners (学员): on org nodes, scoped as sites are; units stay the city's
    case("GET", "/api/v1/learners", READERS),
    case("POST", "/api/v1/learners", A, {"name": "新学员", "org_node_id": "{node_a}"}),
    case("POST", "/api/v1/learners/import", A, CSV_LEARNERS_A),
    case("GET", "/api/v1/learners/{learner_a}", A_READ),
    case("PATCH", "/api/v1/learners/{learner_a}", A, {"position": "科长"}),
    case("DELETE", "/api/v1/learners/{learner_a}", A),
    case("POST", "/api/v1/learners/{learner_a}/link", A),
    case("GET", "/api/v1/learners/{learner_a}/link/qr.svg", A),
    case("DELETE", "/api/v1/learners/{learner_a}/link", A),
    case("POST", "/api/v1/learning/units/{report_unit}/assign", A,
         {"learner_ids": ["{learner_a}"]}),
    case("POST", "/api/v1/learning/units/{report_unit}/unassign", A,
         {"learner_ids": ["{learner_a}"]}),
    case("GET", "/api/v1/learning/units/{report_unit}/videos", READERS),
    case("PUT", "/api/v1/learning/units/{report_unit}/videos", {"city"}, {"item_ids": []}),
    case("GET", "/api/v1/learning/report", READERS),
    case("GET", "/api/v1/learning/report/chart.svg", READERS),
    case("GET", "/api/v1/learning/units/{report_unit}/readings", READERS),
    case("POST", "/api/v1/learning/units/{report_unit}/readings", {"city"}, {"title": "新书"}),
    case("PATCH", "/api/v1/learning/readings/{reading}", {"city"}, {"title": "改名"}),
    case("DELETE", "/api/v1/learning/readings/{reading}", {"city"}),
    case("PUT", "/api/v1/learning/readings/{reading}/file", {"city"}, "%PDF-1.4 x"),
    case("GET", "/api/v1/learning/writeups", READERS),
    case("POST", "/api/v1/learning/writeups/{writeup_a}/review", A,
         {"decision": "return", "comment": "请补充"}),
    case("GET", "/api/v1/learning/writeups/{writeup_a}/attachment", A_READ),
    case("GET", "/api/v1/learning/surveys", READERS),
    case("POST", "/api/v1/learning/surveys", {"city"},
         {"title": "需求调研", "questions": [{"kind": "text", "text": "需求"}]}),
    case("GET", "/api/v1/learning/surveys/{survey}", READERS),
    case("POST", "/api/v1/learning/surveys/{survey}/recipients", A,
         {"learner_ids": ["{learner_a}"]}),
    case("POST", "/api/v1/learning/surveys/{survey}/close", {"city"}),
    case("GET", "/api/v1/learning/surveys/{survey}/export", READERS),
    case("GET", "/api/v1/learning/surveys/{survey}/chart.svg?question=1", READERS),
]

# Routes the matrix leaves to other files: public, the room's link, the presenter's
# token (tests/pages/test_presenter_page.py).
ELSEWHERE = PUBLIC_API_ROUTES | {
    ("GET", "/api/v1/room"), ("POST", "/api/v1/room/headcount"),
    ("POST", "/api/v1/room/timeshift"), ("GET", "/api/v1/room/quality"),
    ("POST", "/api/v1/room/quality"), ("GET", "/api/v1/sessions/{session_id}/presence")}


def test_the_matrix_names_every_admin_route(tmp_path: Any) -> None:
    app = create_app(Config(data_dir=tmp_path))
    routes = {(m, p) for m, p in app_routes(app)
              if p.startswith("/api/") or p.startswith("/archive/")}
    named = {(c.method, c.route.split("?")[0]) for c in CASES}
    assert routes - ELSEWHERE == named
    # The other files' tables are covered here too.
    assert named >= (ARCHIVE_API_ROUTES | ATTENDANCE_API_ROUTES | WALL_API_ROUTES
            | DISCUSSION_API_ROUTES)


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = re.fullmatch(r"\{(\w+)\}", value)
        if whole:
            return ids[whole[1]]
        return re.sub(r"\{(\w+)\}", lambda m: str(ids[m[1]]), value)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


async def _more_objects(world: Districts) -> None:
    ids = world.ids
    ids["export"] = "no-such-export"
    unit = await world.ok("city", "POST", f"{API}/units", {"name": "党史"})
    course = await world.ok("city", "POST", f"{API}/courses", {"title": "第一课"})
    course_a = await world.ok("district_a", "POST", f"{API}/courses",
                              {"title": "区委书记讲党课", "lecturer": "北仑区委书记"})
    link = await world.ok("city", "POST", f"{API}/library-links", {"label": "全市干部"})
    empty = await world.ok("district_a", "POST", f"{API}/org",
                           {"name": "空节点", "parent_id": world.a["id"]})
    learner_a = await world.ok("district_a", "POST", f"{API}/learners",
                               {"name": "北仑学员", "org_node_id": world.a["id"]})
    reading = await world.ok("city", "POST", f"{API}/learning/units/{unit['id']}/readings",
                             {"title": "研读书目"})
    await world.ok("district_a", "POST", f"{API}/learning/units/{unit['id']}/assign",
                   {"learner_ids": [learner_a["id"]]})
    link_a = await world.ok("district_a", "POST", f"{API}/learners/{learner_a['id']}/link")
    async with world.service.http.put(
            f"{world.service.base}/learn/{link_a['token']}/writeups/{unit['id']}",
            json={"text": "学用成果"}) as response:
        assert response.status == 200, await response.text()
        writeup = await response.json()
    survey = await world.ok("city", "POST", f"{API}/learning/surveys", {
        "title": "需求调研", "questions": [{"kind": "single", "text": "需求",
                                          "choices": ["治理", "振兴"]}]})
    ids.update(unit=unit["id"], course=course["id"], course_a=course_a["id"], link=link["id"],
               empty_a=empty["id"], report_unit=unit["id"], learner_a=learner_a["id"],
               reading=reading["id"], writeup_a=writeup["id"], survey=survey["id"])


@pytest.mark.parametrize("entry", CASES, ids=[f"{c.method} {c.path}" for c in CASES])
async def test_scope_matrix(service: Service, entry: Case) -> None:
    """Each role gets its answer; a refused request changes nothing."""
    world = await make_districts(service)
    await _more_objects(world)
    path = _fill(entry.path, world.ids)
    body = _fill(entry.body, world.ids)
    # The refused first (each must change nothing), then the allowed.
    order = sorted(ROLES, key=lambda role: role in entry.allowed)
    for role in order:
        before = world.tables()
        reply = await world.call(role, entry.method, path, body)
        if role == "anonymous":
            assert reply.status == 401, (role, reply.status, reply.text)
        elif role not in entry.allowed:
            assert reply.status == 403, (role, reply.status, reply.text)
        else:
            # Allowed: whatever the object's state says (a 404 for a file not
            # made, a 409 for a replay control on a live session), never 401/403.
            assert reply.status not in (401, 403) and reply.status < 500, (
                role, reply.status, reply.text)
            continue
        after = world.tables()
        assert after == before, (role, "a refused request changed something")


# ------------------------------------------------------------------ lists


async def _names(world: Districts, role: str, path: str, key: str, field: str) -> set[Any]:
    return {row[field] for row in (await world.ok(role, "GET", path))[key]}


async def test_each_role_sees_its_own_lists(service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    sessions = {"city": {ids["city_session"], ids["session_a"], ids["session_b"]},
                "district_a": {ids["city_session"], ids["session_a"]},
                "district_b": {ids["city_session"], ids["session_b"]},
                "presenter": {ids["session_a"]},
                "auditor": {ids["city_session"], ids["session_a"], ids["session_b"]}}
    for role, expected in sessions.items():
        assert await _names(world, role, f"{API}/sessions", "sessions", "id") == expected, role
    sites = {"city": {ids["site_a"], ids["site_b"]}, "district_a": {ids["site_a"]},
             "district_b": {ids["site_b"]}, "auditor": {ids["site_a"], ids["site_b"]}}
    for role, expected in sites.items():
        assert await _names(world, role, f"{API}/sites", "sites", "id") == expected, role
    items = {"city": {ids["item_city"], ids["item_a"], ids["item_b"]},
             "district_a": {ids["item_city"], ids["item_a"]},
             "district_b": {ids["item_city"], ids["item_b"]}}
    for role, expected in items.items():
        assert await _names(world, role, f"{API}/archive", "items", "id") == expected, role
    # A city session from below: only its own rooms, no tokens, no way to change it.
    path = f"{API}/sessions/{ids['city_session']}/invitations"
    assert await _names(world, "district_a", path, "invitations", "id") == {ids["city_inv_a"]}
    assert await _names(world, "city", path, "invitations", "id") == {
        ids["city_inv_a"], ids["city_inv_b"]}
    # ... on the wall too.
    wall = await world.ok("district_a", "GET", f"{API}/sessions/{ids['city_session']}/wall/ws")
    assert [site["invitation_id"] for site in wall["sites"]] == [ids["city_inv_a"]]
    assert wall["summary"]["invited"] == 1
    wall = await world.ok("city", "GET", f"{API}/sessions/{ids['city_session']}/wall/ws")
    assert wall["summary"]["invited"] == 2
    city_session = await world.ok("district_a", "GET", f"{API}/sessions/{ids['city_session']}")
    assert city_session["publish_token"] is None and city_session["view_token"] is None
    assert city_session["presenter_url"] is None and city_session["manageable"] is False
    assert city_session["organizer"] == "city"
    own = await world.ok("district_a", "GET", f"{API}/sessions/{ids['session_a']}")
    assert own["publish_token"] and own["manageable"] and own["organizer"] == "district"
    assert own["organizer_name"] == "北仑区"
    # The presenter sees its session's presenter page link, nothing else.
    presented = await world.ok("presenter", "GET", f"{API}/sessions/{ids['session_a']}")
    assert presented["presenter_url"].endswith(presented["publish_token"])
    # The auditor reads, without room links.
    audited = await world.ok("auditor", "GET", f"{API}/sessions/{ids['session_a']}/invitations")
    assert [(i["token"], i["url"]) for i in audited["invitations"]] == [(None, None)]
    # The tree: a district sees its own subtree.
    tree = await _names(world, "district_a", f"{API}/org", "nodes", "name")
    assert tree == {"北仑区", "新碶街道"}
    everything = await _names(world, "city", f"{API}/org", "nodes", "name")
    assert {"全市", "北仑区", "鄞州区"} <= everything
    # Accounts: the district admin sees its presenter and itself, not the other district.
    assert await _names(world, "district_a", f"{API}/accounts", "accounts", "username") == {
        "beilun", "lecturer-a"}


async def test_a_district_schedules_a_replay_of_a_city_lecture_not_of_another_districts(
        service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    before = world.tables()
    reply = await world.call("district_a", "POST", f"{API}/sessions",
                             {"title": "重播", "replay_item_id": ids["item_b"]})
    assert reply.status == 403, reply.text
    reply = await world.call("district_a", "POST", f"{API}/sessions",
                             {"title": "重播", "organizer_id": ids["node_b"]})
    assert reply.status == 403, reply.text
    reply = await world.call("district_a", "POST", f"{API}/sessions/{ids['session_a']}/invitations",
                             {"site_id": ids["site_b"]})
    assert reply.status == 403, reply.text
    course_b = service.app[ACCOUNTS].db.execute(
        "INSERT INTO courses (title, created_at, owner_id) VALUES ('鄞州课', 0, ?)",
        (ids["node_b"],))
    before = world.tables()
    for body in ({"title": "夜学", "course_id": course_b},):
        reply = await world.call("district_a", "POST", f"{API}/sessions", body)
        assert reply.status == 403, reply.text
        reply = await world.call("district_a", "PATCH", f"{API}/sessions/{ids['session_a']}",
                                 body)
        assert reply.status == 403, reply.text
    assert world.tables() == before
    # The city's lecture is readable, so a replay of it gets as far as the file
    # (which this test never made: 404, not 403; tests/pages/test_districts.py
    # replays a real one).
    reply = await world.call("district_a", "POST", f"{API}/sessions",
                             {"title": "重播", "replay_item_id": ids["item_city"]})
    assert reply.status == 404, reply.text


# ------------------------------------------------------------------ the tree


async def test_a_cycle_or_a_dangling_node_is_422_and_changes_nothing(service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    before = world.tables()
    for role, node, change in (
            ("city", ids["node_a"], {"parent_id": ids["town_a"]}),  # under its own child
            ("city", ids["node_a"], {"parent_id": ids["node_a"]}),  # under itself
            ("city", ids["node_a"], {"parent_id": 999}),  # dangling
            ("district_a", ids["town_a"], {"parent_id": 999})):
        reply = await world.call(role, "PATCH", f"{API}/org/{node}", change)
        assert reply.status == 422, (change, reply.status, reply.text)
        assert "parent_id (error.org_" in reply.json()["error"], reply.text
    for text in ("code,name,parent\r\nx,甲,y\r\ny,乙,x\r\n",  # a cycle
                 "code,name,parent\r\nx,甲,不存在的区\r\n",  # dangling
                 "code,name,parent\r\nx,甲,x\r\n"):  # its own parent
        reply = await world.call("city", "POST", f"{API}/org/import", text)
        assert reply.status == 422, (text, reply.text)
        assert "row 1 (error.org_" in reply.json()["error"], reply.text
    reply = await world.call("city", "POST", f"{API}/org", {"name": "某镇", "parent_id": 999})
    assert reply.status == 422
    # Another district's path in an import: 403.
    reply = await world.call("district_a", "POST", f"{API}/org/import",
                             "code,name,parent\r\nx,甲,鄞州区\r\n")
    assert reply.status == 403
    reply = await world.call("district_a", "POST", f"{API}/sites/import",
                             "name,org_path\r\n好站,北仑区 / 新碶街道\r\n坏站,鄞州区\r\n")
    assert reply.status == 403
    assert world.tables() == before


async def test_a_site_moves_with_its_node(service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    # The city moves 新碶街道 from 北仑区 to 鄞州区: its site's path follows.
    await world.ok("city", "PATCH", f"{API}/org/{ids['town_a']}", {"parent_id": ids["node_b"]})
    site = await world.ok("city", "GET", f"{API}/sites/{ids['site_a']}")
    assert site["org_path"] == "鄞州区 / 新碶街道"
    # ... and now belongs to district B.
    assert (await world.call("district_a", "GET", f"{API}/sites/{ids['site_a']}")).status == 403
    assert (await world.call("district_b", "GET", f"{API}/sites/{ids['site_a']}")).status == 200
    await world.ok("city", "PATCH", f"{API}/org/{ids['node_b']}", {"name": "鄞州"})
    site = await world.ok("city", "GET", f"{API}/sites/{ids['site_a']}")
    assert site["org_path"] == "鄞州 / 新碶街道"


async def test_an_org_csv_import_builds_a_subtree(service: Service) -> None:
    world = await make_districts(service)
    text = ("\ufeffcode,name,parent,kind\r\n"
            "c1,大碶街道,,town\r\nc2,横河村,c1,village\r\nc3,组织部,,department\r\n"
            "c4,新碶街道,,\r\n")  # exists already: kept
    reply = await world.call("district_a", "POST", f"{API}/org/import", text)
    assert reply.status == 201, reply.text
    made = {(n["path"], n["kind"]) for n in reply.json()["nodes"]}
    assert made == {("北仑区 / 大碶街道", "town"), ("北仑区 / 大碶街道 / 横河村", "village"),
                    ("北仑区 / 组织部", "department")}


# ------------------------------------------------------------------ accounts


async def test_accounts_are_managed_within_the_scope(service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    made = await world.ok("district_a", "POST", f"{API}/accounts",
                          {"username": "town-admin", "role": "district_admin",
                           "org_node_id": ids["town_a"]})
    assert len(made["password"]) >= 12 and made["org_path"] == "北仑区 / 新碶街道"
    before = world.tables()
    for body in ({"username": "x", "role": "city_admin"},
                 {"username": "y", "role": "auditor", "org_node_id": ids["node_b"]}):
        reply = await world.call("district_a", "POST", f"{API}/accounts", body)
        assert reply.status == 403, reply.text
    city_admin = world.logins["city"].account_id
    reply = await world.call("district_a", "PATCH", f"{API}/accounts/{city_admin}",
                             {"disabled": True})
    assert reply.status == 403
    assert world.tables() == before
    # The last city admin stays one.
    reply = await world.call("city", "PATCH", f"{API}/accounts/{city_admin}", {"disabled": True})
    assert reply.status == 409
    # Disabling ends the account's logins at once.
    await world.ok("district_a", "PATCH", f"{API}/accounts/{ids['presenter']}", {"disabled": True})
    assert (await world.call("presenter", "GET", f"{API}/me")).status == 401


async def test_a_new_account_logs_in_with_its_password(service: Service) -> None:
    world = await make_districts(service)
    made = await world.ok("city", "POST", f"{API}/accounts",
                          {"username": "auditor-2", "role": "auditor",
                           "password": "a-long-password"})
    assert "password" not in made
    async with service.http.post(f"{service.base}/login", allow_redirects=False,
                                 data={"username": "auditor-2",
                                       "password": "a-long-password"}) as response:
        assert response.status == 303
        cookie = response.cookies["zhixing_session"].value
    async with service.http.get(f"{service.base}/api/v1/me",
                                headers={"Cookie": f"zhixing_session={cookie}"}) as response:
        me = await response.json()
    assert me["role"] == "auditor" and me["org_path"] == ""


# ------------------------------------------------------------------ the audit log


async def test_every_change_is_in_the_audit_log_with_a_csv_for_the_city(
        service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    await world.ok("district_a", "PATCH", f"{API}/sites/{ids['site_a']}", {"name": "新碶分课堂"})
    await world.call("district_b", "PATCH", f"{API}/sites/{ids['site_a']}", {"name": "x"})  # 403
    entries = (await world.ok("city", "GET", f"{API}/audit"))["entries"]
    latest = entries[0]
    assert (latest["username"], latest["role"], latest["action"], latest["object_type"],
            latest["object_id"], latest["detail"], latest["address"]) == (
        "beilun", "district_admin", "update /api/v1/sites/{row_id}", "sites",
        str(ids["site_a"]), "新碶分课堂", "127.0.0.1")
    assert not any(e["username"] == "yinzhou" and e["object_id"] == str(ids["site_a"])
                   for e in entries)  # a refused request changed nothing: no entry
    made = {(e["username"], e["action"]) for e in entries}
    assert ("beilun", "create /api/v1/sites") in made
    assert ("(admin token)", "create /api/v1/org") in made
    reply = await world.call("city", "GET", f"{API}/audit?format=csv&utc_offset=480")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/csv")
    text = reply.body.decode("utf-8")
    assert text.startswith("\ufeff时间,账号,角色,操作")
    assert "新碶分课堂" in text and "beilun" in text
    reply = await world.call("city", "GET", f"{API}/audit?format=xml")
    assert reply.status == 422
    assert (await world.call("auditor", "GET", f"{API}/audit")).status == 403



# ------------------------------------------------------------------ reports by organizer


def _attended(world: Districts, session_id: str, site_id: int, invitation_id: str,
              start: float, headcount: int) -> None:
    """A room that was there the whole session and reported its headcount."""
    db = world.service.app[ACCOUNTS].db
    db.execute("INSERT INTO attendance_intervals (session_id, site_id, invitation_id, "
               "resource_id, connected_at, disconnected_at, ended_by) "
               "VALUES (?, ?, ?, ?, ?, ?, 'left')",
               (session_id, site_id, invitation_id, f"r-{invitation_id}", start - 60,
                start + 3600))
    db.execute("INSERT INTO headcount_reports (session_id, site_id, invitation_id, count, "
               "reported_at) VALUES (?, ?, ?, ?, ?)",
               (session_id, site_id, invitation_id, headcount, start + 600))


async def test_reports_count_city_training_and_extension_training_apart(
        service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    march = dt.datetime(2026, 3, 7, 9, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    window = {"scheduled_start": march, "scheduled_end": march + 3600}
    await world.ok("city", "PATCH", f"{API}/sessions/{ids['city_session']}", window)
    evening = {"scheduled_start": march + 86400 * 3, "scheduled_end": march + 86400 * 3 + 3600}
    await world.ok("district_a", "PATCH", f"{API}/sessions/{ids['session_a']}", evening)
    _attended(world, ids["city_session"], ids["site_a"], ids["city_inv_a"], march, 30)
    _attended(world, ids["city_session"], ids["site_b"], ids["city_inv_b"], march, 40)
    _attended(world, ids["session_a"], ids["site_a"], ids["inv_a"], march + 86400 * 3, 25)
    query = f"{API}/reports/organizers?from=2026-03-01&to=2026-03-31&utc_offset=480"

    def summary(report: dict[str, Any]) -> dict[str, Any]:
        return {(o["training"], o["name"]): (
            o["person_times"], {g["name"]: g["person_times"] for g in o["months"]},
            {g["name"]: g["person_times"] for g in o["districts"]},
            {g["name"]: g["person_times"] for g in o["levels"]}) for o in report["organizers"]}

    city = await world.ok("city", "GET", query)
    assert summary(city) == {
        ("city", "全市"): (70, {"2026-03": 70}, {"北仑区": 30, "鄞州区": 40}, {"town": 70}),
        ("extension", "北仑区"): (25, {"2026-03": 25}, {"北仑区": 25}, {"town": 25})}
    assert [o["training"] for o in city["organizers"]] == ["city", "extension"]
    assert city["totals"]["person_times"] == 95
    district_a = await world.ok("district_a", "GET", query)
    assert summary(district_a) == {
        ("city", "全市"): (30, {"2026-03": 30}, {"北仑区": 30}, {"town": 30}),
        ("extension", "北仑区"): (25, {"2026-03": 25}, {"北仑区": 25}, {"town": 25})}
    district_b = await world.ok("district_b", "GET", query)
    assert summary(district_b) == {
        ("city", "全市"): (40, {"2026-03": 40}, {"鄞州区": 40}, {"town": 40})}
    # A district's own district report is its own sites', whatever prefix it asks.
    reply = await world.call("district_a", "GET",
                             f"{API}/reports/districts?from=2026-03-01&to=2026-03-31")
    assert reply.json()["prefix"] == "北仑区" and reply.json()["totals"]["person_times"] == 55
    # CSV for Excel, one row per (organizer, grouping, group).
    reply = await world.call("city", "GET", query + "&format=csv")
    rows = list(csv.reader(io.StringIO(reply.body.decode("utf-8-sig"))))
    assert rows[0][:4] == ["主办", "类别", "分组方式", "分组"]
    assert ["市级培训", "市级培训", "合计", "", "1", "2", "2", "70"] in rows
    assert ["北仑区 延伸培训", "延伸培训", "按层级", "乡镇街道", "1", "1", "1", "25"] in rows
    reply = await world.call("city", "GET", query.replace("reports/organizers",
                                                          "reports/organizers/chart.svg"))
    assert reply.status == 200 and b"<svg" in reply.body
    reply = await world.call("city", "GET", f"{API}/reports/organizers?from=2026-03-31"
                                            "&to=2026-03-01")
    assert reply.status == 422


def test_a_scoped_wall_keeps_a_districts_own_rooms_and_their_discussion() -> None:
    def site(invitation: str, path: str, connected: bool, level: int) -> dict[str, Any]:
        return {"invitation_id": invitation, "org_path": path, "connected": connected,
                "viewers": int(connected), "headcount": 20, "problem": {
                    "level": level, "reason": "late" if level == 3 else None}}

    snapshot = {
        "session": {"id": "s"}, "summary": {"invited": 3},
        "sites": [site("a1", "北仑区 / 新碶街道", True, 0), site("a2", "北仑区", False, 3),
                  site("b1", "鄞州区", True, 0)],
        "discussion": {
            "locked": False, "stage": {"invitation_id": "b1", "name": "鄞州"},
            "hands": [{"invitation_id": "b1"}, {"invitation_id": "a1"}],
            "questions": [{"invitation_id": "b1", "status": "open"},
                          {"invitation_id": "a1", "status": "open"},
                          {"invitation_id": "a1", "status": "answered"}],
            "questions_total": 3, "open_questions": 2,
            "uplinks": [{"invitation_id": "b1", "present": True}]}}
    seen = scoped_snapshot(snapshot, "北仑区")
    assert [s["invitation_id"] for s in seen["sites"]] == ["a1", "a2"]
    assert seen["summary"] == {"invited": 2, "connected": 1, "problems": 1, "late": 1,
                               "headcount": 20, "viewers": 1, "other_viewers": 0,
                               "hands": 1, "open_questions": 1, "cameras": 0}
    assert seen["discussion"]["hands"] == [{"invitation_id": "a1"}]
    assert seen["discussion"]["questions_total"] == 2 and seen["discussion"]["uplinks"] == []
    assert seen["discussion"]["stage"] == snapshot["discussion"]["stage"]  # every room sees it
    assert scoped_snapshot(snapshot, "") == snapshot
    assert scoped_snapshot(snapshot, "北仑")["sites"] == []  # whole parts only


async def test_a_districts_recording_goes_into_its_own_part_of_the_archive(
        service: Service) -> None:
    world = await make_districts(service)
    ids = world.ids
    item = await world.ok("district_a", "POST", f"{API}/sessions/{ids['session_a']}/recording")
    assert (item["owner_id"], item["owner_name"]) == (ids["node_a"], "北仑区")
    assert (await world.call("district_b", "GET", f"{API}/archive/{item['id']}")).status == 403
    listed = await _names(world, "district_b", f"{API}/archive", "items", "id")
    assert item["id"] not in listed
    mine = await world.ok("district_a", "GET", f"{API}/archive/{item['id']}")
    assert mine["manageable"] is True
    await world.ok("district_a", "DELETE", f"{API}/sessions/{ids['session_a']}/recording")


async def test_a_presenter_has_no_reports_page(service: Service) -> None:
    world = await make_districts(service)
    async with service.http.get(f"{service.base}/admin/reports", allow_redirects=False,
                                headers=world.logins["presenter"].headers()) as reply:
        assert (reply.status, reply.headers["Location"]) == (303, "/admin")
    async with service.http.get(f"{service.base}/admin/reports", allow_redirects=False,
                                headers=world.logins["auditor"].headers()) as reply:
        assert reply.status == 200
