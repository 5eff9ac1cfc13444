"""The request models that replaced the handlers' own parsing give the
errors those handlers gave: the same status, the same text (for 422 with
fields: every bad field and its message key, which the pages show per
field), and they accept what the handlers accepted."""

from __future__ import annotations

from typing import Any

import pytest

from classroom.errors import Invalid
from web.api.archive import ArchiveQuery
from web.api.reports import ReportFormat
from web.api.sessions import ReplayControl
from web.api.spec import Validated
from web.errors import Unprocessable, status_of
from web.pages.room import Headcount, TimeshiftRequest

HEADCOUNT = {"max_headcount": 500}
COUNT = "count must be a whole number from 0 to 500"
MODE = "mode must be 'start' or 'live'"
RESOURCE = "resource must name this room's WHEP resource"


def refused(model: type[Validated], data: dict[str, Any],
            context: dict[str, Any] | None = None) -> tuple[int, str]:
    with pytest.raises((Invalid, Unprocessable)) as caught:
        model.parse(data, context)
    error = caught.value
    assert isinstance(error, Invalid | Unprocessable)
    return status_of(error), error.message


@pytest.mark.parametrize(("data", "message"), [
    ({}, "invalid fields: action (error.bad_choice)"),
    ({"action": "rewind"}, "invalid fields: action (error.bad_choice)"),
    ({"action": ["seek"]}, "invalid fields: action (error.bad_choice)"),
    # A bad action is the only error, whatever the position.
    ({"action": "jump", "position": "x"}, "invalid fields: action (error.bad_choice)"),
    ({"action": "seek"}, "invalid fields: position (error.not_a_number)"),
    ({"action": "seek", "position": None}, "invalid fields: position (error.not_a_number)"),
    ({"action": "seek", "position": True}, "invalid fields: position (error.not_a_number)"),
    ({"action": "seek", "position": "5"}, "invalid fields: position (error.not_a_number)"),
    ({"action": "seek", "position": -1}, "invalid fields: position (error.not_a_number)"),
    ({"action": "seek", "position": 86400}, "invalid fields: position (error.not_a_number)"),
    ({"action": "seek", "position": float("nan")},
     "invalid fields: position (error.not_a_number)"),
])
def test_replay_control_refusals(data: dict[str, Any], message: str) -> None:
    assert refused(ReplayControl, data) == (422, message)


def test_replay_control_accepts() -> None:
    assert ReplayControl.parse({"action": "seek", "position": 5}).position == 5.0
    assert ReplayControl.parse({"action": "seek", "position": 86399.5}).position == 86399.5
    # Only a seek reads the position: anything else there is ignored, as before.
    assert ReplayControl.parse({"action": "pause", "position": "x"}).action == "pause"
    assert ReplayControl.parse({"action": "start", "extra": 1}).position is None


@pytest.mark.parametrize("data", [
    {}, {"count": None}, {"count": True}, {"count": 3.0}, {"count": "3"}, {"count": -1},
    {"count": 501}, {"count": [1]},
])
def test_headcount_refusals(data: dict[str, Any]) -> None:
    assert refused(Headcount, data, HEADCOUNT) == (422, COUNT)


def test_headcount_limit_is_the_deployments() -> None:
    assert Headcount.parse({"count": 500}, HEADCOUNT).count == 500
    assert Headcount.parse({"count": 0}, HEADCOUNT).count == 0
    assert refused(Headcount, {"count": 51}, {"max_headcount": 50}) == (
        422, "count must be a whole number from 0 to 50")


@pytest.mark.parametrize(("data", "message"), [
    ({}, MODE),
    ({"mode": "rewind", "resource": 5}, MODE),  # the mode first, as before
    ({"mode": "start"}, RESOURCE),
    ({"mode": "live", "resource": ""}, RESOURCE),
    ({"mode": "live", "resource": "x" * 65}, RESOURCE),
    ({"mode": "live", "resource": 12}, RESOURCE),
])
def test_timeshift_refusals(data: dict[str, Any], message: str) -> None:
    assert refused(TimeshiftRequest, data) == (422, message)


def test_timeshift_accepts() -> None:
    wanted = TimeshiftRequest.parse({"mode": "start", "resource": "x" * 64})
    assert (wanted.mode, wanted.resource) == ("start", "x" * 64)


@pytest.mark.parametrize(("query", "message"), [
    ({"state": "gone"}, "invalid fields: state (error.bad_choice)"),
    # One error at a time, in the order the handler checked them.
    ({"state": "gone", "course_id": "x"}, "invalid fields: state (error.bad_choice)"),
    ({"course_id": "+1", "unit_id": "x"}, "invalid fields: course_id (error.not_a_number)"),
    ({"unit_id": "１"}, "invalid fields: unit_id (error.not_a_number)"),
    ({"unit_id": "1" * 19}, "invalid fields: unit_id (error.not_a_number)"),
])
def test_archive_query_refusals(query: dict[str, str], message: str) -> None:
    assert refused(ArchiveQuery, query) == (422, message)


def test_archive_query_accepts() -> None:
    query = ArchiveQuery.parse({"state": "", "course_id": "", "unit_id": "12",
                                "q": "  " + "讲" * 150})
    assert (query.state, query.course_id, query.unit_id) == (None, None, 12)
    assert query.q == "讲" * 100  # cut, not refused
    # A reader's state is not looked at (readers see ready items).
    assert ArchiveQuery.parse({"state": "gone"}, {"reader": True}).state is None


def test_report_format() -> None:
    assert ReportFormat.parse({}).format == "json"
    assert ReportFormat.parse({"format": "csv", "utc_offset": "480"}).format == "csv"
    assert refused(ReportFormat, {"format": "xlsx"}) == (
        422, "invalid fields: format (error.bad_choice)")
