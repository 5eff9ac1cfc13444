"""The presenter page (主课堂) and the presence it shows.

``GET /present/{session_id}`` serves the page; the publish token travels in the
URL fragment (``#token=...``), so it never reaches the server with the page
request. The page polls ``GET /api/v1/sessions/{session_id}/presence`` (the
session's publish token or the admin token) to see which invited sites
(分课堂) are connected. The answer also carries the session's view token: the
page watches the stage (a room on stage, 研讨) over WHEP with it, and whoever
holds the publish token may see everything the view token shows anyway.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from classroom.access.invitations import is_invitation_token
from classroom.access.tokens import Role
from classroom.live.sessions import Session
from web import i18n
from web.api.spec import Reply, Shape, operation
from web.errors import Forbidden, NotAuthorized, NotFound
from web.http import STATIC_DIR, bearer_token, short_page
from web.keys import CATALOG, SCHOOL, SESSIONS, TOKENS


class PresentSite(Shape):
    invitation_id: str
    site_name: str
    org_path: str
    connected: bool
    connected_viewers: int
    headcount: int | None


class Presence(Shape):
    promised = ("state", "publisher_connected", "viewer_count", "sites")
    title: str
    state: Literal["scheduled", "live", "ended"]
    publisher_connected: bool
    viewer_count: int = Field(description="connected viewers, with or without an invitation")
    sites: list[PresentSite]


def routes() -> list[web.RouteDef]:
    return [
        web.get("/present/{session_id}", presenter_page),
        web.get("/api/v1/sessions/{session_id}/presence", presence),
    ]


async def presenter_page(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None:
        return short_page(404, i18n.text(request, "presenter.not_found"))
    return web.FileResponse(STATIC_DIR / "presenter.html",
                            headers={"Cache-Control": "no-cache",
                                     "Referrer-Policy": "no-referrer"})


def _authorized(request: web.Request) -> Session:
    """The session, for its publish token or the admin token (bearer)."""
    token = bearer_token(request)
    if is_invitation_token(token):
        raise Forbidden("an invitation link cannot see the presence of sites")
    grant = request.app[TOKENS].lookup(token)
    if grant is None:
        raise NotAuthorized("invalid token")
    session_id = request.match_info["session_id"]
    session = request.app[SESSIONS].get(session_id)
    if session is None:
        raise NotFound("no such session")
    if grant.role is not Role.ADMIN:
        request.app[TOKENS].require(token, Role.PUBLISH, session_id)
    return session


@operation("Who is in: the publisher, connected viewers and every invited site (connected "
           "ones have a viewer with its link). The session's publish token or the admin token",
           errors=(401, (403, "a view token, an invitation link or another session's publish "
                              "token"), 404),
           replies={200: Reply("presence", Presence)})
async def presence(request: web.Request) -> web.Response:
    session = _authorized(request)
    room = session.broadcast
    publisher = room.publisher
    viewers = list(room.viewers.values())
    connected: dict[str, int] = {}
    for viewer in viewers:
        if viewer.tag is not None and viewer.connection_state == "connected":
            connected[viewer.tag] = connected.get(viewer.tag, 0) + 1
    # Rooms on district edges, from the edges' viewer events.
    for tag, record in request.app[SCHOOL].site_history.records(session.id).items():
        if record.remote:
            connected[tag] = connected.get(tag, 0) + len(record.remote)
    sites: list[dict[str, Any]] = []
    for row in request.app[CATALOG].invitations(session.id):
        if row["revoked_at"] is not None:
            continue
        count = connected.get(str(row["id"]), 0)
        sites.append({
            "invitation_id": row["id"],
            "site_name": row["site_name"],
            "org_path": row["org_path"],
            "connected": count > 0,
            "connected_viewers": count,
            "headcount": row["headcount"],
        })
    return web.json_response({
        "title": session.title,
        "state": session.state,
        "publisher_connected": publisher is not None
        and publisher.connection_state == "connected",
        "viewer_count": sum(1 for v in viewers if v.connection_state == "connected"),
        "sites": sites,
        "view_token": session.view_token,
    }, headers={"Cache-Control": "no-store"})
