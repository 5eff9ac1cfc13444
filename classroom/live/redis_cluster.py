"""The cluster seam on Redis (Debian's redis-server; redis-py's asyncio client).

Keys and channels, all under ``zhixing:``:

* ``zhixing:node:<name>`` — an edge's sealed entry, set every 0.5 s with a
  2 s expiry. The origin reads them every 0.5 s and takes only entries that
  verify and that will expire (a key without a time to live, or a longer
  one, was not written by an edge: refused).
* ``zhixing:events`` (pub/sub) — sealed ``revoked`` and ``ended`` events; also
  kept in the hashes ``zhixing:revoked`` and ``zhixing:ended``, which an edge
  reads whole each time it (re)connects, so nothing said while it was away
  is missed.
* ``zhixing:viewers`` (a stream) — the edges' sealed viewer events, read by
  the origin in the consumer group ``origin``, acknowledged once applied, so
  an origin that restarts carries on where it stopped.
* ``zhixing:links`` (pub/sub) — each edge's sealed link report every 2 s,
  handed to the origin's ``LinkBoard``. Nothing is kept: a report missed is
  replaced by the next, and an edge away from Redis sends only its latest
  when it is back.

Redis down: the media never depend on it. Every loop logs the outage once,
retries every second and logs the return; an edge keeps its viewer events in
memory (in order) and sends them when Redis is back, so no attendance
interval is lost; the directory empties (rooms go to the origin) when
entries stop being readable. Anything unexpected from Redis is logged and
skipped, never raised into a request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from classroom.live.cluster import (
    DIRECTORY_REFRESH,
    ENTRY_TTL,
    HEARTBEAT,
    LinkBoard,
    LinkReport,
    NodeEntry,
    OriginEvents,
    Unsealed,
    ViewerEvent,
    origin_event,
    seal,
    unseal,
)

logger = logging.getLogger(__name__)

PREFIX = "zhixing:"
NODE_PREFIX = PREFIX + "node:"
EVENTS = PREFIX + "events"
REVOKED = PREFIX + "revoked"
ENDED = PREFIX + "ended"
VIEWERS = PREFIX + "viewers"
LINKS = PREFIX + "links"
GROUP = "origin"
KEEP_EVENTS = 30 * 24 * 3600  # seconds the revoked/ended hashes outlive their last write
MAX_BUFFERED = 200_000  # viewer events an edge holds while Redis is away
RETRY = 1.0
SENT_MEMORY = 3.0  # seconds a redirect counts in an edge's load (its answer, then renewals)
MAX_ORIGINS = 256  # edge origins a page's policy names at most


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast (a dead Redis must not hold a loop for long)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=3.0, health_check_interval=5)
    return client


class _Outage:
    """Logs an outage once when it starts and once when it ends."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            logger.warning("Redis unreachable (%s): %s; retrying every %.0f s", self.what,
                           exc, RETRY)

    def worked(self) -> None:
        if self.down:
            self.down = False
            logger.info("Redis reachable again (%s)", self.what)


async def _forever(what: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` again and again; a Redis failure waits a second, anything
    else is logged with its traceback (a bug must not stop coordination)."""
    outage = _Outage(what)
    while True:
        try:
            await step()
            outage.worked()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            outage.failed(exc)
            await asyncio.sleep(RETRY)
        except Exception:
            logger.exception("cluster loop %s failed; carrying on", what)
            await asyncio.sleep(RETRY)


@dataclasses.dataclass(frozen=True)
class Directory:
    """One reading of the directory."""

    entries: list[tuple[NodeEntry, int]]  # genuine entries, each with its ms to live
    refused: list[tuple[str, str]]  # (key, why) of the entries not taken


async def read_directory(client: aioredis.Redis, key: bytes) -> Directory:
    """The entries that verify, name their own key, are well formed and
    expire within ``ENTRY_TTL`` (the origin's reading, and the doctor's)."""
    keys = [k async for k in client.scan_iter(NODE_PREFIX + "*", count=200)]
    directory = Directory([], [])
    if not keys:
        return directory
    async with client.pipeline(transaction=False) as pipe:
        for name in keys:
            pipe.get(name)
            pipe.pttl(name)
        replies = await pipe.execute()
    for index, raw_name in enumerate(keys):
        name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) \
            else str(raw_name)
        raw, ttl = replies[2 * index], replies[2 * index + 1]
        if raw is None:
            continue  # expired between the scan and the read
        try:
            if not isinstance(ttl, int) or not 0 < ttl <= ENTRY_TTL * 1000:
                raise Unsealed(f"its time to live is {ttl!r} ms, not at most "
                               f"{ENTRY_TTL * 1000:.0f}: not renewed by a live edge")
            entry = NodeEntry.from_fields(unseal(key, raw))
            if NODE_PREFIX + entry.name != name:
                raise Unsealed("the entry names another node than its key")
        except Unsealed as exc:
            directory.refused.append((name, str(exc)))
            continue
        directory.entries.append((entry, ttl))
    return directory


class RedisOrigin:
    """The origin's side: reads the directory, tells events, takes viewer events."""

    def __init__(self, url: str, key: bytes, name: str,
                 on_viewer_event: Callable[[ViewerEvent], None]) -> None:
        self._client = connect(url)
        self._key = key
        self._name = name
        self._on_viewer_event = on_viewer_event
        self._edges: list[NodeEntry] = []
        self._origins: dict[str, None] = {}  # every edge origin seen, oldest first
        # Rooms sent to each edge lately (monotonic times): its entry's load
        # counts them only after its next renewals.
        self._sent: dict[str, collections.deque[float]] = {}
        self._outbox: collections.deque[tuple[str, str, str]] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(_forever("directory", self._read_directory)),
                       asyncio.create_task(_forever("events", self._send_events)),
                       asyncio.create_task(_forever("viewer events", self._read_viewers)),
                       asyncio.create_task(_forever("link reports", self._read_links))]
        self._group_ready = False
        self.links = LinkBoard(key)
        self.refused: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------ directory
    def healthy_edges(self) -> list[NodeEntry]:
        return [dataclasses.replace(entry, load=entry.load + self._recently_sent(entry.name))
                for entry in self._edges]

    def sent(self, entry: NodeEntry) -> None:
        self._sent.setdefault(entry.name, collections.deque()).append(time.monotonic())

    def _recently_sent(self, name: str) -> int:
        times = self._sent.get(name)
        if not times:
            return 0
        while times and times[0] < time.monotonic() - SENT_MEMORY:
            times.popleft()
        return len(times)

    def edge_origins(self) -> list[str]:
        return list(self._origins)

    async def _read_directory(self) -> None:
        try:
            directory = await read_directory(self._client, self._key)
            for name, why in directory.refused:
                if self.refused[name] % 120 == 0:  # once a minute at two readings a second
                    logger.warning("directory entry %s refused: %s", name[:100], why)
                self.refused[name] += 1
            entries = [entry for entry, _ in directory.entries]
            self._edges = entries
            for name in set(self._sent) - {entry.name for entry in entries}:
                del self._sent[name]
            for entry in entries:
                self._origins[entry.origin] = None
            while len(self._origins) > MAX_ORIGINS:
                del self._origins[next(iter(self._origins))]
        except BaseException:
            self._edges = []  # nobody is known healthy while Redis cannot say
            raise
        await asyncio.sleep(DIRECTORY_REFRESH)

    # --------------------------------------------------------- link reports
    def edge_links(self) -> list[LinkReport]:
        return self.links.reports()

    def retired_edge_totals(self) -> dict[str, float]:
        return dict(self.links.retired)

    async def _read_links(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(LINKS)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    self.links.receive(message.get("data"))
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # --------------------------------------------------------------- events
    def session_ended(self, session_id: str) -> None:
        self._outbox.append(("ended", session_id, ""))
        self._wake.set()

    def invitation_revoked(self, session_id: str, invitation_id: str) -> None:
        self._outbox.append(("revoked", session_id, invitation_id))
        self._wake.set()

    async def _send_events(self) -> None:
        while not self._outbox:
            self._wake.clear()
            await self._wake.wait()
        kind, session_id, invitation_id = self._outbox[0]
        text = origin_event(self._key, kind, session_id, invitation_id)
        async with self._client.pipeline(transaction=True) as pipe:
            if kind == "ended":
                pipe.hset(ENDED, session_id, text)
                pipe.expire(ENDED, KEEP_EVENTS)
            else:
                pipe.hset(REVOKED, invitation_id, text)
                pipe.expire(REVOKED, KEEP_EVENTS)
            pipe.publish(EVENTS, text)
            await pipe.execute()
        self._outbox.popleft()  # only once Redis has it

    # -------------------------------------------------------- viewer events
    async def _read_viewers(self) -> None:
        if not self._group_ready:
            try:
                await self._client.xgroup_create(VIEWERS, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._group_ready = True
        try:
            # Ours not yet acknowledged first (a restart), then new ones.
            replies = await self._client.xreadgroup(GROUP, self._name, {VIEWERS: "0"},
                                                    count=500)
            if not _entries(replies):
                replies = await self._client.xreadgroup(GROUP, self._name, {VIEWERS: ">"},
                                                        count=500, block=1000)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis came back empty: make the group again
                self._group_ready = False
                return
            raise
        done = []
        for entry_id, fields in _entries(replies):
            done.append(entry_id)
            try:
                event = ViewerEvent.from_fields(unseal(self._key, fields.get(b"e")))
            except Unsealed as exc:
                logger.warning("viewer event %s refused: %s", entry_id, exc)
                continue
            try:
                self._on_viewer_event(event)
            except Exception:
                logger.exception("viewer event %s could not be applied", entry_id)
        if done:
            await self._client.xack(VIEWERS, GROUP, *done)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()


def _entries(replies: Any) -> list[tuple[Any, dict[bytes, Any]]]:
    """The (id, fields) of an XREADGROUP reply; anything else is no entries."""
    found: list[tuple[Any, dict[bytes, Any]]] = []
    if not isinstance(replies, list):
        return found
    for stream in replies:
        if not isinstance(stream, list | tuple) or len(stream) != 2 \
                or not isinstance(stream[1], list):
            continue
        for item in stream[1]:
            if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], dict):
                found.append((item[0], item[1]))
    return found


class RedisEdge:
    """An edge's side: its heartbeat, the origin's events, its viewer events."""

    def __init__(self, url: str, key: bytes, entry: Callable[[], NodeEntry],
                 on_revoked: Callable[[str, str], None],
                 on_ended: Callable[[str], None]) -> None:
        self._client = connect(url)
        self._key = key
        self._entry = entry
        self._events = OriginEvents(key, on_revoked, on_ended)
        self.revoked = self._events.revoked
        self.ended = self._events.ended
        self._buffer: collections.deque[str] = collections.deque(maxlen=MAX_BUFFERED)
        self._wake = asyncio.Event()
        self._report: str | None = None  # the latest link report not yet sent
        self._report_ready = asyncio.Event()
        self._tasks = [asyncio.create_task(_forever("heartbeat", self._beat)),
                       asyncio.create_task(_forever("origin events", self._listen)),
                       asyncio.create_task(_forever("viewer events", self._send_viewers)),
                       asyncio.create_task(_forever("link reports", self._send_links))]

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def _beat(self) -> None:
        entry = self._entry()
        await self._client.set(NODE_PREFIX + entry.name, seal(self._key, entry.to_fields()),
                               px=int(ENTRY_TTL * 1000))
        await asyncio.sleep(HEARTBEAT)

    async def _listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(EVENTS)
            # Subscribed first, then read what was said before: nothing falls between.
            for name in (REVOKED, ENDED):
                known: dict[Any, Any] = await self._client.hgetall(name)  # type: ignore[misc]
                for raw in known.values():
                    self._apply(raw)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    self._apply(message.get("data"))
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _apply(self, raw: object) -> None:
        self._events.apply(raw)

    def viewer_event(self, event: ViewerEvent) -> None:
        """Queue a viewer event for the origin (sent in order, kept while
        Redis is away)."""
        if len(self._buffer) == self._buffer.maxlen:
            logger.error("viewer events: %d held while Redis is away; the oldest is dropped",
                         MAX_BUFFERED)
        self._buffer.append(seal(self._key, event.to_fields()))
        self._wake.set()

    def link_report(self, report: LinkReport) -> None:
        """Send the edge's rooms' links to the origin (only the latest is
        kept while Redis is away: it replaces the earlier)."""
        self._report = seal(self._key, report.to_fields())
        self._report_ready.set()

    async def _send_links(self) -> None:
        while self._report is None:
            self._report_ready.clear()
            await self._report_ready.wait()
        text = self._report
        await self._client.publish(LINKS, text)
        if self._report is text:
            self._report = None

    async def _send_viewers(self) -> None:
        while not self._buffer:
            self._wake.clear()
            await self._wake.wait()
        batch = list(itertools.islice(self._buffer, 200))
        # One transaction: the batch is in the stream whole or not at all.
        async with self._client.pipeline(transaction=True) as pipe:
            for text in batch:
                pipe.xadd(VIEWERS, {"e": text}, maxlen=1_000_000, approximate=True)
            await pipe.execute()
        for _ in batch:
            self._buffer.popleft()  # only once Redis has them

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

