"""Admin JSON API for the catalog: units, courses and sites (分课堂), and
the sites' CSV import."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from web.auth import require_admin
from web.errors import BadRequest, UnsupportedMediaType
from web.http import int_id, read_json, read_limited
from web.keys import CATALOG, SCHOOL

MAX_CSV_BYTES = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes() -> list[web.RouteDef]:
    table = [web.post("/api/v1/sites/import", import_sites)]
    for kind in ("units", "courses", "sites"):
        table += [
            web.post(f"/api/v1/{kind}", _crud(kind, "create")),
            web.get(f"/api/v1/{kind}", _crud(kind, "list")),
            web.get(f"/api/v1/{kind}/{{row_id}}", _crud(kind, "get")),
            web.patch(f"/api/v1/{kind}/{{row_id}}", _crud(kind, "update")),
            web.delete(f"/api/v1/{kind}/{{row_id}}", _crud(kind, "delete")),
        ]
    return table


def _crud(kind: str, action: str) -> Handler:
    singular = kind[:-1]

    async def handler(request: web.Request) -> web.Response:
        require_admin(request)
        catalog = request.app[CATALOG]
        if action == "list":
            return web.json_response({kind: getattr(catalog, kind)()})
        if action == "create":
            row = getattr(catalog, f"create_{singular}")(await read_json(request))
            return web.json_response(row, status=201,
                                     headers={"Location": f"/api/v1/{kind}/{row['id']}"})
        row_id = int_id(request)
        if action == "get":
            return web.json_response(getattr(catalog, singular)(row_id))
        if action == "update":
            data = await read_json(request)
            return web.json_response(getattr(catalog, f"update_{singular}")(row_id, data))
        # Links that stop working take their connected rooms with them.
        await request.app[SCHOOL].delete_from_catalog(kind, row_id)
        return web.Response(status=204)

    handler.__name__ = f"{action}_{singular}"
    return handler


async def import_sites(request: web.Request) -> web.Response:
    """CSV (UTF-8, header ``name,org_path``): every row is imported or none."""
    require_admin(request)
    if request.content_type not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType("Content-Type must be text/csv")
    body = await read_limited(request, MAX_CSV_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the CSV file must be UTF-8") from exc
    sites = request.app[CATALOG].import_sites(text)
    return web.json_response({"imported": len(sites), "sites": sites}, status=201)
