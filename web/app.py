"""The aiohttp application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from streaming import aiortc_glue
from streaming.peers import PeerSettings
from web import api, signaling
from web.config import Config
from web.errors import error_middleware
from web.keys import ADMIN_TOKEN, CONFIG, SESSIONS, TOKENS
from web.sessions import SessionRegistry
from web.tokens import Grant, Role, TokenIndex, new_token

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 1024 * 1024


def create_app(config: Config) -> web.Application:
    """Build the application; ``config.admin_token`` is generated if unset."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app[CONFIG] = config
    tokens = TokenIndex()
    admin_token = config.admin_token or new_token()
    tokens.add(admin_token, Grant(Role.ADMIN, None))
    app[ADMIN_TOKEN] = admin_token
    app[TOKENS] = tokens
    settings = PeerSettings(ice_servers=config.ice_servers(),
                            connect_timeout=config.connect_timeout)
    app[SESSIONS] = SessionRegistry(tokens, settings)
    app.add_routes(api.routes())
    app.add_routes(signaling.routes())
    app.add_routes([web.get("/", index), web.get("/healthz", healthz)])
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app.cleanup_ctx.append(_media_context)
    return app


async def _media_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    await aiortc_glue.check_internals()
    aiortc_glue.install_rfc7983_demux()
    aiortc_glue.configure_ice(config.ice_hosts)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    yield
    await app[SESSIONS].close()


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})
