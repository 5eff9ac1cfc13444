"""The aiohttp application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from recordings.manager import Recordings
from streaming import aiortc_glue
from streaming.peers import PeerSettings
from web import (
    api,
    archive_api,
    console_page,
    discussion_ws,
    i18n,
    library_page,
    login,
    metrics_api,
    presenter_page,
    reports_api,
    room_page,
    signaling,
    wall_page,
)
from web.accounts import Accounts, LoginLimiter
from web.archive import Archive, LibraryLinks
from web.attendance_log import AttendanceLog
from web.catalog import Catalog
from web.config import Config
from web.db import Database
from web.errors import error_middleware
from web.keys import (
    ACCOUNTS,
    ADMIN_TOKEN,
    ARCHIVE,
    ATTENDANCE,
    CATALOG,
    CONFIG,
    LIBRARY_LINKS,
    LOGIN_LIMITER,
    PEER_SETTINGS,
    REPLAYS,
    SESSIONS,
    SIGNER,
    TIMESHIFTS,
    TOKENS,
)
from web.replays import Replays
from web.sessions import SessionRegistry
from web.signing import Signer, load_or_create_secret
from web.timeshift import Timeshifts
from web.tokens import Grant, Role, TokenIndex, new_token

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 1024 * 1024
DATABASE_FILE = "zhixing.sqlite3"
ARCHIVE_DIR = "archive"


def create_app(config: Config) -> web.Application:
    """Build the application; ``config.admin_token`` is generated if unset."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app[CONFIG] = config
    tokens = TokenIndex()
    admin_token = config.admin_token or new_token()
    tokens.add(admin_token, Grant(Role.ADMIN, None))
    app[ADMIN_TOKEN] = admin_token
    app[TOKENS] = tokens
    app[LOGIN_LIMITER] = LoginLimiter()
    app[PEER_SETTINGS] = PeerSettings(ice_servers=config.ice_servers(),
                                      connect_timeout=config.connect_timeout)
    app.add_routes(api.routes())
    app.add_routes(archive_api.routes())
    app.add_routes(signaling.routes())
    app.add_routes(i18n.routes())
    app.add_routes(login.routes())
    app.add_routes(console_page.routes())
    app.add_routes(room_page.routes())
    app.add_routes(presenter_page.routes())
    app.add_routes(library_page.routes())
    app.add_routes(metrics_api.routes())
    app.add_routes(wall_page.routes())
    app.add_routes(discussion_ws.routes())
    app.add_routes(reports_api.routes())
    app.add_routes([web.get("/", index), web.get("/healthz", healthz)])
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app.cleanup_ctx.append(_media_context)
    # After the media: they watch the session registry's rooms.
    app.cleanup_ctx.append(metrics_api.context)
    app.cleanup_ctx.append(discussion_ws.context)
    app.cleanup_ctx.append(wall_page.context)  # shows the discussions
    app.on_shutdown.append(wall_page.shutdown)
    app.on_shutdown.append(discussion_ws.shutdown)
    return app


async def _media_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    await aiortc_glue.check_internals()
    aiortc_glue.install_rfc7983_demux()
    aiortc_glue.configure_ice(config.ice_hosts)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.data_dir / DATABASE_FILE)
    db.migrate()
    app[CATALOG] = Catalog(db)
    app[ACCOUNTS] = Accounts(db)
    app[ACCOUNTS].ensure_admin(config.admin_password)
    app[SIGNER] = Signer(load_or_create_secret(config.data_dir))
    app[SESSIONS] = SessionRegistry(app[CATALOG], app[TOKENS], app[PEER_SETTINGS])
    # Attendance first ends what a crash left open, then hears every room.
    attendance = app[ATTENDANCE] = AttendanceLog(db)
    attendance.recover()
    app[SESSIONS].room_listeners.append(attendance.watch)
    attendance.start()
    archive: Archive | None = None

    def on_recorder_event(item_id: str, kind: str, detail: str) -> None:
        if archive is not None:
            archive.on_recorder_event(item_id, kind, detail)

    recordings = Recordings(config.data_dir / ARCHIVE_DIR, on_recorder_event,
                            min_free_bytes=config.min_free_bytes)
    archive = app[ARCHIVE] = Archive(db, recordings)
    app[LIBRARY_LINKS] = LibraryLinks(db)
    await archive.recover()
    replays = app[REPLAYS] = Replays(db, archive, app[SESSIONS])
    await replays.restore()
    app[TIMESHIFTS] = Timeshifts(archive)
    try:
        yield
    finally:
        await app[TIMESHIFTS].close()
        await replays.close()
        await archive.close()
        await app[SESSIONS].close()
        await attendance.close()  # after the rooms: their viewers' leaving is written
        db.close()


async def index(request: web.Request) -> web.FileResponse:
    if console_page.logged_in(request):
        raise web.HTTPSeeOther("/admin")
    return web.FileResponse(STATIC_DIR / "index.html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})
