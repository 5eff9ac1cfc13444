"""Typed application keys: what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from web.config import Config
from web.sessions import SessionRegistry
from web.tokens import TokenIndex

CONFIG = web.AppKey("config", Config)
TOKENS = web.AppKey("tokens", TokenIndex)
SESSIONS = web.AppKey("sessions", SessionRegistry)
ADMIN_TOKEN = web.AppKey("admin_token", str)
