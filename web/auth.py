"""Who is calling: the admin's bearer token or login cookie, and CSRF; or a
cadre with a library link (a bearer token, or the cookie the link sets).

An admin request is authenticated either by the bearer admin token or by the
``zhixing_session`` cookie. The cookie is HTTP-only and SameSite=Strict; a
state-changing request that relies on it must also carry the login session's
CSRF token in ``X-CSRF-Token`` (pages read it from ``GET /api/v1/me``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from classroom.access.tokens import Role
from web.api.spec import Reply, Shape, operation
from web.errors import Forbidden, NotAuthorized
from web.http import bearer_token
from web.keys import ACCOUNTS, LIBRARY_LINKS, TOKENS

COOKIE = "zhixing_session"
LIBRARY_COOKIE = "zhixing_library"  # set by a cadre's library link
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class Caller:
    """An authenticated admin: by bearer token (no user name) or by login cookie."""

    username: str | None
    csrf_token: str | None


class Me(Shape):
    promised = ("username", "csrf_token")
    username: str | None
    csrf_token: str | None


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/me", me)]


def authenticate_admin(request: web.Request) -> Caller:
    """The admin making this request, or 401/403.

    An Authorization header always wins; without one, the login cookie is
    used, and then unsafe methods need the matching X-CSRF-Token.
    """
    token = request.cookies.get(COOKIE)
    if "Authorization" in request.headers or token is None:
        request.app[TOKENS].require(bearer_token(request), Role.ADMIN, None)
        return Caller(None, None)
    session = request.app[ACCOUNTS].session(token)
    if session is None:
        raise NotAuthorized("login expired or not valid; log in again")
    if request.method in UNSAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise Forbidden("CSRF token missing or wrong")
    return Caller(session.admin.username, session.csrf_token)


@operation("Who is calling. Like every admin operation it also accepts the login cookie "
           "zhixing_session (from POST /login) instead of the bearer token; with the cookie, "
           "POST/PATCH/PUT/DELETE need X-CSRF-Token", errors=(401, 403),
           replies={200: Reply("the caller; csrf_token (to send as X-CSRF-Token with "
                               "POST/PATCH/PUT/DELETE) only for a cookie login", Me)})
async def me(request: web.Request) -> web.Response:
    caller = authenticate_admin(request)
    return web.json_response({"username": caller.username, "csrf_token": caller.csrf_token})


def require_admin(request: web.Request) -> None:
    """The bearer admin token, or a login cookie (plus X-CSRF-Token when unsafe)."""
    authenticate_admin(request)


def logged_in(request: web.Request) -> bool:
    """Whether the request carries a valid login cookie."""
    token = request.cookies.get(COOKIE)
    return token is not None and request.app[ACCOUNTS].session(token) is not None


def reader_role(request: web.Request) -> str:
    """'admin' or 'reader'; 401 for anyone else."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and request.app[LIBRARY_LINKS].check(token.strip()):
            return "reader"
        authenticate_admin(request)
        return "admin"
    if COOKIE in request.cookies:
        try:
            authenticate_admin(request)
            return "admin"
        except NotAuthorized:
            pass  # an expired admin login may still hold a library link
    cookie = request.cookies.get(LIBRARY_COOKIE)
    if cookie is not None and request.app[LIBRARY_LINKS].check(cookie):
        return "reader"
    raise NotAuthorized("open the library with a library link, or log in")
