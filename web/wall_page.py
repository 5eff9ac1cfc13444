"""The room wall (监控墙) over HTTP: the page and its WebSocket.

``GET /admin/wall/{session_id}`` serves the page (admin login, like the
console). The page opens ``GET /api/v1/sessions/{session_id}/wall/ws``, which
pushes a snapshot (web/wall.py) every 2 s and closes with code 4000 when the
session ends. The socket takes the login cookie (a browser) or the bearer
admin token (scripts, tests). With the cookie, the upgrade's Origin must be
this server's: another site's page must not open a socket with the admin's
cookie (cross-site WebSocket hijacking; SameSite=Strict does not stop a
same-site page on another port or host). The same URL without an Upgrade
header answers one snapshot as JSON.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from yarl import URL

from web import i18n
from web.api import session_of
from web.console_page import logged_in
from web.errors import Forbidden
from web.keys import ARCHIVE, CATALOG, CONFIG, DISCUSSIONS, SESSIONS, WALL
from web.login import COOKIE, PAGE_HEADERS, authenticate_admin
from web.wall import SiteHistory, Wall, WallHub

WALL_PAGE = Path(__file__).parent / "static" / "wall.html"
HEARTBEAT = 30.0  # seconds: a vanished browser is noticed within about this


def routes() -> list[web.RouteDef]:
    return [web.get("/admin/wall/{session_id}", wall_page),
            web.get("/api/v1/sessions/{session_id}/wall/ws", wall_socket)]


async def wall_page(request: web.Request) -> web.StreamResponse:
    if not logged_in(request):
        raise web.HTTPSeeOther("/login")
    if request.app[SESSIONS].get(request.match_info["session_id"]) is None:
        title = html.escape(i18n.text(request, "wall.not_found"))
        return web.Response(status=404, content_type="text/html", charset="utf-8",
                            headers=PAGE_HEADERS,
                            text=f"<!doctype html><meta charset=\"utf-8\"><title>{title}</title>"
                                 f"<p>{title}</p>\n")
    return web.FileResponse(WALL_PAGE, headers=PAGE_HEADERS)


def check_origin(request: web.Request) -> None:
    """A cookie-authenticated upgrade must come from a page of this server."""
    allowed = {str(request.url.origin())}
    public = request.app[CONFIG].public_url
    if public:
        allowed.add(str(URL(public).origin()))
    if request.headers.get("Origin") not in allowed:
        raise Forbidden("cross-origin WebSocket refused")


async def wall_socket(request: web.Request) -> web.StreamResponse:
    by_cookie = "Authorization" not in request.headers and COOKIE in request.cookies
    authenticate_admin(request)
    if by_cookie:
        check_origin(request)
    session = session_of(request)
    hub = request.app[WALL]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT)
    if not ws.can_prepare(request).ok:
        return web.json_response(await hub.current(session),
                                 headers={"Cache-Control": "no-store"})
    await ws.prepare(request)
    await hub.join(session.id, ws)
    try:
        async for _ in ws:
            pass  # the page says nothing; the loop ends when the socket closes
    finally:
        hub.leave(session.id, ws)
    return ws


async def context(app: web.Application) -> AsyncIterator[None]:
    """The wall's hub; its site history watches every room from its creation.
    Needs the discussions (``discussion_ws.context`` before this one)."""
    sessions = app[SESSIONS]
    history = SiteHistory()
    for room in sessions.rooms():
        history.watch(room)
    sessions.room_listeners.append(history.watch)
    app[WALL] = WallHub(Wall(app[CATALOG], history, app[ARCHIVE], app[DISCUSSIONS]), sessions)
    try:
        yield
    finally:
        if history.watch in sessions.room_listeners:
            sessions.room_listeners.remove(history.watch)
        await app[WALL].close()


async def shutdown(app: web.Application) -> None:
    """Before the server waits for its handlers: close the wall's sockets."""
    if WALL in app:
        await app[WALL].close()
