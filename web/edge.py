"""``zhixing edge``: a district's relay, pulling each live session from the origin once.

An edge sits in a district's server room, behind the district's own link to
the city. For each live session one of its rooms asks for, it pulls the
program and the stage from the origin over WHEP (``streaming/upstream.py``,
with the origin's edge token) and serves the district's rooms from its own
broadcast: one stream on the district's link however many rooms watch.

* **Rooms reach it by redirect.** The origin answers a room's WHEP POST with
  ``307`` to this edge when the room's site lies in the edge's district and
  the edge's directory entry is fresh (``classroom/live/cluster.py``); the
  invitation token comes in the query (a redirect to another origin drops
  ``Authorization``). Only WHEP is here: the room page, its events socket
  and its uplink stay with the origin.
* **Tokens without a database.** Invitation tokens are signed with the
  city's server secret, which the edge holds (``--secret``): signature,
  session and expiry are checked here; revocations and session ends come
  from the origin through Redis within a second (and are read whole at
  every reconnection), and close the rooms they concern.
* **Attendance at the origin.** Each room viewer's connection and leaving
  goes to the origin as a viewer event (a Redis stream, buffered while
  Redis is away), and the origin's attendance log counts it as its own.
* **Link figures at the origin.** Every ``LINK_INTERVAL`` seconds the edge
  sends one link report: each connected room's loss, RTT, bitrate (the
  wall's figures, read as the origin reads its own) and counters, so the
  wall and ``/metrics`` show them as the origin's own.
* **The origin's limits.** A room's link may hold as many WHEP connections
  here as at the origin (``--max-peers-per-invitation``), and an address as
  many offers being set up (``--max-pending-per-address``, ``--max-pending``;
  the same flags and variables as ``serve``): ``429``/``503`` with
  ``Retry-After`` and one log line per limit and credential every 10 s
  (``web/limits.py``). The edge counts its own peers only.
* **The origin going away** ends the pull: the edge pulls again every
  second for ``REPULL_FOR`` seconds (its rooms keep their connections and
  carry on at the next keyframe); a session the origin no longer has (404,
  410) is closed here too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import socket
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from aiortc import sdp as aiortc_sdp

from classroom.access.signing import SECRET_BYTES, BadSignature, Signer
from classroom.live.cluster import (
    LINK_INTERVAL,
    MAX_LINK_VIEWERS,
    LinkReport,
    NodeEntry,
    ViewerEvent,
    ViewerLink,
    cluster_key,
)
from classroom.live.local_cluster import LocalEdge
from classroom.live.metrics import viewer_totals
from classroom.live.wall import BitrateSampler, link_quality, sent_bytes
from streaming import aiortc_glue
from streaming.broadcast import Broadcast, BroadcastClosed
from streaming.peers import (
    MAX_SDP_BYTES,
    MalformedOffer,
    MissingMedia,
    PeerSettings,
    UnsupportedCodec,
    Viewer,
)
from streaming.upstream import Upstream, UpstreamRefused
from web.access_log import AccessLogger
from web.config import _env, _list
from web.errors import AppError
from web.http import bearer_token
from web.limits import (
    EDGE_LIMITS,
    Limiter,
    LimitSettings,
    add_limit_arguments,
    limit_settings_from_args,
)
from web.signaling import CORS_HEADERS, SDP, SDPFRAG, parse_sdpfrag
from web.workers import die_with_parent

if TYPE_CHECKING:
    from classroom.live.redis_cluster import RedisEdge

logger = logging.getLogger(__name__)

REPULL_FOR = 30.0  # seconds an edge keeps pulling a session again after losing it
ORIGIN_TIMEOUT = aiohttp.ClientTimeout(total=10)


class SessionGone(UpstreamRefused):
    """The origin has no such live session (404) or it has ended (410)."""


@dataclass
class EdgeConfig:
    origin: str
    token: str
    secret: bytes
    district: str
    name: str
    public_url: str
    redis_url: str | None  # None: a worker of this box, over cluster_fd
    host: str = "0.0.0.0"
    port: int = 8090
    ice_hosts: list[str] | None = None
    connect_timeout: float = 30.0
    log_level: str = "info"
    cluster_fd: int | None = None  # a worker's end of its socketpair to the main process
    limits: LimitSettings = field(default_factory=LimitSettings)


@dataclass
class _Pull:
    """One session as this edge relays it."""

    session_id: str
    broadcast: Broadcast
    upstream: Upstream
    location: str | None = None  # the origin's WHEP resource of the pull
    joined: dict[str, tuple[float, float]] = field(default_factory=dict)  # resource → times


class Edge:
    """The sessions this edge relays and what it tells the origin."""

    def __init__(self, config: EdgeConfig, settings: PeerSettings) -> None:
        self.config = config
        self.settings = settings
        self.signer = Signer(config.secret)
        self.limiter = Limiter(config.limits)
        self.pulls: dict[str, _Pull] = {}
        self._opening: dict[str, asyncio.Task[_Pull]] = {}
        self._repulling: set[asyncio.Task[None]] = set()
        self.http = aiohttp.ClientSession(timeout=ORIGIN_TIMEOUT)
        self.cluster = self._cluster()
        self._bitrates = BitrateSampler()
        self._capped_at = -math.inf  # when the last report left rooms out
        self._reporting = asyncio.create_task(self._report_links())

    def _cluster(self) -> LocalEdge | RedisEdge:
        """Redis (an edge, or a worker with --redis), or the socket to the
        main process (a worker of one box)."""
        key = cluster_key(self.config.secret)
        if self.config.redis_url is None:
            assert self.config.cluster_fd is not None
            return LocalEdge(socket.socket(fileno=self.config.cluster_fd), key, self.entry,
                             self._revoked, self._ended)
        from classroom.live.redis_cluster import RedisEdge  # not loaded by a local worker

        return RedisEdge(self.config.redis_url, key, self.entry, self._revoked, self._ended)

    def entry(self) -> NodeEntry:
        load = sum(len(pull.broadcast.viewers) for pull in self.pulls.values())
        return NodeEntry(self.config.name, self.config.public_url, self.config.district, load)

    # ---------------------------------------------------------------- tokens
    def check(self, token: str, session_id: str) -> str:
        """The invitation of a genuine, current room token for this session."""
        try:
            claims = self.signer.verify(token)
        except BadSignature as exc:
            raise web.HTTPUnauthorized(text="invalid token") from exc
        if claims.session_id != session_id:
            raise web.HTTPForbidden(text="this invitation belongs to another session")
        if time.time() >= claims.expires_at:
            raise web.HTTPGone(text="this invitation has expired")
        if claims.invitation_id in self.cluster.revoked:
            raise web.HTTPGone(text="this invitation was revoked")
        if session_id in self.cluster.ended:
            raise web.HTTPGone(text="this session has ended")
        return claims.invitation_id

    # ----------------------------------------------------------------- pulls
    async def pull(self, session_id: str) -> _Pull:
        """The session's pull, started on first use (one at a time)."""
        pull = self.pulls.get(session_id)
        if pull is not None and not pull.broadcast.closed:
            return pull
        task = self._opening.get(session_id)
        if task is None:
            task = asyncio.create_task(self._open(session_id))
            self._opening[session_id] = task
            task.add_done_callback(lambda _t: self._opening.pop(session_id, None))
        return await asyncio.shield(task)

    async def _open(self, session_id: str) -> _Pull:
        upstream, location = await self._start_upstream(session_id)
        assert upstream.video_codec is not None
        broadcast = Broadcast(session_id, upstream.video_codec, self.settings)
        pull = _Pull(session_id, broadcast, upstream, location)
        broadcast.viewer_listeners.append(
            lambda viewer, event: self._viewer_event(pull, viewer, event))
        upstream.attach(broadcast.slots)
        self.pulls[session_id] = pull
        logger.info("session %s: pulled from %s (%s)", session_id, self.config.origin,
                    upstream.video_codec)
        return pull

    async def _start_upstream(self, session_id: str) -> tuple[Upstream, str | None]:
        where: list[str | None] = [None]

        async def exchange(offer: str) -> str:
            url = f"{self.config.origin}/whep/{quote(session_id, safe='')}"
            headers = {"Content-Type": SDP, "Authorization": f"Bearer {self.config.token}"}
            try:
                async with self.http.post(url, data=offer, headers=headers,
                                          allow_redirects=False) as response:
                    text = await response.text()
                    if response.status in (404, 410):
                        raise SessionGone(f"the origin: {response.status} {text[:200]}")
                    if response.status != 201:
                        raise UpstreamRefused(
                            f"the origin answered {response.status}: {text[:200]}")
                    where[0] = response.headers.get("Location")
                    return text
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamRefused(f"the origin is unreachable: {exc}") from exc

        upstream = Upstream(f"{session_id} from {self.config.origin}", self.settings, exchange,
                            on_closed=lambda up: self._lost(session_id, up))
        await upstream.start()
        return upstream, where[0]

    def _lost(self, session_id: str, upstream: Upstream) -> None:
        pull = self.pulls.get(session_id)
        if pull is None or pull.upstream is not upstream or pull.broadcast.closed:
            return
        task = asyncio.create_task(self._repull(pull))
        self._repulling.add(task)
        task.add_done_callback(self._repulling.discard)

    async def _repull(self, pull: _Pull) -> None:
        """The pull ended: pull again (the rooms keep their connections), or
        close the session here if the origin no longer has it."""
        deadline = time.monotonic() + REPULL_FOR
        while not pull.broadcast.closed:
            if pull.session_id in self.cluster.ended:
                break
            try:
                upstream, location = await self._start_upstream(pull.session_id)
            except SessionGone as exc:
                logger.info("session %s ended at the origin (%s)", pull.session_id, exc)
                break
            except UpstreamRefused as exc:
                if time.monotonic() > deadline:
                    logger.warning("session %s: no pull for %.0f s (%s); its rooms are closed",
                                   pull.session_id, REPULL_FOR, exc)
                    break
                logger.warning("session %s: pulling again failed: %s", pull.session_id, exc)
                await asyncio.sleep(1.0)
                continue
            if pull.broadcast.closed:
                await upstream.close(notify=False)
                return
            pull.upstream, pull.location = upstream, location
            upstream.attach(pull.broadcast.slots)
            logger.info("session %s: pulled again", pull.session_id)
            return
        await self.end(pull.session_id)

    async def end(self, session_id: str) -> None:
        pull = self.pulls.pop(session_id, None)
        if pull is None:
            return
        await pull.upstream.close(notify=False)
        await pull.broadcast.close()
        if pull.location is not None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.delete(
                        self.config.origin + pull.location,
                        headers={"Authorization": f"Bearer {self.config.token}"}):
                    pass

    # ----------------------------------------------------- origin's events
    def _revoked(self, session_id: str, invitation_id: str) -> None:
        pull = self.pulls.get(session_id)
        if pull is None:
            return
        viewers = [v for v in pull.broadcast.viewers.values() if v.tag == invitation_id]
        for viewer in viewers:
            self._spawn(viewer.close())
        if viewers:
            logger.info("session %s: invitation %s revoked, %d viewer(s) closed", session_id,
                        invitation_id, len(viewers))

    def _ended(self, session_id: str) -> None:
        if session_id in self.pulls:
            logger.info("session %s ended: its rooms here are closed", session_id)
            self._spawn(self.end(session_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._repulling.add(task)
        task.add_done_callback(self._repulling.discard)

    def _viewer_event(self, pull: _Pull, viewer: Viewer, event: str) -> None:
        if viewer.tag is None:
            return
        resource = f"{self.config.name}/{viewer.resource_id}"
        if event == "connected":
            at = viewer.connected_at if viewer.connected_at is not None else time.time()
            pull.joined[resource] = (at, time.monotonic() - (time.time() - at))
            self.cluster.viewer_event(ViewerEvent(pull.session_id, viewer.tag, resource,
                                                  "open", at))
        elif event == "closed" and resource in pull.joined:
            joined, joined_monotonic = pull.joined.pop(resource)
            left = joined + (time.monotonic() - joined_monotonic)
            self.cluster.viewer_event(ViewerEvent(pull.session_id, viewer.tag, resource,
                                                  "close", left))

    # ---------------------------------------------------------- link reports
    async def _report_links(self) -> None:
        while True:
            await asyncio.sleep(LINK_INTERVAL)
            try:
                self.cluster.link_report(await self.links())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("link report failed; trying again in %.0f s", LINK_INTERVAL)

    async def links(self) -> LinkReport:
        """Every connected room's link now, as the origin's wall reads its own."""
        at = time.time()
        links: list[ViewerLink] = []
        viewers = [(pull, viewer) for pull in list(self.pulls.values())
                   for viewer in list(pull.broadcast.viewers.values())
                   if viewer.tag is not None and viewer.connection_state == "connected"]
        if len(viewers) > MAX_LINK_VIEWERS and time.monotonic() - self._capped_at > 60:
            self._capped_at = time.monotonic()
            logger.warning("%d rooms connected: the origin hears the links of %d only",
                           len(viewers), MAX_LINK_VIEWERS)
        for pull, viewer in viewers[:MAX_LINK_VIEWERS]:
            stats = await viewer.stats()
            quality = link_quality(stats, self._bitrates.rate(
                viewer.resource_id, sent_bytes(stats)))
            assert viewer.tag is not None  # chosen above
            links.append(ViewerLink(
                pull.session_id, viewer.tag, f"{self.config.name}/{viewer.resource_id}",
                viewer.connected_at or at, quality, viewer_totals(stats)))
        self._bitrates.keep({link.resource.partition("/")[2] for link in links})
        return LinkReport(self.config.name, at, tuple(links))

    async def close(self) -> None:
        self._reporting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reporting
        for task in list(self._repulling):
            task.cancel()
        for session_id in list(self.pulls):
            await self.end(session_id)
        # The rooms' leaving is queued by now: give Redis a moment to take it.
        for _ in range(20):
            if not self.cluster.buffered:
                break
            await asyncio.sleep(0.1)
        await self.cluster.close()
        await self.http.close()


EDGE = web.AppKey("edge", Edge)


# ------------------------------------------------------------------ HTTP


def _token(request: web.Request) -> str:
    """The room's token: the query's (after the origin's redirect) or the
    Authorization header's."""
    token = request.query.get("token")
    if token:
        return token
    return bearer_token(request)


async def create_viewer(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    session_id = request.match_info["session_id"]
    invitation_id = edge.check(_token(request), session_id)
    if request.content_type != SDP:
        raise web.HTTPUnsupportedMediaType(text=f"Content-Type must be {SDP}",
                                           headers=CORS_HEADERS)
    # As at the origin: from the body's reading until the answer, the offer
    # counts as being set up from its address; its peer then counts for its link.
    with edge.limiter.offer(request.remote or "unknown", f"invitation {invitation_id}",
                            edge.config.limits.peers_per_invitation) as admission:
        offer = await _read_offer(request)
        try:
            pull = await edge.pull(session_id)
        except SessionGone as exc:
            raise web.HTTPGone(text="this session is not live", headers=CORS_HEADERS) from exc
        except UpstreamRefused as exc:
            logger.warning("session %s: cannot pull from the origin: %s", session_id, exc)
            raise web.HTTPServiceUnavailable(
                text="the origin cannot be reached from this edge",
                headers={**CORS_HEADERS, "Retry-After": "2"}) from exc
        try:
            resource_id, answer = await pull.broadcast.view(offer, tag=invitation_id)
        except MalformedOffer as exc:
            raise web.HTTPBadRequest(text=str(exc), headers=CORS_HEADERS) from exc
        except MissingMedia as exc:
            raise web.HTTPUnprocessableEntity(text=str(exc), headers=CORS_HEADERS) from exc
        except UnsupportedCodec as exc:
            raise web.HTTPNotAcceptable(text=str(exc), headers=CORS_HEADERS) from exc
        except BroadcastClosed as exc:
            raise web.HTTPGone(text="this session has ended", headers=CORS_HEADERS) from exc
        admission.admit(pull.broadcast, resource_id)
    headers = {"Location": f"/whep/{quote(session_id, safe='')}/{resource_id}",
               "ETag": f'"{resource_id}"', "Accept-Patch": SDPFRAG, **CORS_HEADERS}
    return web.Response(status=201, text=answer, content_type=SDP, headers=headers)


async def _read_offer(request: web.Request) -> str:
    body = await request.content.read(MAX_SDP_BYTES + 1)
    if len(body) > MAX_SDP_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_SDP_BYTES, len(body), headers=CORS_HEADERS)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="body is not UTF-8 text", headers=CORS_HEADERS) from None


def _viewer(request: web.Request) -> Viewer:
    edge = request.app[EDGE]
    session_id = request.match_info["session_id"]
    invitation_id = edge.check(_token(request), session_id)
    pull = edge.pulls.get(session_id)
    viewer = pull.broadcast.viewers.get(request.match_info["resource_id"]) \
        if pull is not None else None
    if viewer is None:
        raise web.HTTPNotFound(text="no such resource (it may have ended)", headers=CORS_HEADERS)
    if viewer.tag != invitation_id:
        raise web.HTTPForbidden(text="this resource belongs to another room",
                                headers=CORS_HEADERS)
    return viewer


async def patch_viewer(request: web.Request) -> web.Response:
    viewer = _viewer(request)
    if request.content_type != SDPFRAG:
        raise web.HTTPUnsupportedMediaType(text=f"Content-Type must be {SDPFRAG}",
                                           headers=CORS_HEADERS)
    fragment = (await request.content.read(MAX_SDP_BYTES)).decode("utf-8", "replace")
    _ufrag, candidates, end = parse_sdpfrag(fragment)
    for mid, line in candidates:
        try:
            candidate = aiortc_sdp.candidate_from_sdp(line)
        except (ValueError, IndexError, AssertionError):
            raise web.HTTPBadRequest(text=f"malformed candidate: {line[:80]}",
                                     headers=CORS_HEADERS) from None
        candidate.sdpMid = mid
        candidate.sdpMLineIndex = None if mid is not None else 0
        await viewer.add_candidate(candidate)
    if end:
        await viewer.add_candidate(None)
    return web.Response(status=204, headers=CORS_HEADERS)


MAX_QUALITY_BODY = 1024


async def viewer_quality(request: web.Request) -> web.Response:
    """A room's 高清 / 流畅 / 仅声音 on this edge (the origin does not know its
    viewer): GET what it gets; POST ``{"audio_only": true|false}`` to choose
    sound only or go back to what its link can take. The room's token, and
    only its own viewer, as for the resource itself."""
    viewer = _viewer(request)
    if request.method == "POST":
        body = await request.content.read(MAX_QUALITY_BODY + 1)
        try:
            if len(body) > MAX_QUALITY_BODY:
                raise ValueError("too long")
            wanted = json.loads(body)
            audio_only = wanted.get("audio_only") if isinstance(wanted, dict) else None
            if not isinstance(audio_only, bool):
                raise ValueError("audio_only")
        except ValueError:
            raise web.HTTPBadRequest(text='the body must be {"audio_only": true or false}',
                                     headers=CORS_HEADERS) from None
        viewer.quality.chosen_audio_only = audio_only
        pull = request.app[EDGE].pulls.get(request.match_info["session_id"])
        if pull is not None:
            pull.broadcast.apply_quality(viewer)
    return web.json_response(viewer.quality_state(),
                             headers={**CORS_HEADERS, "Cache-Control": "no-store"})


async def delete_viewer(request: web.Request) -> web.Response:
    await _viewer(request).close()
    return web.Response(status=200, headers=CORS_HEADERS)


async def preflight(request: web.Request) -> web.Response:
    if request.path.endswith("/quality"):
        methods = "GET, POST, OPTIONS"
    elif "resource_id" not in request.match_info:
        methods = "POST, OPTIONS"
    else:
        methods = "PATCH, DELETE, OPTIONS"
    return web.Response(status=204, headers={**CORS_HEADERS,
                                             "Access-Control-Allow-Methods": methods,
                                             "Access-Control-Max-Age": "86400",
                                             "Accept-Post": SDP})


async def healthz(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    return web.json_response({"ok": True, "name": edge.config.name,
                              "sessions": sorted(edge.pulls),
                              "viewers": edge.entry().load,
                              "buffered_viewer_events": edge.cluster.buffered})


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A refusal is plain text with CORS (the room page reads it); a token
    refused is logged without the token."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except AppError as exc:  # a limit (web/limits.py), its text as the origin's
        return web.Response(status=exc.status, text=exc.message,
                            headers={**exc.headers, **CORS_HEADERS})
    except web.HTTPException as exc:
        if exc.status in (401, 403, 410):
            logger.info("edge refused %s %s: %d %s", request.method, request.path, exc.status,
                        exc.text)
        for name, value in CORS_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise


def create_edge_app(config: EdgeConfig) -> web.Application:
    app = web.Application(middlewares=[_errors])
    settings = PeerSettings(connect_timeout=config.connect_timeout)

    async def context(app: web.Application) -> AsyncIterator[None]:
        await aiortc_glue.check_internals()
        aiortc_glue.install_rfc7983_demux()
        aiortc_glue.install_dtls()
        aiortc_glue.configure_ice(config.ice_hosts)
        edge = Edge(config, settings)
        app[EDGE] = edge
        try:
            yield
        finally:
            await edge.close()

    app.cleanup_ctx.append(context)
    app.add_routes([
        web.post("/whep/{session_id}", create_viewer),
        web.options("/whep/{session_id}", preflight),
        web.patch("/whep/{session_id}/{resource_id}", patch_viewer),
        web.delete("/whep/{session_id}/{resource_id}", delete_viewer),
        web.options("/whep/{session_id}/{resource_id}", preflight),
        web.get("/whep/{session_id}/{resource_id}/quality", viewer_quality),
        web.post("/whep/{session_id}/{resource_id}/quality", viewer_quality),
        web.options("/whep/{session_id}/{resource_id}/quality", preflight),
        web.get("/healthz", healthz),
    ])
    return app


# ------------------------------------------------------------------- CLI


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    env = _env
    parser.add_argument("--origin", default=env("ORIGIN"), metavar="URL", required=not env(
        "ORIGIN"), help="the origin's base URL, e.g. http://zhixing.city.example:8080 "
                        "(env ZHIXING_ORIGIN)")
    parser.add_argument(
        "--token", metavar="TOKEN",
        help="the origin's edge token (its --edge-token) (env ZHIXING_EDGE_TOKEN, "
             "preferred: a flag shows in the process list)")
    parser.add_argument(
        "--secret", default=env("SECRET_FILE"), metavar="FILE", required=not env("SECRET_FILE"),
        help="a copy of the origin's data/server-secret (mode 0600): invitation tokens are "
             "checked with it, without the catalog (env ZHIXING_SECRET_FILE)")
    parser.add_argument("--district", default=env("DISTRICT"), required=not env("DISTRICT"),
                        metavar="ORG_PATH",
                        help="the org path of the district this edge serves, e.g. '北仑区'; "
                             "rooms whose site lies under it are sent here (env "
                             "ZHIXING_DISTRICT)")
    parser.add_argument("--name", default=env("NODE_NAME"), required=not env("NODE_NAME"),
                        help="this edge's name in the directory: letters, digits, '.', '_', "
                             "'-' (env ZHIXING_NODE_NAME)")
    parser.add_argument("--public-url", default=env("PUBLIC_URL"), metavar="URL",
                        help="the base URL rooms reach this edge at (env ZHIXING_PUBLIC_URL; "
                             "default http://HOST:PORT)")
    parser.add_argument("--redis", default=env("REDIS_URL"), metavar="URL",
                        help="the origin's Redis, redis://host:port/0 (env ZHIXING_REDIS_URL; "
                             "needed but for a worker of 'serve --workers')")
    parser.add_argument("--cluster-fd", type=int, metavar="FD", help=argparse.SUPPRESS)
    parser.add_argument("--host", default=env("HOST") or "0.0.0.0",
                        help="address to listen on (env ZHIXING_HOST; default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(env("PORT") or 8090),
                        help="TCP port (env ZHIXING_PORT; default 8090)")
    parser.add_argument("--ice-host", action="append", metavar="ADDR",
                        help="an address to offer as ICE host candidate, as for serve "
                             "(env ZHIXING_ICE_HOSTS)")
    parser.add_argument("--log-level", default=env("LOG_LEVEL") or "info",
                        choices=["debug", "info", "warning", "error"],
                        help="log verbosity (env ZHIXING_LOG_LEVEL; default info)")
    add_limit_arguments(parser, only=EDGE_LIMITS)


def read_secret(path: Path) -> bytes:
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} is shorter than {SECRET_BYTES} bytes: not a server secret")
    return secret


def edge_config_from_args(args: argparse.Namespace) -> EdgeConfig:
    token = args.token or _env("EDGE_TOKEN")
    if not token:
        raise ValueError("the origin's edge token is needed (--token or ZHIXING_EDGE_TOKEN)")
    entry = NodeEntry.from_fields({"name": args.name, "district": args.district, "load": 0,
                                   "url": args.public_url or f"http://{args.host}:{args.port}"})
    ice_hosts = [v for item in args.ice_host or [] for v in _list(item)] \
        or _list(_env("ICE_HOSTS"))
    if args.cluster_fd is None and not args.redis:
        raise ValueError("--redis is needed (the origin's Redis)")
    if args.cluster_fd is not None:
        sock = socket.socket(fileno=args.cluster_fd)  # OSError: not an open socket
        sock.detach()
    return EdgeConfig(origin=args.origin.rstrip("/"), token=token,
                      secret=read_secret(Path(args.secret)), district=entry.district,
                      name=entry.name, public_url=entry.url,
                      redis_url=None if args.cluster_fd is not None else args.redis,
                      host=args.host, port=args.port, ice_hosts=ice_hosts or None,
                      log_level=args.log_level, cluster_fd=args.cluster_fd,
                      limits=limit_settings_from_args(args))


def run(args: argparse.Namespace) -> int:
    die_with_parent()  # a worker of ``serve --workers N`` goes with its main process
    try:
        config = edge_config_from_args(args)
    except Exception as exc:  # a bad flag, an unreadable secret: say which
        print(f"zhixing edge: {exc}", file=sys.stderr, flush=True)
        return 2
    logging.basicConfig(level=getattr(logging, config.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(_: object) -> None:
        print(f"Zhixing edge {config.name} for {config.district} is running on "
              f"{config.host}:{config.port} ({config.public_url}), origin {config.origin}",
              flush=True)

    web.run_app(create_edge_app(config), host=config.host, port=config.port, print=announce,
                handle_signals=True, access_log_class=AccessLogger)
    return 0
