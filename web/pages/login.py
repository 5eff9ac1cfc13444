"""The login page: ``GET /login``, ``POST /login`` (sets the HTTP-only,
SameSite=Strict session cookie) and ``POST /logout``; failed logins are
limited per address and user name.
"""

from __future__ import annotations

import asyncio
import html

from aiohttp import web
from yarl import URL

from classroom.access.accounts import SESSION_SECONDS, check_password
from web.auth import CALLER, COOKIE, Caller
from web.errors import Forbidden
from web.http import PAGE_HEADERS, STATIC_DIR, allowed_origins
from web.keys import ACCOUNTS, CONFIG, LOGIN_LIMITER, SCHOOL

LOGIN_PAGE = STATIC_DIR / "login.html"
MESSAGE_MARK = "<!--message-->"


def routes() -> list[web.RouteDef]:
    return [web.get("/login", login_page), web.post("/login", login),
            web.post("/logout", logout)]


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
    allowed = allowed_origins(request)
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
    token, session = accounts.start_session(found[0])
    # For the audit log: who logged in.
    request[CALLER] = Caller(found[0].username, session.csrf_token,
                             request.app[SCHOOL].scope_of(found[0]))
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, path="/", httponly=True,
                        samesite="Strict", secure=_secure(request))
    return response


async def logout(request: web.Request) -> web.Response:
    _check_same_origin(request)
    token = request.cookies.get(COOKIE)
    if token:
        session = request.app[ACCOUNTS].session(token)
        if session is not None:  # for the audit log: who logged out
            request[CALLER] = Caller(session.admin.username, session.csrf_token,
                                     request.app[SCHOOL].scope_of(session.admin))
        request.app[ACCOUNTS].end_session(token)
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict",
                        secure=_secure(request))
    return response
