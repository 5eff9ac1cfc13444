"""Typed application keys: what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from streaming.peers import PeerSettings
from web.accounts import Accounts, LoginLimiter
from web.archive import Archive, LibraryLinks
from web.attendance_log import AttendanceLog
from web.catalog import Catalog
from web.config import Config
from web.discussion import Discussions
from web.metrics import RelayMetrics
from web.replays import Replays
from web.sessions import SessionRegistry
from web.signing import Signer
from web.timeshift import Timeshifts
from web.tokens import TokenIndex
from web.wall import WallHub

CONFIG = web.AppKey("config", Config)
TOKENS = web.AppKey("tokens", TokenIndex)
SESSIONS = web.AppKey("sessions", SessionRegistry)
ADMIN_TOKEN = web.AppKey("admin_token", str)
PEER_SETTINGS = web.AppKey("peer_settings", PeerSettings)
CATALOG = web.AppKey("catalog", Catalog)
SIGNER = web.AppKey("signer", Signer)
ACCOUNTS = web.AppKey("accounts", Accounts)
LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
ARCHIVE = web.AppKey("archive", Archive)
LIBRARY_LINKS = web.AppKey("library_links", LibraryLinks)
REPLAYS = web.AppKey("replays", Replays)
TIMESHIFTS = web.AppKey("timeshifts", Timeshifts)
ATTENDANCE = web.AppKey("attendance", AttendanceLog)
METRICS = web.AppKey("metrics", RelayMetrics)
WALL = web.AppKey("wall", WallHub)
DISCUSSIONS = web.AppKey("discussions", Discussions)
