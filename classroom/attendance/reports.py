"""Attendance reports across sessions: per unit (专题) and per district (an org
path prefix over a date range), read as a stream.

A report walks one SQLite cursor over (session, site, interval) rows in order,
on a read-only connection whose fetches run in a worker thread (the sort of a
year's rows must not stall the relay's event loop), and yields one
:class:`SiteRow` per (session, site) as soon as its intervals are read. An
export never holds more than one session's site and its intervals; the JSON
reports only keep sums per group.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from classroom.attendance import intervals as attendance
from classroom.catalog import normalize_org_path
from classroom.db import Database
from classroom.errors import Invalid

FETCH_ROWS = 500
MAX_PREFIX = 200
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SEPARATOR = " / "

# The day a session belongs to: when it was scheduled to start, else when it
# started, else when it was made.
SESSION_TIME = "COALESCE(s.scheduled_start, s.started_at, s.created_at)"

SITE_ROWS = f"""
SELECT s.id AS session_id, s.title, s.batch, s.scheduled_start, s.scheduled_end,
       s.started_at, s.ended_at, s.created_at, s.attendance_threshold,
       {SESSION_TIME} AS session_time,
       c.title AS course_title, u.id AS unit_id, u.name AS unit_name,
       (SELECT MIN(f.connected_at) FROM attendance_intervals f
         WHERE f.session_id = s.id) AS first_connection,
       st.id AS site_id, st.name AS site_name, st.org_path, sn.kind AS site_kind,
       s.organizer_id, o.name AS organizer_name, o.parent_id IS NULL AS organizer_is_city,
       i.id AS invitation_id, i.revoked_at,
       h.count AS headcount, h.reported_at AS headcount_at,
       a.connected_at, a.disconnected_at
FROM sessions s
JOIN invitations i ON i.session_id = s.id
JOIN sites st ON st.id = i.site_id
LEFT JOIN org_nodes sn ON sn.id = st.org_node_id
LEFT JOIN org_nodes o ON o.id = s.organizer_id
LEFT JOIN courses c ON c.id = s.course_id
LEFT JOIN units u ON u.id = c.unit_id
LEFT JOIN headcount_reports h ON h.id = (
    SELECT x.id FROM headcount_reports x WHERE x.session_id = s.id AND x.site_id = st.id
    ORDER BY x.reported_at DESC, x.id DESC LIMIT 1)
LEFT JOIN attendance_intervals a ON a.session_id = s.id AND a.site_id = st.id
WHERE {{where}}
ORDER BY session_time, s.id, st.org_path, st.name, st.id, a.connected_at
"""


@dataclass(frozen=True)
class DateRange:
    first: dt.date
    last: dt.date  # inclusive
    tz: dt.tzinfo

    @property
    def start(self) -> float:
        return dt.datetime.combine(self.first, dt.time(), self.tz).timestamp()

    @property
    def end(self) -> float:
        """Exclusive: midnight after the last day."""
        day = self.last + dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(), self.tz).timestamp()


def parse_tz(query: Mapping[str, str]) -> dt.tzinfo:
    """``utc_offset`` in minutes east of UTC (the page sends its own; 480 in
    China); else the server's local time zone."""
    raw = query.get("utc_offset")
    if raw is None or raw == "":
        local = dt.datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    if not re.fullmatch(r"-?\d{1,4}", raw) or not -720 <= int(raw) <= 840:
        raise Invalid({"utc_offset": "error.bad_utc_offset"})
    return dt.timezone(dt.timedelta(minutes=int(raw)))


def parse_range(query: Mapping[str, str], tz: dt.tzinfo) -> DateRange:
    """``from`` and ``to`` (YYYY-MM-DD, both days included, at most a year)."""
    errors: dict[str, str] = {}
    days: dict[str, dt.date] = {}
    for name in ("from", "to"):
        raw = query.get(name, "")
        if not raw:
            errors[name] = "error.required"
            continue
        try:
            if not DATE.fullmatch(raw):
                raise ValueError(raw)
            days[name] = dt.date.fromisoformat(raw)
        except ValueError:
            errors[name] = "error.bad_date"
    if errors:
        raise Invalid(errors)
    first, last = days["from"], days["to"]
    if last < first:
        raise Invalid({"to": "error.date_order"})
    if last >= _one_year_after(first):
        raise Invalid({"to": "error.range_too_long"})
    return DateRange(first, last, tz)


def _one_year_after(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28) + dt.timedelta(days=1)


def parse_prefix(raw: str | None) -> str:
    """An org path prefix, normalized like the sites' paths ('' for all)."""
    if raw is None:
        return ""
    if len(raw) > MAX_PREFIX or any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise Invalid({"prefix": "error.bad_prefix"})
    return normalize_org_path(raw)


def prefix_clause(prefix: str) -> tuple[str, list[Any]]:
    """SQL matching a prefix on whole path parts: '北仑区' matches '北仑区' and
    '北仑区 / 新碶街道', not '北仑区二 / …'."""
    if not prefix:
        return "1", []
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return ("(st.org_path = ? OR st.org_path LIKE ? ESCAPE '\\')",
            [prefix, escaped + SEPARATOR + "%"])


def group_of(org_path: str, prefix: str) -> str:
    """The bar a site belongs to: the path part right below the prefix (a site
    at the prefix itself: the prefix's last part; no path at all: '')."""
    parts = org_path.split(SEPARATOR) if org_path else []
    depth = len(prefix.split(SEPARATOR)) if prefix else 0
    if len(parts) > depth:
        return parts[depth]
    return parts[-1] if parts else ""


@dataclass(frozen=True)
class SiteRow:
    """One site's attendance of one session, with what a report shows of both."""

    session: dict[str, Any]
    site: dict[str, Any]
    intervals: tuple[attendance.Interval, ...]
    window: attendance.Window | None
    result: attendance.SiteAttendance


SESSION_COLUMNS = ("session_id", "title", "batch", "scheduled_start", "scheduled_end",
                   "started_at", "ended_at", "created_at", "attendance_threshold",
                   "session_time", "course_title", "unit_id", "unit_name", "first_connection",
                   "organizer_id", "organizer_name", "organizer_is_city")
SITE_COLUMNS = ("site_id", "site_name", "org_path", "site_kind", "invitation_id", "revoked_at",
                "headcount", "headcount_at")


async def site_rows(db: Database, where: str, params: list[Any],
                    now: float) -> AsyncGenerator[SiteRow, None]:
    """Every invited (session, site) matching ``where`` (SQL over s, st, c, u),
    in session order, computed as its intervals are read."""
    sql = SITE_ROWS.format(where=where)
    conn = await asyncio.to_thread(db.reader)
    try:
        cursor = await asyncio.to_thread(conn.execute, sql, params)
        key: tuple[str, int] | None = None
        first: sqlite3.Row | None = None
        intervals: list[attendance.Interval] = []
        while True:
            batch = await asyncio.to_thread(cursor.fetchmany, FETCH_ROWS)
            for row in batch:
                row_key = (row["session_id"], row["site_id"])
                if row_key != key:
                    if first is not None:
                        yield _site_row(first, intervals, now)
                    key, first, intervals = row_key, row, []
                if row["connected_at"] is not None:
                    intervals.append((row["connected_at"], row["disconnected_at"]))
            if not batch:
                break
        if first is not None:
            yield _site_row(first, intervals, now)
    finally:
        await asyncio.to_thread(conn.close)


def _site_row(row: sqlite3.Row, intervals: list[attendance.Interval], now: float) -> SiteRow:
    session = {name: row[name] for name in SESSION_COLUMNS}
    session["id"] = session["session_id"]
    window = attendance.session_window(session, now, row["first_connection"])
    threshold = row["attendance_threshold"] or attendance.DEFAULT_THRESHOLD
    result = attendance.site_attendance(intervals, window, threshold, row["headcount"], now)
    return SiteRow(session, {name: row[name] for name in SITE_COLUMNS}, tuple(intervals),
                   window, result)


@dataclass
class Group:
    name: str
    totals: attendance.Totals

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.totals.as_dict()}


def add_to_group(groups: dict[str, Group], name: str, row: SiteRow) -> None:
    group = groups.get(name)
    if group is None:
        group = groups[name] = Group(name, attendance.Totals())
    group.totals.add(row.result, row.session["id"], row.site["site_id"])


def ordered(groups: dict[str, Group]) -> list[dict[str, Any]]:
    """Most person-times first, then by name."""
    return [g.as_dict() for g in sorted(groups.values(),
                                        key=lambda g: (-g.totals.person_times, g.name))]


async def district_report(db: Database, prefix: str, days: DateRange,
                          now: float) -> dict[str, Any]:
    where, params = district_where(prefix, days)
    groups: dict[str, Group] = {}
    totals = attendance.Totals()
    async for row in site_rows(db, where, params, now):
        add_to_group(groups, group_of(row.site["org_path"], prefix), row)
        totals.add(row.result, row.session["id"], row.site["site_id"])
    return {"prefix": prefix, "from": days.first.isoformat(), "to": days.last.isoformat(),
            "groups": ordered(groups), "totals": totals.as_dict()}


def district_where(prefix: str, days: DateRange) -> tuple[str, list[Any]]:
    clause, params = prefix_clause(prefix)
    return (f"{SESSION_TIME} >= ? AND {SESSION_TIME} < ? AND {clause}",
            [days.start, days.end, *params])


def within(prefix: str, where: str, params: list[Any]) -> tuple[str, list[Any]]:
    """``where`` limited to the sites under ``prefix`` (a scoped account's own
    path; '' is everything)."""
    if not prefix:
        return where, params
    clause, extra = prefix_clause(prefix)
    return f"({where}) AND {clause}", [*params, *extra]


def covers_prefix(own: str, prefix: str) -> bool:
    """Whether ``prefix`` lies under ``own`` (on whole path parts)."""
    return not own or prefix == own or prefix.startswith(own + SEPARATOR)


async def unit_report(db: Database, unit: dict[str, Any], now: float,
                      own: str = "") -> dict[str, Any]:
    """The unit's sessions (in order) with their sums, and sums per district
    (the first part of the sites' org paths); only sites under ``own``."""
    sessions: dict[str, dict[str, Any]] = {}
    session_totals: dict[str, attendance.Totals] = {}
    districts: dict[str, Group] = {}
    totals = attendance.Totals()
    where, params = within(own, "c.unit_id = ?", [unit["id"]])
    async for row in site_rows(db, where, params, now):
        session_id = row.session["id"]
        if session_id not in sessions:
            sessions[session_id] = session_summary(row)
            session_totals[session_id] = attendance.Totals()
        session_totals[session_id].add(row.result, session_id, row.site["site_id"])
        add_to_group(districts, group_of(row.site["org_path"], ""), row)
        totals.add(row.result, session_id, row.site["site_id"])
    listed = [{**summary, **session_totals[session_id].as_dict()}
              for session_id, summary in sessions.items()]
    for item in listed:
        del item["sessions"]  # always 1
    return {"unit": {"id": unit["id"], "name": unit["name"]}, "sessions": listed,
            "districts": ordered(districts), "totals": totals.as_dict()}


def session_summary(row: SiteRow) -> dict[str, Any]:
    session = row.session
    return {"id": session["id"], "title": session["title"],
            "course_title": session["course_title"], "batch": session["batch"],
            "session_time": session["session_time"],
            "threshold": session["attendance_threshold"],
            "window": None if row.window is None else {
                "start": row.window.start, "end": row.window.end}}


# ------------------------------------------------------------------ organizers
# The city's own training (市级培训) and each district's extension training
# (延伸培训) counted apart: who organized the session, not where the room is.

@dataclass
class Organizer:
    id: int | None
    name: str
    city: bool
    totals: attendance.Totals
    months: dict[str, Group]
    units: dict[str, Group]
    districts: dict[str, Group]
    levels: dict[str, Group]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name,
                "training": "city" if self.city else "extension",
                **self.totals.as_dict(),
                "months": [g.as_dict() for g in sorted(self.months.values(),
                                                       key=lambda g: g.name)],
                "units": ordered(self.units), "districts": ordered(self.districts),
                "levels": ordered(self.levels)}


def organizer_of(row: SiteRow) -> tuple[int | None, str, bool]:
    session = row.session
    return (session["organizer_id"], session["organizer_name"] or "",
            bool(session["organizer_is_city"]) or session["organizer_id"] is None)


async def organizer_report(db: Database, days: DateRange, now: float,
                           own: str = "") -> dict[str, Any]:
    """Person-times per organizer (the city first, then the districts by
    person-times), each per month, unit, district (the sites' first path
    part) and level (the sites' node kind: district, town, village,
    department); only the sites under ``own``."""
    where, params = within(own, f"{SESSION_TIME} >= ? AND {SESSION_TIME} < ?",
                           [days.start, days.end])
    organizers: dict[int | None, Organizer] = {}
    totals = attendance.Totals()
    async for row in site_rows(db, where, params, now):
        key, name, city = organizer_of(row)
        organizer = organizers.get(key)
        if organizer is None:
            organizer = organizers[key] = Organizer(key, name, city, attendance.Totals(),
                                                    {}, {}, {}, {})
        session_id, site_id = row.session["id"], row.site["site_id"]
        organizer.totals.add(row.result, session_id, site_id)
        month = dt.datetime.fromtimestamp(row.session["session_time"], days.tz).strftime("%Y-%m")
        add_to_group(organizer.months, month, row)
        add_to_group(organizer.units, row.session["unit_name"] or "", row)
        add_to_group(organizer.districts, group_of(row.site["org_path"], ""), row)
        add_to_group(organizer.levels, row.site["site_kind"] or "", row)
        totals.add(row.result, session_id, site_id)
    listed = sorted(organizers.values(),
                    key=lambda o: (not o.city, -o.totals.person_times, o.name))
    return {"from": days.first.isoformat(), "to": days.last.isoformat(),
            "organizers": [o.as_dict() for o in listed], "totals": totals.as_dict()}
