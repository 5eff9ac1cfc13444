"""The admin console (管理后台): the page at /admin and the invitation QR codes.

The page itself is static (web/static/console.html + console.js); it talks to
the admin JSON API with the login cookie and X-CSRF-Token. QR codes are drawn
here as SVG with segno, never by a remote service.
"""

from __future__ import annotations

import io

import segno
from aiohttp import web

from classroom.access.invitations import invitation_url
from web.api.spec import Reply, operation
from web.auth import COOKIE, require_admin
from web.errors import Forbidden
from web.http import PAGE_HEADERS, STATIC_DIR, base_url
from web.keys import ACCOUNTS, CATALOG, SIGNER

CONSOLE_PAGE = STATIC_DIR / "console.html"


def routes() -> list[web.RouteDef]:
    return [web.get("/admin", console),
            web.get("/api/v1/invitations/{invitation_id}/qr.svg", invitation_qr)]


def logged_in(request: web.Request) -> bool:
    """Whether the request carries a valid login cookie."""
    token = request.cookies.get(COOKIE)
    return token is not None and request.app[ACCOUNTS].session(token) is not None


async def console(request: web.Request) -> web.StreamResponse:
    if not logged_in(request):
        raise web.HTTPSeeOther("/login")
    return web.FileResponse(CONSOLE_PAGE, headers=PAGE_HEADERS)


def qr_svg(url: str) -> bytes:
    """The QR code of ``url`` as an SVG document (the same bytes for the same URL)."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, border=2)
    return buffer.getvalue()


@operation("The invitation link as a QR code (SVG, drawn by the server)",
           errors=(401, 403, 404),
           replies={200: Reply("the QR code",
                               media={"image/svg+xml": {"schema": {"type": "string"}}})})
async def invitation_qr(request: web.Request) -> web.Response:
    caller = require_admin(request)
    row = request.app[CATALOG].invitation(request.match_info["invitation_id"])
    # A room's link: for whoever manages its session, or its own district's admin.
    if not (caller.scope.manages_session(request.app[CATALOG].session(row["session_id"]))
            or caller.scope.covers(row["org_node_id"])):
        raise Forbidden("this link belongs to another part of the organization")
    url = invitation_url(base_url(request), request.app[SIGNER].sign_invitation(row))
    return web.Response(body=qr_svg(url), content_type="image/svg+xml",
                        headers={"Cache-Control": "no-store"})
