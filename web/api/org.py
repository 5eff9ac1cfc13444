"""Admin JSON API for the organization tree (组织架构): its nodes, their CSV
import. A district admin edits the nodes below its own; a move that would
put a node under itself, or a parent that does not exist, is 422."""

from __future__ import annotations

from typing import ClassVar, Literal

from aiohttp import web
from pydantic import Field

from classroom.access.org import KINDS, MAX_NODE_NAME
from web.api.spec import (
    ABSENT,
    JSON_BODY_ERRORS,
    Described,
    Reply,
    Shape,
    operation,
    read_described,
)
from web.auth import require_admin, require_reader
from web.errors import BadRequest, UnsupportedMediaType
from web.http import int_id, read_limited
from web.keys import SCHOOL

MAX_CSV_BYTES = 1024 * 1024
NODE_KINDS = Literal["city", "district", "town", "village", "department"]
assert set(NODE_KINDS.__args__) == set(KINDS)  # type: ignore[attr-defined]

# ---------------------------------------------------------------------- the contract


class OrgNode(Shape):
    """a node of the organization tree: the city (the root), a district or county, a town
    or street, a village or community, or a department"""

    component: ClassVar[bool] = True
    id: int
    parent_id: int | None = Field(description="null for the city")
    name: str
    kind: NODE_KINDS
    path: str = Field(description="the names below the city: '北仑区 / 新碶街道'")
    depth: int = Field(description="0 for the city")


class OrgNodeInput(Described):
    component: ClassVar[bool] = True
    name: str = Field(min_length=1, max_length=MAX_NODE_NAME, description="no '/'")
    parent_id: int = Field(description="an existing node of the caller's part of the tree")
    kind: Literal["district", "town", "village", "department"] = Field(
        ABSENT, description="default: by depth (district, town, then village)")


class OrgNodeChange(Described):
    """any of the fields; moving a node moves its sites; a node cannot move under itself
    (422)"""

    name: str = Field(ABSENT, min_length=1, max_length=MAX_NODE_NAME)
    parent_id: int = Field(ABSENT, description="the new parent")
    kind: NODE_KINDS = ABSENT


class OrgImported(Shape):
    imported: int = Field(description="nodes made (existing ones are kept)")
    nodes: list[OrgNode]


ADMIN = (401, 403)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/org", list_nodes),
        web.post("/api/v1/org", create_node),
        web.post("/api/v1/org/import", import_nodes),
        web.get("/api/v1/org/{node_id}", get_node),
        web.patch("/api/v1/org/{node_id}", update_node),
        web.delete("/api/v1/org/{node_id}", delete_node),
    ]


@operation("The caller's part of the organization tree (the whole tree for the city)",
           errors=ADMIN, replies={200: Reply("{nodes: [OrgNode]}", OrgNode, listed="nodes")})
async def list_nodes(request: web.Request) -> web.Response:
    caller = require_reader(request)
    return web.json_response({"nodes": request.app[SCHOOL].org.nodes(caller.scope.node_id)})


@operation("One node", errors=(*ADMIN, 404), replies={200: Reply("the node", OrgNode)})
async def get_node(request: web.Request) -> web.Response:
    caller = require_reader(request)
    node_id = int_id(request, "node_id", "organization node")
    node = request.app[SCHOOL].org.node(node_id)
    caller.scope.require_covers(node_id, "organization node")
    return web.json_response(node)


@operation("Add a node under a node of the caller's part of the tree", body=OrgNodeInput,
           errors=(*ADMIN, *JSON_BODY_ERRORS),
           replies={201: Reply("created", OrgNode)})
async def create_node(request: web.Request) -> web.Response:
    caller = require_admin(request)
    data = await read_described(request, OrgNodeInput)
    node = request.app[SCHOOL].org.create(data, caller.scope.node_id)
    return web.json_response(node, status=201, headers={"Location": f"/api/v1/org/{node['id']}"})


@operation("Rename, re-kind or move a node (its sites move with it)", body=OrgNodeChange,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("the changed node", OrgNode)})
async def update_node(request: web.Request) -> web.Response:
    caller = require_admin(request)
    node_id = int_id(request, "node_id", "organization node")
    data = await read_described(request, OrgNodeChange)
    return web.json_response(request.app[SCHOOL].org.update(node_id, data, caller.scope.node_id))


@operation("Delete an empty node", errors=(*ADMIN, 404),
           replies={204: Reply("deleted"),
                    409: Reply("it still has nodes, sites, sessions, accounts or items")})
async def delete_node(request: web.Request) -> web.Response:
    caller = require_admin(request)
    node_id = int_id(request, "node_id", "organization node")
    request.app[SCHOOL].org.delete(node_id, caller.scope.node_id)
    return web.Response(status=204)


@operation("Import nodes from CSV (UTF-8, header code,name,parent,kind): parent is another "
           "row's code or an existing node's path (empty: the caller's own node); every row "
           "or none",
           body_media={"text/csv": {"schema": {"type": "string"}},
                       "text/plain": {"schema": {"type": "string"}}},
           errors=(*ADMIN, (400, "not UTF-8"), 413, 415,
                   (422, "bad rows (each named 'row N'): a dangling parent, a cycle, a bad "
                         "name or kind; or no header or no rows")),
           replies={201: Reply("imported", OrgImported)})
async def import_nodes(request: web.Request) -> web.Response:
    caller = require_admin(request)
    if request.content_type not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType("Content-Type must be text/csv")
    body = await read_limited(request, MAX_CSV_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the CSV file must be UTF-8") from exc
    nodes = request.app[SCHOOL].org.import_csv(text, caller.scope.node_id)
    return web.json_response({"imported": len(nodes), "nodes": nodes}, status=201)
