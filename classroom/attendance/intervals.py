"""Attendance (出勤) from connection intervals: the pure computation, no I/O.

A site (分课堂) attends a session when the union of its connections, clipped
to the session's window, covers at least the session's threshold (a percent)
of that window. Person-times (人次) are the sum of the latest headcounts the
attended rooms reported. Nothing here reads a clock: "now" is an argument, so
the units can replay any sequence of joins and leaves.

Invariant: an interval is ``(connected_at, disconnected_at)`` in unix seconds;
``disconnected_at`` is None while the connection is still open, and such an
interval counts up to ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_THRESHOLD = 80
# Tolerance of the threshold comparison: 80 % of 3 h is 8640 s, and a room that
# was there exactly 8640 s counts even if float arithmetic says 8639.9999999.
EPSILON = 1e-6

Interval = tuple[float, float | None]
Span = tuple[float, float]


@dataclass(frozen=True)
class Window:
    """The stretch of time attendance is measured against."""

    start: float
    end: float
    scheduled: bool  # the session's schedule (else its actual start and end)

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def session_window(session: Mapping[str, Any], now: float,
                   first_connection: float | None = None) -> Window | None:
    """The scheduled window; for what the schedule leaves open, the actual one.

    Start: ``scheduled_start``, else ``started_at``, else the first room's
    connection (a session nobody pressed "start" for). End: ``scheduled_end``,
    else ``ended_at``, else ``now`` (still going). None before anything began.
    """
    start = _first(session.get("scheduled_start"), session.get("started_at"), first_connection)
    if start is None:
        return None
    end = _first(session.get("scheduled_end"), session.get("ended_at"), now)
    assert end is not None
    scheduled = session.get("scheduled_start") is not None \
        and session.get("scheduled_end") is not None
    return Window(float(start), max(float(start), float(end)), scheduled)


def _first(*values: Any) -> float | None:
    for value in values:
        if value is not None:
            return float(value)
    return None


def union(intervals: Iterable[Interval], now: float) -> list[Span]:
    """Overlapping and touching intervals merged; open ones end at ``now``.

    A room that reconnects before its old connection timed out is counted
    once for the overlap.
    """
    spans = sorted((start, now if end is None else end) for start, end in intervals)
    merged: list[Span] = []
    for start, end in spans:
        if end < start:
            continue
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def clip(spans: Iterable[Span], window: Window) -> list[Span]:
    """The parts of ``spans`` inside the window (empty parts dropped)."""
    clipped = []
    for start, end in spans:
        start, end = max(start, window.start), min(end, window.end)
        if end > start:
            clipped.append((start, end))
    return clipped


def is_attended(connected: float, duration: float, threshold: float) -> bool:
    """Connected for at least ``threshold`` percent of ``duration``."""
    return duration > 0 and connected * 100 >= threshold * duration - EPSILON


@dataclass(frozen=True)
class SiteAttendance:
    """One site's attendance of one session."""

    spans: tuple[Span, ...]  # connected, merged and clipped to the window
    connected_seconds: float
    share: float | None  # of the window's duration, 0 … 1; None without a window
    attended: bool
    headcount: int | None  # the latest report
    connections: int  # how many times it connected (each WHEP resource once)
    open: bool  # connected right now

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    @property
    def person_times(self) -> int:
        return (self.headcount or 0) if self.attended else 0


def site_attendance(intervals: Sequence[Interval], window: Window | None, threshold: float,
                    headcount: int | None, now: float) -> SiteAttendance:
    if window is None:
        spans: list[Span] = []
    else:
        spans = clip(union(intervals, now), window)
    connected = sum(end - start for start, end in spans)
    duration = window.duration if window is not None else 0.0
    share = min(1.0, connected / duration) if duration > 0 else None
    return SiteAttendance(
        spans=tuple(spans),
        connected_seconds=connected,
        share=share,
        attended=is_attended(connected, duration, threshold),
        headcount=headcount,
        connections=len(intervals),
        open=any(end is None for _, end in intervals),
    )


@dataclass
class Totals:
    """Sums over sites (of one session, or of many sessions in a report)."""

    invited: int = 0  # (session, site) pairs
    connected: int = 0  # ... that were connected at some time in the window
    attended: int = 0
    person_times: int = 0
    attended_without_headcount: int = 0
    sessions: set[str] = field(default_factory=set)
    sites: set[int] = field(default_factory=set)

    def add(self, site: SiteAttendance, session_id: str = "", site_id: int = 0) -> None:
        self.invited += 1
        self.connected += bool(site.spans)
        self.attended += site.attended
        self.person_times += site.person_times
        self.attended_without_headcount += site.attended and site.headcount is None
        self.sessions.add(session_id)
        self.sites.add(site_id)

    def as_dict(self) -> dict[str, int]:
        return {"sessions": len(self.sessions), "sites": len(self.sites),
                "rooms_invited": self.invited, "rooms_connected": self.connected,
                "rooms_attended": self.attended, "person_times": self.person_times,
                "attended_without_headcount": self.attended_without_headcount}


def rooms_connected(sites: Iterable[Sequence[Span]]) -> list[tuple[float, int]]:
    """How many rooms were connected over time: ``(time, count from then on)``.

    Each site's spans must already be merged (a site counts once however many
    viewers it has); the last step is back to 0 at the end of the last span.
    """
    changes: dict[float, int] = {}
    for spans in sites:
        for start, end in spans:
            changes[start] = changes.get(start, 0) + 1
            changes[end] = changes.get(end, 0) - 1
    steps: list[tuple[float, int]] = []
    count = 0
    for time in sorted(changes):
        count += changes[time]
        if steps and steps[-1][1] == count:
            continue
        steps.append((time, count))
    return steps
