"""Attendance over HTTP (admin only): a session's attendance, the unit and
district reports, their CSV exports and charts, and the reports page.

CSV exports are for Excel as organizers use it: UTF-8 with a byte-order mark
(else Excel reads Chinese as mojibake), CRLF lines, a Chinese file name in
``filename*`` (RFC 6266 / 5987) with an ASCII fallback, and text cells that
would start a formula made inert. They are streamed as chunks while the
cursor is read, so a year of rows costs the memory of a few rows.
"""

from __future__ import annotations

import datetime as dt
from contextlib import aclosing
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field

from classroom.attendance import charts, reports
from classroom.attendance import intervals as attendance
from classroom.errors import Invalid
from web import i18n
from web.api.spec import ABSENT, Described, Reply, Shape, Validated, operation, read_query
from web.auth import Caller, authenticate_admin, logged_in, readable_session, require_reader
from web.errors import Forbidden
from web.exports import CsvExport
from web.http import PAGE_HEADERS, STATIC_DIR, int_id
from web.keys import ATTENDANCE, CATALOG, SCHOOL

REPORTS_PAGE = STATIC_DIR / "reports.html"
SVG_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}

# ---------------------------------------------------------------------- the contract
# The query's days, time zone and prefix are the domain's to check
# (classroom.attendance.reports): their models describe them. The format is
# this module's: its model checks it.


class ReportFormat(Validated):
    format: Literal["json", "csv"] = Field(
        "json", description="csv: a streamed download, UTF-8 with BOM (opens in Excel), "
                            "named in Content-Disposition filename*")
    refusals: ClassVar[dict[str, str]] = {"format": "error.bad_choice"}


class TimeZone(Described):
    utc_offset: int = Field(ABSENT, ge=-720, le=840,
                            description="minutes east of UTC for dates and clock times (480 "
                                        "in China); default: the server's time zone")


class Districts(Described):
    prefix: str = Field(ABSENT, max_length=reports.MAX_PREFIX,
                        description="org path prefix matched on whole parts ('北仑区' matches "
                                    "'北仑区 / 新碶街道', not '北仑区二'); empty: every site")
    from_: dt.date = Field(alias="from", description="first day")
    to: dt.date = Field(description="last day (included); from ≤ to, less than a year after "
                                    "from")


class Totals(Shape):
    """rooms_* count (session, site) pairs; person_times (人次) sums the latest headcounts of
    attended rooms"""

    sessions: int
    sites: int
    rooms_invited: int
    rooms_connected: int
    rooms_attended: int
    person_times: int
    attended_without_headcount: int


class Group(Totals):
    name: str  # the totals of one group (a course, a district, ...)


class Interval(Shape):
    connected_at: float
    disconnected_at: float | None = Field(description="null: connected")
    ended_by: Literal["left", "restart"] | None


class HeadcountReport(Shape):
    count: int
    reported_at: float


class SiteAttendance(Shape):
    """one invited site's attendance: intervals as the server saw its WHEP connections
    (ended_by 'restart': cut at the server's last sign of life)"""

    component: ClassVar[bool] = True
    invitation_id: str
    site_id: int
    site_name: str
    org_path: str
    revoked: bool
    intervals: list[Interval]
    connected: bool = Field(description="connected now")
    connected_seconds: float = Field(
        description="union of the intervals inside the window (overlapping reconnects count "
                    "once)")
    share: float | None = Field(description="of the window, 0 … 1")
    attended: bool
    reconnects: int
    headcount: int | None = Field(description="the latest report")
    headcount_reported_at: float | None
    headcount_history: list[HeadcountReport]
    person_times: int = Field(description="headcount if attended, else 0")


class Window(Shape):
    start: float
    end: float
    duration: float
    scheduled: bool


class SessionAttendance(Shape):
    component: ClassVar[bool] = True
    session_id: str
    title: str
    threshold: int
    now: float
    window: Window | None
    invitations: list[SiteAttendance]
    totals: Totals
    timeline: list[list[Any]] = Field(description="[time, rooms connected from then on]")


class UnitReport(Shape):
    unit: dict[str, Any]
    sessions: list[dict[str, Any]]
    districts: list[Group]
    totals: Totals


class Organizers(Described):
    from_: dt.date = Field(alias="from", description="first day")
    to: dt.date = Field(description="last day (included); less than a year after from")


class OrganizerGroup(Totals):
    """the totals of one organizer: the city's own training or a district's extension
    training (延伸培训), and its groups"""

    id: int | None
    name: str
    training: Literal["city", "extension"]
    months: list[Group] = Field(description="YYYY-MM, in order")
    units: list[Group]
    districts: list[Group] = Field(description="by the sites' first org path part")
    levels: list[Group] = Field(description="by the sites' node kind: district, town, "
                                            "village, department")


class OrganizerReport(Shape):
    from_: str = Field(alias="from")
    to: str
    organizers: list[OrganizerGroup] = Field(description="the city first, then by "
                                                         "person-times")
    totals: Totals


class DistrictReport(Shape):
    prefix: str
    from_: str = Field(alias="from")
    to: str
    groups: list[Group]
    totals: Totals


CSV = {"text/csv": {"schema": {"type": "string"}}}
SVG = {200: Reply("SVG image (drawn on the server)",
                  media={"image/svg+xml": {"schema": {"type": "string"}}})}
ADMIN = (401, 403)
BAD_DISTRICTS = (422, "bad dates (from > to, a year or more apart), prefix or format")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/admin/reports", page),
        web.get("/api/v1/sessions/{session_id}/attendance", session_attendance),
        web.get("/api/v1/sessions/{session_id}/attendance/chart.svg", session_chart),
        web.get("/api/v1/reports/units/{unit_id}", unit_report),
        web.get("/api/v1/reports/units/{unit_id}/chart.svg", unit_chart),
        web.get("/api/v1/reports/districts", district_report),
        web.get("/api/v1/reports/districts/chart.svg", district_chart),
        web.get("/api/v1/reports/organizers", organizer_report),
        web.get("/api/v1/reports/organizers/chart.svg", organizer_chart),
    ]


async def page(request: web.Request) -> web.StreamResponse:
    if not logged_in(request):
        raise web.HTTPSeeOther("/login")
    if not authenticate_admin(request).scope.reads:
        raise web.HTTPSeeOther("/admin")  # a presenter has no reports
    return web.FileResponse(REPORTS_PAGE, headers=PAGE_HEADERS)


# ---------------------------------------------------------------- helpers

def _wants_csv(request: web.Request) -> bool:
    return read_query(request, ReportFormat).format == "csv"


def _tz(request: web.Request) -> dt.tzinfo:
    return reports.parse_tz(request.query)


def _own(request: web.Request, caller: Caller) -> str:
    """The org path a scoped account's reports stay under ('' for the city)."""
    if caller.scope.everything:
        return ""
    return request.app[SCHOOL].org.path(caller.scope.node_id)


def _session(request: web.Request) -> tuple[dict[str, Any], str]:
    """The session's row and the path its report is limited to."""
    caller, session = readable_session(request)
    return session.row, _own(request, caller)


def _unit(request: web.Request) -> tuple[dict[str, Any], str]:
    caller = require_reader(request)
    return request.app[CATALOG].unit(int_id(request, "unit_id", "unit")), _own(request, caller)


def _district_query(request: web.Request) -> tuple[str, reports.DateRange]:
    """The prefix (a scoped account's own path when none or a wider one is
    asked; 403 for another district's) and the days."""
    caller = require_reader(request)
    own = _own(request, caller)
    errors: dict[str, str] = {}
    prefix = ""
    days = None
    try:
        prefix = reports.parse_prefix(request.query.get("prefix"))
    except Invalid as exc:
        errors.update(exc.errors)
    try:
        days = reports.parse_range(request.query, _tz(request))
    except Invalid as exc:
        errors.update(exc.errors)
    if errors or days is None:
        raise Invalid(errors)
    if not reports.covers_prefix(own, prefix):
        if reports.covers_prefix(prefix, own):
            prefix = own  # a wider question gets the caller's own part
        else:
            raise Forbidden("this org path belongs to another part of the organization")
    return prefix, days


def _now(request: web.Request) -> float:
    return request.app[ATTENDANCE].now()


def _minutes(seconds: float) -> float:
    return round(seconds / 60, 1)


def _percent(share: float | None) -> float | str:
    return "" if share is None else round(share * 100, 1)


def _local(seconds: float | None, tz: dt.tzinfo, pattern: str = "%Y-%m-%d %H:%M") -> str:
    return "" if seconds is None else dt.datetime.fromtimestamp(seconds, tz).strftime(pattern)



def _texts(request: web.Request) -> dict[str, str]:
    return i18n.catalog(i18n.language_of(request))


def _yes_no(texts: dict[str, str], value: bool) -> str:
    return texts["reports.csv.yes"] if value else texts["reports.csv.no"]


def _svg(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="image/svg+xml", headers=SVG_HEADERS)


# ----------------------------------------------------------------- session

@operation("A session's attendance (出勤) per invited site, with totals; ?format=csv "
           "downloads it", query=(ReportFormat, TimeZone), errors=(*ADMIN, 404, 422),
           replies={200: Reply("attendance (JSON), or CSV", SessionAttendance, media=CSV)})
async def session_attendance(request: web.Request) -> web.StreamResponse:
    session, own = _session(request)
    as_csv = _wants_csv(request)
    tz = _tz(request)
    if not as_csv:
        return web.json_response(request.app[ATTENDANCE].session_report(session, own),
                                 headers={"Cache-Control": "no-store"})
    request.app[ATTENDANCE].flush()
    texts = _texts(request)
    day = _local(session["scheduled_start"] or session["started_at"] or session["created_at"],
                 tz, "%Y-%m-%d")
    export = CsvExport(request, texts["reports.file.session"].format(
        title=session["title"], date=day) + ".csv", f"attendance-{session['id']}.csv")
    await export.start([texts[f"reports.csv.{name}"] for name in (
        "site", "org_path", "connections", "reconnects", "minutes", "percent", "attended",
        "headcount", "headcount_at", "person_times", "intervals")])
    where, params = reports.within(own, "s.id = ?", [session["id"]])
    rows = reports.site_rows(request.app[CATALOG].db, where, params, _now(request))
    async with aclosing(rows):  # a client that goes away closes the cursor now
        async for row in rows:
            result = row.result
            spans = "; ".join(f"{_local(start, tz, '%H:%M:%S')}–{_local(end, tz, '%H:%M:%S')}"
                              for start, end in row.intervals)
            await export.row([
                row.site["site_name"], row.site["org_path"], result.connections,
                result.reconnects, _minutes(result.connected_seconds), _percent(result.share),
                _yes_no(texts, result.attended), "" if result.headcount is None
                else result.headcount, _local(row.site["headcount_at"], tz),
                result.person_times, spans])
    return await export.finish()


@operation("Timeline of rooms connected over the session", query=(TimeZone,),
           errors=(*ADMIN, 404, 422), replies=SVG)
async def session_chart(request: web.Request) -> web.Response:
    session, own = _session(request)
    tz = _tz(request)
    report = request.app[ATTENDANCE].session_report(session, own)
    texts = _texts(request)
    window = report["window"]
    body = await charts.render(
        charts.timeline_chart, report["timeline"],
        None if window is None else (window["start"], window["end"]),
        report["totals"]["rooms_invited"], tz,
        {"title": texts["reports.chart.timeline"].format(title=session["title"]),
         "axis": texts["reports.chart.rooms"], "invited": texts["reports.chart.invited"],
         "empty": texts["reports.chart.empty"]})
    return _svg(body)


# -------------------------------------------------------------------- unit

@operation("A unit's (专题) attendance across its sessions, and per district (first part of "
           "the org path); ?format=csv: one row per session", query=(ReportFormat, TimeZone),
           errors=(*ADMIN, 404, 422), replies={200: Reply("report", UnitReport, media=CSV)})
async def unit_report(request: web.Request) -> web.StreamResponse:
    unit, own = _unit(request)
    as_csv = _wants_csv(request)
    tz = _tz(request)
    db = request.app[CATALOG].db
    request.app[ATTENDANCE].flush()
    if not as_csv:
        return web.json_response(await reports.unit_report(db, unit, _now(request), own),
                                 headers={"Cache-Control": "no-store"})
    texts = _texts(request)
    export = CsvExport(request, texts["reports.file.unit"].format(name=unit["name"]) + ".csv",
                       f"attendance-unit-{unit['id']}.csv")
    await export.start([texts[f"reports.csv.{name}"] for name in (
        "date", "session", "course", "batch", "rooms_invited", "rooms_connected",
        "rooms_attended", "person_times")])
    current: reports.SiteRow | None = None
    totals = attendance.Totals()

    async def emit() -> None:
        if current is not None:
            session = current.session
            await export.row([_local(session["session_time"], tz, "%Y-%m-%d"),
                              session["title"], session["course_title"] or "",
                              session["batch"], totals.invited, totals.connected,
                              totals.attended, totals.person_times])

    where, params = reports.within(own, "c.unit_id = ?", [unit["id"]])
    rows = reports.site_rows(db, where, params, _now(request))
    async with aclosing(rows):
        async for row in rows:
            if current is None or row.session["id"] != current.session["id"]:
                await emit()
                totals = attendance.Totals()
            current = row
            totals.add(row.result)
    await emit()
    return await export.finish()


@operation("Person-times per district of a unit (bar chart)", errors=(*ADMIN, 404),
           replies=SVG)
async def unit_chart(request: web.Request) -> web.Response:
    unit, own = _unit(request)
    request.app[ATTENDANCE].flush()
    report = await reports.unit_report(request.app[CATALOG].db, unit, _now(request), own)
    texts = _texts(request)
    return _svg(await _bars(texts, report["districts"],
                            texts["reports.chart.unit"].format(name=unit["name"])))


async def _bars(texts: dict[str, str], groups: list[dict[str, Any]], title: str) -> bytes:
    return await charts.render(
        charts.bar_chart, [g["name"] or texts["reports.ungrouped"] for g in groups],
        [g["person_times"] for g in groups], title, texts["reports.chart.person_times"],
        texts["reports.chart.others"], texts["reports.chart.empty"])


# ---------------------------------------------------------------- district

@operation("Attendance per district: sites under an org path prefix, sessions in a date "
           "range, summed per the path part below the prefix; ?format=csv: one row per "
           "(session, site), streamed", query=(Districts, TimeZone, ReportFormat),
           errors=(*ADMIN, BAD_DISTRICTS),
           replies={200: Reply("report", DistrictReport, media=CSV)})
async def district_report(request: web.Request) -> web.StreamResponse:
    require_reader(request)
    as_csv = _wants_csv(request)
    prefix, days = _district_query(request)
    db = request.app[CATALOG].db
    request.app[ATTENDANCE].flush()
    if not as_csv:
        return web.json_response(await reports.district_report(db, prefix, days, _now(request)),
                                 headers={"Cache-Control": "no-store"})
    texts = _texts(request)
    filename = texts["reports.file.district"].format(
        prefix=prefix.replace(reports.SEPARATOR, "-") or texts["reports.all_sites"],
        first=days.first.isoformat(), last=days.last.isoformat())
    export = CsvExport(request, filename + ".csv",
                       f"attendance-{days.first.isoformat()}-{days.last.isoformat()}.csv")
    await export.start([texts[f"reports.csv.{name}"] for name in (
        "date", "session", "unit", "course", "batch", "site", "org_path", "minutes",
        "percent", "attended", "headcount", "person_times")])
    where, params = reports.district_where(prefix, days)
    rows = reports.site_rows(db, where, params, _now(request))
    async with aclosing(rows):
        async for row in rows:
            session, result = row.session, row.result
            await export.row([
                _local(session["session_time"], days.tz, "%Y-%m-%d"), session["title"],
                session["unit_name"] or "", session["course_title"] or "", session["batch"],
                row.site["site_name"], row.site["org_path"], _minutes(result.connected_seconds),
                _percent(result.share), _yes_no(texts, result.attended),
                "" if result.headcount is None else result.headcount, result.person_times])
    return await export.finish()


@operation("Person-times per district (bar chart) for the same query",
           query=(Districts, TimeZone), errors=(*ADMIN, 422), replies=SVG)
async def district_chart(request: web.Request) -> web.Response:
    prefix, days = _district_query(request)
    request.app[ATTENDANCE].flush()
    report = await reports.district_report(request.app[CATALOG].db, prefix, days,
                                           _now(request))
    texts = _texts(request)
    title = texts["reports.chart.district"].format(
        prefix=prefix or texts["reports.all_sites"], first=days.first.isoformat(),
        last=days.last.isoformat())
    return _svg(await _bars(texts, report["groups"], title))


# --------------------------------------------------------------- organizers

def _organizer_query(request: web.Request) -> tuple[str, reports.DateRange]:
    caller = require_reader(request)
    return _own(request, caller), reports.parse_range(request.query, _tz(request))


def _organizer_name(texts: dict[str, str], organizer: dict[str, Any]) -> str:
    if organizer["training"] == "city":
        return texts["reports.organizer.city"]
    return texts["reports.organizer.extension"].format(name=organizer["name"])


@operation("Person-times per organizer: the city's own training (市级培训) and each "
           "district's extension training (延伸培训), each per month, unit, district and "
           "level; a district's account sees its own sites only; ?format=csv: one row per "
           "(organizer, grouping, group)", query=(Organizers, TimeZone, ReportFormat),
           errors=(*ADMIN, (422, "bad dates or format")),
           replies={200: Reply("report", OrganizerReport, media=CSV)})
async def organizer_report(request: web.Request) -> web.StreamResponse:
    require_reader(request)
    as_csv = _wants_csv(request)
    own, days = _organizer_query(request)
    request.app[ATTENDANCE].flush()
    report = await reports.organizer_report(request.app[CATALOG].db, days, _now(request), own)
    if not as_csv:
        return web.json_response(report, headers={"Cache-Control": "no-store"})
    texts = _texts(request)
    first, last = days.first.isoformat(), days.last.isoformat()
    export = CsvExport(request, texts["reports.file.organizers"].format(first=first, last=last)
                       + ".csv", f"attendance-organizers-{first}-{last}.csv")
    await export.start([texts[f"reports.csv.{name}"] for name in (
        "organizer", "training", "grouping", "group", "sessions", "rooms_invited",
        "rooms_attended", "person_times")])
    for organizer in report["organizers"]:
        name = _organizer_name(texts, organizer)
        training = texts[f"reports.training.{organizer['training']}"]
        rows = [(texts["reports.grouping.total"], "", organizer)]
        for grouping in ("months", "units", "districts", "levels"):
            for group in organizer[grouping]:
                label = group["name"]
                if grouping == "levels":
                    label = texts.get(f"org.kind.{label}", label)
                rows.append((texts[f"reports.grouping.{grouping}"],
                             label or texts["reports.ungrouped"], group))
        for grouping, label, group in rows:
            await export.row([name, training, grouping, label, group["sessions"],
                              group["rooms_invited"], group["rooms_attended"],
                              group["person_times"]])
    return await export.finish()


@operation("Person-times per organizer (bar chart) for the same query",
           query=(Organizers, TimeZone), errors=(*ADMIN, 422), replies=SVG)
async def organizer_chart(request: web.Request) -> web.Response:
    own, days = _organizer_query(request)
    request.app[ATTENDANCE].flush()
    report = await reports.organizer_report(request.app[CATALOG].db, days, _now(request), own)
    texts = _texts(request)
    groups = [{"name": _organizer_name(texts, o), "person_times": o["person_times"]}
              for o in report["organizers"]]
    title = texts["reports.chart.organizers"].format(first=days.first.isoformat(),
                                                     last=days.last.isoformat())
    return _svg(await _bars(texts, groups, title))
