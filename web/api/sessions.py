"""Admin JSON API for sessions (场次): schedule, start, end, replay control,
and their invitation links; also the pages' ICE servers."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field, model_validator

from classroom.access.invitations import invitation_url, is_invitation_token
from classroom.access.tokens import Role
from classroom.catalog import MAX_BATCH, MAX_NAME
from classroom.errors import NotAuthorized
from classroom.live.sessions import Session as LiveSession
from web.api.models import Recording
from web.api.spec import (
    ABSENT,
    JSON_BODY_ERRORS,
    Described,
    Reply,
    Shape,
    Validated,
    operation,
    read_described,
    read_model,
)
from web.auth import (
    Caller,
    authenticate_admin,
    managed_session,
    readable_session,
    require_admin,
)
from web.errors import Forbidden, Unprocessable
from web.http import base_url, bearer_token, session_of
from web.keys import ARCHIVE, CATALOG, CONFIG, REPLAYS, SCHOOL, SESSIONS, SIGNER, TOKENS

# ---------------------------------------------------------------------- the contract

TIME = "unix time in seconds (2000 … 2100)"
STATES = Literal["scheduled", "live", "ended"]
CODECS = Literal["H264", "VP8"]
THRESHOLD = ("a room attended if connected at least this percent of the session (its "
             "scheduled window, else its actual start to end)")



class Replay(Shape):
    """the program of a replay session: an archive item played as if live"""

    component: ClassVar[bool] = True
    item_id: str | None
    item_title: str | None
    state: Literal["waiting", "playing", "paused", "ended", "failed"]
    position: float = Field(description="seconds into the lecture")
    duration: float | None
    error: str | None = Field(description="why it failed")
    starts_at: float | None = Field(description="the scheduled start, while waiting")

class Session(Shape):
    component: ClassVar[bool] = True
    id: str
    title: str
    course_id: int | None
    course_title: str | None
    lecturer: str | None
    unit_name: str | None
    batch: str
    scheduled_start: float | None = Field(description=TIME)
    scheduled_end: float | None = Field(description=TIME)
    video_codec: CODECS
    state: STATES
    created_at: float
    started_at: float | None
    ended_at: float | None
    publish_token: str | None = Field(
        description="null for a caller who does not manage the session (nor present it)")
    view_token: str | None
    whip_url: str
    whep_url: str
    presenter_url: str | None = Field(
        description="the presenter page (主课堂), publish token in the fragment")
    organizer_id: int = Field(description="the org node organizing it: the city or a district")
    organizer_name: str | None
    organizer: Literal["city", "district"] = Field(
        description="city training, or a district's extension training (延伸培训)")
    presenter_id: int | None = Field(description="the presenter account assigned to it")
    presenter_name: str | None
    manageable: bool = Field(description="the caller may change it")
    stats: dict[str, Any] | None = Field(
        description="live statistics (GET of one session only)")
    recording: Recording | None
    replay: Replay | None = Field(description="null for a live session")
    attendance_threshold: int = Field(80, ge=1, le=100, description=THRESHOLD)


class SessionInput(Described):
    component: ClassVar[bool] = True
    title: str = Field(min_length=1, max_length=MAX_NAME)
    course_id: int | None = None
    batch: str = Field(ABSENT, max_length=MAX_BATCH)
    scheduled_start: float | None = Field(None, description=TIME)
    scheduled_end: float | None = Field(None, description="after scheduled_start")
    video_codec: CODECS = "H264"
    replay_item_id: str | None = Field(
        None, description="replay this archive item (重播) instead of a live publisher: it "
        "must be ready and sendable (H.264 or VP8 without B-frames, Opus audio), else 422; "
        "the session takes its codec, title and course; it starts by itself at "
        "scheduled_start, or with the replay action start")
    attendance_threshold: int = Field(80, ge=1, le=100, description=THRESHOLD)
    organizer_id: int | None = Field(
        None, description="an org node of the caller's part of the tree (default: the "
                          "caller's own node; 403 outside it)")
    presenter_id: int | None = Field(None, description="a presenter account")


class SessionChange(Described):
    """any of the fields; video_codec is fixed once created (422)"""

    component: ClassVar[bool] = True
    title: str = Field(ABSENT, min_length=1, max_length=MAX_NAME)
    course_id: int | None = None
    batch: str = Field(ABSENT, max_length=MAX_BATCH)
    scheduled_start: float | None = Field(None, description=TIME)
    scheduled_end: float | None = Field(None, description=TIME)
    attendance_threshold: int = Field(80, ge=1, le=100, description=THRESHOLD)
    presenter_id: int | None = Field(None, description="a presenter account")


class Invitation(Shape):
    """a site's link to a session: signed, expiring, revocable"""

    component: ClassVar[bool] = True
    id: str
    session_id: str
    site_id: int
    site_name: str
    org_path: str
    expires_at: float
    revoked_at: float | None
    headcount: int | None
    token: str | None = Field(description="bearer token for WHEP of this session only "
                                          "(null for an auditor)")
    url: str | None = Field(description="the /join/{token} link")
    connected: bool = Field(description="a viewer is connected with it (lists only)")


class InvitationInput(Described):
    component: ClassVar[bool] = True
    site_id: int
    expires_at: float | None = Field(
        None, description="in the future; default 30 days after the scheduled end")


class ReplayControl(Validated):
    action: Literal["start", "pause", "resume", "seek"]
    position: float = Field(
        ABSENT, ge=0, lt=24 * 3600,
        description="seconds (seek): playback goes on from the keyframe at or before it")
    refusals: ClassVar[dict[str, str]] = {"action": "error.bad_choice",
                                          "position": "error.not_a_number"}

    @model_validator(mode="before")
    @classmethod
    def _position_only_to_seek(cls, data: Any) -> Any:
        # Only a seek reads the position, and it needs one.
        if isinstance(data, dict):
            if data.get("action") == "seek":
                return {"position": None, **data}
            return {k: v for k, v in data.items() if k != "position"}
        return data

ADMIN = (401, 403)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/rtc-config", rtc_config),
        web.post("/api/v1/sessions", create_session),
        web.get("/api/v1/sessions", list_sessions),
        web.get("/api/v1/sessions/{session_id}", get_session),
        web.patch("/api/v1/sessions/{session_id}", update_session),
        web.delete("/api/v1/sessions/{session_id}", delete_session),
        web.post("/api/v1/sessions/{session_id}/start", start_session),
        web.post("/api/v1/sessions/{session_id}/replay", control_replay),
        web.post("/api/v1/sessions/{session_id}/invitations", create_invitation),
        web.get("/api/v1/sessions/{session_id}/invitations", list_invitations),
        web.delete("/api/v1/invitations/{invitation_id}", revoke_invitation),
    ]


def describe(request: web.Request, session: LiveSession,
             caller: Caller | None = None) -> dict[str, Any]:
    """The session as ``caller`` may see it: its tokens only for whoever
    manages or presents it."""
    base = base_url(request)
    row = session.row
    scope = caller.scope if caller is not None else None
    tokens = scope is None or scope.sees_tokens(row)
    return {
        "id": session.id,
        "title": session.title,
        "course_id": row["course_id"],
        "course_title": row.get("course_title"),
        "lecturer": row.get("lecturer"),
        "unit_name": row.get("unit_name"),
        "batch": row["batch"],
        "scheduled_start": row["scheduled_start"],
        "scheduled_end": row["scheduled_end"],
        "attendance_threshold": row["attendance_threshold"],
        "video_codec": session.video_codec,
        "state": session.state,
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "publish_token": session.publish_token if tokens else None,
        "view_token": session.view_token if tokens else None,
        "whip_url": f"{base}/whip/{session.id}",
        "whep_url": f"{base}/whep/{session.id}",
        "presenter_url": f"{base}/present/{session.id}#token={session.publish_token}"
        if tokens else None,
        "organizer_id": row["organizer_id"],
        "organizer_name": row.get("organizer_name"),
        "organizer": "city" if row.get("organizer_is_city", 1) else "district",
        "presenter_id": row.get("presenter_id"),
        "presenter_name": row.get("presenter_name"),
        "manageable": scope is None or scope.manages_session(row),
        "recording": request.app[ARCHIVE].recording_of(session.id),
        "replay": request.app[REPLAYS].describe(session.id),
    }


@operation("ICE servers for pages (the deployment's own STUN/TURN). With a bearer token (a "
           "room's link, a session's publish or view token, the admin token) the TURN servers "
           "come with credentials issued to its holder that expire (--turn-secret); without "
           "one, STUN only", security=None, errors=(401, 403, 410),
           replies={200: Reply("{iceServers: [...]}")})
async def rtc_config(request: web.Request) -> web.Response:
    """ICE servers for pages: the project's own, never a public one."""
    config = request.app[CONFIG]
    issuer = config.turn_issuer()
    turn = None
    if "Authorization" in request.headers:
        holder = _turn_holder(request, bearer_token(request))
        if issuer is not None:
            turn = issuer.issue(holder)
    return web.json_response({"iceServers": config.browser_ice_servers(turn)},
                             headers={"Cache-Control": "no-store"})


def _turn_holder(request: web.Request, token: str) -> str:
    """Who a token belongs to, as TURN credentials name it (401/403/410 if it is no good)."""
    if is_invitation_token(token):
        invitation = request.app[SCHOOL].check_invitation(token, None)
        return f"room-{invitation['id']}"
    grant = request.app[TOKENS].lookup(token)
    if grant is None:
        raise NotAuthorized("unknown or revoked token")
    if grant.role is Role.ADMIN:
        return "admin"
    role = "presenter" if grant.role is Role.PUBLISH else "viewer"
    return f"{role}-{grant.session_id}"


@operation("Create a session", body=SessionInput, errors=(*ADMIN, *JSON_BODY_ERRORS),
           replies={201: Reply("created", Session)})
async def create_session(request: web.Request) -> web.Response:
    caller = require_admin(request)
    data = await read_described(request, SessionInput)
    session = request.app[SCHOOL].schedule_session(data, caller.scope)
    return web.json_response(describe(request, session, caller), status=201,
                             headers={"Location": f"/api/v1/sessions/{session.id}"})


@operation("List the sessions the caller may see: its part of the tree's, those organized "
           "above it (read-only, without tokens); a presenter its assigned ones",
           errors=ADMIN,
           replies={200: Reply("{sessions: [Session]}", Session, listed="sessions")})
async def list_sessions(request: web.Request) -> web.Response:
    caller = authenticate_admin(request)
    return web.json_response(
        {"sessions": [describe(request, s, caller) for s in request.app[SESSIONS].all()
                      if caller.scope.reads_session(s.row)]}
    )


def _visible_session(request: web.Request) -> tuple[Caller, LiveSession]:
    """The route's session for any account that may see it (a presenter its own)."""
    caller = authenticate_admin(request)
    session = session_of(request)
    if not caller.scope.reads_session(session.row):
        raise Forbidden("this session belongs to another part of the organization")
    return caller, session


@operation("A session with live stats", errors=(*ADMIN, 404),
           replies={200: Reply("Session with stats", Session)})
async def get_session(request: web.Request) -> web.Response:
    caller, session = _visible_session(request)
    body = describe(request, session, caller)
    body["stats"] = await session.broadcast.stats() if session.ended_at is None else None
    return web.json_response(body)


@operation("Change a session's title, course, batch or schedule", body=SessionChange,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("the changed session", Session)})
async def update_session(request: web.Request) -> web.Response:
    caller, session = managed_session(request)
    data = await read_described(request, SessionChange)
    session = request.app[SCHOOL].reschedule_session(session, data, caller.scope)
    return web.json_response(describe(request, session, caller))


@operation("Mark a scheduled session live", errors=(*ADMIN, 404, 422),
           replies={200: Reply("the session", Session)})
async def start_session(request: web.Request) -> web.Response:
    caller, session = managed_session(request)
    if session.ended_at is not None:
        raise Unprocessable("this session has ended")
    return web.json_response(describe(request, request.app[SESSIONS].start(session), caller))


@operation("Control a replay session: start now, pause, resume, seek", body=ReplayControl,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("the replay", Replay),
                    409: Reply("not a replay session, or not in a state for this action")})
async def control_replay(request: web.Request) -> web.Response:
    """Start now, pause, resume or seek a replay session's program."""
    _, session = managed_session(request)
    control = await read_model(request, ReplayControl)
    position = float(control.position) if control.action == "seek" else None
    replay = await request.app[REPLAYS].control(session, control.action, position)
    return web.json_response(replay)


@operation("End a session and disconnect everyone", errors=(*ADMIN, 404),
           replies={204: Reply("ended")})
async def delete_session(request: web.Request) -> web.Response:
    _, session = managed_session(request)
    await request.app[SCHOOL].end_session(session)
    return web.Response(status=204)


def _describe_invitation(request: web.Request, row: dict[str, Any],
                         links: bool = True) -> dict[str, Any]:
    token = request.app[SIGNER].sign_invitation(row) if links else None
    return {
        "id": row["id"],
        "session_id": row["session_id"],
        "site_id": row["site_id"],
        "site_name": row["site_name"],
        "org_path": row["org_path"],
        "expires_at": row["expires_at"],
        "revoked_at": row["revoked_at"],
        "headcount": row["headcount"],
        "token": token,
        "url": invitation_url(base_url(request), token) if token else None,
    }


@operation("Invite a site: a new link (replaces the site's previous one, whose viewers are "
           "disconnected)", body=InvitationInput,
           errors=(*ADMIN, 400, 404, 413, 415, (422, "bad fields, or the session has ended")),
           replies={201: Reply("the invitation with its link", Invitation)})
async def create_invitation(request: web.Request) -> web.Response:
    caller, session = managed_session(request)
    if session.ended_at is not None:
        raise Unprocessable("this session has ended")
    data = await read_described(request, InvitationInput)
    row = await request.app[SCHOOL].invite(session, data, caller.scope)
    return web.json_response(_describe_invitation(request, row), status=201)


@operation("The session's invitations, with who is connected; a district's account sees "
           "its own sites' only", errors=(*ADMIN, 404),
           replies={200: Reply("{invitations: [Invitation]}", Invitation,
                               listed="invitations")})
async def list_invitations(request: web.Request) -> web.Response:
    caller, session = readable_session(request)
    connected = {viewer.tag for viewer in session.broadcast.viewers.values()
                 if viewer.connection_state == "connected"}
    items = []
    for row in request.app[CATALOG].invitations(session.id, caller.scope):
        item = _describe_invitation(request, row, links=caller.scope.manages)
        item["connected"] = row["id"] in connected
        items.append(item)
    return web.json_response({"invitations": items})


@operation("Revoke an invitation and disconnect its viewers", errors=(*ADMIN, 404),
           replies={204: Reply("revoked")})
async def revoke_invitation(request: web.Request) -> web.Response:
    caller = require_admin(request)
    await request.app[SCHOOL].revoke(request.match_info["invitation_id"], caller.scope)
    return web.Response(status=204)
