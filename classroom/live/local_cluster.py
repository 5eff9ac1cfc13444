"""The cluster seam over the workers' sockets: ``serve --workers N`` on one box, no Redis.

The main process makes one ``socketpair(2)`` per worker before starting it
and hands the worker its end at exec (``pass_fds``); :class:`LocalOrigin`
holds the main process's ends, :class:`LocalEdge` a worker's. Of the three
ways a worker could reach its main process — this socketpair, a Unix socket
in the data folder's run directory, a loopback WebSocket authenticated by the
edge token — the socketpair is the simplest that is robust:

* **Nothing to find or to guard.** No path whose mode or stale file matters,
  no port, no token handed over, no listener another local user could
  connect to: the only two ends are the parent's and the child's.
* **Death is seen at once.** The kernel closes a dead worker's end (SIGKILL,
  a crash): the main process reads end-of-file and takes the worker out of
  the directory at that moment, where an entry in Redis waits for its time
  to live; the rooms it held leave the attendance log and the presence list
  then too (their connections were that process's), where an edge that
  dies never says they left. A worker whose main process died reads end-of-file as well (and
  has ``PR_SET_PDEATHSIG``).
* **No reconnecting.** A worker lives exactly as long as its socket, so
  there is no outage to buffer through and no "what did I miss" to read
  again: what the main process has told before a worker's socket was open
  is written into it first (the events of earlier workers and the
  invitations the catalog knows revoked).

The renewal is kept (an entry every ``HEARTBEAT``, dropped when older than
``ENTRY_TTL``), so a worker that is alive but stuck — its loop blocked, no
longer serving — leaves the directory as an edge would.

Each frame is a line, ``<channel> <sealed text>\\n``, with the channels of
the Redis transport: ``node`` (a worker's entry), ``event`` (the origin's
events: revoked, ended, and whatever kind ``OriginEvents`` learns) and
``viewer`` (a worker's viewer events), and ``links`` (a worker's link
report every 2 s, for the wall and ``/metrics``). The sealed texts are the ones Redis
carries, made and read by the same code in ``cluster.py``, and carried here
unopened, so a new kind of event needs no change in this module; a new
channel from the workers (a report of their own) is one
:meth:`LocalOrigin.listen` at the main process and one
:meth:`LocalEdge.send` at the worker. They stay
sealed on a private socket: one format for both transports, and a line that
does not verify is refused (logged, rate-limited per worker) wherever it
came from. A sealed text has no newline (its JSON escapes them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from classroom.live.cluster import (
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
    wall_now,
)

logger = logging.getLogger(__name__)

# A line's bytes at most: a directory entry or an event is at most 8192
# characters, but a report a worker sends every few seconds may name
# thousands of rooms.
MAX_LINE = 8 * 1024 * 1024
SENT_MEMORY = 3.0  # seconds a redirect counts in a worker's load (as redis_cluster's)
REFUSAL_LOG_EVERY = 100  # a worker's refused lines of a kind: the first, then one in this many
NODE, EVENT, VIEWER = b"node", b"event", b"viewer"
LINKS = "links"  # the workers' link reports, a channel of their own (LocalOrigin.listen)


def frame(channel: bytes, text: str) -> bytes:
    return channel + b" " + text.encode("utf-8") + b"\n"


@dataclass
class _Worker:
    """A worker's socket at the main process, and what it last said."""

    number: int
    writer: asyncio.StreamWriter
    entry: NodeEntry | None = None
    renewed: float = 0.0  # monotonic time of its last entry
    # Lines refused, by what was wrong (a few fixed kinds: a flood of garbage
    # costs a log line per kind and hundred, and no memory).
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: collections.deque[float] = field(default_factory=collections.deque)
    # Its viewers connected now (resource → their "open"): closed for it if it dies.
    viewers: dict[str, ViewerEvent] = field(default_factory=dict)


class LocalOrigin:
    """The main process's side: the workers' directory, events to them,
    their viewer events (a :class:`~classroom.live.cluster.Cluster`)."""

    def __init__(self, key: bytes, on_viewer_event: Callable[[ViewerEvent], None],
                 revoked: Iterable[tuple[str, str]] = (),
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = wall_now) -> None:
        self._key = key
        self._on_viewer_event = on_viewer_event
        self._clock = clock
        self._wall_clock = wall_clock
        self._workers: dict[int, _Worker] = {}
        self._numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._origins: dict[str, None] = {}
        # Every event told, keyed as Redis's hashes are: written first into
        # each worker's socket, so a worker started later knows them too.
        self._told: dict[tuple[str, str], str] = {}
        self._listeners: dict[bytes, Callable[[bytes], None]] = {}
        # The workers' link reports (the wall's figures and /metrics' counters
        # of their rooms), on a channel of their own, as edges' on Redis.
        self.links = LinkBoard(key)
        self.listen(LINKS, self._link_report)
        for session_id, invitation_id in revoked:
            self._told[("revoked", invitation_id)] = origin_event(
                key, "revoked", session_id, invitation_id)

    def add_worker(self, end: socket.socket) -> None:
        """Serve a worker over ``end``, the main process's end of its socketpair."""
        task = asyncio.create_task(self._serve(end))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def listen(self, channel: str, receive: Callable[[bytes], None]) -> None:
        """Hand every line of ``channel`` from any worker to ``receive``: its
        sealed text, unopened (``receive`` verifies it and logs a refusal)."""
        if channel.encode() in (NODE, VIEWER, EVENT) or not channel.isalpha():
            raise ValueError(f"not a channel of its own: {channel!r}")
        self._listeners[channel.encode()] = receive

    def _link_report(self, raw: bytes) -> None:
        self.links.receive(raw)

    def edge_links(self) -> list[LinkReport]:
        return self.links.reports()

    def retired_edge_totals(self) -> dict[str, float]:
        return dict(self.links.retired)

    @property
    def connected(self) -> int:
        return len(self._workers)

    @property
    def refused(self) -> collections.Counter[str]:
        """Lines the connected workers sent that were refused, by kind."""
        return sum((worker.refused for worker in self._workers.values()),
                   collections.Counter())

    # ------------------------------------------------------------ directory
    def healthy_edges(self) -> list[NodeEntry]:
        now = self._clock()
        entries = []
        for worker in self._workers.values():
            if worker.entry is None or now - worker.renewed > ENTRY_TTL:
                continue
            while worker.sent and worker.sent[0] < now - SENT_MEMORY:
                worker.sent.popleft()
            entries.append(dataclasses.replace(worker.entry,
                                               load=worker.entry.load + len(worker.sent)))
        return entries

    def sent(self, entry: NodeEntry) -> None:
        for worker in self._workers.values():
            if worker.entry is not None and worker.entry.name == entry.name:
                worker.sent.append(self._clock())

    def edge_origins(self) -> list[str]:
        return list(self._origins)

    # --------------------------------------------------------------- events
    def session_ended(self, session_id: str) -> None:
        self._tell(("ended", session_id), origin_event(self._key, "ended", session_id))

    def invitation_revoked(self, session_id: str, invitation_id: str) -> None:
        self._tell(("revoked", invitation_id),
                   origin_event(self._key, "revoked", session_id, invitation_id))

    def _tell(self, key: tuple[str, str], text: str) -> None:
        self._told[key] = text
        for worker in self._workers.values():
            if not worker.writer.is_closing():
                # The socket's buffer, not an await: a slow worker never holds a request.
                worker.writer.write(frame(EVENT, text))

    # -------------------------------------------------------------- a worker
    async def _serve(self, end: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=end, limit=MAX_LINE)
        worker = _Worker(next(self._numbers), writer)
        self._workers[worker.number] = worker
        try:
            for text in list(self._told.values()):
                writer.write(frame(EVENT, text))
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: asyncio drops it
                    self._refuse(worker, "line", f"a line over {MAX_LINE} bytes")
                    continue
                if not line:
                    break
                self._take(worker, line)
        except (ConnectionError, OSError) as exc:
            logger.warning("worker %s: its socket failed: %s", self._name(worker), exc)
        finally:
            del self._workers[worker.number]
            logger.info("worker %s left the directory (its socket closed)",
                        self._name(worker))
            writer.close()
            self._left(worker)

    def _left(self, worker: _Worker) -> None:
        """A worker is gone (killed, crashed, stopped): the viewers it still
        held were its own connections, so they have left now too."""
        if worker.viewers:
            logger.warning("worker %s: %d viewer(s) closed with it", self._name(worker),
                           len(worker.viewers))
        at = self._wall_clock()
        for opened in list(worker.viewers.values()):
            self._apply(worker, dataclasses.replace(opened, event="close",
                                                    at=max(at, opened.at)))

    def _name(self, worker: _Worker) -> str:
        return worker.entry.name if worker.entry is not None else f"#{worker.number}"

    def _take(self, worker: _Worker, line: bytes) -> None:
        channel, _, text = line.rstrip(b"\n").partition(b" ")
        if channel == NODE:
            try:
                entry = NodeEntry.from_fields(unseal(self._key, text))
            except Unsealed as exc:
                self._refuse(worker, "entry", str(exc))
                return
            if any(other.entry is not None and other.entry.name == entry.name
                   for other in self._workers.values() if other is not worker):
                self._refuse(worker, "name", f"the name {entry.name!r} is another worker's")
                return
            worker.entry, worker.renewed = entry, self._clock()
            self._origins[entry.origin] = None
        elif channel == VIEWER:
            try:
                event = ViewerEvent.from_fields(unseal(self._key, text))
            except Unsealed as exc:
                self._refuse(worker, "viewer event", str(exc))
                return
            self._apply(worker, event)
        elif channel in self._listeners:
            try:
                self._listeners[channel](text)
            except Exception:
                logger.exception("worker %s: a line of %r could not be taken",
                                 self._name(worker), channel)
        else:
            self._refuse(worker, "channel", f"unknown channel {channel[:20]!r}")

    def _apply(self, worker: _Worker, event: ViewerEvent) -> None:
        if event.event == "open":
            worker.viewers[event.resource] = event
        else:
            worker.viewers.pop(event.resource, None)
        try:
            self._on_viewer_event(event)
        except Exception:
            logger.exception("worker %s: a viewer event could not be applied",
                             self._name(worker))

    def _refuse(self, worker: _Worker, kind: str, why: str) -> None:
        count = worker.refused[kind]
        if count % REFUSAL_LOG_EVERY == 0:
            logger.warning("worker %s: a line refused (%s: %s); %d such so far",
                           self._name(worker), kind, why, count + 1)
        worker.refused[kind] = count + 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LocalEdge:
    """A worker's side: its entry, the main process's events, its viewer events."""

    def __init__(self, end: socket.socket, key: bytes, entry: Callable[[], NodeEntry],
                 on_revoked: Callable[[str, str], None],
                 on_ended: Callable[[str], None]) -> None:
        self._key = key
        self._entry = entry
        self._events = OriginEvents(key, on_revoked, on_ended)
        self.revoked = self._events.revoked
        self.ended = self._events.ended
        self._buffer: collections.deque[bytes] = collections.deque()  # frames to send
        self._wake = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self.lost = asyncio.Event()  # set when the main process's end closed
        self._tasks = [asyncio.create_task(self._run(end))]

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def viewer_event(self, event: ViewerEvent) -> None:
        """Queue a viewer event for the main process (sent in order)."""
        self.send("viewer", seal(self._key, event.to_fields()))

    def link_report(self, report: LinkReport) -> None:
        """Send the worker's rooms' links to the main process."""
        self.send(LINKS, seal(self._key, report.to_fields()))

    def send(self, channel: str, text: str) -> None:
        """Queue a sealed text on ``channel`` for the main process (sent in
        the order queued, whatever the channel)."""
        self._buffer.append(frame(channel.encode(), text))
        self._wake.set()

    async def _run(self, end: socket.socket) -> None:
        try:
            reader, self._writer = await asyncio.open_connection(sock=end, limit=MAX_LINE)
            self._tasks += [asyncio.create_task(self._beat(self._writer)),
                            asyncio.create_task(self._send_viewers(self._writer))]
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    logger.warning("main process: a line over %d bytes refused", MAX_LINE)
                    continue
                if not line:
                    break
                channel, _, text = line.rstrip(b"\n").partition(b" ")
                if channel == EVENT:
                    self._events.apply(text)
                else:
                    logger.warning("main process: a line of unknown channel %r refused",
                                   channel[:20])
        except (ConnectionError, OSError) as exc:
            logger.error("the socket to the main process failed: %s", exc)
        else:
            logger.error("the main process closed this worker's socket")
        self.lost.set()

    async def _beat(self, writer: asyncio.StreamWriter) -> None:
        while not writer.is_closing():
            try:
                writer.write(frame(NODE, seal(self._key, self._entry().to_fields())))
                await writer.drain()
            except (ConnectionError, OSError):
                return
            await asyncio.sleep(HEARTBEAT)

    async def _send_viewers(self, writer: asyncio.StreamWriter) -> None:
        while True:
            while not self._buffer:
                self._wake.clear()
                await self._wake.wait()
            batch = list(itertools.islice(self._buffer, 200))
            try:
                writer.writelines(batch)
                await writer.drain()
            except (ConnectionError, OSError):
                return  # the main process is gone: nobody to count them
            for _ in batch:
                self._buffer.popleft()  # only once the socket took them

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            self._writer.close()
