"""HTTP for the archive: recording control, items, media, library links.

Who may do what:

- admins (bearer admin token or login cookie) start and stop recordings,
  list every item in any state, edit and delete items, and hand out library
  links;
- readers (cadres, with a library link: the link sets the ``zhixing_library``
  cookie; scripts may send the link's token as a bearer token) list ready
  items and fetch their media and posters.

Media are served from the item's folder by name from the catalog, with HTTP
Range support (``206 Partial Content``, ``416`` out of bounds), so ``<video>``
seeks without downloading the whole lecture.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field

from classroom.archive.items import STATES
from classroom.errors import Invalid
from web.api.spec import Shape
from web.auth import COOKIE as ADMIN_COOKIE
from web.auth import authenticate_admin, require_admin
from web.errors import NotAuthorized, NotFound
from web.http import base_url, read_json, session_of
from web.keys import ARCHIVE, LIBRARY_LINKS

LIBRARY_COOKIE = "zhixing_library"
LIBRARY_COOKIE_SECONDS = 30 * 24 * 3600
MEDIA_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


# ---------------------------------------------------------------------- the contract


class RecordingNotice(Shape):
    at: float
    kind: str
    message: str


class Recording(Shape):
    """a running recording"""

    component: ClassVar[bool] = True
    item_id: str
    started_at: float
    duration: float = Field(description="seconds recorded so far")
    bytes: int
    segments: int = Field(description="a new one per publisher reconnect or size change")
    restarts: int = Field(description="writer failures recovered")
    notices: list[RecordingNotice]


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


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/sessions/{session_id}/recording", start_recording),
        web.get("/api/v1/sessions/{session_id}/recording", get_recording),
        web.delete("/api/v1/sessions/{session_id}/recording", stop_recording),
        web.get("/api/v1/archive", list_items),
        web.get("/api/v1/archive/{item_id}", get_item),
        web.patch("/api/v1/archive/{item_id}", update_item),
        web.delete("/api/v1/archive/{item_id}", delete_item),
        web.get("/archive/{item_id}/media", media),
        web.get("/archive/{item_id}/poster.jpg", poster),
        web.get("/archive/{item_id}/stage", stage_media),
        web.post("/api/v1/library-links", create_link),
        web.get("/api/v1/library-links", list_links),
        web.delete("/api/v1/library-links/{link_id}", revoke_link),
        web.get("/library/k/{token}", open_link),
    ]


# ---------------------------------------------------------------------- who is asking


def reader_role(request: web.Request) -> str:
    """'admin' or 'reader'; 401 for anyone else."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and request.app[LIBRARY_LINKS].check(token.strip()):
            return "reader"
        authenticate_admin(request)
        return "admin"
    if ADMIN_COOKIE in request.cookies:
        try:
            authenticate_admin(request)
            return "admin"
        except NotAuthorized:
            pass  # an expired admin login may still hold a library link
    cookie = request.cookies.get(LIBRARY_COOKIE)
    if cookie is not None and request.app[LIBRARY_LINKS].check(cookie):
        return "reader"
    raise NotAuthorized("open the library with a library link, or log in")


# ---------------------------------------------------------------------- recording


async def start_recording(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    room = session.broadcast
    item = request.app[ARCHIVE].start_recording(session.row, room.program, room.stage)
    return web.json_response(item, status=201,
                             headers={"Location": f"/api/v1/archive/{item['id']}"})


async def get_recording(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    recording = request.app[ARCHIVE].recording_of(session.id)
    if recording is None:
        raise NotFound("this session is not being recorded")
    return web.json_response(recording)


async def stop_recording(request: web.Request) -> web.Response:
    require_admin(request)
    session = session_of(request)
    item = request.app[ARCHIVE].stop_recording(session.id)
    return web.json_response(item)


# ---------------------------------------------------------------------- items


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise Invalid({name: "error.not_a_number"})
    return int(raw)


async def list_items(request: web.Request) -> web.Response:
    role = reader_role(request)
    state = request.query.get("state") or None
    if role == "reader":
        state = "ready"
    elif state is not None and state not in STATES:
        raise Invalid({"state": "error.bad_choice"})
    query = request.query.get("q", "").strip()[:100] or None
    items = request.app[ARCHIVE].items(
        state=state, course_id=_int_param(request, "course_id"),
        unit_id=_int_param(request, "unit_id"), query=query)
    return web.json_response({"items": items})


def _item(request: web.Request) -> dict[str, Any]:
    return request.app[ARCHIVE].item(request.match_info["item_id"])


async def get_item(request: web.Request) -> web.Response:
    role = reader_role(request)
    item = _item(request)
    if role == "reader" and item["state"] != "ready":
        raise NotFound("no such archive item")
    return web.json_response(item)


async def update_item(request: web.Request) -> web.Response:
    require_admin(request)
    item = _item(request)
    data = await read_json(request)
    return web.json_response(request.app[ARCHIVE].update_item(item["id"], data))


async def delete_item(request: web.Request) -> web.Response:
    require_admin(request)
    item = _item(request)
    request.app[ARCHIVE].delete_item(item["id"])
    return web.Response(status=204)


async def _serve(request: web.Request, poster: bool = False,
                 stage: bool = False) -> web.StreamResponse:
    reader_role(request)
    archive = request.app[ARCHIVE]
    path = archive.media_path(request.match_info["item_id"], poster=poster, stage=stage)
    root = archive.recordings.root.resolve()
    # The name comes from the catalog, the folder from a validated id; still,
    # never follow a link out of the archive.
    if path.is_symlink() or not path.is_file() or root not in path.resolve().parents:
        raise NotFound("no such archive item")
    return web.FileResponse(path, headers=MEDIA_HEADERS)


async def media(request: web.Request) -> web.StreamResponse:
    return await _serve(request, poster=False)


async def poster(request: web.Request) -> web.StreamResponse:
    return await _serve(request, poster=True)


async def stage_media(request: web.Request) -> web.StreamResponse:
    """The rooms' pictures of the discussion, their turns one after another."""
    return await _serve(request, stage=True)


# ---------------------------------------------------------------------- library links


def _describe_link(request: web.Request, row: dict[str, Any],
                   token: str | None = None) -> dict[str, Any]:
    link = dict(row)
    if token is not None:
        link["token"] = token
        link["url"] = f"{base_url(request)}/library/k/{token}"
    return link


async def create_link(request: web.Request) -> web.Response:
    require_admin(request)
    row, token = request.app[LIBRARY_LINKS].create(await read_json(request))
    return web.json_response(_describe_link(request, row, token), status=201)


async def list_links(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(
        {"links": [_describe_link(request, row) for row in request.app[LIBRARY_LINKS].links()]})


async def revoke_link(request: web.Request) -> web.Response:
    require_admin(request)
    request.app[LIBRARY_LINKS].revoke(request.match_info["link_id"])
    return web.Response(status=204)


async def open_link(request: web.Request) -> web.Response:
    """A library link: remember it in a cookie, then show the library."""
    token = request.match_info["token"]
    link = request.app[LIBRARY_LINKS].check(token)
    if link is None:
        raise NotAuthorized("this library link is not valid (revoked, expired or mistyped)")
    max_age = LIBRARY_COOKIE_SECONDS
    if link["expires_at"] is not None:
        max_age = max(1, min(max_age, int(link["expires_at"] - time.time())))
    response = web.Response(status=303, headers={
        "Location": "/library", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    response.set_cookie(LIBRARY_COOKIE, token, max_age=max_age, httponly=True,
                        samesite="Lax", path="/", secure=request.secure)
    return response
