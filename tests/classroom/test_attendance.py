"""Attendance (出勤) and its reports: the computation with an injected clock,
the log across a crash, real aiortc rooms joining and leaving, CSV exports
that parse back (and stream a month of 200 sites × 30 sessions in little
memory), bad input, and the district report in Chromium."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import time
import tracemalloc
import xml.dom.minidom
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import quote, unquote

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from classroom.attendance import intervals as attendance
from classroom.attendance import reports
from classroom.attendance.intervals import Window
from classroom.attendance.log import AttendanceLog
from classroom.catalog import Catalog
from classroom.db import Database
from streaming.peers import Viewer
from tests.support.browser import ARTIFACTS, Chromium
from tests.support.fakes import FakeClock as Clock
from tests.support.media import start_publisher, start_viewer
from tests.support.pages import open_console
from tests.support.service import ADMIN_PASSWORD, ADMIN_TOKEN, Service
from tests.support.service import call_json as call
from tests.support.service import invite as invite_site
from web.app import create_app
from web.config import Config, add_serve_arguments, config_from_args
from web.keys import ATTENDANCE, CATALOG

API = "/api/v1"
CHINA = dt.timezone(dt.timedelta(hours=8))
BOM = "\ufeff"
PASSWORD = ADMIN_PASSWORD


# --------------------------------------------------------------------------
# the computation (pure; "now" is an argument)

WINDOW = Window(1000.0, 2000.0, scheduled=True)


def site(intervals: list[tuple[float, float | None]], threshold: float = 80,
         headcount: int | None = 10, now: float = 5000.0,
         window: Window | None = WINDOW) -> attendance.SiteAttendance:
    return attendance.site_attendance(intervals, window, threshold, headcount, now)


def test_overlapping_reconnects_of_a_site_are_not_counted_twice() -> None:
    # The new connection came up 60 s before the old one timed out.
    result = site([(1000, 1500), (1440, 1900)])
    assert result.connected_seconds == 900
    assert result.spans == ((1000, 1900),)
    assert (result.connections, result.reconnects) == (2, 1)
    # A reconnect right where the last one ended, and one inside another.
    assert site([(1000, 1500), (1500, 1600), (1100, 1200)]).connected_seconds == 600


def test_joining_before_the_start_and_leaving_after_the_end_count_the_window_only() -> None:
    result = site([(400, 1300), (1700, 9000)])
    assert result.connected_seconds == 300 + 300
    assert result.spans == ((1000, 1300), (1700, 2000))
    whole = site([(0, 99999)])
    assert (whole.connected_seconds, whole.share, whole.attended) == (1000, 1.0, True)
    assert site([(100, 900), (2100, 2500)]).connected_seconds == 0


def test_the_threshold_edge() -> None:
    exactly = site([(1000, 1800)])  # 80 % of 1000 s
    assert exactly.share == pytest.approx(0.8) and exactly.attended
    assert not site([(1000, 1799)]).attended
    assert site([(1000, 1799)], threshold=79).attended
    assert site([(1000, 2000)], threshold=100).attended
    assert not site([(1000, 1999.5)], threshold=100).attended
    assert site([(1000, 1010)], threshold=1).attended
    # Float sums that land a hair under the line still count.
    third = Window(0.0, 0.3, scheduled=True)
    assert site([(0.0, 0.1), (0.1, 0.2), (0.2, 0.3)], threshold=100, window=third).attended


def test_an_open_connection_counts_until_now() -> None:
    assert site([(1200, None)], now=1500).connected_seconds == 300
    assert site([(1200, None)], now=1500).open
    assert site([(1200, None)], now=7000).connected_seconds == 800


def test_person_times_are_the_headcounts_of_attended_rooms() -> None:
    totals = attendance.Totals()
    for result in (site([(1000, 2000)], headcount=37), site([(1000, 1500)], headcount=50),
                   site([(1000, 2000)], headcount=None), site([], headcount=12)):
        totals.add(result)
    assert totals.as_dict() | {"sessions": 0, "sites": 0} == {
        "sessions": 0, "sites": 0, "rooms_invited": 4, "rooms_connected": 3,
        "rooms_attended": 2, "person_times": 37, "attended_without_headcount": 1}


def test_the_window_of_scheduled_and_unscheduled_sessions() -> None:
    scheduled = {"scheduled_start": 1000, "scheduled_end": 2000, "started_at": 1100,
                 "ended_at": 1900}
    assert attendance.session_window(scheduled, now=5000) == Window(1000, 2000, True)
    # Unscheduled: its actual start and end; still going: until now.
    actual = {"scheduled_start": None, "scheduled_end": None, "started_at": 1100}
    assert attendance.session_window({**actual, "ended_at": 1900}, now=5000) == \
        Window(1100, 1900, False)
    assert attendance.session_window({**actual, "ended_at": None}, now=1600) == \
        Window(1100, 1600, False)
    # Nobody pressed start: from the first room's connection; nothing yet: no window.
    bare = {"scheduled_start": None, "scheduled_end": None, "started_at": None,
            "ended_at": None}
    assert attendance.session_window(bare, now=5000) is None
    assert attendance.session_window(bare, now=5000, first_connection=1234) == \
        Window(1234, 5000, False)
    assert site([(1, 2)], window=None).share is None
    assert not site([(1, 2)], window=None).attended
    # Only a start scheduled: until the actual end.
    assert attendance.session_window({**bare, "scheduled_start": 1000, "ended_at": 3000},
                                     now=5000) == Window(1000, 3000, False)


def test_rooms_connected_over_time() -> None:
    steps = attendance.rooms_connected([[(0, 10)], [(5, 20)], [(10, 30)], []])
    assert steps == [(0, 1), (5, 2), (20, 1), (30, 0)]
    assert attendance.rooms_connected([]) == []


# --------------------------------------------------------------------------
# the log: viewer events, headcount history, a crash (injected clock)


def fake_viewer(invitation_id: str | None, resource_id: str, connected_at: float) -> Viewer:
    return cast(Viewer, SimpleNamespace(tag=invitation_id, resource_id=resource_id,
                                        connected_at=connected_at))


@dataclass
class Schedule:
    db: Database
    catalog: Catalog
    clock: Clock
    session: dict[str, Any]
    invitations: list[dict[str, Any]]


@pytest.fixture
def schedule(tmp_path: Path) -> Schedule:
    db = Database(tmp_path / "catalog.sqlite3")
    db.migrate()
    clock = Clock(900.0)
    catalog = Catalog(db, clock)
    session = catalog.create_session({"title": "第一讲", "scheduled_start": 1_700_000_000,
                                      "scheduled_end": 1_700_003_600}, "p", "v")
    invitations = []
    for name in ("新碶街道分课堂", "大碶街道分课堂"):
        site_row = catalog.create_site({"name": name, "org_path": "北仑区"})
        invitations.append(catalog.create_invitation(session["id"], {"site_id": site_row["id"]}))
    return Schedule(db, catalog, clock, session, invitations)


T0 = 1_700_000_000.0


def test_the_log_records_joins_and_leaves_and_ignores_viewers_without_a_site(
    schedule: Schedule,
) -> None:
    clock, session_id = schedule.clock, schedule.session["id"]
    log = AttendanceLog(schedule.db, clock)
    log.recover()
    first, second = (i["id"] for i in schedule.invitations)
    clock.now = T0 - 300
    log.on_viewer(session_id, fake_viewer(first, "r1", T0 - 300), "connected")  # early
    log.on_viewer(session_id, fake_viewer(None, "generic", T0 - 300), "connected")
    log.on_viewer(session_id, fake_viewer(second, "never", T0), "closed")  # never connected
    clock.now = T0 + 1800
    # The room's PC reconnects: its new viewer is up before the old one is gone.
    log.on_viewer(session_id, fake_viewer(first, "r2", T0 + 1790), "connected")
    log.on_viewer(session_id, fake_viewer(first, "r1", T0 - 300), "closed")
    log.on_viewer(session_id, fake_viewer(second, "r3", T0 + 1800), "connected")
    log.on_viewer(session_id, fake_viewer(None, "generic", T0 - 300), "closed")
    clock.now = T0 + 3600 + 600  # past the end, both still connected
    report = log.session_report(schedule.catalog.session(session_id))
    by_name = {item["site_name"]: item for item in report["invitations"]}
    early = by_name["新碶街道分课堂"]
    assert [(i["connected_at"], i["disconnected_at"], i["ended_by"])
            for i in early["intervals"]] == [(T0 - 300, T0 + 1800, "left"),
                                             (T0 + 1790, None, None)]
    assert early["connected_seconds"] == 3600 and early["share"] == 1.0
    assert early["attended"] and early["connected"] and early["reconnects"] == 1
    late = by_name["大碶街道分课堂"]
    assert late["connected_seconds"] == 1800 and late["share"] == 0.5
    assert not late["attended"]
    assert report["totals"]["rooms_invited"] == 2
    assert report["totals"]["rooms_attended"] == 1
    assert report["timeline"] == [(T0, 1), (T0 + 1800, 2), (T0 + 3600, 0)]
    assert report["window"] == {"start": T0, "end": T0 + 3600, "duration": 3600,
                                "scheduled": True}


def test_headcount_corrections_stay_visible_and_the_latest_counts(schedule: Schedule) -> None:
    clock, session_id = schedule.clock, schedule.session["id"]
    log = AttendanceLog(schedule.db, clock)
    invitation = schedule.catalog.invitation(schedule.invitations[0]["id"])
    log.on_viewer(session_id, fake_viewer(invitation["id"], "r1", T0), "connected")
    clock.now = T0 + 600
    log.report_headcount(invitation, 42)
    clock.now = T0 + 900
    log.report_headcount(invitation, 38)  # the room counted again
    clock.now = T0 + 3600
    report = log.session_report(schedule.catalog.session(session_id))
    [item] = [i for i in report["invitations"] if i["invitation_id"] == invitation["id"]]
    assert item["headcount"] == 38 and item["headcount_reported_at"] == T0 + 900
    assert item["headcount_history"] == [{"count": 42, "reported_at": T0 + 600},
                                         {"count": 38, "reported_at": T0 + 900}]
    assert item["person_times"] == 38 and report["totals"]["person_times"] == 38
    # The invitation row has the latest too (the presenter page shows it).
    assert schedule.catalog.invitation(invitation["id"])["headcount"] == 38


def test_a_restart_ends_open_intervals_where_the_server_was_last_alive(
    schedule: Schedule,
) -> None:
    clock, session_id = schedule.clock, schedule.session["id"]
    log = AttendanceLog(schedule.db, clock, heartbeat_interval=10)
    log.recover()
    first, second = (i["id"] for i in schedule.invitations)
    clock.now = T0
    log.on_viewer(session_id, fake_viewer(first, "r1", T0), "connected")
    log.flush()
    for step in range(1, 61):  # ten minutes of heartbeats
        clock.now = T0 + step * 10
        log.flush()
    clock.now = T0 + 605  # connected after the last heartbeat, then the crash
    log.on_viewer(session_id, fake_viewer(second, "r2", T0 + 605), "connected")
    log.flush()
    # SIGKILL: no close. The server comes back two hours later.
    clock.now = T0 + 7200
    restarted = AttendanceLog(schedule.db, clock)
    assert restarted.recover() == 2
    rows = schedule.db.all("SELECT resource_id, connected_at, disconnected_at, ended_by "
                           "FROM attendance_intervals ORDER BY resource_id")
    assert rows == [
        {"resource_id": "r1", "connected_at": T0, "disconnected_at": T0 + 605,
         "ended_by": "restart"},
        {"resource_id": "r2", "connected_at": T0 + 605, "disconnected_at": T0 + 605,
         "ended_by": "restart"}]
    report = restarted.session_report(schedule.catalog.session(session_id))
    assert [item["connected_seconds"] for item in report["invitations"]] == [0, 605]
    assert restarted.recover() == 0  # nothing left open


def test_a_join_whose_site_was_deleted_meanwhile_is_dropped(schedule: Schedule) -> None:
    clock, session_id = schedule.clock, schedule.session["id"]
    log = AttendanceLog(schedule.db, clock)
    first, second = schedule.invitations
    log.on_viewer(session_id, fake_viewer(first["id"], "r1", T0), "connected")
    log.on_viewer(session_id, fake_viewer(second["id"], "r2", T0), "connected")
    schedule.catalog.delete_site(first["site_id"])  # before the next tick
    log.flush()
    log.on_viewer(session_id, fake_viewer(first["id"], "r1", T0), "closed")
    log.flush()
    rows = schedule.db.all("SELECT resource_id FROM attendance_intervals")
    assert rows == [{"resource_id": "r2"}]


def test_events_are_written_in_one_transaction_per_tick(schedule: Schedule) -> None:
    clock, session_id = schedule.clock, schedule.session["id"]
    log = AttendanceLog(schedule.db, clock)
    for n in range(300):  # a 9:00 join storm
        log.on_viewer(session_id, fake_viewer(schedule.invitations[n % 2]["id"], f"r{n}", T0),
                      "connected")
    assert schedule.db.one("SELECT COUNT(*) AS n FROM attendance_intervals") == {"n": 0}
    log.flush()
    assert schedule.db.one("SELECT COUNT(*) AS n FROM attendance_intervals") == {"n": 300}


# --------------------------------------------------------------------------
# HTTP helpers


async def fetch(service: Service, path: str, token: str | None = ADMIN_TOKEN
                ) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with service.http.get(f"{service.base}{path}", headers=headers,
                                allow_redirects=False) as response:
        return response.status, await response.read(), response.headers


async def invite(service: Service, session: dict[str, Any], name: str,
                 org_path: str = "北仑区 / 新碶街道") -> dict[str, Any]:
    """The shared ``invite``, with a street under the district by default."""
    return await invite_site(service, session, name, org_path)


def parse_csv(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith(BOM)
    return list(csv.DictReader(io.StringIO(text[len(BOM):])))


async def wait_until(what: str, probe: Callable[[], Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------
# real rooms: aiortc viewers with invitation tokens

@pytest.mark.webrtc
async def test_rooms_join_leave_and_rejoin_and_the_api_counts_them(service: Service) -> None:
    session = await service.create_session("第二讲", video_codec="H264")
    status, _ = await call(service, "POST", f"{API}/sessions/{session['id']}/start")
    assert status == 200
    early = await invite(service, session, "新碶街道分课堂")
    other = await invite(service, session, "大碶街道分课堂", "北仑区 / 大碶街道")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewers = []
    try:
        first = await start_viewer(service.http, service.base, session["id"], early["token"])
        viewers.append(first)
        second = await start_viewer(service.http, service.base, session["id"], other["token"])
        viewers.append(second)
        generic = await start_viewer(service.http, service.base, session["id"],
                                     session["view_token"])  # no site: not counted
        viewers.append(generic)
        for viewer in viewers:
            await viewer.wait_for_frames(10, timeout=15)

        # The first room leaves (WHEP DELETE) and comes back with a new resource.
        assert first.location is not None
        left_at = time.time()
        async with service.http.delete(f"{service.base}{first.location}", headers={
                "Authorization": f"Bearer {early['token']}"}) as response:
            assert response.status == 200
        await first.close()
        await asyncio.sleep(0.5)
        again = await start_viewer(service.http, service.base, session["id"], early["token"])
        viewers.append(again)
        await again.wait_for_frames(10, timeout=15)
        await asyncio.sleep(4)  # connected time outweighs the joins

        for token, counts in ((early["token"], (30, 25)), (other["token"], (40,))):
            for count in counts:
                async with service.http.post(f"{service.base}{API}/room/headcount",
                                             json={"count": count}, headers={
                                                 "Authorization": f"Bearer {token}"}) as reply:
                    assert reply.status == 204

        status, live = await call(service, "GET", f"{API}/sessions/{session['id']}/attendance")
        assert status == 200
        rooms = {item["site_name"]: item for item in live["invitations"]}
        assert len(rooms) == 2  # the generic viewer is not a site
        back = rooms["新碶街道分课堂"]
        assert len(back["intervals"]) == 2 and back["reconnects"] == 1
        closed, current = back["intervals"]
        assert closed["ended_by"] == "left"
        assert abs(closed["disconnected_at"] - left_at) < 2
        assert current["disconnected_at"] is None and back["connected"]
        assert rooms["大碶街道分课堂"]["connected"]
        assert rooms["大碶街道分课堂"]["intervals"][0]["disconnected_at"] is None
        assert back["headcount"] == 25 and len(back["headcount_history"]) == 2
        assert live["window"]["scheduled"] is False  # unscheduled: started_at … now
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()

    # The session ends: every interval closes; the threshold decides.
    status, _ = await call(service, "PATCH", f"{API}/sessions/{session['id']}",
                           {"attendance_threshold": 50})
    assert status == 200
    assert (await call(service, "DELETE", f"{API}/sessions/{session['id']}"))[0] == 204
    status, report = await call(service, "GET", f"{API}/sessions/{session['id']}/attendance")
    assert status == 200
    window = report["window"]
    ended = (await service.session(session["id"]))
    assert (window["start"], window["end"]) == (ended["started_at"], ended["ended_at"])
    for item in report["invitations"]:
        assert all(i["disconnected_at"] is not None for i in item["intervals"])
        spans = attendance.clip(attendance.union(
            [(i["connected_at"], i["disconnected_at"]) for i in item["intervals"]], 0),
            Window(window["start"], window["end"], False))
        assert item["connected_seconds"] == pytest.approx(sum(e - s for s, e in spans), abs=1e-3)
        assert item["share"] == pytest.approx(item["connected_seconds"] / window["duration"],
                                              abs=1e-3)  # both rounded
        assert item["attended"], item  # connected well over half of the session
    assert report["threshold"] == 50
    assert report["totals"] == {"sessions": 1, "sites": 2, "rooms_invited": 2,
                                "rooms_connected": 2, "rooms_attended": 2,
                                "person_times": 25 + 40, "attended_without_headcount": 0}

    # Its CSV says the same.
    status, body, _ = await fetch(service, f"{API}/sessions/{session['id']}/attendance"
                                           "?format=csv&utc_offset=480")
    assert status == 200
    rows = {row["分课堂"]: row for row in parse_csv(body)}
    for item in report["invitations"]:
        row = rows[item["site_name"]]
        assert float(row["在线时长（分钟）"]) == round(item["connected_seconds"] / 60, 1)
        assert float(row["在线比例（%）"]) == round(item["share"] * 100, 1)
        assert row["是否出勤"] == "是" and int(row["人次"]) == item["person_times"]
        assert int(row["重连次数"]) == item["reconnects"]
        assert row["连接记录"].count("–") == len(item["intervals"])


# --------------------------------------------------------------------------
# a synthetic month, straight into SQLite

DISTRICTS = ("北仑区", "鄞州区", "海曙区", "江北区", "镇海区", "奉化区", "余姚市", "慈溪市",
             "宁海县", "象山县")


@dataclass
class Month:
    unit_id: int
    session_ids: list[str]
    person_times: dict[str, int]  # per district
    attended: dict[str, int]
    invited: dict[str, int]


def day_start(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second,
                       tzinfo=CHINA).timestamp()


def seed_month(db: Database, sites: int = 200, sessions: int = 30,
               first_day: dt.date = dt.date(2025, 6, 1)) -> Month:
    """Sessions 09:00–11:00 (China time) on consecutive days, every site invited.

    Site i is in district i % 10, and of kind (i + i // 10) % 10 (each
    district sees every kind): kind 0 never comes; 1 stays 30 minutes (not
    attended); the others join at 08:55, reconnect at 09:59:30 before their
    old connection ended at 10:00, and stay until 11:05. Headcount i % 30 + 1,
    none for kind 2, and kind 3 first reported 99 then corrected.
    """
    now = day_start(first_day, 8)
    unit_id = db.execute("INSERT INTO units (name, created_at) VALUES ('数字化改革', ?)",
                         (now,))
    course_id = db.execute("INSERT INTO courses (unit_id, title, lecturer, created_at) "
                           "VALUES (?, '数据赋能基层治理', '王教授', ?)", (unit_id, now))
    site_ids = []
    for i in range(sites):
        district = DISTRICTS[i % len(DISTRICTS)]
        site_ids.append(db.execute(
            "INSERT INTO sites (name, org_path, created_at) VALUES (?, ?, ?)",
            (f"第{i}分课堂", f"{district} / 第{i // len(DISTRICTS)}街道", now)))
    month = Month(unit_id, [], {}, {}, {})
    invitations, intervals, headcounts = [], [], []
    for n in range(sessions):
        day = first_day + dt.timedelta(days=n)
        session_id = f"s{n:03d}"
        month.session_ids.append(session_id)
        start, end = day_start(day, 9), day_start(day, 11)
        db.execute("INSERT INTO sessions (id, title, course_id, batch, scheduled_start,"
                   " scheduled_end, video_codec, publish_token, view_token, state, created_at,"
                   " started_at, ended_at) VALUES (?, ?, ?, '第一批', ?, ?, 'H264', ?, ?,"
                   " 'ended', ?, ?, ?)",
                   (session_id, f"第{n + 1}讲", course_id, start, end, f"p{n}", f"v{n}", now,
                    start, end + 300))
        for i, site_id in enumerate(site_ids):
            district = DISTRICTS[i % len(DISTRICTS)]
            invitation_id = f"{session_id}-{i}"
            invitations.append((invitation_id, session_id, site_id, end + 86400, now))
            month.invited[district] = month.invited.get(district, 0) + 1
            kind = (i + i // 10) % 10
            if kind == 1:
                intervals.append((session_id, site_id, invitation_id, f"{invitation_id}a",
                                  start, start + 1800, "left"))
            elif kind != 0:
                intervals.append((session_id, site_id, invitation_id, f"{invitation_id}a",
                                  day_start(day, 8, 55), day_start(day, 10), "left"))
                intervals.append((session_id, site_id, invitation_id, f"{invitation_id}b",
                                  day_start(day, 9, 59, 30), day_start(day, 11, 5), "left"))
                month.attended[district] = month.attended.get(district, 0) + 1
                if kind != 2:
                    month.person_times[district] = \
                        month.person_times.get(district, 0) + i % 30 + 1
            if kind == 3:
                headcounts.append((session_id, site_id, invitation_id, 99, start + 60))
            if kind != 2:
                headcounts.append((session_id, site_id, invitation_id, i % 30 + 1, start + 120))
    with db.transaction():
        for sql, rows in (
            ("INSERT INTO invitations (id, session_id, site_id, expires_at, created_at)"
             " VALUES (?, ?, ?, ?, ?)", invitations),
            ("INSERT INTO attendance_intervals (session_id, site_id, invitation_id,"
             " resource_id, connected_at, disconnected_at, ended_by)"
             " VALUES (?, ?, ?, ?, ?, ?, ?)", intervals),
            ("INSERT INTO headcount_reports (session_id, site_id, invitation_id, count,"
             " reported_at) VALUES (?, ?, ?, ?, ?)", headcounts),
        ):
            for row in rows:
                db.execute(sql, row)
    return month


def db_of(service: Service) -> Database:
    catalog: Catalog = service.app[CATALOG]
    return catalog.db


JUNE = "from=2025-06-01&to=2025-06-30&utc_offset=480"


async def test_the_district_report_and_its_csv_agree(service: Service) -> None:
    month = seed_month(db_of(service), sites=40, sessions=3)
    status, report = await call(service, "GET", f"{API}/reports/districts?{JUNE}")
    assert status == 200, report
    groups = {g["name"]: g for g in report["groups"]}
    assert set(groups) == set(DISTRICTS)
    for district in DISTRICTS:
        assert groups[district]["person_times"] == month.person_times[district]
        assert groups[district]["rooms_attended"] == month.attended[district]
        assert groups[district]["rooms_invited"] == month.invited[district]
    totals = report["totals"]
    assert totals["person_times"] == sum(month.person_times.values())
    assert (totals["sessions"], totals["sites"]) == (3, 40)
    assert totals["attended_without_headcount"] == 3 * 4  # i % 10 == 2
    assert report["groups"][0]["person_times"] >= report["groups"][-1]["person_times"]

    status, body, headers = await fetch(service, f"{API}/reports/districts?{JUNE}&format=csv")
    assert status == 200
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert body.startswith(BOM.encode("utf-8"))
    assert b"\r\n" in body
    disposition = headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="attendance-2025-06-01-2025-06-30.csv"')
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == \
        "出勤-全部-2025-06-01至2025-06-30.csv"
    rows = parse_csv(body)
    assert len(rows) == 3 * 40
    assert sum(int(row["人次"]) for row in rows) == totals["person_times"]
    assert sum(row["是否出勤"] == "是" for row in rows) == totals["rooms_attended"]
    full = [row for row in rows if row["分课堂"] == "第5分课堂"]
    assert [row["在线时长（分钟）"] for row in full] == ["120.0"] * 3
    assert [row["在线比例（%）"] for row in full] == ["100.0"] * 3
    assert {row["日期"] for row in rows} == {"2025-06-01", "2025-06-02", "2025-06-03"}
    corrected = [row for row in rows if row["分课堂"] == "第3分课堂"]
    assert [row["上报人数"] for row in corrected] == ["4"] * 3  # 99 was corrected to 4

    # The prefix takes whole path parts; the bars are the level below it.
    status, narrow = await call(service, "GET",
                                f"{API}/reports/districts?{JUNE}&prefix=北仑区")
    assert status == 200
    assert {g["name"] for g in narrow["groups"]} == {"第0街道", "第1街道", "第2街道", "第3街道"}
    assert narrow["totals"]["person_times"] == month.person_times["北仑区"]
    status, english, _ = await fetch(service, f"{API}/reports/districts?{JUNE}&format=csv&lang=en")
    assert parse_csv(english)[0].keys() >= {"Site", "Person-times", "Share (%)"}


async def test_the_unit_report_and_its_csv_agree(service: Service) -> None:
    month = seed_month(db_of(service), sites=20, sessions=4)
    status, report = await call(service, "GET",
                                f"{API}/reports/units/{month.unit_id}?utc_offset=480")
    assert status == 200, report
    assert [s["id"] for s in report["sessions"]] == month.session_ids
    assert report["totals"]["person_times"] == sum(month.person_times.values())
    assert {d["name"]: d["person_times"] for d in report["districts"]} == \
        {name: month.person_times.get(name, 0) for name in DISTRICTS}
    status, body, headers = await fetch(
        service, f"{API}/reports/units/{month.unit_id}?format=csv&utc_offset=480")
    assert status == 200
    assert quote("出勤-数字化改革.csv", safe="") in headers["Content-Disposition"]
    rows = parse_csv(body)
    assert [row["场次"] for row in rows] == [s["title"] for s in report["sessions"]]
    for row, session in zip(rows, report["sessions"], strict=True):
        assert int(row["人次"]) == session["person_times"]
        assert int(row["受邀分课堂"]) == session["rooms_invited"] == 20
        assert int(row["出勤分课堂"]) == session["rooms_attended"] == 16


async def test_a_month_of_200_sites_streams_in_little_memory(service: Service) -> None:
    db = db_of(service)
    month = seed_month(db, sites=200, sessions=30)
    path = f"{API}/reports/districts?{JUNE}&format=csv"
    await fetch(service, path.replace("2025-06-30", "2025-06-01"))  # warm up

    # What holding every row would take.
    days = reports.parse_range({"from": "2025-06-01", "to": "2025-06-30"}, CHINA)
    where, params = reports.district_where("", days)
    tracemalloc.start()
    try:
        everything = db.all(reports.SITE_ROWS.format(where=where), params)
        _, loaded_peak = tracemalloc.get_traced_memory()
        assert len(everything) > 200 * 30
        del everything
        tracemalloc.reset_peak()
        lines = chunks = person_times = 0
        pending = b""
        async with service.http.get(f"{service.base}{path}", headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
            assert response.status == 200
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers
            async for chunk in response.content.iter_any():
                chunks += 1
                pending += chunk
                *complete, pending = pending.split(b"\r\n")
                for line in complete:
                    lines += 1
                    if lines > 1:
                        person_times += int(next(csv.reader([line.decode()]))[-1])
        _, streamed_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pending == b""
    assert lines == 1 + 200 * 30
    assert person_times == sum(month.person_times.values())
    assert chunks > 10
    assert streamed_peak * 4 < loaded_peak, (streamed_peak, loaded_peak)
    assert streamed_peak < 8 * 1024 * 1024, streamed_peak


# --------------------------------------------------------------------------
# charts

async def test_charts_are_svg_drawn_by_the_server(service: Service) -> None:
    month = seed_month(db_of(service), sites=20, sessions=2)
    # Labels are text, never mathtext.
    db_of(service).execute("UPDATE sessions SET title = '$x^2$ 第一讲' WHERE id = 's000'")
    db_of(service).execute("UPDATE sites SET org_path = '$北仑区 / 第0街道' WHERE id = 1")
    db_of(service).execute("UPDATE sites SET org_path = 'x --> <script>alert(1)</script>'"
                           " WHERE id = 2")
    for path in (f"{API}/reports/districts/chart.svg?{JUNE}",
                 f"{API}/reports/districts/chart.svg?{JUNE}&prefix=北仑区&lang=en",
                 f"{API}/reports/units/{month.unit_id}/chart.svg",
                 f"{API}/sessions/{month.session_ids[0]}/attendance/chart.svg?utc_offset=480",
                 f"{API}/reports/districts/chart.svg?from=2030-01-01&to=2030-01-02"):
        status, body, headers = await fetch(service, path)
        assert status == 200, (path, body[:200])
        assert headers["Content-Type"] == "image/svg+xml"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert body.startswith(b"<?xml") and b"<svg" in body and b"<script" not in body
        xml.dom.minidom.parseString(body)  # well-formed whatever the labels say
    again = await fetch(service, f"{API}/reports/districts/chart.svg?{JUNE}")
    first = await fetch(service, f"{API}/reports/districts/chart.svg?{JUNE}")
    assert again[1] == first[1]  # deterministic


# --------------------------------------------------------------------------
# bad input and who may ask

ATTENDANCE_PATHS = (
    "/api/v1/sessions/{session}/attendance",
    "/api/v1/sessions/{session}/attendance?format=csv",
    "/api/v1/sessions/{session}/attendance/chart.svg",
    "/api/v1/reports/units/{unit}",
    "/api/v1/reports/units/{unit}?format=csv",
    "/api/v1/reports/units/{unit}/chart.svg",
    f"/api/v1/reports/districts?{JUNE}",
    f"/api/v1/reports/districts?{JUNE}&format=csv",
    f"/api/v1/reports/districts/chart.svg?{JUNE}",
)


async def test_only_admins_see_attendance(service: Service) -> None:
    session = await service.create_session()
    invitation = await invite(service, session, "新碶街道分课堂")
    status, unit = await call(service, "POST", f"{API}/units", {"name": "专题一"})
    for template in ATTENDANCE_PATHS:
        path = template.format(session=session["id"], unit=unit["id"])
        for token in (None, "wrong-token", invitation["token"], ADMIN_TOKEN + "x"):
            status, body, headers = await fetch(service, path, token)
            assert status == 401, (path, token, body)
            assert headers["WWW-Authenticate"].startswith("Bearer")
        for token in (session["view_token"], session["publish_token"]):
            assert (await fetch(service, path, token))[0] == 403, (path, token)
        assert (await fetch(service, path))[0] == 200, path
    for path in (f"{API}/sessions/nope/attendance", f"{API}/reports/units/999",
                 f"{API}/reports/units/abc", f"{API}/reports/units/%2B1",
                 f"{API}/sessions/nope/attendance/chart.svg"):
        assert (await fetch(service, path))[0] == 404, path


@pytest.mark.parametrize(("query", "field"), [
    ("to=2025-06-30", "from"),
    ("from=2025-06-01", "to"),
    ("from=2025-13-01&to=2025-12-31", "from"),
    ("from=2025-6-1&to=2025-06-30", "from"),
    ("from=20250601&to=2025-06-30", "from"),
    ("from=2025-06-01T00:00&to=2025-06-30", "from"),
    ("from=2025-02-29&to=2025-03-01", "from"),
    ("from=2025-06-30&to=2025-06-01", "to"),
    ("from=2025-01-01&to=2026-01-01", "to"),
    ("from=2024-02-29&to=2025-03-01", "to"),
    (f"{JUNE}&prefix=" + "区" * 201, "prefix"),
    (f"{JUNE}&prefix=北仑区%00", "prefix"),
    (f"{JUNE}&format=xlsx", "format"),
    ("from=2025-06-01&to=2025-06-30&utc_offset=abc", "utc_offset"),
    ("from=2025-06-01&to=2025-06-30&utc_offset=900", "utc_offset"),
])
async def test_bad_report_queries_are_422(service: Service, query: str, field: str) -> None:
    for path in ("/reports/districts", "/reports/districts/chart.svg"):
        if field == "format" and path.endswith(".svg"):
            continue
        status, body = await call(service, "GET", f"{API}{path}?{query}")
        assert status == 422, (path, query, body)
        assert f"{field} (error." in body["error"], body


async def test_good_edges_of_the_date_range(service: Service) -> None:
    for query in ("from=2025-01-01&to=2025-12-31", "from=2024-02-29&to=2025-02-28",
                  "from=2025-06-01&to=2025-06-01", "from=2025-06-01&to=2025-06-02&prefix="):
        assert (await call(service, "GET", f"{API}/reports/districts?{query}"))[0] == 200


async def test_the_prefix_matches_whole_path_parts(service: Service) -> None:
    db = db_of(service)
    seed_month(db, sites=0, sessions=1)
    now = day_start(dt.date(2025, 6, 1), 8)
    for n, path in enumerate(("北仑区", "北仑区 / 新碶街道", "北仑区二 / 新碶街道",
                              "宁波市 / 北仑区", "北仑_区 / 甲", "北%区 / 乙")):
        site_id = db.execute("INSERT INTO sites (name, org_path, created_at) VALUES (?, ?, ?)",
                             (f"分课堂{n}", path, now))
        db.execute("INSERT INTO invitations (id, session_id, site_id, expires_at, created_at)"
                   " VALUES (?, 's000', ?, ?, ?)", (f"i{n}", site_id, now + 9e5, now))

    async def sites(prefix: str) -> int:
        status, report = await call(service, "GET",
                                    f"{API}/reports/districts?{JUNE}&prefix={quote(prefix)}")
        assert status == 200, report
        return report["totals"]["sites"]  # type: ignore[no-any-return]

    assert await sites("北仑区") == 2
    assert await sites(" 北仑区/新碶街道 ") == 1
    assert await sites("北仑区 / 新") == 0
    assert await sites("北_区") == 0 and await sites("北%") == 0
    assert await sites("北仑_区") == 1 and await sites("北%区") == 1
    assert await sites("") == 6


@pytest.mark.parametrize("value", [0, 101, -5, 80.5, "80", True, None, [80]])
async def test_a_threshold_outside_1_to_100_is_422(service: Service, value: Any) -> None:
    status, body = await call(service, "POST", f"{API}/sessions",
                              {"title": "第一讲", "attendance_threshold": value})
    assert status == 422 and "attendance_threshold (error." in body["error"], body
    session = await service.create_session()
    assert session["attendance_threshold"] == 80
    status, body = await call(service, "PATCH", f"{API}/sessions/{session['id']}",
                              {"attendance_threshold": value})
    assert status == 422, body
    assert (await service.session(session["id"]))["attendance_threshold"] == 80


async def test_a_threshold_from_1_to_100_is_kept(service: Service) -> None:
    session = await service.create_session(attendance_threshold=1)
    assert session["attendance_threshold"] == 1
    status, changed = await call(service, "PATCH", f"{API}/sessions/{session['id']}",
                                 {"attendance_threshold": 100})
    assert status == 200 and changed["attendance_threshold"] == 100
    status, report = await call(service, "GET", f"{API}/sessions/{session['id']}/attendance")
    assert report["threshold"] == 100 and report["window"] is None


@pytest.fixture
async def small_rooms(tmp_path: Path) -> AsyncIterator[Service]:
    """The service with --max-headcount 50."""
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN, max_headcount=50)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    await server.close()


async def test_the_headcount_limit_is_configurable_and_reports_are_per_room(
    small_rooms: Service,
) -> None:
    service = small_rooms
    session = await service.create_session()
    mine = await invite(service, session, "新碶街道分课堂")
    other = await invite(service, session, "大碶街道分课堂")

    async def report(token: str, count: Any) -> int:
        status, _ = await call(service, "POST", f"{API}/room/headcount", {"count": count},
                               token=token)
        return status

    assert await report(mine["token"], 51) == 422
    assert await report(mine["token"], 50) == 204
    assert await report(other["token"], 7) == 204  # lands on the other room only
    assert await report(ADMIN_TOKEN, 7) == 403
    assert await report(session["view_token"], 7) == 403
    status, attendance_report = await call(service, "GET",
                                           f"{API}/sessions/{session['id']}/attendance")
    assert status == 200
    counts = {item["site_name"]: [h["count"] for h in item["headcount_history"]]
              for item in attendance_report["invitations"]}
    assert counts == {"新碶街道分课堂": [50], "大碶街道分课堂": [7]}


def test_max_headcount_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    def parse(*argv: str) -> Config:
        parser = argparse.ArgumentParser()
        add_serve_arguments(parser)
        return config_from_args(parser.parse_args(list(argv)))

    assert parse().max_headcount == 500
    assert parse("--max-headcount", "800").max_headcount == 800
    monkeypatch.setenv("ZHIXING_MAX_HEADCOUNT", "120")
    assert parse().max_headcount == 120
    for bad in ("0", "-3", "abc", "100001"):
        with pytest.raises(SystemExit):
            parse("--max-headcount", bad)


async def test_csv_cells_that_excel_would_run_are_made_inert(service: Service) -> None:
    session = await service.create_session("=HYPERLINK(\"http://x\")")
    await invite(service, session, "@SUM(1+1)", "+北仑区")
    status, body, headers = await fetch(service,
                                        f"{API}/sessions/{session['id']}/attendance?format=csv")
    assert status == 200
    [row] = parse_csv(body)
    assert row["分课堂"] == "'@SUM(1+1)" and row["组织路径"] == "'+北仑区"
    disposition = headers["Content-Disposition"]
    assert '"' not in unquote(disposition.split("filename*=UTF-8''")[1])


# --------------------------------------------------------------------------
# the page


async def test_the_reports_page_is_for_logged_in_admins(admin_service: Service) -> None:
    status, _, headers = await fetch(admin_service, "/admin/reports", token=None)
    assert (status, headers["Location"]) == (303, "/login")
    async with admin_service.http.post(f"{admin_service.base}/login", allow_redirects=False,
                                       data={"username": "admin", "password": PASSWORD}) as r:
        assert r.status == 303
    status, body, headers = await fetch(admin_service, "/admin/reports", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = body.decode()
    assert "/static/reports.js" in text
    assert "http://" not in text and "https://" not in text
    for name in ("reports.js", "reports.css"):
        status, static, _ = await fetch(admin_service, f"/static/{name}", token=None)
        assert status == 200 and b"http://" not in static and b"https://" not in static
    # The charts load in an <img> with the login cookie.
    month = seed_month(db_of(admin_service), sites=10, sessions=1)
    status, _, _ = await fetch(admin_service, f"{API}/reports/units/{month.unit_id}/chart.svg",
                               token=None)
    assert status == 200


@pytest.mark.browser
async def test_the_district_report_in_chromium(admin_service: Service,
                                               chromium: Chromium) -> None:
    month = seed_month(db_of(admin_service), sites=60, sessions=8)
    base = admin_service.base
    page = await open_console(chromium, base, "reports-zh-CN")
    await page.page.goto(f"{base}/admin/reports?tab=district")
    await chromium.wait_for_js(page, "the page is ready",
                               "() => document.body.dataset.ready === 'true'", 15)
    await page.page.fill("#district-prefix", "北仑区")
    await page.page.fill("#district-from", "2025-06-01")
    await page.page.fill("#district-to", "2025-06-30")
    await page.page.click("#district-form button[type=submit]")
    await chromium.wait_for_js(
        page, "the chart and six rows",
        "() => document.querySelector('#district-chart').dataset.loaded === 'true'"
        " && document.querySelector('#district-chart').naturalWidth > 0"
        " && document.querySelectorAll('#district-table tbody tr').length === 6", 20)
    total = await page.evaluate(
        "() => document.querySelector('#district-table tfoot tr td:last-child').textContent")
    assert int(total) == month.person_times["北仑区"]
    href = await page.evaluate("() => document.querySelector('#district-csv').href")
    assert "format=csv" in href and "prefix=%E5%8C%97%E4%BB%91%E5%8C%BA" in href
    assert await page.evaluate("() => document.querySelector('#tab-district').textContent") \
        == "按区县"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.page.screenshot(path=ARTIFACTS / "district-report.png", full_page=True)

    # One session: its rooms, their connections and the timeline.
    await page.page.goto(f"{base}/admin/reports?tab=session&session={month.session_ids[0]}")
    await chromium.wait_for_js(
        page, "the session's chart and its 60 rooms",
        "() => document.querySelector('#session-chart').dataset.loaded === 'true'"
        " && document.querySelectorAll('#session-table tbody tr').length === 60", 20)
    await page.page.screenshot(path=ARTIFACTS / "session-report.png", full_page=True)

    # A range the server refuses is shown next to the field.
    await page.page.goto(f"{base}/admin/reports?tab=district")
    await chromium.wait_for_js(page, "the page is ready again",
                               "() => document.body.dataset.ready === 'true'", 15)
    await page.page.fill("#district-to", "2025-05-01")
    await page.page.click("#district-form button[type=submit]")
    await chromium.wait_for_js(
        page, "the date error",
        "() => document.querySelector('.field-error[data-field=to]').textContent"
        " === '结束日期应不早于开始日期'", 10)


async def test_the_attendance_log_is_wired_into_the_app(service: Service) -> None:
    log = service.app[ATTENDANCE]
    assert isinstance(log, AttendanceLog)
    session = await service.create_session()
    await invite(service, session, "新碶街道分课堂")
    status, report = await call(service, "GET", f"{API}/sessions/{session['id']}/attendance")
    assert status == 200
    assert report["totals"]["rooms_invited"] == 1 and report["window"] is None
    assert report["invitations"][0]["intervals"] == []


@pytest.mark.parametrize("jump", [3600.0, -3600.0], ids=["forward", "back"])
def test_the_servers_clock_set_an_hour_keeps_a_rooms_presence(
    schedule: Schedule, jump: float
) -> None:
    """The server's wall clock is corrected by an hour while a room is
    connected: the room was there for as long as it was, not an hour more
    (or none at all)."""
    session_id = schedule.session["id"]
    wall, steady = Clock(T0), Clock(50.0)
    log = AttendanceLog(schedule.db, wall, monotonic=steady)
    invitation = schedule.invitations[0]["id"]
    log.on_viewer(session_id, fake_viewer(invitation, "r1", T0), "connected")
    steady.now += 600
    wall.now = T0 + 600 + jump  # the clock is set
    log.on_viewer(session_id, fake_viewer(invitation, "r1", T0), "closed")
    log.flush()
    [row] = schedule.db.all("SELECT connected_at, disconnected_at FROM attendance_intervals "
                            "WHERE resource_id = 'r1'")
    assert (row["connected_at"], row["disconnected_at"]) == (T0, T0 + 600)


def test_every_csv_export_makes_formula_cells_inert() -> None:
    """Every export writes through CsvExport.row, which quotes a text cell
    that Excel would run (= + - @, and tab or CR before one)."""
    import inspect
    from pathlib import Path

    import web
    from web import exports

    # The one CSV writer is web/exports.py's; every export goes through it.
    sources = {path.name: path.read_text(encoding="utf-8")
               for path in Path(web.__file__).parent.rglob("*.py")}
    assert [name for name, text in sources.items() if "csv.writer(" in text] == ["exports.py"]
    assert inspect.getsource(exports).count("csv.writer(") == 1
    assert sum(text.count("CsvExport(") for text in sources.values()) >= 5  # 4 reports, audit
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert exports._cell(f"{start}SUM(A1)") == f"'{start}SUM(A1)"
    assert exports._cell("北仑区 / 新碶街道") == "北仑区 / 新碶街道"
    assert exports._cell(-3) == -3 and exports._cell(12.5) == 12.5  # numbers stay
