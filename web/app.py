"""The aiohttp application factory: routes, the school, and their lifetimes.

The school (``classroom.school.School``) is built and closed in one cleanup
context; the HTTP modules only read it and its services from the
application. Routes are grouped by who calls them: the admin JSON API
(``web/api/``), the pages (``web/pages/``), WHIP/WHEP signaling
(``web/signaling.py``) and the WebSockets (``web/sockets/``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from classroom.access.accounts import LoginLimiter
from classroom.access.tokens import Grant, Role, TokenIndex, new_token
from classroom.school import ARCHIVE_DIR, DATABASE_FILE, School, SchoolSettings
from streaming import aiortc_glue
from streaming.peers import PeerSettings
from web import headers, workers
from web.api import contract, metrics
from web.audit import audit_middleware
from web.auth import logged_in
from web.config import Config
from web.errors import error_middleware
from web.http import STATIC_DIR
from web.keys import (
    ACCOUNTS,
    ADMIN_TOKEN,
    ARCHIVE,
    ATTENDANCE,
    CATALOG,
    CONFIG,
    DISCUSSIONS,
    LIBRARY_LINKS,
    LIMITER,
    LOGIN_LIMITER,
    METRICS,
    PACKAGES,
    PEER_SETTINGS,
    REPLAYS,
    SCHOOL,
    SESSIONS,
    SIGNER,
    TIMESHIFTS,
    TOKENS,
)
from web.limits import Limiter
from web.sockets import events
from web.sockets import wall as wall_socket

__all__ = ["ARCHIVE_DIR", "DATABASE_FILE", "create_app"]

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


def create_app(config: Config) -> web.Application:
    """Build the application; ``config.admin_token`` is generated if unset."""
    app = web.Application(middlewares=[error_middleware, audit_middleware],
                          client_max_size=MAX_BODY)
    if config.workers > 1 and config.edge_token is None:
        config.edge_token = new_token()  # the workers' pulls
    app[CONFIG] = config
    tokens = TokenIndex()
    admin_token = config.admin_token or new_token()
    tokens.add(admin_token, Grant(Role.ADMIN, None))
    app[ADMIN_TOKEN] = admin_token
    app[TOKENS] = tokens
    app[LOGIN_LIMITER] = LoginLimiter()
    app[LIMITER] = Limiter(config.limits)
    app[PEER_SETTINGS] = PeerSettings(ice_servers=config.ice_servers(),
                                      connect_timeout=config.connect_timeout,
                                      send_path=config.send_path)
    for module in (*contract.ROUTE_MODULES, contract):
        app.add_routes(module.routes())
    app.add_routes([web.get("/", index), web.get("/healthz", healthz)])
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    headers.install(app)
    app.cleanup_ctx.append(_school_context)
    app.cleanup_ctx.append(workers.context(config, lambda app: app[SCHOOL].cluster))
    app.cleanup_ctx.append(metrics.context)  # the optional unauthenticated listener
    app.cleanup_ctx.append(wall_socket.context)
    app.on_shutdown.append(wall_socket.shutdown)
    app.on_shutdown.append(events.shutdown)
    return app


async def _school_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    await aiortc_glue.check_internals()
    if config.send_path == "native":
        aiortc_glue.require_native_send_path()
    aiortc_glue.install_rfc7983_demux()
    aiortc_glue.install_dtls()
    aiortc_glue.configure_ice(config.ice_hosts)
    settings = SchoolSettings(data_dir=config.data_dir, admin_password=config.admin_password,
                              min_free_bytes=config.min_free_bytes,
                              redis_url=config.redis_url, node_name=config.node_name,
                              local_workers=config.workers > 1)
    school = await School.open(settings, app[TOKENS], app[PEER_SETTINGS])
    app[SCHOOL] = school
    app[CATALOG] = school.catalog
    app[ACCOUNTS] = school.accounts
    app[SIGNER] = school.signer
    app[SESSIONS] = school.sessions
    app[ATTENDANCE] = school.attendance
    app[ARCHIVE] = school.archive
    app[LIBRARY_LINKS] = school.library_links
    app[REPLAYS] = school.replays
    app[TIMESHIFTS] = school.timeshifts
    app[PACKAGES] = school.packages
    app[DISCUSSIONS] = school.discussions
    app[METRICS] = school.metrics
    try:
        yield
    finally:
        await school.close()


async def index(request: web.Request) -> web.FileResponse:
    if logged_in(request):
        raise web.HTTPSeeOther("/admin")
    return web.FileResponse(STATIC_DIR / "index.html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})
