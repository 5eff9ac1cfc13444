"""Admin JSON API under /api/v1/ (bearer admin token or login cookie)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from web.archive import StateConflict
from web.bodies import read_limited
from web.catalog import Invalid, Missing
from web.errors import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    Unprocessable,
    UnsupportedMediaType,
)
from web.invitations import disconnect_invitation, invitation_url
from web.keys import ARCHIVE, CATALOG, CONFIG, REPLAYS, SESSIONS, SIGNER
from web.login import authenticate_admin
from web.openapi import OPENAPI
from web.sessions import Session

MAX_JSON_BYTES = 16 * 1024
MAX_CSV_BYTES = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InvalidFields(AppError):
    """422 with the message key of every bad field."""

    status = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("invalid fields: " + ", ".join(f"{k} ({v})" for k, v in errors.items()))
        self.fields = errors


def routes() -> list[web.RouteDef]:
    table = [
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
        web.post("/api/v1/sites/import", import_sites),
    ]
    for kind in ("units", "courses", "sites"):
        table += [
            web.post(f"/api/v1/{kind}", _crud(kind, "create")),
            web.get(f"/api/v1/{kind}", _crud(kind, "list")),
            web.get(f"/api/v1/{kind}/{{row_id}}", _crud(kind, "get")),
            web.patch(f"/api/v1/{kind}/{{row_id}}", _crud(kind, "update")),
            web.delete(f"/api/v1/{kind}/{{row_id}}", _crud(kind, "delete")),
        ]
    return table


def require_admin(request: web.Request) -> None:
    """The bearer admin token, or a login cookie (plus X-CSRF-Token when unsafe)."""
    authenticate_admin(request)


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    body = await read_limited(request, MAX_JSON_BYTES)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def base_url(request: web.Request) -> str:
    public = request.app[CONFIG].public_url
    return public or str(request.url.origin())


def _int_id(request: web.Request) -> int:
    raw = request.match_info["row_id"]
    # Plain ASCII digits only: int() also takes "+1", " 1", "１" and "1_0", and an
    # id too large for SQLite's 64-bit integers would fail inside the query.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound("no such item")
    return int(raw)


def _crud(kind: str, action: str) -> Handler:
    singular = kind[:-1]

    async def handler(request: web.Request) -> web.Response:
        require_admin(request)
        catalog = request.app[CATALOG]
        try:
            if action == "list":
                return web.json_response({kind: getattr(catalog, kind)()})
            if action == "create":
                row = getattr(catalog, f"create_{singular}")(await read_json(request))
                return web.json_response(row, status=201,
                                         headers={"Location": f"/api/v1/{kind}/{row['id']}"})
            row_id = _int_id(request)
            if action == "get":
                return web.json_response(getattr(catalog, singular)(row_id))
            if action == "update":
                data = await read_json(request)
                return web.json_response(getattr(catalog, f"update_{singular}")(row_id, data))
            # Every delete returns the invitations it took with it: links that
            # stop working take their connected rooms with them.
            for invitation in getattr(catalog, f"delete_{singular}")(row_id):
                await disconnect_invitation(request.app, invitation["session_id"],
                                            invitation["id"])
            return web.Response(status=204)
        except Invalid as exc:
            raise InvalidFields(exc.errors) from exc
        except Missing as exc:
            raise NotFound(f"no such {singular}") from exc

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
    try:
        sites = request.app[CATALOG].import_sites(text)
    except Invalid as exc:
        raise InvalidFields(exc.errors) from exc
    return web.json_response({"imported": len(sites), "sites": sites}, status=201)


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
    data = await read_json(request)
    replays = request.app[REPLAYS]
    try:
        session = request.app[SESSIONS].create(replays.prepare(data))
    except Invalid as exc:
        raise InvalidFields(exc.errors) from exc
    replays.schedule(session.id)
    return web.json_response(describe(request, session), status=201,
                             headers={"Location": f"/api/v1/sessions/{session.id}"})


async def list_sessions(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(
        {"sessions": [describe(request, s) for s in request.app[SESSIONS].all()]}
    )


def session_of(request: web.Request) -> Session:
    """The session named by the route's ``session_id``, or 404."""
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None:
        raise NotFound("no such session")
    return session


async def get_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    body = describe(request, session)
    body["stats"] = await session.room.stats() if session.ended_at is None else None
    return web.json_response(body)


async def update_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    data = await read_json(request)
    try:
        session = request.app[SESSIONS].update(session, data)
    except Invalid as exc:
        raise InvalidFields(exc.errors) from exc
    request.app[REPLAYS].schedule(session.id)  # the start time may have moved
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
        raise InvalidFields({"action": "error.bad_choice"})
    position = data.get("position")
    if action == "seek" and (isinstance(position, bool) or not isinstance(position, int | float)
                             or not 0 <= position < 24 * 3600):
        raise InvalidFields({"position": "error.not_a_number"})
    try:
        replay = await request.app[REPLAYS].control(
            session, action, float(position) if action == "seek" and position is not None else None)
    except StateConflict as exc:
        raise Conflict(str(exc)) from exc
    return web.json_response(replay)


async def delete_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    archive = request.app[ARCHIVE]
    if archive.recording_of(session.id) is not None:
        archive.stop_recording(session.id)  # the lecture is over: finish its recording
    await request.app[REPLAYS].stop(session.id)
    await request.app[SESSIONS].end(session)
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
    data = await read_json(request)
    catalog = request.app[CATALOG]
    # The site's current link, found by the validated site id (never by raw input).
    current = {item["site_id"]: item["id"] for item in catalog.invitations(session.id)}
    try:
        row = catalog.create_invitation(session.id, data)
    except Invalid as exc:
        raise InvalidFields(exc.errors) from exc
    previous = current.get(row["site_id"])
    if previous is not None:
        await disconnect_invitation(request.app, session.id, previous)
    return web.json_response(_describe_invitation(request, row), status=201)


async def list_invitations(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    connected = {viewer.tag for viewer in session.room.viewers.values()
                 if viewer.connection_state == "connected"}
    items = []
    for row in request.app[CATALOG].invitations(session.id):
        item = _describe_invitation(request, row)
        item["connected"] = row["id"] in connected
        items.append(item)
    return web.json_response({"invitations": items})


async def revoke_invitation(request: web.Request) -> web.Response:
    require_admin(request)
    catalog = request.app[CATALOG]
    try:
        row = catalog.revoke_invitation(request.match_info["invitation_id"])
    except Missing as exc:
        raise NotFound("no such invitation") from exc
    await disconnect_invitation(request.app, row["session_id"], row["id"])
    return web.Response(status=204)
