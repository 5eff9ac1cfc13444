"""我的学习 for a learner's personal link: the page at /learn/{token}, what it
reads (/learn/{token}/study), its player's progress reports and the media of
the items of the learner's units.

The token is the credential and is checked on every request (signature,
then the roster: a revoked or replaced link is 410 at once). These routes are
not under /api/v1/: a progress report every 10 s from every learner is not a
change for the audit log, and the access log takes the token out of /learn/
paths. Errors are plain text, as for other media and pages.
"""

from __future__ import annotations

import hashlib
import html
import json
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field

from classroom.errors import DomainError
from classroom.learning import progress, writeups
from web import i18n
from web.api.spec import (
    JSON_BODY_ERRORS,
    Described,
    Reply,
    Shape,
    Validated,
    operation,
    read_described,
    read_model,
)
from web.errors import BadRequest, UnsupportedMediaType, status_of
from web.http import STATIC_DIR, int_id, read_limited, receive_file
from web.keys import LIMITER, SCHOOL

PAGE = STATIC_DIR / "learn.html"
LANG_MARK = "{{lang}}"
# The address holds the learner's link (web/headers.py adds the rest).
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
MAX_ATTACHMENT_BYTES = writeups.MAX_ATTACHMENT_BYTES
MEDIA_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
LINK_ERRORS = ((401, "not a learner link of this server"),
               (410, "the link was revoked or replaced"))

# ---------------------------------------------------------------------- the contract


class Entry(Shape):
    id: str
    title: str
    duration: float | None
    played: float = Field(description="seconds played, counted once, measured by the server")
    position: float = Field(description="where to resume, on any device")
    complete: bool = Field(description="at least 90 % played")


class ReadingEntry(Shape):
    id: int
    title: str
    notes: str
    file_type: str | None
    file_size: int | None
    read: bool


class MyWriteup(Shape):
    id: int
    text: str
    attachment_type: str | None
    state: Literal["submitted", "accepted", "returned"]
    comment: str = Field(description="the reviewer's, when returned or accepted")
    submitted_at: float
    reviewed_at: float | None


class UnitStudy(Shape):
    id: int
    name: str
    readings: list[ReadingEntry] = Field(description="the reading list (研读专业书籍)")
    readings_read: int
    videos: list[Entry] = Field(description="self-study videos (自学案例课程)")
    lectures: list[Entry] = Field(description="the lecture's replay (集中授课)")
    videos_complete: int
    lecture_attended: bool = Field(description="the learner's room attended the lecture")
    writeup: MyWriteup | None


class SurveyQuestion(Shape):
    kind: Literal["single", "multiple", "text"]
    text: str
    choices: list[str]


class MySurvey(Shape):
    id: int
    title: str
    unit_id: int | None
    questions: list[SurveyQuestion]
    state: Literal["open", "closed"]
    answers: list[Any] | None = Field(description="the learner's own, or null")


class MyStudy(Shape):
    promised = ("name", "units", "surveys")
    name: str
    org_path: str
    site_name: str | None
    units: list[UnitStudy]
    surveys: list[MySurvey] = Field(description="needs surveys (需求调研) sent to the learner")


class SurveyAnswers(Described):
    answers: list[Any] = Field(description="one per question: a choice's index (single), a "
                                           "list of indexes (multiple), a text (≤ 2,000 "
                                           "characters), or null")


class Answered(Shape):
    promised = ("answers",)
    answers: list[Any]


class ProgressReport(Validated):
    """what the player actually played since the page opened (the browser's
    ``video.played``) and where it is"""

    item_id: str = Field(pattern="^[0-9a-f]{16}$")
    ranges: list[list[float]] = Field(
        max_length=progress.MAX_RANGES,
        description="[start, end] seconds; within the item; overlaps count once")
    position: float = Field(ge=0)
    refusals: ClassVar[dict[str, str]] = {"item_id": "error.unknown_reference",
                                          "ranges": "error.progress_ranges",
                                          "position": "error.progress_outside"}


class WriteupText(Described):
    text: str = Field(min_length=1, max_length=writeups.MAX_TEXT,
                      description="学用成果总结, at most 5,000 characters")


class ReadMark(Validated):
    read: bool = Field(True, description="false: not read after all")
    refusals: ClassVar[dict[str, str]] = {"read": "error.not_a_boolean"}


class ProgressState(Shape):
    promised = ("item_id", "played", "position", "complete")
    item_id: str
    duration: float
    played: float
    position: float
    complete: bool


def routes() -> list[web.RouteDef]:
    return [
        web.get("/learn/{token}", page),
        web.get("/learn/{token}/study", study),
        web.post("/learn/{token}/progress", report),
        web.get("/learn/{token}/media/{item_id}", media),
        web.get("/learn/{token}/readings/{reading_id}/file", reading_file),
        web.post("/learn/{token}/readings/{reading_id}/read", mark_read),
        web.put("/learn/{token}/writeups/{unit_id}", submit_writeup),
        web.put("/learn/{token}/writeups/{unit_id}/attachment", writeup_attachment),
        web.put("/learn/{token}/surveys/{survey_id}", answer_survey),
    ]


def _token(request: web.Request) -> str:
    return request.match_info["token"]


async def page(request: web.Request) -> web.Response:
    """The page, or a notice (in the reader's language) for a link that does not work."""
    try:
        request.app[SCHOOL].learners.check_link(_token(request))
    except DomainError as exc:
        status = status_of(exc)
        key = "learn.revoked" if status == 410 else "learn.denied"
        title = i18n.text(request, f"{key}.title")
        return i18n.notice_page(
            request, status, title=title, heading=title,
            lines=[f'<p class="reason">{html.escape(i18n.text(request, f"{key}.body"))}</p>'],
            stylesheet="learn.css", switch_key="learn.lang.other", headers=PAGE_HEADERS)
    text = PAGE.read_text(encoding="utf-8").replace(LANG_MARK, i18n.language_of(request))
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers=PAGE_HEADERS)


@operation("我的学习: the learner's units with their videos, lecture replays and the "
           "progress the server measured; the token is the learner's personal link",
           security=None, errors=LINK_ERRORS, replies={200: Reply("the learner's study", MyStudy)})
async def study(request: web.Request) -> web.Response:
    return web.json_response(request.app[SCHOOL].my_study(_token(request)),
                             headers={"Cache-Control": "no-store"})


@operation("The player's progress report (every ~10 s and when the page goes): the ranges "
           "played are merged into what the server keeps; a report that adds more than 2× "
           "the time since the previous one, ranges outside the item or an item not "
           "assigned are refused and nothing is kept", security=None, body=ProgressReport,
           errors=(*LINK_ERRORS, (403, "the item is not one of the learner's units"),
                   *JSON_BODY_ERRORS, (429, "too many reports; Retry-After says when")),
           replies={200: Reply("what the server keeps", ProgressState)})
async def report(request: web.Request) -> web.Response:
    school = request.app[SCHOOL]
    learner = school.learners.check_link(_token(request))
    # Per learner, not per token: a new link does not buy a new bucket.
    key = hashlib.sha256(f"learner {learner['id']}".encode()).hexdigest()
    request.app[LIMITER].progress_report(key, f"learner {learner['id']}")
    body = await read_model(request, ProgressReport)
    state = school.study.report(int(learner["id"]), body.item_id,
                                [list(r) for r in body.ranges], body.position)
    return web.json_response(state, headers={"Cache-Control": "no-store"})


@operation("The file of a video or lecture of the learner's units; supports Range",
           security=None, errors=(*LINK_ERRORS, (403, "not one of the learner's items"),
                                  404),
           replies={200: Reply("the whole file"), 206: Reply("the requested range"),
                    416: Reply("range out of bounds")})
async def media(request: web.Request) -> web.StreamResponse:
    path = request.app[SCHOOL].learner_media(_token(request), request.match_info["item_id"])
    return web.FileResponse(path, headers=MEDIA_HEADERS)


@operation("The file of a reading of the learner's units (PDF or EPUB); supports Range",
           security=None, errors=(*LINK_ERRORS, (403, "not one of the learner's units"), 404),
           replies={200: Reply("the whole file"), 206: Reply("the requested range"),
                    416: Reply("range out of bounds")})
async def reading_file(request: web.Request) -> web.StreamResponse:
    path, mime = request.app[SCHOOL].learner_reading(
        _token(request), int_id(request, "reading_id", "reading"))
    return web.FileResponse(path, headers={**MEDIA_HEADERS, "Content-Type": mime})


@operation("Mark a reading of the learner's units read (or not)", security=None,
           body=ReadMark,
           errors=(*LINK_ERRORS, (403, "not one of the learner's units"), 404,
                   *JSON_BODY_ERRORS),
           replies={204: Reply("kept")})
async def mark_read(request: web.Request) -> web.Response:
    reading_id = int_id(request, "reading_id", "reading")
    school = request.app[SCHOOL]
    school.learners.check_link(_token(request))
    body = await read_model(request, ReadMark)
    school.mark_read(_token(request), reading_id, body.read)
    return web.Response(status=204)


MAX_WRITEUP_BODY = 64 * 1024  # 5,000 characters as six-byte \u escapes (30,000), with room


@operation("Submit the learner's write-up for one of its units (again, until it is "
           "accepted); the body may be up to 64 KiB, the text up to 5,000 characters",
           security=None, body=WriteupText,
           errors=(*LINK_ERRORS, (403, "not one of the learner's units"), 404,
                   *JSON_BODY_ERRORS, (409, "accepted already")),
           replies={200: Reply("the write-up", MyWriteup)})
async def submit_writeup(request: web.Request) -> web.Response:
    unit_id = int_id(request, "unit_id", "unit")
    school = request.app[SCHOOL]
    school.learners.check_link(_token(request))
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    body = await read_limited(request, MAX_WRITEUP_BODY)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return web.json_response(school.submit_writeup(_token(request), unit_id, data))


@operation("Attach a file to the learner's write-up (PDF, DOCX, JPEG or PNG, recognised by "
           "its first bytes; at most 20 MB)", security=None,
           body_media={kind: {"schema": {"type": "string", "format": "binary"}}
                       for kind in (*writeups.MIME_TYPES.values(), "application/octet-stream")},
           errors=(*LINK_ERRORS, (403, "not one of the learner's units"),
                   (404, "no write-up text yet"), (409, "accepted already"), 413,
                   (422, "not a PDF, DOCX, JPEG or PNG"),
                   (429, "too many uploads from this link a minute (Retry-After)"),
                   (503, "too many uploads at once (Retry-After)")),
           replies={200: Reply("the write-up", MyWriteup)})
async def writeup_attachment(request: web.Request) -> web.Response:
    unit_id = int_id(request, "unit_id", "unit")
    school = request.app[SCHOOL]
    writeup_id, staged = school.writeup_staging(_token(request), unit_id)
    with request.app[LIMITER].upload(_token(request), "a learner (write-up attachment)"):
        await receive_file(request, staged, MAX_ATTACHMENT_BYTES)
        stored = school.writeups.store_attachment(writeup_id, staged)
    return web.json_response({k: stored[k] for k in (
        "id", "text", "attachment_type", "state", "comment", "submitted_at", "reviewed_at")})


@operation("Answer a survey sent to the learner (again, until it closes)", security=None,
           body=SurveyAnswers,
           errors=(*LINK_ERRORS, (403, "not sent to this learner"), 404, *JSON_BODY_ERRORS,
                   (409, "the survey is closed")),
           replies={200: Reply("the answers kept", Answered)})
async def answer_survey(request: web.Request) -> web.Response:
    survey_id = int_id(request, "survey_id", "survey")
    school = request.app[SCHOOL]
    school.learners.check_link(_token(request))
    data = await read_described(request, SurveyAnswers)
    answers = school.answer_survey(_token(request), survey_id, data.get("answers"))
    return web.json_response({"answers": answers})
