"""The room wall's WebSocket: ``GET /api/v1/sessions/{session_id}/wall/ws``.

It pushes a snapshot (``classroom/live/wall.py``) every 2 s and closes with
code 4000 when the session ends; one snapshot per session is computed and
shared by every socket of it, and nothing for a session nobody watches. The
socket takes the login cookie (a browser) or the bearer admin token
(scripts, tests). With the cookie, the upgrade's Origin must be this
server's: another site's page must not open a socket with the admin's cookie
(cross-site WebSocket hijacking; SameSite=Strict does not stop a same-site
page on another port or host). The same URL without an Upgrade header
answers one snapshot as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from classroom.live.sessions import Session, SessionRegistry
from classroom.live.wall import CLOSE_ENDED, SEND_TIMEOUT, SNAPSHOT_INTERVAL, Wall
from web.auth import COOKIE, authenticate_admin
from web.http import check_origin, session_of
from web.keys import SCHOOL

logger = logging.getLogger(__name__)

HEARTBEAT = 30.0  # seconds: a vanished browser is noticed within about this


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/sessions/{session_id}/wall/ws", wall_socket)]


@dataclass(eq=False)
class _Feed:
    """The sockets watching one session, and the task that feeds them."""

    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    last: str | None = None  # the latest snapshot, as sent


class WallHub:
    """One snapshot per watched session every ``interval``, shared by all the
    sockets of that session; nothing is computed for a session nobody watches."""

    def __init__(self, wall: Wall, sessions: SessionRegistry,
                 interval: float = SNAPSHOT_INTERVAL) -> None:
        self.wall = wall
        self.sessions = sessions
        self.interval = interval
        self._feeds: dict[str, _Feed] = {}
        self._closers: set[asyncio.Task[Any]] = set()
        self._closed = False

    def watching(self, session_id: str) -> int:
        feed = self._feeds.get(session_id)
        return len(feed.sockets) if feed is not None else 0

    async def current(self, session: Session) -> dict[str, Any]:
        """A snapshot for a plain HTTP request (the latest pushed one, if any)."""
        feed = self._feeds.get(session.id)
        if feed is not None and feed.last is not None:
            snapshot: dict[str, Any] = json.loads(feed.last)
            return snapshot
        return await self.wall.snapshot(session)

    async def join(self, session_id: str, ws: web.WebSocketResponse) -> None:
        if self._closed:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            return
        feed = self._feeds.setdefault(session_id, _Feed())
        feed.sockets.add(ws)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.get_running_loop().create_task(self._run(session_id, feed))
        elif feed.last is not None:
            await self._send(feed, ws, feed.last)  # no wait for the next tick

    def leave(self, session_id: str, ws: web.WebSocketResponse) -> None:
        feed = self._feeds.get(session_id)
        if feed is None or ws not in feed.sockets:
            return
        feed.sockets.discard(ws)
        if not feed.sockets:
            del self._feeds[session_id]
            if feed.task is not None:
                feed.task.cancel()
            self.wall.forget(session_id)

    async def _run(self, session_id: str, feed: _Feed) -> None:
        try:
            while feed.sockets:
                session = self.sessions.get(session_id)
                if session is None:
                    await self._end(session_id, feed, CLOSE_ENDED, "session deleted")
                    return
                snapshot = await self.wall.snapshot(session)
                feed.last = json.dumps(snapshot, ensure_ascii=False)
                await asyncio.gather(*(self._send(feed, ws, feed.last)
                                       for ws in list(feed.sockets)))
                if snapshot["session"]["state"] == "ended":
                    await self._end(session_id, feed, CLOSE_ENDED, "session ended")
                    return
                self.wall.history.prune()
                await asyncio.sleep(self.interval)
            # Every socket failed (their handlers leave later): nobody watches.
            if self._feeds.get(session_id) is feed:
                del self._feeds[session_id]
                self.wall.forget(session_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("room wall of session %s failed", session_id)
            await self._end(session_id, feed, WSCloseCode.INTERNAL_ERROR, "wall failed")

    async def _send(self, feed: _Feed, ws: web.WebSocketResponse, text: str) -> None:
        if ws.closed:
            return
        try:
            await asyncio.wait_for(ws.send_str(text), SEND_TIMEOUT)
        except (ConnectionError, RuntimeError, TimeoutError):
            # Gone, or too slow to take a snapshot: the page reconnects. (Its
            # handler leaves the feed when the socket has closed.)
            feed.sockets.discard(ws)
            closer = asyncio.get_running_loop().create_task(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"too slow"))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)

    async def _end(self, session_id: str, feed: _Feed, code: int, reason: str) -> None:
        """Close every socket of ``feed`` (its task is the caller or cancelled)."""
        if self._feeds.get(session_id) is feed:
            del self._feeds[session_id]
        self.wall.forget(session_id)
        sockets, feed.sockets = list(feed.sockets), set()
        await asyncio.gather(*(ws.close(code=code, message=reason.encode())
                               for ws in sockets), return_exceptions=True)

    async def close(self) -> None:
        """Shutting down: stop every feed and close its sockets (going away)."""
        self._closed = True
        feeds, self._feeds = list(self._feeds.items()), {}
        for session_id, feed in feeds:
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.task
            await self._end(session_id, feed, WSCloseCode.GOING_AWAY, "server shutting down")
        for closer in list(self._closers):
            with contextlib.suppress(Exception):
                await closer


WALL_HUB = web.AppKey("wall_hub", WallHub)


async def wall_socket(request: web.Request) -> web.StreamResponse:
    by_cookie = "Authorization" not in request.headers and COOKIE in request.cookies
    authenticate_admin(request)
    if by_cookie:
        check_origin(request)
    session = session_of(request)
    hub = request.app[WALL_HUB]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT)
    if not ws.can_prepare(request).ok:
        return web.json_response(await hub.current(session),
                                 headers={"Cache-Control": "no-store"})
    await ws.prepare(request)
    await hub.join(session.id, ws)
    try:
        async for _ in ws:
            pass  # the page says nothing; the loop ends when the socket closes
    finally:
        hub.leave(session.id, ws)
    return ws


async def context(app: web.Application) -> AsyncIterator[None]:
    """The wall's hub, over the school's wall."""
    school = app[SCHOOL]
    app[WALL_HUB] = WallHub(school.wall, school.sessions)
    try:
        yield
    finally:
        await app[WALL_HUB].close()


async def shutdown(app: web.Application) -> None:
    """Before the server waits for its handlers: close the wall's sockets."""
    if WALL_HUB in app:
        await app[WALL_HUB].close()
