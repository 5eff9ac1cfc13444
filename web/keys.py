"""Typed application keys: what the aiohttp application holds.

``SCHOOL`` is the composition root (``classroom.school``); the keys after it
name its services one by one, so a handler (or a test) reads the one it needs.
"""

from __future__ import annotations

from aiohttp import web

from classroom.access.accounts import Accounts, LoginLimiter
from classroom.access.signing import Signer
from classroom.access.tokens import TokenIndex
from classroom.archive.items import Archive, LibraryLinks
from classroom.archive.replays import Replays
from classroom.archive.timeshift import Timeshifts
from classroom.attendance.log import AttendanceLog
from classroom.catalog import Catalog
from classroom.live.discussion import Discussions
from classroom.live.metrics import RelayMetrics
from classroom.live.sessions import SessionRegistry
from classroom.packages.jobs import PackageJobs
from classroom.school import School
from streaming.peers import PeerSettings
from web.config import Config
from web.limits import Limiter

CONFIG = web.AppKey("config", Config)
TOKENS = web.AppKey("tokens", TokenIndex)
ADMIN_TOKEN = web.AppKey("admin_token", str)
PEER_SETTINGS = web.AppKey("peer_settings", PeerSettings)
LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
LIMITER = web.AppKey("limiter", Limiter)  # limits per credential (web/limits.py)
SCHOOL = web.AppKey("school", School)
# The school's services (set with SCHOOL, from it).
SESSIONS = web.AppKey("sessions", SessionRegistry)
CATALOG = web.AppKey("catalog", Catalog)
SIGNER = web.AppKey("signer", Signer)
ACCOUNTS = web.AppKey("accounts", Accounts)
ARCHIVE = web.AppKey("archive", Archive)
LIBRARY_LINKS = web.AppKey("library_links", LibraryLinks)
REPLAYS = web.AppKey("replays", Replays)
TIMESHIFTS = web.AppKey("timeshifts", Timeshifts)
PACKAGES = web.AppKey("packages", PackageJobs)
ATTENDANCE = web.AppKey("attendance", AttendanceLog)
METRICS = web.AppKey("metrics", RelayMetrics)
DISCUSSIONS = web.AppKey("discussions", Discussions)
