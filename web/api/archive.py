"""HTTP for the archive: recording control, items, media, library links.

Who may do what:

- admins (bearer admin token or login cookie) start and stop recordings of
  the sessions they manage, list the items of their part of the tree in any
  state (and the city's ready lectures, to replay them), edit and delete
  their own items; auditors read the same; city admins hand out library
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
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

from aiohttp import web
from pydantic import Field, ValidationInfo, field_validator, model_validator

from classroom.archive.items import STATES
from classroom.catalog import MAX_NAME, MAX_TEXT
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
    read_query,
)
from web.auth import (
    LIBRARY_COOKIE,
    managed_session,
    readable_session,
    reader_role,
    require_admin,
    require_city,
)
from web.errors import Forbidden, NotAuthorized, NotFound
from web.http import base_url, query_id
from web.keys import ARCHIVE, LIBRARY_LINKS

LIBRARY_COOKIE_SECONDS = 30 * 24 * 3600
MEDIA_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


# ---------------------------------------------------------------------- the contract


TIME = "unix time in seconds (2000 … 2100)"
ITEM_STATES = Literal["recording", "finishing", "ready", "failed"]
assert set(get_args(ITEM_STATES)) == set(STATES)


class StageTurn(Shape):
    at: float = Field(description="seconds into the lecture")
    offset: float = Field(description="seconds into the stage file")
    duration: float
    site_name: str | None
    org_path: str | None


class ArchiveItem(Shape):
    """课程录像: one lecture, recorded from a session or imported"""

    component: ClassVar[bool] = True
    id: str
    session_id: str | None
    course_id: int | None
    course_title: str | None
    unit_id: int | None
    unit_name: str | None
    title: str
    lecturer: str
    description: str
    recorded_at: float
    origin: Literal["recording", "import"]
    state: ITEM_STATES
    failure: str | None = Field(description="why it failed")
    progress: float = Field(description="finishing progress, 0 to 1")
    duration: float | None = Field(description="seconds")
    size: int | None = Field(description="bytes of the media file")
    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None
    media_url: str | None = Field(description="the lecture file (HTTP Range), once ready")
    poster_url: str | None
    mime_type: str | None
    stage_url: str | None = Field(
        description="the rooms' pictures on stage (研讨), their turns one after another; "
                    "their sound is in the media")
    stage: list[StageTurn]
    created_at: float
    owner_id: int | None = Field(description="the org node it belongs to (its session's "
                                             "organizer; the city for imports)")
    owner_name: str | None
    manageable: bool | None = Field(
        description="the calling account may edit and delete it (null for a library link)")


class ArchiveItemChange(Described):
    component: ClassVar[bool] = True
    title: str = Field(ABSENT, min_length=1, max_length=MAX_NAME)
    lecturer: str = Field(ABSENT, min_length=1, max_length=MAX_NAME)
    description: str = Field(ABSENT, max_length=MAX_TEXT)
    course_id: int | None = ABSENT
    recorded_at: float | None = Field(ABSENT, description=TIME)


class ArchiveQuery(Validated):
    """The list's filters. A reader's ``state`` is ignored (readers see ready
    items); the first bad filter is reported, in this order."""

    state: ITEM_STATES = ABSENT
    course_id: int = ABSENT
    unit_id: int = ABSENT
    q: str = Field(ABSENT, json_schema_extra={"maxLength": 100},
                   description="search in title, lecturer and course")
    refusals: ClassVar[dict[str, str]] = {"state": "error.bad_choice",
                                          "course_id": "error.not_a_number",
                                          "unit_id": "error.not_a_number"}

    @classmethod
    def refuse(cls, fields: Sequence[str], context: Mapping[str, Any]) -> Exception:
        return super().refuse(fields[:1], context)

    @model_validator(mode="before")
    @classmethod
    def _absent_when_empty(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if v != "" or k == "q"}
            if info.context and info.context.get("reader"):
                data.pop("state", None)
        return data

    @field_validator("course_id", "unit_id", mode="before")
    @classmethod
    def _id(cls, raw: Any) -> int:
        return query_id(raw)

    @field_validator("q", mode="before")
    @classmethod
    def _search(cls, raw: Any) -> Any:
        # A longer search is cut, not refused.
        return raw.strip()[:100] if isinstance(raw, str) else raw


class LibraryLink(Shape):
    component: ClassVar[bool] = True
    id: str
    label: str
    expires_at: float | None
    revoked_at: float | None
    created_at: float
    token: str = Field(description="only when created")
    url: str = Field(description="only when created")


class LibraryLinkInput(Described):
    label: str = Field(min_length=1, max_length=MAX_NAME)
    expires_at: float | None = Field(ABSENT, description=TIME)


READER = ("bearer", "libraryCookie")
ADMIN = (401, 403)
RANGE_REPLIES = {200: Reply("the whole file"), 206: Reply("the requested range"),
                 416: Reply("range out of bounds")}


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


# ---------------------------------------------------------------------- recording


@operation("Start recording the session into a new archive item", errors=(*ADMIN, 404),
           replies={201: Reply("the new item (state recording)", ArchiveItem),
                    409: Reply("already recording, or the session has ended")})
async def start_recording(request: web.Request) -> web.Response:
    _, session = managed_session(request)
    room = session.broadcast
    item = request.app[ARCHIVE].start_recording(session.row, room.program, room.stage)
    return web.json_response(item, status=201,
                             headers={"Location": f"/api/v1/archive/{item['id']}"})


@operation("The running recording", errors=ADMIN,
           replies={200: Reply("running", Recording),
                    404: Reply("no such session, or not recording")})
async def get_recording(request: web.Request) -> web.Response:
    _, session = readable_session(request)
    recording = request.app[ARCHIVE].recording_of(session.id)
    if recording is None:
        raise NotFound("this session is not being recorded")
    return web.json_response(recording)


@operation("Stop recording; the item is finished in the background", errors=(*ADMIN, 404),
           replies={200: Reply("the item (state finishing)", ArchiveItem),
                    409: Reply("not recording")})
async def stop_recording(request: web.Request) -> web.Response:
    _, session = managed_session(request)
    item = request.app[ARCHIVE].stop_recording(session.id)
    return web.json_response(item)


# ---------------------------------------------------------------------- items


@operation("List archive items (readers see ready items only)", security=READER,
           query=(ArchiveQuery,), errors=(*ADMIN, 422),
           replies={200: Reply("{items: [ArchiveItem]}", ArchiveItem, listed="items")})
async def list_items(request: web.Request) -> web.Response:
    caller = reader_role(request)
    query = read_query(request, ArchiveQuery, {"reader": caller is None})
    items = request.app[ARCHIVE].items(
        state="ready" if caller is None else query.state, course_id=query.course_id,
        unit_id=query.unit_id, query=query.q or None)
    if caller is not None:
        items = [{**item, "manageable": caller.scope.manages_item(item)}
                 for item in items if caller.scope.reads_item(item)]
    return web.json_response({"items": items})


def _item(request: web.Request) -> dict[str, Any]:
    return request.app[ARCHIVE].item(request.match_info["item_id"])


def _managed_item(request: web.Request) -> dict[str, Any]:
    caller = require_admin(request)
    item = _item(request)
    if not caller.scope.manages_item(item):
        raise Forbidden("this archive item belongs to another part of the organization")
    return item


def _readable_item(request: web.Request) -> dict[str, Any]:
    """The item for a library link (ready ones) or an account that may read it."""
    caller = reader_role(request)
    item = _item(request)
    if caller is None:
        if item["state"] != "ready":
            raise NotFound("no such archive item")
    elif not caller.scope.reads_item(item):
        raise Forbidden("this archive item belongs to another part of the organization")
    else:
        item["manageable"] = caller.scope.manages_item(item)
    return item


@operation("One archive item", security=READER, errors=(*ADMIN, 404),
           replies={200: Reply("the item", ArchiveItem)})
async def get_item(request: web.Request) -> web.Response:
    return web.json_response(_readable_item(request))


@operation("Edit an item's metadata", body=ArchiveItemChange,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("the changed item", ArchiveItem)})
async def update_item(request: web.Request) -> web.Response:
    item = _managed_item(request)
    data = await read_described(request, ArchiveItemChange)
    changed = request.app[ARCHIVE].update_item(item["id"], data)
    return web.json_response({**changed, "manageable": True})


@operation("Delete an item and its files", errors=(*ADMIN, 404),
           replies={204: Reply("deleted"), 409: Reply("still recording or finishing")})
async def delete_item(request: web.Request) -> web.Response:
    item = _managed_item(request)
    request.app[ARCHIVE].delete_item(item["id"])
    return web.Response(status=204)


async def _serve(request: web.Request, poster: bool = False,
                 stage: bool = False) -> web.StreamResponse:
    archive = request.app[ARCHIVE]
    caller = reader_role(request)
    if caller is not None:  # an account: only the items of its scope
        item = _item(request)
        if not caller.scope.reads_item(item):
            raise Forbidden("this archive item belongs to another part of the organization")
    path = archive.media_path(request.match_info["item_id"], poster=poster, stage=stage)
    root = archive.recordings.root.resolve()
    # The name comes from the catalog, the folder from a validated id; still,
    # never follow a link out of the archive.
    if path.is_symlink() or not path.is_file() or root not in path.resolve().parents:
        raise NotFound("no such archive item")
    return web.FileResponse(path, headers=MEDIA_HEADERS)


@operation("The lecture file (MP4 or WebM); supports Range", security=READER,
           errors=(*ADMIN, 404), replies=RANGE_REPLIES)
async def media(request: web.Request) -> web.StreamResponse:
    return await _serve(request, poster=False)


@operation("The poster picture", security=READER, errors=(*ADMIN, 404),
           replies={200: Reply("JPEG")})
async def poster(request: web.Request) -> web.StreamResponse:
    return await _serve(request, poster=True)


@operation("The stage file: the rooms brought on stage, turn after turn (same container "
           "as the lecture); supports Range", security=READER, errors=(*ADMIN, 404),
           replies=RANGE_REPLIES)
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


@operation("A new library link for cadres", body=LibraryLinkInput,
           errors=(*ADMIN, *JSON_BODY_ERRORS),
           replies={201: Reply("the link, with its token and URL", LibraryLink)})
async def create_link(request: web.Request) -> web.Response:
    require_city(request)
    data = await read_described(request, LibraryLinkInput)
    row, token = request.app[LIBRARY_LINKS].create(data)
    return web.json_response(_describe_link(request, row, token), status=201)


@operation("Library links", errors=ADMIN,
           replies={200: Reply("{links: [LibraryLink]} (no tokens)", LibraryLink,
                               listed="links")})
async def list_links(request: web.Request) -> web.Response:
    require_city(request)
    return web.json_response(
        {"links": [_describe_link(request, row) for row in request.app[LIBRARY_LINKS].links()]})


@operation("Revoke a library link", errors=(*ADMIN, 404), replies={204: Reply("revoked")})
async def revoke_link(request: web.Request) -> web.Response:
    require_city(request)
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
