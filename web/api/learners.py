"""Admin JSON API for learners (学员): the roster and its CSV import, personal
links (issue, QR, revoke), assignment to units, a unit's self-study videos
and reading list (with its PDF/EPUB files), the review of learners'
write-ups, and the completion report (JSON, CSV or a chart).

Scopes are the sites' own: a district admin manages the learners of its
subtree and assigns them to the city's units; an auditor reads; a presenter
sees nothing. A unit's self-study videos and readings are the city's to choose.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any, ClassVar, Literal

import segno
from aiohttp import web
from pydantic import Field, field_validator

from classroom.attendance import charts
from classroom.catalog import MAX_NAME, MAX_TEXT
from classroom.learning import reports
from classroom.learning.learners import MAX_LEARNER_NAME, MAX_PHONE, MAX_POSITION
from classroom.learning.links import learner_url
from classroom.learning.readings import MAX_FILE_BYTES
from classroom.learning.writeups import MAX_COMMENT
from web import i18n
from web.api.spec import (
    ABSENT,
    JSON_BODY_ERRORS,
    Described,
    Reply,
    Shape,
    Validated,
    operation,
    read_described,
    read_query,
)
from web.auth import COOKIE, Caller, require_admin, require_city, require_reader
from web.errors import BadRequest, UnsupportedMediaType
from web.exports import CsvExport
from web.http import base_url, int_id, query_id, read_limited, receive_file
from web.keys import LIMITER, SCHOOL

MAX_CSV_BYTES = 2 * 1024 * 1024
ADMIN = (401, 403)
CSV = {"text/csv": {"schema": {"type": "string"}}}
MAX_READING_BYTES = MAX_FILE_BYTES
READING_MEDIA = {kind: {"schema": {"type": "string", "format": "binary"}}
                 for kind in ("application/pdf", "application/epub+zip",
                              "application/octet-stream")}
SVG_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}

# ---------------------------------------------------------------------- the contract


class Learner(Shape):
    """a learner (学员) on a node of the organization tree, optionally with a site (its
    room)"""

    component: ClassVar[bool] = True
    id: int
    name: str
    org_node_id: int
    org_path: str
    site_id: int | None
    site_name: str | None
    position: str
    phone: str
    link_active: bool = Field(description="a personal link was issued and not revoked")
    unit_ids: list[int]
    created_at: float


class LearnerInput(Described):
    component: ClassVar[bool] = True
    name: str = Field(min_length=1, max_length=MAX_LEARNER_NAME)
    org_node_id: int = Field(ABSENT, description="default: the site's node; one of them is "
                                                 "needed")
    site_id: int | None = Field(ABSENT, description="the learner's room (分课堂)")
    position: str = Field(ABSENT, max_length=MAX_POSITION)
    phone: str = Field(ABSENT, max_length=MAX_PHONE, description="digits, spaces, '-', '+'")


class LearnerChange(Described):
    """any of the fields"""

    name: str = Field(ABSENT, min_length=1, max_length=MAX_LEARNER_NAME)
    org_node_id: int = ABSENT
    site_id: int | None = ABSENT
    position: str = Field(ABSENT, max_length=MAX_POSITION)
    phone: str = Field(ABSENT, max_length=MAX_PHONE)


class LearnersQuery(Validated):
    unit_id: int = Field(ABSENT, description="only the learners of this unit")
    refusals: ClassVar[dict[str, str]] = {"unit_id": "error.not_a_number"}

    @field_validator("unit_id", mode="before")
    @classmethod
    def _unit(cls, raw: Any) -> int:
        return query_id(raw)


class Imported(Shape):
    imported: int
    learners: list[Learner]


class PersonalLink(Shape):
    promised = ("url", "token")
    url: str = Field(description="/learn/{token}: opens 我的学习 without a password")
    token: str


class Choice(Described):
    """learner_ids or org_node_id (every learner of its subtree), not both"""

    learner_ids: list[int] = Field(ABSENT, min_length=1)
    org_node_id: int = ABSENT


class Counted(Shape):
    promised = ("count",)
    count: int


class UnitVideo(Shape):
    id: str
    title: str
    duration: float | None
    state: str


class UnitVideos(Described):
    item_ids: list[str] = Field(description="ready archive items, in order (at most 100)")


class Reading(Shape):
    component: ClassVar[bool] = True
    id: int
    unit_id: int
    title: str
    notes: str
    file_type: Literal["pdf", "epub"] | None
    file_size: int | None
    created_at: float


class ReadingInput(Described):
    title: str = Field(min_length=1, max_length=MAX_NAME)
    notes: str = Field(ABSENT, max_length=MAX_TEXT)


class ReadingChange(Described):
    """any of the fields"""

    title: str = Field(ABSENT, min_length=1, max_length=MAX_NAME)
    notes: str = Field(ABSENT, max_length=MAX_TEXT)


class Writeup(Shape):
    """a learner's write-up (学用成果总结) for a unit"""

    component: ClassVar[bool] = True
    id: int
    learner_id: int
    learner_name: str
    org_node_id: int
    unit_id: int
    unit_name: str
    text: str
    attachment_type: Literal["pdf", "docx", "jpeg", "png"] | None
    attachment_size: int | None
    state: Literal["submitted", "accepted", "returned"]
    comment: str
    submitted_at: float
    reviewed_at: float | None


class WriteupsQuery(Validated):
    unit_id: int = Field(ABSENT, description="only this unit")
    state: Literal["submitted", "accepted", "returned"] = ABSENT
    refusals: ClassVar[dict[str, str]] = {"unit_id": "error.not_a_number",
                                          "state": "error.bad_choice"}

    @field_validator("unit_id", mode="before")
    @classmethod
    def _unit(cls, raw: Any) -> int:
        return query_id(raw)


class Review(Described):
    decision: Literal["accept", "return"]
    comment: str = Field(ABSENT, max_length=MAX_COMMENT,
                         description="what to change; needed to return it")


class ReportQuery(Validated):
    unit_id: int = Field(ABSENT, description="only this unit")
    format: Literal["json", "csv"] = Field("json", description="csv: one row per learner "
                                                               "and unit, UTF-8 with BOM")
    refusals: ClassVar[dict[str, str]] = {"unit_id": "error.not_a_number",
                                          "format": "error.bad_choice"}

    @field_validator("unit_id", mode="before")
    @classmethod
    def _unit(cls, raw: Any) -> int:
        return query_id(raw)


class LearnerRow(Shape):
    learner_id: int
    name: str
    org_node_id: int
    org_path: str
    site_name: str | None
    position: str
    unit_id: int
    unit_name: str
    readings_read: int
    readings_total: int
    videos_complete: int
    videos_total: int
    lecture_attended: bool = Field(description="the learner's site attended one of the "
                                               "unit's sessions")
    writeup: Literal["submitted", "accepted", "returned"] | None
    done: bool = Field(description="every reading read, every video complete, the lecture "
                                   "attended and the write-up accepted")


class Group(Shape):
    id: int | str
    name: str
    learners: int
    readings_read: int
    readings_total: int
    videos_complete: int
    videos_total: int
    lecture_attended: int
    writeups_accepted: int
    done: int


class CompletionReport(Shape):
    learners: list[LearnerRow]
    units: list[Group]
    districts: list[Group] = Field(description="by the first part of the org path")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/learners", list_learners),
        web.post("/api/v1/learners", create_learner),
        web.post("/api/v1/learners/import", import_learners),
        web.get("/api/v1/learners/{learner_id}", get_learner),
        web.patch("/api/v1/learners/{learner_id}", update_learner),
        web.delete("/api/v1/learners/{learner_id}", delete_learner),
        web.post("/api/v1/learners/{learner_id}/link", issue_link),
        web.get("/api/v1/learners/{learner_id}/link/qr.svg", link_qr),
        web.delete("/api/v1/learners/{learner_id}/link", revoke_link),
        web.post("/api/v1/learning/units/{unit_id}/assign", assign),
        web.post("/api/v1/learning/units/{unit_id}/unassign", unassign),
        web.get("/api/v1/learning/units/{unit_id}/videos", get_videos),
        web.put("/api/v1/learning/units/{unit_id}/videos", set_videos),
        web.get("/api/v1/learning/units/{unit_id}/readings", list_readings),
        web.post("/api/v1/learning/units/{unit_id}/readings", create_reading),
        web.patch("/api/v1/learning/readings/{reading_id}", update_reading),
        web.delete("/api/v1/learning/readings/{reading_id}", delete_reading),
        web.put("/api/v1/learning/readings/{reading_id}/file", upload_reading),
        web.get("/api/v1/learning/writeups", list_writeups),
        web.post("/api/v1/learning/writeups/{writeup_id}/review", review_writeup),
        web.get("/api/v1/learning/writeups/{writeup_id}/attachment", writeup_attachment),
        web.get("/api/v1/learning/report", completion_report),
        web.get("/api/v1/learning/report/chart.svg", completion_chart),
    ]


def _learner_id(request: web.Request) -> int:
    return int_id(request, "learner_id", "learner")


# ---------------------------------------------------------------------- roster


@operation("The learners of the caller's part of the tree", query=(LearnersQuery,),
           errors=(*ADMIN, 422),
           replies={200: Reply("{learners: [Learner]}", Learner, listed="learners")})
async def list_learners(request: web.Request) -> web.Response:
    caller = require_reader(request)
    query = read_query(request, LearnersQuery)
    learners = request.app[SCHOOL].learners.learners(caller.scope, query.unit_id)
    return web.json_response({"learners": learners}, headers={"Cache-Control": "no-store"})


@operation("Add a learner", body=LearnerInput, errors=(*ADMIN, *JSON_BODY_ERRORS),
           replies={201: Reply("created", Learner)})
async def create_learner(request: web.Request) -> web.Response:
    caller = require_admin(request)
    data = await read_described(request, LearnerInput)
    learner = request.app[SCHOOL].learners.create(data, caller.scope)
    return web.json_response(learner, status=201,
                             headers={"Location": f"/api/v1/learners/{learner['id']}"})


@operation("One learner", errors=(*ADMIN, 404), replies={200: Reply("the learner", Learner)})
async def get_learner(request: web.Request) -> web.Response:
    caller = require_reader(request)
    return web.json_response(request.app[SCHOOL].learners.learner(
        _learner_id(request), caller.scope))


@operation("Change a learner", body=LearnerChange, errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("the changed learner", Learner)})
async def update_learner(request: web.Request) -> web.Response:
    caller = require_admin(request)
    learner_id = _learner_id(request)
    data = await read_described(request, LearnerChange)
    return web.json_response(request.app[SCHOOL].learners.update(learner_id, data,
                                                                 caller.scope))


@operation("Delete a learner (its progress with it)", errors=(*ADMIN, 404),
           replies={204: Reply("deleted")})
async def delete_learner(request: web.Request) -> web.Response:
    caller = require_admin(request)
    request.app[SCHOOL].learners.delete(_learner_id(request), caller.scope)
    return web.Response(status=204)


@operation("Import learners from CSV (UTF-8, header name,org_path,site,position,phone): "
           "org_path an existing node's path (empty: the caller's node), site a site's name "
           "on that node; every row or none",
           body_media={"text/csv": {"schema": {"type": "string"}},
                       "text/plain": {"schema": {"type": "string"}}},
           errors=(*ADMIN, (400, "not UTF-8"), 413, 415,
                   (422, "bad rows (each named 'row N'), no header or no rows")),
           replies={201: Reply("imported", Imported)})
async def import_learners(request: web.Request) -> web.Response:
    caller = require_admin(request)
    if request.content_type not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType("Content-Type must be text/csv")
    body = await read_limited(request, MAX_CSV_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the CSV file must be UTF-8") from exc
    learners = request.app[SCHOOL].learners.import_csv(text, caller.scope)
    return web.json_response({"imported": len(learners), "learners": learners}, status=201)


# ---------------------------------------------------------------------- links


@operation("Issue the learner's personal link; its previous link stops working",
           errors=(*ADMIN, 404), replies={201: Reply("the link", PersonalLink)})
async def issue_link(request: web.Request) -> web.Response:
    caller = require_admin(request)
    token = request.app[SCHOOL].learners.issue_link(_learner_id(request), caller.scope)
    return web.json_response({"url": learner_url(base_url(request), token), "token": token},
                             status=201, headers={"Cache-Control": "no-store"})


@operation("The learner's working link as a QR code (SVG)",
           errors=(*ADMIN, (404, "no such learner, or no working link")),
           replies={200: Reply("the QR code",
                               media={"image/svg+xml": {"schema": {"type": "string"}}})})
async def link_qr(request: web.Request) -> web.Response:
    caller = require_admin(request)
    token = request.app[SCHOOL].learners.current_token(_learner_id(request), caller.scope)
    buffer = io.BytesIO()
    segno.make(learner_url(base_url(request), token), error="m").save(
        buffer, kind="svg", scale=4, border=2)
    return web.Response(body=buffer.getvalue(), content_type="image/svg+xml",
                        headers={"Cache-Control": "no-store"})


@operation("Revoke the learner's link: it stops working at once", errors=(*ADMIN, 404),
           replies={204: Reply("revoked")})
async def revoke_link(request: web.Request) -> web.Response:
    caller = require_admin(request)
    request.app[SCHOOL].learners.revoke_link(_learner_id(request), caller.scope)
    return web.Response(status=204)


# ---------------------------------------------------------------------- units


def _unit_id(request: web.Request) -> int:
    return int_id(request, "unit_id", "unit")


@operation("Assign learners to a unit (by list or by org node)", body=Choice,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("how many were newly assigned", Counted)})
async def assign(request: web.Request) -> web.Response:
    caller = require_admin(request)
    unit_id = _unit_id(request)
    data = await read_described(request, Choice)
    count = request.app[SCHOOL].learners.assign(unit_id, data, caller.scope)
    return web.json_response({"count": count})


@operation("Take learners off a unit (by list or by org node)", body=Choice,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("how many were taken off", Counted)})
async def unassign(request: web.Request) -> web.Response:
    caller = require_admin(request)
    unit_id = _unit_id(request)
    data = await read_described(request, Choice)
    count = request.app[SCHOOL].learners.unassign(unit_id, data, caller.scope)
    return web.json_response({"count": count})


@operation("A unit's self-study videos (自学案例课程), in order", errors=(*ADMIN, 404),
           replies={200: Reply("{videos: [UnitVideo]}", UnitVideo, listed="videos")})
async def get_videos(request: web.Request) -> web.Response:
    require_reader(request)
    return web.json_response({"videos": request.app[SCHOOL].study.videos(_unit_id(request))})


@operation("Set a unit's self-study videos (city admins)", body=UnitVideos,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("{videos: [UnitVideo]}", UnitVideo, listed="videos")})
async def set_videos(request: web.Request) -> web.Response:
    require_city(request)
    unit_id = _unit_id(request)
    data = await read_described(request, UnitVideos)
    return web.json_response({"videos": request.app[SCHOOL].study.set_videos(unit_id, data)})


# ---------------------------------------------------------------------- readings


def _reading_id(request: web.Request) -> int:
    return int_id(request, "reading_id", "reading")


@operation("A unit's reading list (研读书目)", errors=(*ADMIN, 404),
           replies={200: Reply("{readings: [Reading]}", Reading, listed="readings")})
async def list_readings(request: web.Request) -> web.Response:
    require_reader(request)
    return web.json_response({"readings": request.app[SCHOOL].readings.readings(
        _unit_id(request))})


@operation("Add a reading to a unit's list (city admins)", body=ReadingInput,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS), replies={201: Reply("created", Reading)})
async def create_reading(request: web.Request) -> web.Response:
    require_city(request)
    unit_id = _unit_id(request)
    data = await read_described(request, ReadingInput)
    return web.json_response(request.app[SCHOOL].readings.create(unit_id, data), status=201)


@operation("Change a reading (city admins)", body=ReadingChange,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS), replies={200: Reply("changed", Reading)})
async def update_reading(request: web.Request) -> web.Response:
    require_city(request)
    reading_id = _reading_id(request)
    data = await read_described(request, ReadingChange)
    return web.json_response(request.app[SCHOOL].readings.update(reading_id, data))


@operation("Delete a reading and its file (city admins)", errors=(*ADMIN, 404),
           replies={204: Reply("deleted")})
async def delete_reading(request: web.Request) -> web.Response:
    require_city(request)
    request.app[SCHOOL].readings.delete(_reading_id(request))
    return web.Response(status=204)


@operation("Upload a reading's file: a PDF or an EPUB, recognised by its first bytes "
           "(city admins)", body_media=READING_MEDIA,
           errors=(*ADMIN, 404, 413, (422, "neither a PDF nor an EPUB"),
                   (429, "too many uploads from this admin a minute (Retry-After)"),
                   (503, "too many uploads at once (Retry-After)")),
           replies={200: Reply("the reading with its file", Reading)})
async def upload_reading(request: web.Request) -> web.Response:
    require_city(request)
    readings = request.app[SCHOOL].readings
    staged = readings.staging_path(_reading_id(request))
    # Who uploads: the bearer token, or the login cookie (checked above).
    secret = request.headers.get("Authorization") or request.cookies.get(COOKIE, "")
    with request.app[LIMITER].upload(secret, "an admin (reading file)"):
        await receive_file(request, staged, MAX_READING_BYTES)
        stored = readings.store_file(_reading_id(request), staged)
    return web.json_response(stored)


# ---------------------------------------------------------------------- write-ups


def _writeup_id(request: web.Request) -> int:
    return int_id(request, "writeup_id", "write-up")


@operation("Learners' write-ups (学用成果总结) in the caller's part of the tree",
           query=(WriteupsQuery,), errors=(*ADMIN, 422),
           replies={200: Reply("{writeups: [Writeup]}", Writeup, listed="writeups")})
async def list_writeups(request: web.Request) -> web.Response:
    caller = require_reader(request)
    query = read_query(request, WriteupsQuery)
    return web.json_response({"writeups": request.app[SCHOOL].writeups.writeups(
        caller.scope, query.unit_id, query.state)}, headers={"Cache-Control": "no-store"})


@operation("Accept a write-up, or return it with a comment (the learner sees both)",
           body=Review, errors=(*ADMIN, 404, *JSON_BODY_ERRORS,
                                (409, "not waiting for review")),
           replies={200: Reply("the reviewed write-up", Writeup)})
async def review_writeup(request: web.Request) -> web.Response:
    caller = require_admin(request)
    writeup_id = _writeup_id(request)
    data = await read_described(request, Review)
    return web.json_response(request.app[SCHOOL].writeups.review(
        writeup_id, data, caller.scope, caller.username or "(admin token)"))


@operation("A write-up's attachment", errors=(*ADMIN, 404),
           replies={200: Reply("the file")})
async def writeup_attachment(request: web.Request) -> web.StreamResponse:
    caller = require_reader(request)
    path, mime = request.app[SCHOOL].writeups.attachment(_writeup_id(request), caller.scope)
    return web.FileResponse(path, headers={"Content-Type": mime, "Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff",
                                           "Content-Disposition": "attachment"})


# ---------------------------------------------------------------------- report


async def _rows(request: web.Request, caller: Caller,
                unit_id: int | None) -> list[reports.LearnerRow]:
    school = request.app[SCHOOL]
    tree = school.org.tree()
    conn = school.db.reader()
    try:
        return await asyncio.to_thread(reports.build, conn, caller.scope, tree.path, unit_id)
    finally:
        conn.close()


@operation("Completion per learner and unit (self-study videos, the lecture attended by the "
           "learner's room), summed per unit and per district; ?format=csv: one row per "
           "learner and unit", query=(ReportQuery,), errors=(*ADMIN, 422),
           replies={200: Reply("report", CompletionReport, media=CSV)})
async def completion_report(request: web.Request) -> web.StreamResponse:
    caller = require_reader(request)
    query = read_query(request, ReportQuery)
    rows = await _rows(request, caller, query.unit_id)
    if query.format == "csv":
        export = CsvExport(request, "学员完成情况.csv", "learners-completion.csv")
        await export.start(reports.CSV_HEADER)
        for row in rows:
            await export.row(row.cells())
        return await export.finish()
    return web.json_response({
        "learners": [row.json() for row in rows],
        "units": reports.summary(rows, reports.unit_of),
        "districts": reports.summary(rows, reports.district_of)},
        headers={"Cache-Control": "no-store"})


@operation("Learners who completed the loop (every video, the lecture attended), per "
           "district, as an SVG bar chart", query=(LearnersQuery,), errors=(*ADMIN, 422),
           replies={200: Reply("the chart",
                               media={"image/svg+xml": {"schema": {"type": "string"}}})})
async def completion_chart(request: web.Request) -> web.Response:
    caller = require_reader(request)
    query = read_query(request, LearnersQuery)
    rows = await _rows(request, caller, query.unit_id)
    texts = i18n.catalog(i18n.language_of(request))
    groups = sorted(reports.summary(rows, reports.district_of), key=lambda g: -g["done"])
    body = await charts.render(
        charts.bar_chart, [g["name"] or texts["learn.chart.city"] for g in groups],
        [g["done"] for g in groups], texts["learn.chart.title"], texts["learn.chart.axis"],
        texts["reports.chart.others"], texts["reports.chart.empty"])
    return web.Response(body=body, content_type="image/svg+xml", headers=SVG_HEADERS)
