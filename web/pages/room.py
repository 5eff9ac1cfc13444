"""The sub-classroom's room page (分课堂) and its small JSON API.

``GET /join/{token}`` serves the page itself (the token goes to the script
in a data attribute, never into visible text or a log line); a link that is
not ours gets a 403 page, an expired, revoked or replaced one a 410 page,
both in the chosen language. The page authenticates to ``/api/v1/room`` and
``/whep/{session_id}`` with the invitation token as bearer.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from classroom.access.invitations import is_invitation_token
from classroom.errors import DomainError
from web import i18n
from web.errors import (
    AppError,
    Forbidden,
    Gone,
    NotAuthorized,
    NotFound,
    Unprocessable,
    status_of,
)
from web.http import STATIC_DIR, bearer_token, read_json
from web.keys import ATTENDANCE, CATALOG, CONFIG, REPLAYS, SCHOOL, SESSIONS, TIMESHIFTS, TOKENS

ROOM_TEMPLATE = STATIC_DIR / "room.html"
TOKEN_MARK = "{{token}}"
LANG_MARK = "{{lang}}"
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff"}


def _reason_key(exc: AppError | DomainError) -> str:
    """The catalog key that says, to a person, why the link does not work."""
    if status_of(exc) == 410:
        for word, key in (("expired", "room.error.expired"), ("revoked", "room.error.revoked"),
                          ("withdrawn", "room.error.replaced")):
            if word in exc.message:
                return key
        return "room.error.gone"
    return "room.error.invalid"


def _error_page(request: web.Request, exc: AppError | DomainError) -> web.Response:
    def text(key: str) -> str:
        return html.escape(i18n.text(request, key))

    title = i18n.text(request, "room.error.title")
    return i18n.notice_page(
        request, 410 if status_of(exc) == 410 else 403, title=title, heading=title,
        lines=[f'<p class="reason">{text(_reason_key(exc))}</p>',
               f"<p>{text('room.error.ask')}</p>"],
        stylesheet="room.css", switch_key="room.lang.other", headers=PAGE_HEADERS)


async def join(request: web.Request) -> web.Response:
    """A sub-classroom's link: checked, then the room page."""
    token = request.match_info["token"]
    try:
        request.app[SCHOOL].check_invitation(token, None)
    except (AppError, DomainError) as exc:
        return _error_page(request, exc)
    language = i18n.language_of(request)
    page = ROOM_TEMPLATE.read_text(encoding="utf-8")
    page = page.replace(LANG_MARK, language).replace(TOKEN_MARK, html.escape(token, quote=True))
    return web.Response(text=page, content_type="text/html", charset="utf-8",
                        headers=PAGE_HEADERS)


def _invitation(request: web.Request) -> dict[str, Any]:
    """The invitation row of the bearer token (401, or 403 for another kind of token)."""
    token = bearer_token(request)
    if not is_invitation_token(token):
        if request.app[TOKENS].lookup(token) is not None:
            raise Forbidden("only a room's invitation token is accepted here")
        raise NotAuthorized("invalid token")
    return request.app[SCHOOL].check_invitation(token, None)


async def room(request: web.Request) -> web.Response:
    invitation = _invitation(request)
    session_id = str(invitation["session_id"])
    site = request.app[CATALOG].invitation(str(invitation["id"]))
    session = request.app[SESSIONS].get(session_id)
    if session is None:  # the invitation row cascades with its session
        raise Forbidden("no such session")
    row = session.row
    connected = session.state != "ended" and session.broadcast.program_on_air
    replay = request.app[REPLAYS].describe(session_id)
    return web.json_response({
        "session_id": session_id,
        "title": row["title"],
        "course_title": row["course_title"],
        "lecturer": row["lecturer"],
        "site_name": site["site_name"],
        "org_path": site["org_path"],
        "state": session.state,
        "scheduled_start": row["scheduled_start"],
        "scheduled_end": row["scheduled_end"],
        "publisher_connected": connected,
        # A replay session whose file could not be played: the room shows an
        # error screen (the admin console has the reason).
        "program_failed": replay is not None and replay["state"] == "failed",
        "replay": replay is not None,
        # The lecture is being recorded: a late room may watch it from the start.
        "timeshift_available": connected and request.app[TIMESHIFTS].available(session_id),
        "max_headcount": request.app[CONFIG].max_headcount,
        "headcount": site["headcount"],
    }, headers={"Cache-Control": "no-store"})


async def headcount(request: web.Request) -> web.Response:
    """The room's own report (its token names the invitation): kept with its
    time in the attendance log; a correction adds a report, the latest counts."""
    invitation = _invitation(request)
    data = await read_json(request)
    count = data.get("count")
    limit = request.app[CONFIG].max_headcount  # --max-headcount
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= limit:
        raise Unprocessable(f"count must be a whole number from 0 to {limit}")
    request.app[ATTENDANCE].report_headcount(invitation, count)
    return web.Response(status=204)


async def timeshift(request: web.Request) -> web.Response:
    """This room's own viewer: watch from the beginning (时移) or go back to live."""
    invitation = _invitation(request)
    data = await read_json(request)
    mode = data.get("mode")
    if mode not in ("start", "live"):
        raise Unprocessable("mode must be 'start' or 'live'")
    resource = data.get("resource")
    if not isinstance(resource, str) or not 0 < len(resource) <= 64:
        raise Unprocessable("resource must name this room's WHEP resource")
    session = request.app[SESSIONS].get(str(invitation["session_id"]))
    if session is None or session.state == "ended":
        raise Gone("this session has ended")
    viewer = session.broadcast.viewers.get(resource)
    # Another room's viewer is as unknown as a made-up one.
    if viewer is None or viewer.tag != invitation["id"]:
        raise NotFound("no such viewer of this room")
    timeshifts = request.app[TIMESHIFTS]
    if mode == "start":
        state = await timeshifts.start(session, viewer)
    else:
        state = await timeshifts.live(viewer)
    return web.json_response(state, headers={"Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/join/{token}", join),
        web.get("/api/v1/room", room),
        web.post("/api/v1/room/headcount", headcount),
        web.post("/api/v1/room/timeshift", timeshift),
    ]
