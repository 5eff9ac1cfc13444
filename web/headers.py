"""The security headers of every response, set in one place just before it is sent.

* Every response: ``X-Content-Type-Options: nosniff`` (a CSV export, an
  uploaded name echoed in JSON or an SVG chart is never run as a script or
  a page), and ``Referrer-Policy: same-origin`` unless the page chose
  ``no-referrer`` (the room page ``/join/<token>``, the library and the
  presenter page, whose addresses hold a credential). ``same-origin`` and not
  ``no-referrer`` everywhere: a form or fetch ``POST`` from a ``no-referrer``
  page sends ``Origin: null``, which the login's same-origin check refuses.
* Every HTML page: a Content-Security-Policy that allows only this server's
  own files — scripts, styles, images, media and connections (WebSockets
  included) — and no inline script, inline style or event-handler attribute,
  so text from rooms and admins that slipped into markup could never run;
  ``frame-ancestors 'none'`` (with ``X-Frame-Options: DENY`` for old
  browsers): no page is meant to be framed, and the admin pages and the
  presenter's controls must not be, by anyone (clickjacking). With district
  edges, ``connect-src`` also names every edge the origin has seen in its
  directory: a room's WHEP request redirected to its edge is a connection
  to that edge's origin (a worker's as the page's host reaches it).

It runs on ``on_response_prepare``, so it also covers static files, whose
content type is known only then, and the error pages.
"""

from __future__ import annotations

from aiohttp import web

from web.keys import CONFIG, SCHOOL
from web.workers import as_seen_from


def page_policy(connect: list[str]) -> str:
    """The policy of every HTML page, connections allowed to ``connect`` too."""
    if not connect:
        return PAGE_POLICY
    return PAGE_POLICY.replace("connect-src 'self'", "connect-src 'self' " + " ".join(connect))


PAGE_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        school = request.app.get(SCHOOL)
        edges = school.cluster.edge_origins() if school is not None else []
        seen_at = str(request.url.origin())
        edges = [as_seen_from(request.app[CONFIG], edge, seen_at) for edge in edges]
        headers["Content-Security-Policy"] = page_policy(edges)
        headers["X-Frame-Options"] = "DENY"


def install(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
