"""The attendance log: each site's connections to a session, as the server saw
them (the WHEP resources' lifecycle, not what a page says), and the headcounts
rooms reported.

A room's viewer events arrive on the event loop in bursts (300 rooms at
9:00), so they are queued and written once a second in one transaction (one
disk sync, not 300). The same write stamps ``server_alive``; after a crash,
:meth:`AttendanceLog.recover` ends every interval left open at that last
stamp, so a crash costs at most a few seconds of presence instead of
counting hours of phantom presence. Readers call :meth:`flush` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from classroom.attendance import intervals as attendance
from classroom.db import Database
from streaming.broadcast import Broadcast
from streaming.peers import Viewer

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 10.0

# ("open", session, site, invitation, resource, time) or ("close", resource, time)
Event = tuple[Any, ...]


class AttendanceLog:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time,
                 flush_interval: float = FLUSH_INTERVAL,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.db = db
        self._clock = clock
        # How long a connection lasted comes from a clock that is never set:
        # the server's wall clock corrected by an hour while rooms are
        # connected must not add (or take) an hour of presence. By default
        # time.monotonic beside the real wall clock; a test's one fake clock
        # serves as both.
        self._monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        self._flush_interval = flush_interval
        self._heartbeat_interval = heartbeat_interval
        self._pending: list[Event] = []
        # Resource ids with an open interval: (wall clock at the join, the
        # monotonic clock then).
        self._open: dict[str, tuple[float, float]] = {}
        self._last_beat: float | None = None
        # Viewers of rooms on edges with an open interval (their resource ids).
        self._remote: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------- lifecycle
    def recover(self) -> int:
        """Start-up: end intervals a crash left open at the last sign of life.

        Must run before any room exists. Returns how many were ended.
        """
        alive = self.db.one("SELECT alive_at FROM server_alive WHERE id = 1")
        alive_at = alive["alive_at"] if alive is not None else None
        with self.db.transaction():
            count = self.db.execute(
                "UPDATE attendance_intervals SET ended_by = 'restart', disconnected_at ="
                " MAX(connected_at, COALESCE(?, connected_at)) WHERE disconnected_at IS NULL",
                (alive_at,))
            self._beat()
        if count:
            logger.info("ended %d attendance interval(s) left open at the last stop", count)
        return count

    def start(self) -> None:
        """Write queued events and the heartbeat in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Shutting down (after the rooms closed): write what is queued."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            self.flush(beat=True)
        except Exception:
            logger.exception("could not write the attendance log at shutdown")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                self.flush()
            except Exception:  # a full disk must not end attendance for good
                logger.exception("could not write the attendance log")

    # ----------------------------------------------------------------- events
    def watch(self, room: Broadcast) -> None:
        """Listen to a new room's viewers (a SessionRegistry room listener)."""
        session_id = room.broadcast_id
        room.viewer_listeners.append(
            lambda viewer, event: self.on_viewer(session_id, viewer, event))

    def on_viewer(self, session_id: str, viewer: Viewer, event: str) -> None:
        """A viewer connected or is gone. Viewers without an invitation (the
        session's generic view token) are not a site and are not counted."""
        if viewer.tag is None:
            return
        resource = viewer.resource_id
        if event == "connected":
            row = self.db.one("SELECT site_id FROM invitations WHERE id = ?", (viewer.tag,))
            if row is None:  # withdrawn between the offer and the connection
                return
            at = viewer.connected_at if viewer.connected_at is not None else self._clock()
            self._pending.append(("open", session_id, row["site_id"], viewer.tag, resource, at))
            self._open[resource] = (at, self._monotonic() - (self._clock() - at))
        elif event == "closed" and resource in self._open:
            joined, joined_monotonic = self._open.pop(resource)
            left = joined + (self._monotonic() - joined_monotonic)
            self._pending.append(("close", resource, left))

    def on_remote_viewer(self, session_id: str, invitation_id: str, resource: str,
                         event: str, at: float) -> None:
        """A room's viewer on an edge connected (``open``) or left
        (``close``), at wall time ``at`` (the leaving measured by the edge's
        monotonic clock from the joining). A repeated event changes nothing."""
        if event == "open":
            if resource in self._remote:
                return
            row = self.db.one("SELECT site_id FROM invitations WHERE id = ? AND session_id = ?",
                              (invitation_id, session_id))
            if row is None:
                logger.warning("an edge's viewer %s came with invitation %s, which session %s"
                               " does not have: not counted", resource[:80], invitation_id[:40],
                               session_id[:40])
                return
            self._remote.add(resource)
            self._pending.append(("open", session_id, row["site_id"], invitation_id, resource,
                                  at))
        elif resource in self._remote:
            self._remote.discard(resource)
            self._pending.append(("close", resource, at))

    def flush(self, beat: bool = False) -> None:
        """Write queued events (and the heartbeat when due) in one transaction."""
        now = self._clock()
        due = beat or self._last_beat is None or now - self._last_beat >= self._heartbeat_interval
        if not self._pending and not due:
            return
        events, self._pending = self._pending, []
        try:
            with self.db.transaction():
                for event in events:
                    if event[0] == "open":
                        # The site or session may have been deleted since.
                        self.db.execute(
                            "INSERT INTO attendance_intervals (session_id, site_id,"
                            " invitation_id, resource_id, connected_at) SELECT ?, ?, ?, ?, ?"
                            " WHERE EXISTS (SELECT 1 FROM sites WHERE id = ?)"
                            " AND EXISTS (SELECT 1 FROM sessions WHERE id = ?)",
                            (*event[1:], event[2], event[1]))
                    else:
                        self.db.execute(
                            "UPDATE attendance_intervals SET disconnected_at = MAX(?,"
                            " connected_at), ended_by = 'left' WHERE resource_id = ?"
                            " AND disconnected_at IS NULL", (event[2], event[1]))
                self._beat()
        except BaseException:
            self._pending[:0] = events  # try again at the next tick
            raise

    def _beat(self) -> None:
        """Called inside a transaction."""
        now = self._clock()
        self.db.execute("INSERT INTO server_alive (id, alive_at) VALUES (1, ?) "
                        "ON CONFLICT (id) DO UPDATE SET alive_at = excluded.alive_at", (now,))
        self._last_beat = now

    # -------------------------------------------------------------- headcount
    def report_headcount(self, invitation: dict[str, Any], count: int) -> None:
        """A room's report: kept in the history, and as the invitation's latest."""
        now = self._clock()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO headcount_reports (session_id, site_id, invitation_id, count,"
                " reported_at) VALUES (?, ?, ?, ?, ?)",
                (invitation["session_id"], invitation["site_id"], invitation["id"], count, now))
            self.db.execute("UPDATE invitations SET headcount = ?, headcount_at = ? "
                            "WHERE id = ?", (count, now, invitation["id"]))

    # ----------------------------------------------------------------- report
    def session_report(self, session: dict[str, Any], own: str = "") -> dict[str, Any]:
        """Per invitation: intervals, time, share, attended, headcount and its
        history; totals; and the rooms-connected timeline. Only the sites under
        the org path ``own`` (a district's account; '' is every site)."""
        self.flush()
        now = self._clock()
        session_id = session["id"]
        intervals: dict[int, list[dict[str, Any]]] = {}
        for row in self.db.all(
                "SELECT site_id, connected_at, disconnected_at, ended_by FROM "
                "attendance_intervals WHERE session_id = ? ORDER BY site_id, connected_at",
                (session_id,)):
            intervals.setdefault(row.pop("site_id"), []).append(row)
        history: dict[int, list[dict[str, Any]]] = {}
        for row in self.db.all(
                "SELECT site_id, count, reported_at FROM headcount_reports "
                "WHERE session_id = ? ORDER BY reported_at, id", (session_id,)):
            history.setdefault(row.pop("site_id"), []).append(row)
        first = min((i["connected_at"] for rows in intervals.values() for i in rows),
                    default=None)
        window = attendance.session_window(session, now, first)
        threshold = session.get("attendance_threshold") or attendance.DEFAULT_THRESHOLD
        totals = attendance.Totals()
        sites: list[attendance.SiteAttendance] = []
        items = []
        for invitation in self.db.all(
                "SELECT i.id, i.site_id, i.revoked_at, s.name AS site_name, s.org_path "
                "FROM invitations i JOIN sites s ON s.id = i.site_id "
                "WHERE i.session_id = ? AND (? = '' OR s.org_path = ? OR "
                "substr(s.org_path, 1, length(?) + 3) = ? || ' / ') "
                "ORDER BY s.org_path, s.name, s.id", (session_id, own, own, own, own)):
            site_id = invitation["site_id"]
            raw = intervals.get(site_id, [])
            reports = history.get(site_id, [])
            latest = reports[-1] if reports else None
            site = attendance.site_attendance(
                [(i["connected_at"], i["disconnected_at"]) for i in raw], window, threshold,
                latest["count"] if latest else None, now)
            totals.add(site, session_id, site_id)
            sites.append(site)
            items.append({
                "invitation_id": invitation["id"],
                "site_id": site_id,
                "site_name": invitation["site_name"],
                "org_path": invitation["org_path"],
                "revoked": invitation["revoked_at"] is not None,
                "intervals": raw,
                "connected": site.open,
                "connected_seconds": round(site.connected_seconds, 3),
                "share": round(site.share, 6) if site.share is not None else None,
                "attended": site.attended,
                "reconnects": site.reconnects,
                "headcount": site.headcount,
                "headcount_reported_at": latest["reported_at"] if latest else None,
                "headcount_history": reports,
                "person_times": site.person_times,
            })
        return {
            "session_id": session_id,
            "title": session["title"],
            "threshold": threshold,
            "now": now,
            "window": None if window is None else {
                "start": window.start, "end": window.end, "duration": window.duration,
                "scheduled": window.scheduled},
            "invitations": items,
            "totals": totals.as_dict(),
            "timeline": attendance.rooms_connected(site.spans for site in sites),
        }
