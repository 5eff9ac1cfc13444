"""Admin JSON API for needs surveys (需求调研): made by the city, sent to learners
by any admin within its part of the tree, tallied (with a chart per choice
question) and exported as CSV. Tallies and exports count the answers of the
caller's own learners."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field

from classroom.attendance import charts
from classroom.catalog import MAX_NAME
from classroom.errors import Invalid
from classroom.learning import surveys
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
from web.auth import require_admin, require_city, require_reader
from web.exports import CsvExport
from web.http import int_id
from web.keys import SCHOOL

ADMIN = (401, 403)
SVG_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}

# ---------------------------------------------------------------------- the contract


class Question(Shape):
    kind: Literal["single", "multiple", "text"]
    text: str = Field(max_length=surveys.MAX_QUESTION_TEXT)
    choices: list[str] = Field(description="2 to 20 for a choice question; none for text")


class Survey(Shape):
    component: ClassVar[bool] = True
    id: int
    title: str
    unit_id: int | None
    questions: list[Question]
    state: Literal["open", "closed"]
    created_at: float
    closed_at: float | None


class SurveyInput(Described):
    title: str = Field(min_length=1, max_length=MAX_NAME)
    unit_id: int | None = Field(ABSENT, description="the unit it prepares")
    questions: list[Question] = Field(min_length=1, max_length=surveys.MAX_QUESTIONS)


class Recipients(Described):
    """learner_ids or org_node_id (every learner of its subtree), not both"""

    learner_ids: list[int] = Field(ABSENT, min_length=1)
    org_node_id: int = ABSENT


class Sent(Shape):
    promised = ("count",)
    count: int


class Tally(Shape):
    answered: int
    counts: list[int] = Field(description="per choice (none for a text question)")
    texts: list[str] = Field(description="a text question's answers")


class SurveyResults(Shape):
    id: int
    title: str
    unit_id: int | None
    questions: list[Question]
    state: Literal["open", "closed"]
    created_at: float
    closed_at: float | None
    recipients: int
    answered: int
    tallies: list[Tally]


class ChartQuery(Validated):
    question: int = Field(1, ge=1, le=surveys.MAX_QUESTIONS, description="its number, from 1")
    refusals: ClassVar[dict[str, str]] = {"question": "error.out_of_range"}

    @classmethod
    def parse(cls, data: Any, context: Any = None) -> ChartQuery:
        raw = dict(data)
        if isinstance(raw.get("question"), str):
            text = raw["question"]
            raw["question"] = int(text) if text.isdigit() and len(text) < 4 else -1
        return super().parse(raw, context)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/learning/surveys", list_surveys),
        web.post("/api/v1/learning/surveys", create_survey),
        web.get("/api/v1/learning/surveys/{survey_id}", get_survey),
        web.post("/api/v1/learning/surveys/{survey_id}/recipients", add_recipients),
        web.post("/api/v1/learning/surveys/{survey_id}/close", close_survey),
        web.get("/api/v1/learning/surveys/{survey_id}/export", export_survey),
        web.get("/api/v1/learning/surveys/{survey_id}/chart.svg", survey_chart),
    ]


def _survey_id(request: web.Request) -> int:
    return int_id(request, "survey_id", "survey")


@operation("Needs surveys (需求调研)", errors=ADMIN,
           replies={200: Reply("{surveys: [Survey]}", Survey, listed="surveys")})
async def list_surveys(request: web.Request) -> web.Response:
    require_reader(request)
    return web.json_response({"surveys": request.app[SCHOOL].surveys.surveys()},
                             headers={"Cache-Control": "no-store"})


@operation("Make a survey (city admins); its questions are fixed from then on",
           body=SurveyInput, errors=(*ADMIN, *JSON_BODY_ERRORS),
           replies={201: Reply("created", Survey)})
async def create_survey(request: web.Request) -> web.Response:
    require_city(request)
    data = await read_described(request, SurveyInput)
    return web.json_response(request.app[SCHOOL].surveys.create(data), status=201)


@operation("A survey with its tallies over the caller's learners", errors=(*ADMIN, 404),
           replies={200: Reply("the survey and its tallies", SurveyResults)})
async def get_survey(request: web.Request) -> web.Response:
    caller = require_reader(request)
    return web.json_response(request.app[SCHOOL].surveys.results(_survey_id(request),
                                                                 caller.scope),
                             headers={"Cache-Control": "no-store"})


@operation("Send an open survey to learners of the caller's part of the tree (through "
           "their personal links)", body=Recipients,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS, (409, "the survey is closed")),
           replies={200: Reply("how many were added", Sent)})
async def add_recipients(request: web.Request) -> web.Response:
    caller = require_admin(request)
    survey_id = _survey_id(request)
    data = await read_described(request, Recipients)
    school = request.app[SCHOOL]
    school.surveys.results(survey_id, caller.scope)  # 404 before the learners are read
    chosen = school.learners.chosen(data, caller.scope)
    return web.json_response({"count": school.surveys.add_recipients(survey_id, chosen)})


@operation("Close a survey: no answer is taken or changed after (city admins)",
           errors=(*ADMIN, 404), replies={200: Reply("the survey", Survey)})
async def close_survey(request: web.Request) -> web.Response:
    require_city(request)
    return web.json_response(request.app[SCHOOL].surveys.close(_survey_id(request)))


@operation("The answers of the caller's learners as CSV (UTF-8 with BOM): one row per "
           "learner, one column per question", errors=(*ADMIN, 404),
           replies={200: Reply("CSV", media={"text/csv": {"schema": {"type": "string"}}})})
async def export_survey(request: web.Request) -> web.StreamResponse:
    caller = require_reader(request)
    school = request.app[SCHOOL]
    survey_id = _survey_id(request)
    survey = school.surveys.results(survey_id, caller.scope)
    answers = school.surveys.answers(survey_id, caller.scope)
    tree = school.org.tree()
    export = CsvExport(request, f"需求调研-{survey['title']}.csv", f"survey-{survey_id}.csv")
    await export.start(["学员", "组织", "提交时间",
                        *(f"{n}. {q['text']}" for n, q in enumerate(survey["questions"], 1))])
    for row in answers:
        cells = []
        for question, answer in zip(survey["questions"], row["answers"], strict=True):
            if answer is None:
                cells.append("")
            elif question["kind"] == "text":
                cells.append(answer)
            else:
                chosen = answer if isinstance(answer, list) else [answer]
                cells.append("；".join(question["choices"][i] for i in chosen))
        await export.row([row["name"], tree.path(row["org_node_id"]),
                          _local_time(row["answered_at"]), *cells])
    return await export.finish()


def _local_time(at: float) -> str:
    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")


@operation("A choice question's tally as an SVG bar chart", query=(ChartQuery,),
           errors=(*ADMIN, 404, (422, "no such question, or a text question")),
           replies={200: Reply("the chart",
                               media={"image/svg+xml": {"schema": {"type": "string"}}})})
async def survey_chart(request: web.Request) -> web.Response:
    caller = require_reader(request)
    survey_id = _survey_id(request)
    number = read_query(request, ChartQuery).question
    results = request.app[SCHOOL].surveys.results(survey_id, caller.scope)
    if number > len(results["questions"]) or \
            results["questions"][number - 1]["kind"] == "text":
        raise Invalid({"question": "error.out_of_range"})
    question = results["questions"][number - 1]
    texts = i18n.catalog(i18n.language_of(request))
    body = await charts.render(
        charts.bar_chart, question["choices"], results["tallies"][number - 1]["counts"],
        f"{number}. {question['text']}", texts["learn.survey.chart_axis"],
        texts["reports.chart.others"], texts["reports.chart.empty"])
    return web.Response(body=body, content_type="image/svg+xml", headers=SVG_HEADERS)
