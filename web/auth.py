"""Who is calling: the admin's bearer token or login cookie, and CSRF; or a
cadre with a library link (a bearer token, or the cookie the link sets).

A login is an account with a role and a part of the organization tree
(``classroom.access.roles.Scope``); the bearer admin token is a city admin.
Each route says which roles it takes (``require_admin`` for those who change
things, ``require_reader`` for those who read, ``require_city``), and then
checks the object it names against the caller's scope: another district's
object is 403 and nothing is changed.

An admin request is authenticated either by the bearer admin token or by the
``zhixing_session`` cookie. The cookie is HTTP-only and SameSite=Strict; a
state-changing request that relies on it must also carry the login session's
CSRF token in ``X-CSRF-Token`` (pages read it from ``GET /api/v1/me``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from pydantic import Field

from classroom.access.roles import AccountRole, Scope
from classroom.access.tokens import Role
from classroom.live.sessions import Session
from web.api.spec import Reply, Shape, operation
from web.errors import Forbidden, NotAuthorized
from web.http import bearer_token, session_of
from web.keys import ACCOUNTS, LIBRARY_LINKS, SCHOOL, TOKENS

COOKIE = "zhixing_session"
LIBRARY_COOKIE = "zhixing_library"  # set by a cadre's library link
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


CITY = Scope.city()  # the bearer admin token's


@dataclass(frozen=True)
class Caller:
    """An authenticated account: by bearer token (a city admin with no user
    name) or by login cookie."""

    username: str | None
    csrf_token: str | None
    scope: Scope = CITY

    @property
    def role(self) -> AccountRole:
        return self.scope.role


CALLER = web.RequestKey("caller", Caller)  # the request's caller, for the audit log


class Me(Shape):
    promised = ("username", "csrf_token", "role", "org_node_id")
    username: str | None
    csrf_token: str | None
    role: Literal["city_admin", "district_admin", "presenter", "auditor"]
    org_node_id: int
    org_path: str = Field(description="the account's node below the city ('' for the city)")
    org_name: str


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
        caller = Caller(None, None)
    else:
        session = request.app[ACCOUNTS].session(token)
        if session is None:
            raise NotAuthorized("login expired or not valid; log in again")
        if request.method in UNSAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                raise Forbidden("CSRF token missing or wrong")
        caller = Caller(session.admin.username, session.csrf_token,
                        request.app[SCHOOL].scope_of(session.admin))
    request[CALLER] = caller
    return caller


@operation("Who is calling. Like every admin operation it also accepts the login cookie "
           "zhixing_session (from POST /login) instead of the bearer token; with the cookie, "
           "POST/PATCH/PUT/DELETE need X-CSRF-Token", errors=(401, 403),
           replies={200: Reply("the caller; csrf_token (to send as X-CSRF-Token with "
                               "POST/PATCH/PUT/DELETE) only for a cookie login", Me)})
async def me(request: web.Request) -> web.Response:
    caller = authenticate_admin(request)
    org = request.app[SCHOOL].org
    node = org.node(caller.scope.node_id)
    return web.json_response({"username": caller.username, "csrf_token": caller.csrf_token,
                              "role": caller.role.value, "org_node_id": node["id"],
                              "org_path": node["path"], "org_name": node["name"]})


def require_admin(request: web.Request) -> Caller:
    """A caller who may change things in its scope: a city or district admin
    (the bearer admin token, or a login cookie plus X-CSRF-Token when unsafe)."""
    caller = authenticate_admin(request)
    if not caller.scope.manages:
        raise Forbidden(f"the {caller.role.value} role cannot do this")
    return caller


def require_reader(request: web.Request) -> Caller:
    """A caller who may read reports, the wall, sessions and the archive in
    its scope: an admin or an auditor (not a presenter)."""
    caller = authenticate_admin(request)
    if not caller.scope.reads:
        raise Forbidden(f"the {caller.role.value} role cannot see this")
    return caller


def require_city(request: web.Request) -> Caller:
    """A city admin (accounts of the whole city, the audit log, library links)."""
    caller = authenticate_admin(request)
    if not caller.scope.is_city:
        raise Forbidden("only a city admin can do this")
    return caller


def managed_session(request: web.Request) -> tuple[Caller, Session]:
    """The route's session, for a caller who manages it (403 otherwise)."""
    caller = require_admin(request)
    session = session_of(request)
    if not caller.scope.manages_session(session.row):
        raise Forbidden("this session belongs to another part of the organization")
    return caller, session


def readable_session(request: web.Request) -> tuple[Caller, Session]:
    """The route's session, for a reader who may see it (403 otherwise)."""
    caller = require_reader(request)
    session = session_of(request)
    if not caller.scope.reads_session(session.row):
        raise Forbidden("this session belongs to another part of the organization")
    return caller, session


def logged_in(request: web.Request) -> bool:
    """Whether the request carries a valid login cookie."""
    token = request.cookies.get(COOKIE)
    return token is not None and request.app[ACCOUNTS].session(token) is not None


def reader_role(request: web.Request) -> Caller | None:
    """The account reading the archive (admins and auditors, in their
    scope), or ``None`` for a cadre's library link (ready items, all of
    them); 401 for anyone else, 403 for a presenter without a link."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and request.app[LIBRARY_LINKS].check(token.strip()):
            return None
        return require_reader(request)
    if COOKIE in request.cookies:
        try:
            caller = authenticate_admin(request)
        except NotAuthorized:
            caller = None  # an expired admin login may still hold a library link
        if caller is not None and caller.scope.reads:
            return caller
    cookie = request.cookies.get(LIBRARY_COOKIE)
    if cookie is not None and request.app[LIBRARY_LINKS].check(cookie):
        return None
    if COOKIE in request.cookies and logged_in(request):
        raise Forbidden("this account cannot see the archive")
    raise NotAuthorized("open the library with a library link, or log in")
