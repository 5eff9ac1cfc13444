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
from typing import Any, ClassVar, Literal

from aiohttp import WSCloseCode, web
from pydantic import Field

from classroom.live.sessions import Session, SessionRegistry
from classroom.live.wall import (
    CLOSE_ENDED,
    SEND_TIMEOUT,
    SNAPSHOT_INTERVAL,
    Wall,
    scoped_snapshot,
)
from web.api.spec import Reply, Shape, operation
from web.auth import COOKIE, require_reader
from web.errors import Forbidden
from web.http import bearer_token, check_origin, session_of
from web.keys import LIMITER, SCHOOL

logger = logging.getLogger(__name__)

HEARTBEAT = 30.0  # seconds: a vanished browser is noticed within about this

# ---------------------------------------------------------------------- the contract


class WallSession(Shape):
    id: str
    title: str
    state: Literal["scheduled", "live", "ended"]
    scheduled_start: float | None
    scheduled_end: float | None
    started_at: float | None
    on_air: bool
    publisher_connected: bool
    replay: str | None = Field(description="a replay's state")
    recording: bool
    ingress: dict[str, Any] = Field(
        description="video and audio: frames, bytes, keyframes, fps, bitrate (bits/s)")


class WallSummary(Shape):
    invited: int
    connected: int
    problems: int = Field(description="sites at level 2 or more")
    late: int
    headcount: int = Field(description="reported by connected sites")
    viewers: int = Field(description="connected viewers")
    other_viewers: int = Field(
        description="connected viewers without an invitation (the session's view token)")
    hands: int = Field(description="hands raised (举手)")
    open_questions: int = Field(description="questions not yet answered")
    cameras: int = Field(description="rooms sending their camera")


class WallDiscussion(Shape):
    """研讨 as an admin sees it (read-only here: moderation is the presenter's)"""

    locked: bool = Field(description="questions locked")
    stage: dict[str, Any] | None = Field(description="{invitation_id, name}")
    hands: list[dict[str, Any]] = Field(description="in the order raised")
    questions: list[dict[str, Any]] = Field(
        description="the latest 200, in the order asked; text verbatim")
    questions_total: int
    open_questions: int
    uplinks: list[dict[str, Any]] = Field(
        description="rooms' cameras: present, connected, muted, on_stage")


class WallQuality(Shape):
    bitrate: float | None = Field(description="bits/s sent, between two snapshots (null at "
                                              "first)")
    fraction_lost: float | None = Field(
        description="0 to 1, video, over the last report's interval")
    packets_lost: int = Field(description="cumulative, all tracks")
    rtt: float | None = Field(description="seconds")
    jitter: float | None = Field(description="seconds, video")
    frames_sent: int = Field(description="video frames")
    nacks: int
    keyframe_requests: int
    overflows: int


class WallSiteDiscussion(Shape):
    """this room in the discussion"""

    hand: dict[str, Any] | None = Field(description="{position in the queue, raised_at}")
    on_stage: bool
    uplink: dict[str, Any] | None = Field(description="{present, connected, muted}")
    questions: int
    open_questions: int


class WallProblem(Shape):
    level: int = Field(ge=0, le=3, description="3 late; 2 dropped, loss > 5 %, RTT > 400 ms, "
                                               "no media while on air; 1 not connected yet; "
                                               "0 ok")
    reason: Literal["late", "dropped", "loss", "rtt", "no_media", "offline"] | None
    reasons: list[str]


class WallSite(Shape):
    invitation_id: str
    site_id: int
    name: str
    org_path: str
    connected: bool
    viewers: int = Field(description="connections of this link")
    connected_since: float | None
    disconnected_since: float | None
    reconnects: int = Field(
        description="connects after the first, since the server started")
    headcount: int | None
    headcount_at: float | None
    quality: WallQuality | None = Field(
        description="how the site's viewer receives (null when not connected): from its RTCP "
                    "receiver reports and the bytes sent to it")
    discussion: WallSiteDiscussion
    problem: WallProblem


class WallSnapshot(Shape):
    """监控墙: a session and every invited site, problems first"""

    component: ClassVar[bool] = True
    type: Literal["snapshot"]
    at: float = Field(description="server time of the snapshot")
    session: WallSession
    summary: WallSummary
    discussion: WallDiscussion
    sites: list[WallSite]


WALL_SUMMARY = (
    "The room wall's WebSocket: a WallSnapshot (JSON text message) at once and every 2 s; "
    "closed with code 4000 when the session ends, 1001 when the server stops. Admin only: "
    "the bearer admin token, or the login cookie with this server's Origin. Without an "
    "Upgrade header: one snapshot as JSON")


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/sessions/{session_id}/wall/ws", wall_socket)]


@dataclass(eq=False)
class _Feed:
    """The sockets watching one session, and the task that feeds them."""

    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    last: str | None = None  # the latest snapshot, as sent to the city
    snapshot: dict[str, Any] | None = None  # ... and as computed
    # A district's socket sees its own rooms only: the org path prefix of each
    # socket ('' for the whole wall).
    prefixes: dict[web.WebSocketResponse, str] = field(default_factory=dict)

    def text(self, prefix: str, cache: dict[str, str] | None = None) -> str | None:
        """The latest snapshot as a socket of ``prefix`` sees it."""
        if self.snapshot is None or not prefix:
            return self.last
        if cache is not None and prefix in cache:
            return cache[prefix]
        text = json.dumps(scoped_snapshot(self.snapshot, prefix), ensure_ascii=False)
        if cache is not None:
            cache[prefix] = text
        return text


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

    async def current(self, session: Session, prefix: str = "") -> dict[str, Any]:
        """A snapshot for a plain HTTP request (the latest pushed one, if any)."""
        feed = self._feeds.get(session.id)
        if feed is not None and feed.snapshot is not None:
            return scoped_snapshot(feed.snapshot, prefix)
        return scoped_snapshot(await self.wall.snapshot(session), prefix)

    async def join(self, session_id: str, ws: web.WebSocketResponse, prefix: str = "") -> None:
        if self._closed:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            return
        feed = self._feeds.setdefault(session_id, _Feed())
        feed.sockets.add(ws)
        feed.prefixes[ws] = prefix
        text = feed.text(prefix)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.get_running_loop().create_task(self._run(session_id, feed))
        elif text is not None:
            await self._send(feed, ws, text)  # no wait for the next tick

    def leave(self, session_id: str, ws: web.WebSocketResponse) -> None:
        feed = self._feeds.get(session_id)
        if feed is None or ws not in feed.sockets:
            return
        feed.sockets.discard(ws)
        feed.prefixes.pop(ws, None)
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
                feed.snapshot = snapshot
                feed.last = json.dumps(snapshot, ensure_ascii=False)
                texts: dict[str, str] = {}  # one scoped text per district watching
                await asyncio.gather(*(
                    self._send(feed, ws, feed.text(feed.prefixes.get(ws, ""), texts) or "")
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


@operation(WALL_SUMMARY, errors=(401, 403, 404, (429, "this login has its share of open sockets")),
           replies={101: Reply("WebSocket upgrade"),
                    200: Reply("one snapshot (no Upgrade header)", WallSnapshot)})
async def wall_socket(request: web.Request) -> web.StreamResponse:
    by_cookie = "Authorization" not in request.headers and COOKIE in request.cookies
    caller = require_reader(request)
    if by_cookie:
        check_origin(request)
    session = session_of(request)
    if not caller.scope.reads_session(session.row):
        raise Forbidden("this session belongs to another part of the organization")
    # A district's account sees its own rooms only (in the city's sessions).
    prefix = "" if caller.scope.everything else request.app[SCHOOL].org.path(
        caller.scope.node_id)
    hub = request.app[WALL_HUB]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT)
    if not ws.can_prepare(request).ok:
        return web.json_response(await hub.current(session, prefix),
                                 headers={"Cache-Control": "no-store"})
    secret = request.cookies.get(COOKIE, "") if by_cookie else bearer_token(request)
    with request.app[LIMITER].socket(secret, f"admin (wall of session {session.id})"):
        await ws.prepare(request)
        await hub.join(session.id, ws, prefix)
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
