"""What every HTTP module shares: reading bodies and tokens, the caller's
base URL, the session a route names, and where the pages' files are.

Nothing here decides who may do what (``web/auth.py``) or what a domain
operation means (``classroom/``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web
from yarl import URL

from classroom.live.sessions import Session
from web.errors import (
    BadRequest,
    Forbidden,
    NotAuthorized,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from web.keys import CONFIG, SESSIONS

STATIC_DIR = Path(__file__).parent / "static"
MAX_JSON_BYTES = 16 * 1024
# Pages an admin logs into: never cached (web/headers.py forbids framing any page).
PAGE_HEADERS = {"Cache-Control": "no-store"}


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    body = b""
    while len(body) <= limit:
        # read(n) returns what has arrived so far, not the whole body.
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    return body


async def receive_file(request: web.Request, path: Path, limit: int,
                       refusal: str | None = None) -> int:
    """Stream the body into ``path`` (made anew), 413 (``refusal``, or the
    limit in bytes) as soon as it is known to exceed ``limit`` (the partial
    file removed); returns its size."""
    message = refusal or f"body larger than {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(message)
    size = 0
    try:
        with _new_file(path) as handle:
            async for chunk in request.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(message)
                handle.write(chunk)  # a page-cache write of 256 KiB at most
    except BaseException:
        _discard(path)
        raise
    return size


def _new_file(path: Path) -> BinaryIO:  # blocking calls kept out of the coroutine (ruff)
    return path.open("xb")


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body of at most 16 KiB (415, 413 or 400 otherwise)."""
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


def bearer_token(request: web.Request) -> str:
    """The token of ``Authorization: Bearer <token>`` (401 if absent or malformed)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise NotAuthorized("missing Authorization: Bearer token")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorized("Authorization must be a Bearer token")
    return token.strip()


def base_url(request: web.Request) -> str:
    """The server's public URL (``--public-url``), else the request's origin."""
    public = request.app[CONFIG].public_url
    return public or str(request.url.origin())


def allowed_origins(request: web.Request) -> set[str]:
    """This server's origins: the request's own and the public URL's."""
    allowed = {str(request.url.origin())}
    public = request.app[CONFIG].public_url
    if public:
        allowed.add(str(URL(public).origin()))
    return allowed


def check_origin(request: web.Request) -> None:
    """A cookie-authenticated WebSocket upgrade must come from a page of this server."""
    if request.headers.get("Origin") not in allowed_origins(request):
        raise Forbidden("cross-origin WebSocket refused")


def session_of(request: web.Request) -> Session:
    """The session named by the route's ``session_id``, or 404."""
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None:
        raise NotFound("no such session")
    return session


def plain_id(raw: object) -> int | None:
    """An id written as plain ASCII digits, else None: int() also takes "+1",
    " 1", "１" and "1_0", and an id too large for SQLite's 64-bit integers
    would fail inside the query."""
    if not isinstance(raw, str) or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


def query_id(raw: object) -> int:
    """A query's id as a route's (:func:`plain_id`), for a model's
    before-validator: ValueError (the model's refusal) otherwise."""
    value = plain_id(raw)
    if value is None:
        raise ValueError("not a number")
    return value


def int_id(request: web.Request, name: str = "row_id", what: str = "item") -> int:
    """A route's integer id, or 404 (no such ``what``)."""
    value = plain_id(request.match_info[name])
    if value is None:
        raise NotFound(f"no such {what}")
    return value


def short_page(status: int, title: str,
               headers: dict[str, str] | None = None) -> web.Response:
    """A minimal HTML page saying ``title`` (already in the reader's language)."""
    text = html.escape(title)
    return web.Response(status=status, content_type="text/html", charset="utf-8",
                        headers=headers,
                        text=f"<!doctype html><meta charset=\"utf-8\"><title>{text}</title>"
                             f"<p>{text}</p>\n")
