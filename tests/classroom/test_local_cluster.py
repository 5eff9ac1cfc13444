"""The workers' cluster over real socketpairs: the directory and its health,
events both ways, and what is refused (classroom/live/local_cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest

from classroom.live.cluster import (
    ENTRY_TTL,
    LINK_QUALITY,
    LinkReport,
    NodeEntry,
    ViewerEvent,
    ViewerLink,
    cluster_key,
    origin_event,
    seal,
)
from classroom.live.local_cluster import MAX_LINE, LocalEdge, LocalOrigin

KEY = cluster_key(b"s" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


class Worker:
    """A LocalEdge as a worker holds it, and what it was told."""

    def __init__(self, origin: LocalOrigin, name: str, load: int = 0) -> None:
        self.name, self.load = name, load
        self.revoked: list[tuple[str, str]] = []
        self.ended: list[str] = []
        mine, theirs = socket.socketpair()
        origin.add_worker(mine)
        self.edge = LocalEdge(theirs, KEY, self.entry, lambda s, i: self.revoked.append((s, i)),
                              self.ended.append)

    def entry(self) -> NodeEntry:
        return NodeEntry(self.name, f"http://127.0.0.1:{8080 + int(self.name[-1])}", "*",
                         self.load)


@contextlib.asynccontextmanager
async def origin_with(clock: Clock | None = None, revoked: list[tuple[str, str]] | None = None
                      ) -> AsyncIterator[tuple[LocalOrigin, list[ViewerEvent]]]:
    events: list[ViewerEvent] = []
    origin = LocalOrigin(KEY, events.append, revoked or [],
                         **({"clock": clock} if clock else {}))
    try:
        yield origin, events
    finally:
        await origin.close()


def names(origin: LocalOrigin) -> list[str]:
    return sorted(entry.name for entry in origin.healthy_edges())


async def test_workers_enter_the_directory_with_their_load_and_leave_when_their_socket_closes(
        ) -> None:
    async with origin_with() as (origin, _):
        one, two = Worker(origin, "worker-1", load=3), Worker(origin, "worker-2")
        try:
            await until(lambda: names(origin) == ["worker-1", "worker-2"], "both entries")
            loads = {entry.name: entry.load for entry in origin.healthy_edges()}
            assert loads == {"worker-1": 3, "worker-2": 0}
            worker_two = next(e for e in origin.healthy_edges() if e.name == "worker-2")
            origin.sent(worker_two)
            origin.sent(worker_two)  # two rooms sent, not yet in its entry
            assert {e.name: e.load for e in origin.healthy_edges()}["worker-2"] == 2
            assert origin.edge_origins() == ["http://127.0.0.1:8081", "http://127.0.0.1:8082"]

            closed_at = time.monotonic()
            await one.edge.close()  # its end closes, as a killed worker's does
            await until(lambda: names(origin) == ["worker-2"], "worker-1 gone")
            assert time.monotonic() - closed_at < ENTRY_TTL  # at once, not after a TTL
            assert origin.connected == 1
        finally:
            await one.edge.close()
            await two.edge.close()


async def test_an_entry_not_renewed_within_its_ttl_leaves_the_directory() -> None:
    clock = Clock()
    async with origin_with(clock) as (origin, _):
        # A stuck worker: its socket open, one entry and no renewal after it.
        mine, theirs = socket.socketpair()
        theirs.setblocking(False)
        origin.add_worker(mine)
        try:
            entry = NodeEntry("worker-1", "http://127.0.0.1:8081", "*", 0)
            await asyncio.get_running_loop().sock_sendall(
                theirs, b"node " + seal(KEY, entry.to_fields()).encode() + b"\n")
            await until(lambda: names(origin) == ["worker-1"], "the entry")
            clock.now += ENTRY_TTL - 0.1
            assert names(origin) == ["worker-1"]
            clock.now += 0.2
            assert names(origin) == [] and origin.connected == 1
        finally:
            theirs.close()


async def test_events_reach_every_worker_and_a_later_worker_learns_what_was_said() -> None:
    async with origin_with(revoked=[("s0", "inv-old")]) as (origin, _):
        early = Worker(origin, "worker-1")
        late = None
        try:
            await until(lambda: early.revoked == [("s0", "inv-old")], "the catalog's revocation")
            origin.invitation_revoked("s1", "inv-1")
            origin.session_ended("s2")
            await until(lambda: early.ended == ["s2"], "the end")
            assert early.revoked == [("s0", "inv-old"), ("s1", "inv-1")]
            assert early.edge.revoked == {"inv-old", "inv-1"} and early.edge.ended == {"s2"}
            origin.invitation_revoked("s1", "inv-1")  # told twice: applied once
            late = Worker(origin, "worker-2")
            await until(lambda: late is not None and late.ended == ["s2"], "the backlog")
            assert sorted(late.revoked) == [("s0", "inv-old"), ("s1", "inv-1")]
            assert early.revoked == [("s0", "inv-old"), ("s1", "inv-1")]
        finally:
            await early.edge.close()
            if late is not None:
                await late.edge.close()


async def test_viewer_events_reach_the_main_process_in_order() -> None:
    async with origin_with() as (origin, events):
        worker = Worker(origin, "worker-1")
        try:
            sent = [ViewerEvent("s1", f"inv-{i % 3}", f"worker-1/r{i}", ("open", "close")[i % 2],
                                1_700_000_000.0 + i) for i in range(500)]
            for event in sent:
                worker.edge.viewer_event(event)
            await until(lambda: len(events) == len(sent), "every event")
            assert events == sent
            assert worker.edge.buffered == 0
        finally:
            await worker.edge.close()


async def test_a_sealed_event_of_a_kind_the_transport_does_not_know_is_carried_unopened(
        caplog: pytest.LogCaptureFixture) -> None:
    async with origin_with() as (origin, _):
        worker = Worker(origin, "worker-1")
        try:
            # A kind only cluster.OriginEvents reads: the transport carries the
            # text as it is and the shared reader says what it makes of it.
            origin._tell(("stats", "s1"), seal(KEY, {"k": "stats", "s": "s1"}))
            await until(lambda: "unknown kind 'stats'" in caplog.text, "the shared reader")
        finally:
            await worker.edge.close()


async def test_garbage_and_forgeries_from_a_worker_are_refused_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "classroom.live.local_cluster")
    async with origin_with() as (origin, events):
        genuine = Worker(origin, "worker-1")
        mine, theirs = socket.socketpair()
        theirs.setblocking(False)
        origin.add_worker(mine)
        loop = asyncio.get_running_loop()
        try:
            await until(lambda: names(origin) == ["worker-1"], "the genuine worker")
            other_key = cluster_key(b"t" * 32)
            lines = [
                b"garbage\n",
                b"\xff\xfe\x00 binary\n",
                b"node {\"name\": \"worker-9\"}\n",
                b"node " + seal(other_key, {"name": "worker-9", "url": "http://10.0.0.9:1",
                                            "district": "*", "load": 0}).encode() + b"\n",
                b"node " + seal(KEY, {"name": "worker 9", "url": "http://10.0.0.9:1",
                                      "district": "*", "load": 0}).encode() + b"\n",
                b"node " + seal(KEY, {"name": "worker-1", "url": "http://10.0.0.9:1",
                                      "district": "*", "load": 0}).encode() + b"\n",
                b"viewer " + seal(KEY, {"s": "s1", "e": "dance"}).encode() + b"\n",
                b"event " + origin_event(KEY, "ended", "s1").encode() + b"\n",
                b"node " + b"x" * (MAX_LINE + 10) + b"\n",
            ]
            for line in lines:
                await loop.sock_sendall(theirs, line)
            good = ViewerEvent("s1", "inv-1", "worker-9/r1", "open", 1_700_000_000.0)
            await loop.sock_sendall(theirs, b"viewer " + seal(KEY, good.to_fields()).encode()
                                    + b"\n")
            await until(lambda: events == [good], "the genuine event after the garbage")
            # None of it entered the directory: the name of another worker, the
            # forged and the malformed entries.
            assert names(origin) == ["worker-1"]
            refused = origin.refused
            # garbage, binary, an event (only the main process tells events) and
            # the rest of the line too long; unsealed, forged, a bad name.
            assert refused["channel"] >= 3 and refused["entry"] == 3, refused
            assert refused["name"] == 1 and refused["viewer event"] == 1, refused
            assert refused["line"] == 1, refused
            for kind in refused:  # the first of each kind is logged
                assert f"a line refused ({kind}: " in caplog.text
            assert "is another worker's" in caplog.text
        finally:
            theirs.close()
            await genuine.edge.close()


async def test_garbage_from_the_main_process_is_refused_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    mine, theirs = socket.socketpair()
    ended: list[str] = []
    edge = LocalEdge(theirs, KEY, lambda: NodeEntry("worker-1", "http://127.0.0.1:8081", "*", 0),
                     lambda s, i: None, ended.append)
    loop = asyncio.get_running_loop()
    mine.setblocking(False)
    try:
        for line in (b"hello\n", b"event nothing sealed\n",
                     b"event " + origin_event(cluster_key(b"t" * 32), "ended", "s9").encode()
                     + b"\n", b"event " + b"y" * (MAX_LINE + 10) + b"\n",
                     b"event " + origin_event(KEY, "ended", "s1").encode() + b"\n"):
            await loop.sock_sendall(mine, line)
        await until(lambda: ended == ["s1"], "the genuine event after the garbage")
        assert "origin event refused" in caplog.text
        assert "unknown channel" in caplog.text
        mine.close()
        await asyncio.wait_for(edge.lost.wait(), 5)
    finally:
        mine.close()
        await edge.close()


async def test_the_viewers_of_a_worker_that_dies_leave_with_it() -> None:
    async with origin_with() as (origin, events):
        worker = Worker(origin, "worker-1")
        try:
            stays = ViewerEvent("s1", "inv-1", "worker-1/r1", "open", 1_700_000_000.0)
            left = ViewerEvent("s1", "inv-2", "worker-1/r2", "open", 1_700_000_001.0)
            for event in (stays, left, ViewerEvent("s1", "inv-2", "worker-1/r2", "close",
                                                   1_700_000_002.0)):
                worker.edge.viewer_event(event)
            await until(lambda: len(events) == 3, "the worker's events")
            before = time.time()
            await worker.edge.close()  # its socket closes as a killed worker's does
            await until(lambda: len(events) == 4, "the closing of its last viewer")
            closed = events[3]
            assert (closed.invitation_id, closed.resource, closed.event) == \
                ("inv-1", "worker-1/r1", "close")
            assert before <= closed.at <= time.time()
        finally:
            await worker.edge.close()


async def test_a_channel_of_its_own_carries_a_report_unopened() -> None:
    """What a new report from the workers needs: one listen, one send."""
    async with origin_with() as (origin, _):
        received: list[bytes] = []
        origin.listen("usage", received.append)
        with pytest.raises(ValueError):
            origin.listen("viewer", received.append)  # the transport's own
        worker = Worker(origin, "worker-1")
        try:
            report = seal(KEY, {"node": "worker-1", "rooms": [{"i": f"inv-{n}", "loss": 0.01}
                                                              for n in range(20_000)]})
            assert len(report) > 400_000
            worker.edge.send("usage", report)
            await until(lambda: len(received) == 1, "the report")
            assert received == [report.encode()]
        finally:
            await worker.edge.close()


async def test_a_workers_link_report_reaches_the_main_process_board() -> None:
    """The wall's figures and /metrics' counters of a worker's rooms."""
    async with origin_with() as (origin, _):
        worker = Worker(origin, "worker-1")
        try:
            quality: dict[str, float | None] = dict.fromkeys(LINK_QUALITY, 0.0)
            quality["fraction_lost"] = 0.03
            link = ViewerLink("s1", "inv-1", "worker-1/r1", time.time(), quality,
                              {"zhixing_viewer_nacks_total": 4.0})
            worker.edge.link_report(LinkReport("worker-1", time.time(), (link,)))
            await until(lambda: bool(origin.edge_links()), "the link report")
            [report] = origin.edge_links()
            assert report.node == "worker-1"
            assert [v.quality["fraction_lost"] for v in report.viewers] == [0.03]
            # A forged report on the same channel changes nothing.
            forged = seal(cluster_key(b"x" * 32), LinkReport("worker-1", time.time(), ()
                                                             ).to_fields())
            worker.edge.send("links", forged)
            await asyncio.sleep(0.2)
            assert [len(r.viewers) for r in origin.edge_links()] == [1]
        finally:
            await worker.edge.close()
