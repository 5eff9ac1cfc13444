"""The sub-classroom's room page (分课堂) and its small JSON API.

``GET /join/{token}`` serves the page itself (the token goes to the script
in a data attribute, never into visible text or a log line); a link that is
not ours gets a 403 page, an expired, revoked or replaced one a 410 page,
both in the chosen language. The page authenticates to ``/api/v1/room`` and
``/whep/{session_id}`` with the invitation token as bearer.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field, ValidationInfo, field_validator

from classroom.access.invitations import is_invitation_token
from classroom.errors import DomainError
from classroom.live.sessions import Session as LiveSession
from streaming.peers import Viewer
from web import i18n
from web.api.spec import (
    ABSENT,
    JSON_BODY_ERRORS,
    Reply,
    Shape,
    Validated,
    operation,
    read_model,
    read_query,
)
from web.errors import (
    AppError,
    Forbidden,
    Gone,
    NotAuthorized,
    NotFound,
    Unprocessable,
    status_of,
)
from web.http import STATIC_DIR, bearer_token
from web.keys import ATTENDANCE, CATALOG, CONFIG, REPLAYS, SCHOOL, SESSIONS, TIMESHIFTS, TOKENS

ROOM_TEMPLATE = STATIC_DIR / "room.html"
TOKEN_MARK = "{{token}}"
LANG_MARK = "{{lang}}"
# The room's token is in the page's address (web/headers.py adds the rest).
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

TIME = "unix time in seconds (2000 … 2100)"

# ---------------------------------------------------------------------- the contract


class QualityState(Shape):
    level: Literal["full", "low", "audio"] = Field(
        description="what the room gets now: full (高清, the picture as sent), low (流畅, the "
                    "lower rendition, 360 lines) or audio (仅声音)")
    link: Literal["full", "low", "audio"] = Field(
        description="what the room's link can take, by the relay's reading of its RTCP "
                    "(loss, bandwidth estimate), with hysteresis")
    audio_only: bool = Field(description="the room chose sound only itself")


class RoomQuery(Validated):
    resource: str = Field(ABSENT, min_length=1, max_length=64, description=(
        "this room's WHEP resource (the last part of its Location): the answer then says "
        "what that viewer gets (quality), so the page needs no second request"))
    refusals: ClassVar[dict[str, str]] = {
        "resource": "resource must name this room's WHEP resource"}

    @classmethod
    def refuse(cls, fields: Sequence[str], context: Mapping[str, Any]) -> Exception:
        return Unprocessable(cls.refusals[fields[0]])


class RoomView(Shape):
    session_id: str
    title: str
    course_title: str | None
    lecturer: str | None
    site_name: str
    org_path: str
    state: Literal["scheduled", "live", "ended"]
    scheduled_start: float | None = Field(description=TIME)
    scheduled_end: float | None = Field(description=TIME)
    publisher_connected: bool = Field(
        description="the program is on air (a live publisher or a replay playing)")
    program_failed: bool = Field(description="a replay could not be played")
    replay: bool = Field(description="a replay session")
    max_headcount: int = Field(description="the largest headcount accepted")
    quality: QualityState | None = Field(
        None, description="with ?resource=: what that viewer of this room gets (none if it "
                          "is gone)")
    timeshift_available: bool = Field(
        description="on air and being recorded: the room may watch from the start")
    headcount: int | None


class Headcount(Validated):
    # From 0 to this deployment's --max-headcount (the document shows the default).
    count: int = Field(ge=0, json_schema_extra={"maximum": 500},
                       description="at most --max-headcount (default 500); a new report "
                                   "corrects the last one")

    @field_validator("count")
    @classmethod
    def _at_most(cls, count: int, info: ValidationInfo) -> int:
        if count > (info.context or {})["max_headcount"]:
            raise ValueError("too many")
        return count

    @classmethod
    def refuse(cls, fields: Sequence[str], context: Mapping[str, Any]) -> Exception:
        return Unprocessable(
            f"count must be a whole number from 0 to {context['max_headcount']}")


class TimeshiftRequest(Validated):
    mode: Literal["start", "live"]
    resource: str = Field(min_length=1, max_length=64,
                          description="the id of this room's WHEP resource (the last part "
                                      "of its Location)")
    refusals: ClassVar[dict[str, str]] = {
        "mode": "mode must be 'start' or 'live'",
        "resource": "resource must name this room's WHEP resource"}

    @classmethod
    def refuse(cls, fields: Sequence[str], context: Mapping[str, Any]) -> Exception:
        return Unprocessable(cls.refusals[fields[0]])  # the first, in this order


class TimeshiftState(Shape):
    mode: Literal["live", "timeshift"]
    position: float | None = Field(description="seconds into the lecture (timeshift)")


class QualityRequest(Validated):
    resource: str = Field(min_length=1, max_length=64,
                          description="the id of this room's WHEP resource (the last part "
                                      "of its Location)")
    audio_only: bool = Field(description="true: sound only (仅声音) by the room's own choice; "
                                         "false: whatever the link can take")
    refusals: ClassVar[dict[str, str]] = {
        "resource": "resource must name this room's WHEP resource",
        "audio_only": "audio_only must be true or false"}

    @classmethod
    def refuse(cls, fields: Sequence[str], context: Mapping[str, Any]) -> Exception:
        return Unprocessable(cls.refusals[fields[0]])


class QualityQuery(Validated):
    resource: str = Field(min_length=1, max_length=64,
                          description="the id of this room's WHEP resource")
    refusals: ClassVar[dict[str, str]] = {
        "resource": "resource must name this room's WHEP resource"}

    @classmethod
    def refuse(cls, fields: Sequence[str], context: Mapping[str, Any]) -> Exception:
        return Unprocessable(cls.refusals[fields[0]])


ROOM_TOKEN = (401, 403, 410)


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


@operation("The room of the invitation token: its session, site and headcount (for the "
           "room page)", query=(RoomQuery,), errors=(*ROOM_TOKEN, 422),
           replies={200: Reply("the room", RoomView)})
async def room(request: web.Request) -> web.Response:
    invitation = _invitation(request)
    resource = read_query(request, RoomQuery).resource
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
        "quality": _viewer_quality(session, invitation, resource),
    }, headers={"Cache-Control": "no-store"})


@operation("Report how many people are in the room (到场人数), with the room's invitation "
           "token", body=Headcount, errors=(*ROOM_TOKEN, *JSON_BODY_ERRORS),
           replies={204: Reply("stored")})
async def headcount(request: web.Request) -> web.Response:
    """The room's own report (its token names the invitation): kept with its
    time in the attendance log; a correction adds a report, the latest counts."""
    invitation = _invitation(request)
    limit = request.app[CONFIG].max_headcount  # --max-headcount
    report = await read_model(request, Headcount, {"max_headcount": limit})
    request.app[ATTENDANCE].report_headcount(invitation, report.count)
    return web.Response(status=204)


@operation("Timeshift (时移): this room's viewer watches the lecture from its beginning "
           "(served from the recording in progress), or goes back to live; with the room's "
           "invitation token", body=TimeshiftRequest,
           errors=(*ROOM_TOKEN, *JSON_BODY_ERRORS),
           replies={200: Reply("the viewer's mode", TimeshiftState),
                    404: Reply("no such viewer of this room"),
                    409: Reply("the session is not being recorded")})
async def timeshift(request: web.Request) -> web.Response:
    """This room's own viewer: watch from the beginning (时移) or go back to live."""
    invitation = _invitation(request)
    wanted = await read_model(request, TimeshiftRequest)
    mode, resource = wanted.mode, wanted.resource
    session = request.app[SESSIONS].get(str(invitation["session_id"]))
    if session is None or session.state == "ended":
        raise Gone("this session has ended")
    viewer = _own_viewer(request, invitation, resource)
    timeshifts = request.app[TIMESHIFTS]
    if mode == "start":
        state = await timeshifts.start(session, viewer)
    else:
        state = await timeshifts.live(viewer)
    return web.json_response(state, headers={"Cache-Control": "no-store"})


def _own_viewer(request: web.Request, invitation: dict[str, Any], resource: str) -> Viewer:
    session = request.app[SESSIONS].get(str(invitation["session_id"]))
    if session is None or session.state == "ended":
        raise Gone("this session has ended")
    viewer = session.broadcast.viewers.get(resource)
    # Another room's viewer is as unknown as a made-up one.
    if viewer is None or viewer.tag != invitation["id"]:
        raise NotFound("no such viewer of this room")
    return viewer


def _viewer_quality(session: LiveSession, invitation: dict[str, Any],
                    resource: str | None) -> dict[str, Any] | None:
    viewer = session.broadcast.viewers.get(resource) if resource else None
    if viewer is None or viewer.tag != invitation["id"]:
        return None  # gone, or another room's: nothing to say
    return _quality(viewer)


def _quality(viewer: Viewer) -> dict[str, Any]:
    return viewer.quality_state()


@operation("What this room's viewer gets (高清 / 仅声音) and what its link can take; with "
           "the room's invitation token", query=(QualityQuery,),
           errors=(*ROOM_TOKEN, 404, 422),
           replies={200: Reply("the viewer's quality", QualityState)})
async def quality(request: web.Request) -> web.Response:
    invitation = _invitation(request)
    viewer = _own_viewer(request, invitation, read_query(request, QualityQuery).resource)
    return web.json_response(_quality(viewer), headers={"Cache-Control": "no-store"})


@operation("Sound only (仅声音) by the room's own choice, or back to what the link can take; "
           "with the room's invitation token. Sound never stops", body=QualityRequest,
           errors=(*ROOM_TOKEN, *JSON_BODY_ERRORS, 404),
           replies={200: Reply("the viewer's quality", QualityState)})
async def choose_quality(request: web.Request) -> web.Response:
    invitation = _invitation(request)
    wanted = await read_model(request, QualityRequest)
    viewer = _own_viewer(request, invitation, wanted.resource)
    viewer.quality.chosen_audio_only = wanted.audio_only
    session = request.app[SESSIONS].get(str(invitation["session_id"]))
    assert session is not None  # _own_viewer found it
    session.broadcast.apply_quality(viewer)
    return web.json_response(_quality(viewer), headers={"Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/join/{token}", join),
        web.get("/api/v1/room", room),
        web.post("/api/v1/room/headcount", headcount),
        web.post("/api/v1/room/timeshift", timeshift),
        web.get("/api/v1/room/quality", quality),
        web.post("/api/v1/room/quality", choose_quality),
    ]
