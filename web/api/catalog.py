"""Admin JSON API for the catalog: units, courses and sites (分课堂), and
the sites' CSV import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from pydantic import Field

from classroom.catalog import MAX_NAME, MAX_TEXT
from web.api.spec import (
    ABSENT,
    JSON_BODY_ERRORS,
    Described,
    Handler,
    Reply,
    Shape,
    operation,
    read_described,
)
from web.auth import COOKIE, require_admin, require_city, require_reader
from web.errors import BadRequest, UnsupportedMediaType
from web.http import int_id, read_limited
from web.keys import CATALOG, LIMITER, SCHOOL

MAX_CSV_BYTES = 1024 * 1024

# ---------------------------------------------------------------------- the contract


class Unit(Shape):
    """专题: a theme that groups courses"""

    component: ClassVar[bool] = True
    id: int
    name: str
    description: str
    created_at: float


class UnitInput(Described):
    component: ClassVar[bool] = True
    name: str = Field(min_length=1, max_length=MAX_NAME)
    description: str = Field(ABSENT, max_length=MAX_TEXT)


class UnitChange(Described):
    """any of the fields; absent ones are left alone"""

    name: str = Field(ABSENT, min_length=1, max_length=MAX_NAME)
    description: str = Field(ABSENT, max_length=MAX_TEXT)


class Course(Shape):
    """课程: a course, optionally in a unit"""

    component: ClassVar[bool] = True
    id: int
    title: str
    lecturer: str
    unit_id: int | None
    unit_name: str | None
    created_at: float
    owner_id: int = Field(description="the org node whose course it is: the city's are "
                                      "everyone's, a district's (its own lecturers) its own")
    manageable: bool = Field(description="the caller may change it")


class CourseInput(Described):
    component: ClassVar[bool] = True
    title: str = Field(min_length=1, max_length=MAX_NAME)
    lecturer: str = Field(ABSENT, max_length=MAX_NAME)
    unit_id: int | None = ABSENT


class CourseChange(Described):
    """any of the fields; absent ones are left alone"""

    title: str = Field(ABSENT, min_length=1, max_length=MAX_NAME)
    lecturer: str = Field(ABSENT, max_length=MAX_NAME)
    unit_id: int | None = ABSENT


class Site(Shape):
    """分课堂: a sub-classroom; name and org_path are unique together"""

    component: ClassVar[bool] = True
    id: int
    name: str
    org_path: str = Field(description="normalized: '北仑区 / 新碶街道'; its node's path")
    org_node_id: int = Field(description="the organization node it hangs on")
    created_at: float


ORG_PATH = ("levels separated by '/' below the city; missing nodes are made; it must lie "
            "in the caller's part of the tree (403)")
ORG_NODE = "the organization node (instead of org_path); in the caller's part of the tree"


class SiteInput(Described):
    component: ClassVar[bool] = True
    name: str = Field(min_length=1, max_length=MAX_NAME)
    org_path: str = Field(ABSENT, max_length=MAX_TEXT, description=ORG_PATH)
    org_node_id: int = Field(ABSENT, description=ORG_NODE)


class SiteChange(Described):
    """any of the fields; absent ones are left alone"""

    name: str = Field(ABSENT, min_length=1, max_length=MAX_NAME)
    org_path: str = Field(ABSENT, max_length=MAX_TEXT, description=ORG_PATH)
    org_node_id: int = Field(ABSENT, description=ORG_NODE)


class SitesImported(Shape):
    imported: int
    sites: list[Site]


@dataclass(frozen=True)
class Table:
    """A catalog table and its five routes."""

    kind: str  # units
    label: str  # 专题
    row: type[Shape]
    create: type[Described]
    change: type[Described]

    @property
    def singular(self) -> str:
        return self.kind[:-1]


TABLES = (Table("units", "专题", Unit, UnitInput, UnitChange),
          Table("courses", "课程", Course, CourseInput, CourseChange),
          Table("sites", "分课堂", Site, SiteInput, SiteChange))
ADMIN = (401, 403)


def routes() -> list[web.RouteDef]:
    table = [web.post("/api/v1/sites/import", import_sites)]
    for kind in TABLES:
        table += [
            web.post(f"/api/v1/{kind.kind}", _crud(kind, "create")),
            web.get(f"/api/v1/{kind.kind}", _crud(kind, "list")),
            web.get(f"/api/v1/{kind.kind}/{{row_id}}", _crud(kind, "get")),
            web.patch(f"/api/v1/{kind.kind}/{{row_id}}", _crud(kind, "update")),
            web.delete(f"/api/v1/{kind.kind}/{{row_id}}", _crud(kind, "delete")),
        ]
    return table


def _crud(table: Table, action: str) -> Handler:
    kind, singular, row = table.kind, table.singular, table.row
    declarations = {
        "create": operation(
            f"Create a {singular} ({table.label})", body=table.create,
            errors=(*ADMIN, *JSON_BODY_ERRORS),
            replies={201: Reply(f"created; Location names the new {singular}", row)}),
        "list": operation(f"List {kind}", errors=ADMIN,
                          replies={200: Reply(f"{{{kind}: [{row.__name__}]}}", row,
                                              listed=kind)}),
        "get": operation(f"A {singular}", errors=(*ADMIN, 404),
                         replies={200: Reply(row.__name__, row)}),
        "update": operation(
            f"Change a {singular} (absent fields stay as they are)", body=table.change,
            errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
            replies={200: Reply(f"the changed {singular}", row)}),
        "delete": operation(f"Delete a {singular}", errors=(*ADMIN, 404),
                            replies={204: Reply("deleted")}),
    }

    async def handler(request: web.Request) -> web.Response:
        # Units are the city's programme: every reader sees them, city admins
        # change them. Courses and sites are each admin's own part of the tree
        # (a district also reads the city's courses).
        if action in ("list", "get"):
            caller = require_reader(request)
        elif kind in ("sites", "courses"):
            caller = require_admin(request)
        else:
            caller = require_city(request)
        scoped = {"scope": caller.scope} if kind in ("sites", "courses") else {}

        def shown(row: dict[str, Any]) -> dict[str, Any]:
            if kind == "courses":
                return {**row, "manageable": caller.scope.manages_course(row)}
            return row

        catalog = request.app[CATALOG]
        if action == "list":
            return web.json_response({kind: [shown(r) for r in
                                             getattr(catalog, kind)(**scoped)]})
        if action == "create":
            data = await read_described(request, table.create)
            created = getattr(catalog, f"create_{singular}")(data, **scoped)
            return web.json_response(shown(created), status=201,
                                     headers={"Location": f"/api/v1/{kind}/{created['id']}"})
        row_id = int_id(request)
        if action == "get":
            return web.json_response(shown(getattr(catalog, singular)(row_id, **scoped)))
        if action == "update":
            data = await read_described(request, table.change)
            return web.json_response(shown(getattr(catalog, f"update_{singular}")(
                row_id, data, **scoped)))
        # Links that stop working take their connected rooms with them.
        await request.app[SCHOOL].delete_from_catalog(kind, row_id, caller.scope)
        return web.Response(status=204)

    handler.__name__ = f"{action}_{singular}"
    return declarations[action](handler)


@operation("Import sites from CSV (UTF-8, BOM allowed, header name,org_path): every row or "
           "none; an empty org_path is the caller's own node, a path outside the caller's part "
           "of the tree is 403",
           body_media={"text/csv": {"schema": {"type": "string"}},
                       "text/plain": {"schema": {"type": "string"}}},
           errors=(*ADMIN, (400, "not UTF-8"), 413, 415,
                   (422, "bad rows (each named 'row N') or no header or no rows"),
                   (429, "too many uploads from this admin a minute (Retry-After)"),
                   (503, "too many uploads at once (Retry-After)")),
           replies={201: Reply("imported", SitesImported)})
async def import_sites(request: web.Request) -> web.Response:
    """CSV (UTF-8, header ``name,org_path``): every row is imported or none."""
    caller = require_admin(request)
    if request.content_type not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType("Content-Type must be text/csv")
    # Who uploads: the bearer token, or the login cookie (checked above).
    secret = request.headers.get("Authorization") or request.cookies.get(COOKIE, "")
    with request.app[LIMITER].upload(secret, "an admin (sites import)"):
        body = await read_limited(request, MAX_CSV_BYTES)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("the CSV file must be UTF-8") from exc
        sites = request.app[CATALOG].import_sites(text, caller.scope)
    return web.json_response({"imported": len(sites), "sites": sites}, status=201)
