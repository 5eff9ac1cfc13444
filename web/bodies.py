"""Reading request bodies with a hard size limit."""

from __future__ import annotations

from aiohttp import web

from web.errors import PayloadTooLarge


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
