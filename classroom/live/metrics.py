"""Prometheus metrics (``/metrics``): what the relay is doing, read when scraped.

Nothing is counted per packet for this. A scrape walks the live rooms and
reads the counters the relay keeps anyway: each viewer's writer and RTCP
feedback (``Viewer.stats()``), the slots' ingress statistics and keyframe
requesters. The metric names and their meaning are in docs/metrics.md.

Prometheus counters never go down, but viewers and rooms come and go. When a
viewer leaves, its final totals are added to the *retired* totals (a room's
own counters likewise once its session has ended and its peers are gone), so
every ``*_total`` is retired + live, and each viewer is counted exactly once:
at any moment between two awaits a viewer is either in its room, closing
(waiting for its final numbers) or retired.

At an origin with district edges (or workers), the edges' viewers are in the
sums too: each edge reports its rooms' counters every 2 s
(``classroom/live/cluster.py``, link reports), and those of a viewer that
left a report, or of an edge that vanished, are retired at the origin the
same way (what a viewer was sent after its edge's last report is not
counted). ``zhixing_node_viewers_connected{node}`` says where the viewers are.

The HTTP side (who may read it, the separate listener) is web/api/metrics.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from classroom.live.cluster import LinkReport
from streaming.broadcast import Broadcast
from streaming.peers import Viewer

logger = logging.getLogger(__name__)

LAG_INTERVAL = 0.5  # seconds between two wake-ups of the event-loop lag probe
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RATE_MIN_WINDOW = 1.0  # seconds: scrapes closer than this keep the previous egress rate

# name: (help, key in the per-viewer totals); all are counters (``*_total``).
VIEWER_COUNTERS = {
    "zhixing_egress_packets": "RTP packets sent to viewers (without retransmissions)",
    "zhixing_egress_bytes": "RTP payload bytes sent to viewers",
    "zhixing_egress_frames": "frames sent to viewers (audio and video)",
    "zhixing_viewer_nacked_packets": "packets the viewers asked again for (NACK)",
    "zhixing_viewer_retransmitted_packets": "packets sent again to viewers (RTX)",
    "zhixing_viewer_packets_lost": "packets the viewers reported lost (RTCP receiver reports)",
    "zhixing_viewer_keyframe_requests": "keyframe requests (PLI/FIR) received from viewers",
    "zhixing_viewer_overflows": "frames dropped because a viewer's socket was full",
}
# Counters kept by a room, for the room or per kind of media ("name|kind").
ROOM_COUNTERS = {
    "zhixing_plis_sent_upstream": "keyframe requests sent to the slots' sources "
                                  "(PLIs to the publisher), after coalescing",
    "zhixing_publishers_accepted": "publishers (WHIP) whose offer was answered",
    "zhixing_ingress_bytes|video": "encoded bytes received from the sources, by kind",
    "zhixing_ingress_bytes|audio": "encoded bytes received from the sources, by kind",
    "zhixing_ingress_frames|video": "encoded frames received from the sources, by kind",
    "zhixing_ingress_frames|audio": "encoded frames received from the sources, by kind",
}

Totals = dict[str, float]


def viewer_totals(stats: Mapping[str, Any]) -> Totals:
    """A viewer's counters (``Viewer.stats()``), summed over its tracks."""
    totals = dict.fromkeys(VIEWER_COUNTERS, 0.0)
    for entry in stats.values():
        if not isinstance(entry, dict):
            continue  # id, connection, tag
        totals["zhixing_egress_packets"] += entry.get("packets_sent") or 0
        totals["zhixing_egress_bytes"] += entry.get("bytes_sent") or 0
        totals["zhixing_egress_frames"] += entry.get("frames_sent") or 0
        totals["zhixing_viewer_nacked_packets"] += entry.get("nacks") or 0
        totals["zhixing_viewer_retransmitted_packets"] += entry.get("retransmitted") or 0
        totals["zhixing_viewer_packets_lost"] += max(0, entry.get("packets_lost") or 0)
        totals["zhixing_viewer_keyframe_requests"] += entry.get("plis") or 0
        totals["zhixing_viewer_overflows"] += entry.get("overflows") or 0
    return totals


def room_totals(room: Broadcast) -> Totals:
    totals = dict.fromkeys(ROOM_COUNTERS, 0.0)
    totals["zhixing_publishers_accepted"] = room.publishers_accepted
    for slot in room.slots.values():
        totals["zhixing_plis_sent_upstream"] += slot.video.keyframes.sent
        totals["zhixing_ingress_bytes|video"] += slot.video.stats.bytes
        totals["zhixing_ingress_frames|video"] += slot.video.stats.frames
        totals["zhixing_ingress_bytes|audio"] += slot.audio.stats.bytes
        totals["zhixing_ingress_frames|audio"] += slot.audio.stats.frames
    return totals


def _add(into: Totals, more: Mapping[str, float]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0.0) + value


class RelayMetrics(Collector):
    """The process's metrics registry and the collector of the relay's state.

    ``watch(room)`` must see every room as it is created (the session
    registry's room listeners); ``refresh()`` reads the rooms (async: viewer
    statistics), after which ``collect()`` serves what it read.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        self.loop_lag = Histogram(
            "zhixing_event_loop_lag_seconds",
            "how late the event loop woke a periodic sleep (every "
            f"{LAG_INTERVAL} s): time the relay could not react",
            buckets=LAG_BUCKETS, registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, open files
        self.registry.register(self)
        # What the relay has besides its rooms (set by the application).
        self.recordings_running: Callable[[], int] = lambda: 0
        self.replays_playing: Callable[[], int] = lambda: 0
        self.recording: Callable[[str], bool] = lambda session_id: False
        # The edges' viewers (set by the application with a cluster).
        self.node_name = "origin"
        self.edge_links: Callable[[], list[LinkReport]] = list
        self.retired_edge_totals: Callable[[], Mapping[str, float]] = dict
        self._rooms: list[Broadcast] = []
        self._closing: dict[int, Viewer] = {}  # id(viewer): viewers gone, not yet retired
        self._retired_viewers = dict.fromkeys(VIEWER_COUNTERS, 0.0)
        self._retired_rooms = dict.fromkeys(ROOM_COUNTERS, 0.0)
        self._connections = 0
        self._lost_floor = 0.0  # the last packets-lost total served
        self._families: list[Metric] = []
        self._egress: tuple[float, float, float] | None = None  # (bytes, at, bits/s)
        self._retire_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._closed = False
        self.listen_addresses: list[Any] = []  # where the separate listener is bound

    # ------------------------------------------------------------ rooms and viewers

    def watch(self, room: Broadcast) -> None:
        if room not in self._rooms:
            self._rooms.append(room)
            room.viewer_listeners.append(self._viewer_event)

    def _viewer_event(self, viewer: Viewer, event: str) -> None:
        if self._closed:
            return
        if event == "connected":
            self._connections += 1
        elif event == "closed":
            self._closing[id(viewer)] = viewer
            if self._retire_task is None or self._retire_task.done():
                self._retire_task = asyncio.get_running_loop().create_task(self._retire())

    async def _retire(self) -> None:
        """Add the final numbers of the viewers that left to the retired totals."""
        while self._closing:
            key, viewer = next(iter(self._closing.items()))
            try:
                totals = viewer_totals(await viewer.stats())
            except Exception:
                logger.exception("final statistics of %s", viewer)
                totals = {}
            # The pop and the addition happen together (no await between them).
            if self._closing.pop(key, None) is viewer:
                _add(self._retired_viewers, totals)

    def _live_rooms(self) -> list[Broadcast]:
        """The watched rooms; an ended room with nobody left in it is retired."""
        for room in list(self._rooms):
            if room.closed and not room.viewers and room.publisher is None:
                self._rooms.remove(room)
                _add(self._retired_rooms, room_totals(room))
        return list(self._rooms)

    # ------------------------------------------------------------ reading

    async def refresh(self) -> None:
        """Read the relay's state for the next ``collect()``."""
        rooms = self._live_rooms()
        present: list[tuple[Broadcast | None, Viewer]] = [
            (room, viewer) for room in rooms for viewer in list(room.viewers.values())]
        present += [(None, viewer) for viewer in list(self._closing.values())]
        read: list[tuple[Broadcast | None, Viewer, dict[str, Any]]] = []
        for room, viewer in present:
            read.append((room, viewer, await viewer.stats()))
        # No await from here on: each viewer read above is now still in its
        # room, closing, or retired (and then in the retired totals).
        rooms = self._live_rooms()
        counters = dict(self._retired_viewers)
        _add(counters, self._retired_rooms)
        for room, viewer, stats in read:
            if (room is not None and room.viewers.get(viewer.resource_id) is viewer) \
                    or self._closing.get(id(viewer)) is viewer:
                _add(counters, viewer_totals(stats))
        for room in rooms:
            _add(counters, room_totals(room))
        reports = self.edge_links()
        edge_counters = dict(self.retired_edge_totals())
        for report in reports:
            for link in report.viewers:
                _add(edge_counters, link.totals)
        _add(counters, {k: v for k, v in edge_counters.items() if k in VIEWER_COUNTERS})
        counters["zhixing_viewer_connections"] = self._connections
        # A receiver report's cumulative loss may be revised down (duplicates
        # arrived): what was served stays the floor of that one counter.
        lost = "zhixing_viewer_packets_lost"
        counters[lost] = self._lost_floor = max(counters[lost], self._lost_floor)
        self._families = self._counter_families(counters) + self._gauge_families(
            rooms, counters, reports)

    def _egress_rate(self, total_bytes: float) -> float:
        now = self._clock()
        previous = self._egress
        if previous is None:
            rate = 0.0
        elif now - previous[1] < RATE_MIN_WINDOW:
            return previous[2]
        else:
            rate = (total_bytes - previous[0]) * 8 / (now - previous[1])
        self._egress = (total_bytes, now, rate)
        return rate

    def _counter_families(self, counters: Totals) -> list[Metric]:
        helps = {**VIEWER_COUNTERS, **ROOM_COUNTERS,
                 "zhixing_viewer_connections": "viewers that reached 'connected'"}
        families: dict[str, CounterMetricFamily] = {}
        for key in sorted(helps):
            name, _, kind = key.partition("|")
            if not kind:
                families[name] = CounterMetricFamily(name, helps[key], value=counters[key])
                continue
            if name not in families:
                families[name] = CounterMetricFamily(name, helps[key], labels=["kind"])
            families[name].add_metric([kind], counters[key])
        return list(families.values())

    def _gauge_families(self, rooms: list[Broadcast], counters: Totals,
                        reports: list[LinkReport]) -> list[Metric]:
        def gauge(name: str, help_text: str, value: float | None = None,
                  labels: Sequence[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, help_text, value=value, labels=labels)

        on_air = viewers = publishers = 0
        ingress = {"video": 0.0, "audio": 0.0}
        session_viewers = gauge("zhixing_session_viewers_connected",
                                "connected viewers of a session (sessions with activity only)",
                                labels=["session"])
        session_on_air = gauge("zhixing_session_on_air",
                               "1 while a session's program is on air (sessions with "
                               "activity only)", labels=["session"])
        session_recording = gauge("zhixing_session_recording",
                                  "1 while a session is being recorded (sessions with "
                                  "activity only)", labels=["session"])
        on_edges: dict[str, int] = {}  # session id -> its viewers on edges
        for report in reports:
            for link in report.viewers:
                on_edges[link.session_id] = on_edges.get(link.session_id, 0) + 1
        own = 0
        for room in rooms:
            if room.closed:
                continue
            connected = sum(1 for v in room.viewers.values()
                            if v.connection_state == "connected")
            own += connected
            connected += on_edges.get(room.broadcast_id, 0)
            live = room.program_on_air
            recording = self.recording(room.broadcast_id)
            on_air += live
            publisher = room.publisher
            publishers += publisher is not None and publisher.connection_state == "connected"
            ingress["video"] += room.program.video.stats.snapshot()["bitrate"]
            ingress["audio"] += room.program.audio.stats.snapshot()["bitrate"]
            if connected or live or recording:
                session_viewers.add_metric([room.broadcast_id], connected)
                session_on_air.add_metric([room.broadcast_id], int(live))
                session_recording.add_metric([room.broadcast_id], int(recording))
        viewers = own + sum(on_edges.values())
        ingress_family = gauge("zhixing_ingress_bits_per_second",
                               "bitrate received from the programs' sources, by kind",
                               labels=["kind"])
        for kind, rate in ingress.items():
            ingress_family.add_metric([kind], rate)
        nodes = gauge("zhixing_node_viewers_connected",
                      "connected WHEP viewers of each relay: this one and its edges or workers",
                      labels=["node"])
        nodes.add_metric([self.node_name], own)
        for report in sorted(reports, key=lambda r: r.node):
            nodes.add_metric([report.node], len(report.viewers))
        return [
            gauge("zhixing_rooms_open", "rooms in memory (sessions not ended)",
                  sum(1 for room in rooms if not room.closed)),
            gauge("zhixing_sessions_live", "sessions whose program is on air", on_air),
            gauge("zhixing_publishers_connected", "connected WHIP publishers", publishers),
            gauge("zhixing_viewers_connected", "connected WHEP viewers", viewers),
            gauge("zhixing_recordings_running", "recordings being written",
                  self.recordings_running()),
            gauge("zhixing_replays_playing", "replay sessions (重播) playing",
                  self.replays_playing()),
            ingress_family,
            gauge("zhixing_egress_bits_per_second",
                  "RTP payload bitrate sent to viewers, since the previous scrape",
                  self._egress_rate(counters["zhixing_egress_bytes"])),
            session_viewers, session_on_air, session_recording, nodes,
        ]

    def collect(self) -> Iterable[Metric]:
        return list(self._families)

    async def exposition(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)

    # ------------------------------------------------------------ event-loop lag

    async def _probe_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self.loop_lag.observe(max(0.0, loop.time() - started - LAG_INTERVAL))

    def start(self) -> None:
        self._closed = False
        if self._lag_task is None:
            self._lag_task = asyncio.get_running_loop().create_task(self._probe_loop_lag())

    async def close(self) -> None:
        self._closed = True
        for task in (self._lag_task, self._retire_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lag_task = self._retire_task = None
