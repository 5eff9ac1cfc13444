"""Admin JSON API for sessions (场次): schedule, start, end, replay control,
and their invitation links; also the pages' ICE servers and the OpenAPI
document."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from classroom.access.invitations import invitation_url
from classroom.errors import Invalid
from classroom.live.sessions import Session
from web.api.openapi import OPENAPI
from web.auth import require_admin
from web.errors import Unprocessable
from web.http import base_url, read_json, session_of
from web.keys import ARCHIVE, CATALOG, CONFIG, REPLAYS, SCHOOL, SESSIONS, SIGNER


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/openapi.json", openapi),
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


def describe(request: web.Request, session: Session) -> dict[str, Any]:
    base = base_url(request)
    row = session.row
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
        "publish_token": session.publish_token,
        "view_token": session.view_token,
        "whip_url": f"{base}/whip/{session.id}",
        "whep_url": f"{base}/whep/{session.id}",
        "presenter_url": f"{base}/present/{session.id}#token={session.publish_token}",
        "recording": request.app[ARCHIVE].recording_of(session.id),
        "replay": request.app[REPLAYS].describe(session.id),
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def rtc_config(request: web.Request) -> web.Response:
    """ICE servers for pages: the project's own, never a public one."""
    return web.json_response({"iceServers": request.app[CONFIG].browser_ice_servers()})


async def create_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = request.app[SCHOOL].schedule_session(await read_json(request))
    return web.json_response(describe(request, session), status=201,
                             headers={"Location": f"/api/v1/sessions/{session.id}"})


async def list_sessions(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(
        {"sessions": [describe(request, s) for s in request.app[SESSIONS].all()]}
    )


async def get_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    body = describe(request, session)
    body["stats"] = await session.broadcast.stats() if session.ended_at is None else None
    return web.json_response(body)


async def update_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    session = request.app[SCHOOL].reschedule_session(session, await read_json(request))
    return web.json_response(describe(request, session))


async def start_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    if session.ended_at is not None:
        raise Unprocessable("this session has ended")
    return web.json_response(describe(request, request.app[SESSIONS].start(session)))


REPLAY_ACTIONS = ("start", "pause", "resume", "seek")


async def control_replay(request: web.Request) -> web.Response:
    """Start now, pause, resume or seek a replay session's program."""
    require_admin(request)
    session = session_of(request)
    data = await read_json(request)
    action = data.get("action")
    if action not in REPLAY_ACTIONS:
        raise Invalid({"action": "error.bad_choice"})
    position = data.get("position")
    if action == "seek" and (isinstance(position, bool) or not isinstance(position, int | float)
                             or not 0 <= position < 24 * 3600):
        raise Invalid({"position": "error.not_a_number"})
    replay = await request.app[REPLAYS].control(
        session, action, float(position) if action == "seek" and position is not None else None)
    return web.json_response(replay)


async def delete_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    await request.app[SCHOOL].end_session(session)
    return web.Response(status=204)


def _describe_invitation(request: web.Request, row: dict[str, Any]) -> dict[str, Any]:
    token = request.app[SIGNER].sign_invitation(row)
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
        "url": invitation_url(base_url(request), token),
    }


async def create_invitation(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    if session.ended_at is not None:
        raise Unprocessable("this session has ended")
    row = await request.app[SCHOOL].invite(session, await read_json(request))
    return web.json_response(_describe_invitation(request, row), status=201)


async def list_invitations(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    connected = {viewer.tag for viewer in session.broadcast.viewers.values()
                 if viewer.connection_state == "connected"}
    items = []
    for row in request.app[CATALOG].invitations(session.id):
        item = _describe_invitation(request, row)
        item["connected"] = row["id"] in connected
        items.append(item)
    return web.json_response({"invitations": items})


async def revoke_invitation(request: web.Request) -> web.Response:
    require_admin(request)
    await request.app[SCHOOL].revoke(request.match_info["invitation_id"])
    return web.Response(status=204)
