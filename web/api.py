"""Admin JSON API under /api/v1/ (bearer admin token)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from streaming.peers import SUPPORTED_VIDEO_CODECS
from web.bodies import read_limited
from web.errors import BadRequest, NotFound, Unprocessable, UnsupportedMediaType
from web.keys import CONFIG, SESSIONS, TOKENS
from web.openapi import OPENAPI
from web.sessions import Session
from web.tokens import Role, bearer_token

MAX_JSON_BYTES = 16 * 1024
MAX_TITLE = 200


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/openapi.json", openapi),
        web.get("/api/v1/rtc-config", rtc_config),
        web.post("/api/v1/sessions", create_session),
        web.get("/api/v1/sessions", list_sessions),
        web.get("/api/v1/sessions/{session_id}", get_session),
        web.delete("/api/v1/sessions/{session_id}", delete_session),
    ]


def require_admin(request: web.Request) -> None:
    request.app[TOKENS].require(bearer_token(request), Role.ADMIN, None)


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


def describe(request: web.Request, session: Session) -> dict[str, Any]:
    base = base_url(request)
    return {
        "id": session.id,
        "title": session.title,
        "video_codec": session.video_codec,
        "state": session.state,
        "created_at": session.created_at,
        "ended_at": session.ended_at,
        "publish_token": session.publish_token,
        "view_token": session.view_token,
        "whip_url": f"{base}/whip/{session.id}",
        "whep_url": f"{base}/whep/{session.id}",
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def rtc_config(request: web.Request) -> web.Response:
    """ICE servers for pages: the project's own, never a public one."""
    return web.json_response({"iceServers": request.app[CONFIG].browser_ice_servers()})


async def create_session(request: web.Request) -> web.Response:
    require_admin(request)
    data = await read_json(request)
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise Unprocessable("title is required")
    if len(title) > MAX_TITLE:
        raise Unprocessable(f"title is longer than {MAX_TITLE} characters")
    codec = data.get("video_codec", "H264")
    if codec not in SUPPORTED_VIDEO_CODECS:
        raise Unprocessable("video_codec must be one of " + ", ".join(SUPPORTED_VIDEO_CODECS))
    session = request.app[SESSIONS].create(title.strip(), codec)
    return web.json_response(describe(request, session), status=201,
                             headers={"Location": f"/api/v1/sessions/{session.id}"})


async def list_sessions(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(
        {"sessions": [describe(request, s) for s in request.app[SESSIONS].all()]}
    )


def _session(request: web.Request) -> Session:
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None:
        raise NotFound("no such session")
    return session


async def get_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = _session(request)
    body = describe(request, session)
    body["stats"] = await session.room.stats() if session.ended_at is None else None
    return web.json_response(body)


async def delete_session(request: web.Request) -> web.Response:
    require_admin(request)
    session = _session(request)
    await request.app[SESSIONS].end(session)
    return web.Response(status=204)
