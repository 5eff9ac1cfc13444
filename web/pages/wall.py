"""The room wall's page (监控墙): ``GET /admin/wall/{session_id}``, with an
admin login like the console. Its snapshots come over the socket in
``web/sockets/wall.py``.
"""

from __future__ import annotations

from aiohttp import web

from web import i18n
from web.auth import logged_in
from web.http import PAGE_HEADERS, STATIC_DIR, short_page
from web.keys import SESSIONS

WALL_PAGE = STATIC_DIR / "wall.html"


def routes() -> list[web.RouteDef]:
    return [web.get("/admin/wall/{session_id}", wall_page)]


async def wall_page(request: web.Request) -> web.StreamResponse:
    if not logged_in(request):
        raise web.HTTPSeeOther("/login")
    if request.app[SESSIONS].get(request.match_info["session_id"]) is None:
        return short_page(404, i18n.text(request, "wall.not_found"), PAGE_HEADERS)
    return web.FileResponse(WALL_PAGE, headers=PAGE_HEADERS)
