"""Admin login over HTTP: the login page, the session cookie, CSRF, and who is calling.

An admin request is authenticated either by the bearer admin token or by the
``zhixing_session`` cookie. The cookie is HTTP-only and SameSite=Strict; a
state-changing request that relies on it must also carry the login session's
CSRF token in ``X-CSRF-Token`` (pages read it from ``GET /api/v1/me``).
"""

from __future__ import annotations

import asyncio
import hmac
import html
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from yarl import URL

from web.accounts import SESSION_SECONDS, check_password
from web.errors import Forbidden, NotAuthorized
from web.keys import ACCOUNTS, CONFIG, LOGIN_LIMITER, TOKENS
from web.tokens import Role, bearer_token

COOKIE = "zhixing_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
LOGIN_PAGE = Path(__file__).parent / "static" / "login.html"
MESSAGE_MARK = "<!--message-->"
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'"}


@dataclass(frozen=True)
class Caller:
    """An authenticated admin: by bearer token (no user name) or by login cookie."""

    username: str | None
    csrf_token: str | None


def routes() -> list[web.RouteDef]:
    return [web.get("/login", login_page), web.post("/login", login),
            web.post("/logout", logout), web.get("/api/v1/me", me)]


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


async def me(request: web.Request) -> web.Response:
    caller = authenticate_admin(request)
    return web.json_response({"username": caller.username, "csrf_token": caller.csrf_token})


def _page(message: str = "", status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    text = LOGIN_PAGE.read_text(encoding="utf-8")
    if message:
        text = text.replace(MESSAGE_MARK, html.escape(message))
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={**PAGE_HEADERS, **(headers or {})})


async def login_page(request: web.Request) -> web.Response:
    return _page()


def _check_same_origin(request: web.Request) -> None:
    """Refuse a form posted from another site (Origin, else Referer, if sent)."""
    allowed = {str(request.url.origin())}
    public = request.app[CONFIG].public_url
    if public:
        allowed.add(str(URL(public).origin()))
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return  # not a browser form: SameSite=Strict cannot be abused without one
        try:
            origin = str(URL(referer).origin())
        except ValueError:
            origin = "null"
    if origin not in allowed:
        raise Forbidden("cross-origin request refused")


def _secure(request: web.Request) -> bool:
    public = request.app[CONFIG].public_url or ""
    return request.secure or public.startswith("https://")


async def login(request: web.Request) -> web.Response:
    _check_same_origin(request)
    form = await request.post()
    username = form.get("username")
    password = form.get("password")
    username = username if isinstance(username, str) else ""
    password = password if isinstance(password, str) else ""
    address = request.remote or ""
    limiter = request.app[LOGIN_LIMITER]
    wait = limiter.retry_after(address, username)
    if wait is not None:
        return _page(f"登录失败次数过多，请 {wait} 秒后再试。"
                     f" Too many failed logins; try again in {wait} s.",
                     status=429, headers={"Retry-After": str(wait)})
    accounts = request.app[ACCOUNTS]
    found = accounts.find(username)
    if not await asyncio.to_thread(check_password, password, found) or found is None:
        limiter.failed(address, username)
        return _page("用户名或密码错误。 Wrong user name or password.", status=401)
    limiter.succeeded(address, username)
    token, _ = accounts.start_session(found[0])
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, path="/", httponly=True,
                        samesite="Strict", secure=_secure(request))
    return response


async def logout(request: web.Request) -> web.Response:
    _check_same_origin(request)
    token = request.cookies.get(COOKIE)
    if token:
        request.app[ACCOUNTS].end_session(token)
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict",
                        secure=_secure(request))
    return response
