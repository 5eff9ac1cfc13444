"""Learners (学员) over HTTP: the roster and its CSV import, personal links and
their revocation, assignment, self-study progress measured by the server, the
media of a learner's items and the completion report; bad input is a 4xx that
changes nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import pytest

from tests.support.catalog import call, created, tampered
from tests.support.learning import (
    as_learner,
    learner_with_link,
    lift_progress_limit,
    progress_rows,
    ready_item,
)
from tests.support.service import Service, invite
from web.keys import SCHOOL

API = "/api/v1"
TABLES = ("learners", "learner_units", "unit_videos", "video_progress", "reading_items",
          "reading_marks", "writeups", "surveys", "survey_recipients", "survey_answers")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n" * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200


def tables(service: Service) -> dict[str, list[tuple[Any, ...]]]:
    db = service.app[SCHOOL].db
    return {t: sorted(tuple(r.values()) for r in db.all(f"SELECT * FROM {t}"))
            for t in TABLES}


async def unit_with_video(service: Service, seconds: int = 30) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
    unit = created(await call(service, "POST", f"{API}/units", {"name": "第一专题"}))
    item = ready_item(service, seconds)
    reply = await call(service, "PUT", f"{API}/learning/units/{unit['id']}/videos",
                       {"item_ids": [item["id"]]})
    assert reply.status == 200, reply.text
    assert [v["id"] for v in reply.json()["videos"]] == [item["id"]]
    return unit, item


# --------------------------------------------------------------------------- roster


async def test_roster_create_change_delete_and_refusals(service: Service) -> None:
    beilun = created(await call(service, "POST", f"{API}/org", {"name": "北仑区",
                                                                "parent_id": 1}))
    site = created(await call(service, "POST", f"{API}/sites",
                              {"name": "新碶街道分课堂", "org_path": "北仑区"}))
    made = created(await call(service, "POST", f"{API}/learners",
                              {"name": "李四", "site_id": site["id"], "position": "科员",
                               "phone": "138 0000 0000"}))
    assert made["org_node_id"] == beilun["id"] and made["org_path"] == "北仑区"
    assert made["site_name"] == "新碶街道分课堂" and not made["link_active"]
    before = tables(service)
    for body, field in (({"name": ""}, "name"), ({"name": "王五"}, "org_node_id"),
                        ({"name": "王五", "org_node_id": 999}, "org_node_id"),
                        ({"name": "王五", "org_node_id": 1, "phone": "call me"}, "phone"),
                        ({"name": "王" * 65, "org_node_id": 1}, "name"),
                        ({"name": "王五", "org_node_id": 1, "site_id": 999}, "site_id")):
        reply = await call(service, "POST", f"{API}/learners", body)
        assert reply.status == 422 and field in reply.text, (body, reply.status, reply.text)
    assert (await call(service, "POST", f"{API}/learners", "name=x",
                       content_type="text/plain")).status == 415
    assert (await call(service, "POST", f"{API}/learners", {"name": "x"},
                       token="wrong")).status == 401
    assert tables(service) == before
    changed = await call(service, "PATCH", f"{API}/learners/{made['id']}", {"position": "副科长"})
    assert changed.status == 200 and changed.json()["position"] == "副科长"
    listed = await call(service, "GET", f"{API}/learners")
    assert [row["name"] for row in listed.json()["learners"]] == ["李四"]
    assert (await call(service, "GET", f"{API}/learners?unit_id=abc")).status == 422
    assert (await call(service, "DELETE", f"{API}/learners/{made['id']}")).status == 204
    assert (await call(service, "GET", f"{API}/learners/{made['id']}")).status == 404


async def test_csv_import_names_bad_rows_and_writes_nothing(service: Service) -> None:
    await call(service, "POST", f"{API}/org", {"name": "北仑区", "parent_id": 1})
    await call(service, "POST", f"{API}/sites", {"name": "新碶街道分课堂", "org_path": "北仑区"})
    before = tables(service)
    bad = ("name,org_path,site,position,phone\r\n"
           "张三,北仑区,新碶街道分课堂,科员,13800000000\r\n"
           "李四,不存在区,,,\r\n"
           "王五,北仑区,没有的分课堂,,\r\n"
           ",北仑区,,,\r\n"
           "赵六,北仑区,,,abc\r\n")
    reply = await call(service, "POST", f"{API}/learners/import", bad, content_type="text/csv")
    assert reply.status == 422, reply.text
    errors = reply.json()["errors"] if "errors" in reply.json() else reply.json()
    text = str(errors)
    for row in ("row 2", "row 3", "row 4", "row 5"):
        assert row in text, (row, text)
    assert "row 1" not in text
    assert tables(service) == before
    assert (await call(service, "POST", f"{API}/learners/import", "x\r\n",
                        content_type="application/json")).status == 415
    assert (await call(service, "POST", f"{API}/learners/import", "title\r\nx\r\n",
                       content_type="text/csv")).status == 422
    assert (await call(service, "POST", f"{API}/learners/import", "name\r\n\xff".encode("latin-1"),
                       content_type="text/csv")).status == 400
    assert tables(service) == before
    good = "\ufeffname,org_path,site,position\r\n张三,北仑区,新碶街道分课堂,科员\r\n李四,,,\r\n"
    reply = await call(service, "POST", f"{API}/learners/import", good, content_type="text/csv")
    assert reply.status == 201, reply.text
    imported = reply.json()
    assert imported["imported"] == 2
    assert [(r["name"], r["org_path"], r["site_name"]) for r in imported["learners"]] == [
        ("张三", "北仑区", "新碶街道分课堂"), ("李四", "", None)]


# --------------------------------------------------------------------------- links


async def test_a_personal_link_opens_my_study_and_revocation_stops_it_at_once(
        service: Service) -> None:
    unit, item = await unit_with_video(service)
    learner, token = await learner_with_link(service, unit_id=unit["id"])
    page = await as_learner(service, "GET", token, "")
    assert page.status == 200 and "/static/learn.js" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    study = (await as_learner(service, "GET", token, "/study")).json()
    assert study["name"] == "张三"
    assert [u["id"] for u in study["units"]] == [unit["id"]]
    assert study["units"][0]["videos"][0]["id"] == item["id"]
    media = await as_learner(service, "GET", token, f"/media/{item['id']}")
    assert media.status == 200
    qr = await call(service, "GET", f"{API}/learners/{learner['id']}/link/qr.svg")
    assert qr.status == 200 and qr.body.startswith(b"<?xml")

    # A forged link, a room's invitation and nonsense: 401, nothing recorded.
    session = await service.create_session()
    room = await invite(service, session, "新碶街道分课堂")
    for forged in (tampered(token), room["token"], "abc", "a.b"):
        for tail in ("", "/study", f"/media/{item['id']}"):
            assert (await as_learner(service, "GET", forged, tail)).status == 401, (forged, tail)
        reply = await as_learner(service, "POST", forged, "/progress",
                                 {"item_id": item["id"], "ranges": [[0, 5]], "position": 5})
        assert reply.status == 401
    assert progress_rows(service) == []

    # Revoked: every route of the link answers 410 from the next request on.
    assert (await call(service, "DELETE", f"{API}/learners/{learner['id']}/link")).status == 204
    for tail in ("", "/study", f"/media/{item['id']}"):
        assert (await as_learner(service, "GET", token, tail)).status == 410, tail
    reply = await as_learner(service, "POST", token, "/progress",
                             {"item_id": item["id"], "ranges": [[0, 5]], "position": 5})
    assert reply.status == 410 and progress_rows(service) == []
    assert (await call(service, "GET", f"{API}/learners/{learner['id']}/link/qr.svg")).status \
        == 404
    # A new link works; the one before it never again.
    fresh = created(await call(service, "POST", f"{API}/learners/{learner['id']}/link"))
    assert (await as_learner(service, "GET", fresh["token"], "/study")).status == 200
    assert (await as_learner(service, "GET", token, "/study")).status == 410
    # Deleting the learner ends its link too.
    await call(service, "DELETE", f"{API}/learners/{learner['id']}")
    assert (await as_learner(service, "GET", fresh["token"], "/study")).status == 410


# --------------------------------------------------------------------------- progress


async def report(service: Service, token: str, item_id: str, ranges: list[list[float]],
                 position: float) -> Any:
    return await as_learner(service, "POST", token, "/progress",
                            {"item_id": item_id, "ranges": ranges, "position": position})


async def test_progress_is_the_union_of_what_was_played(service: Service) -> None:
    lift_progress_limit(service)
    unit, item = await unit_with_video(service, 30)
    _, token = await learner_with_link(service, unit_id=unit["id"])
    first = await report(service, token, item["id"], [[0, 10]], 10)
    assert first.status == 200, first.text
    assert first.json()["played"] == 10 and not first.json()["complete"]
    # The same report again, and a seek back over what was played: nothing more.
    again = await report(service, token, item["id"], [[0, 10]], 10)
    assert again.json()["played"] == 10
    back = await report(service, token, item["id"], [[0, 10], [2, 8]], 8)
    assert back.json()["played"] == 10 and back.json()["position"] == 8
    # Resume on another device: the server's position.
    study = (await as_learner(service, "GET", token, "/study")).json()
    assert study["units"][0]["videos"][0]["position"] == 8
    # Ranges outside the item, a bad position, malformed: 422/400, nothing kept.
    kept = progress_rows(service)
    for bad in ([[0, 45]], [[-3, 4]], [[5, 2]], [[0, "x"]], "0-10", [[0, 1, 2]]):
        reply = await report(service, token, item["id"], bad, 5)  # type: ignore[arg-type]
        assert reply.status == 422, (bad, reply.status, reply.text)
    assert (await report(service, token, item["id"], [[0, 5]], 99)).status == 422
    reply = await as_learner(service, "POST", token, "/progress", "not json",
                             content_type="application/json")
    assert reply.status == 400
    assert progress_rows(service) == kept
    # Past 90 %: complete, and it stays complete.
    await asyncio.sleep(0.1)
    done = await report(service, token, item["id"], [[10, 28]], 28)
    assert done.status == 200 and done.json()["complete"] and done.json()["played"] == 28
    study = (await as_learner(service, "GET", token, "/study")).json()
    assert study["units"][0]["videos"][0]["complete"]
    assert study["units"][0]["videos_complete"] == 1


async def test_reports_that_claim_too_much_or_come_too_often_are_refused(
        service: Service) -> None:
    unit, item = await unit_with_video(service, 300)
    other = ready_item(service, 30, "未分配")
    _, token = await learner_with_link(service, unit_id=unit["id"])
    # More than 2× the time since the last report (the first: a 30 s slack).
    reply = await report(service, token, item["id"], [[0, 60]], 60)
    assert reply.status == 422 and "too_fast" in reply.text
    # An item not assigned to the learner.
    reply = await report(service, token, other["id"], [[0, 5]], 5)
    assert reply.status == 403
    assert (await as_learner(service, "GET", token, f"/media/{other['id']}")).status == 403
    assert progress_rows(service) == []
    # Absurd rates: after a burst, 429 with Retry-After, nothing kept.
    statuses = []
    for n in range(12):
        reply = await report(service, token, item["id"], [[0, 1 + n]], 1 + n)
        statuses.append(reply.status)
        if reply.status == 429:
            assert int(reply.headers["Retry-After"]) >= 1
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
    kept = progress_rows(service)
    assert kept[0]["played"] == len(statuses) - 1


async def test_media_answers_range_requests(service: Service) -> None:
    unit, item = await unit_with_video(service, 5)
    _, token = await learner_with_link(service, unit_id=unit["id"])
    async with service.http.get(f"{service.base}/learn/{token}/media/{item['id']}",
                                headers={"Range": "bytes=0-99"}) as response:
        assert response.status == 206
        assert len(await response.read()) == 100
        assert response.headers["Content-Range"].startswith("bytes 0-99/")


# --------------------------------------------------------------------------- report


async def test_completion_report_per_learner_unit_and_district(service: Service) -> None:
    unit, item = await unit_with_video(service, 30)
    await call(service, "POST", f"{API}/org", {"name": "北仑区", "parent_id": 1})
    site = created(await call(service, "POST", f"{API}/sites",
                              {"name": "新碶街道分课堂", "org_path": "北仑区"}))
    course = created(await call(service, "POST", f"{API}/courses",
                                {"title": "第一课", "unit_id": unit["id"]}))
    session = await service.create_session(course_id=course["id"])
    a, token_a = await learner_with_link(service, "甲", site_id=site["id"],
                                         org_node_id=site["org_node_id"])
    b, _ = await learner_with_link(service, "乙")
    node = site["org_node_id"]
    assigned = await call(service, "POST", f"{API}/learning/units/{unit['id']}/assign",
                          {"org_node_id": 1})
    assert assigned.json() == {"count": 2}
    assert (await call(service, "POST", f"{API}/learning/units/{unit['id']}/assign",
                       {"org_node_id": node, "learner_ids": [1]})).status == 422
    await report(service, token_a, item["id"], [[0, 20]], 20)
    await asyncio.sleep(0.05)
    service.app[SCHOOL].db.execute(  # 甲's room was connected to the unit's lecture
        "INSERT INTO attendance_intervals (session_id, site_id, invitation_id, resource_id, "
        "connected_at, disconnected_at, ended_by) VALUES (?, ?, 'i', 'r', ?, ?, 'left')",
        (session["id"], site["id"], time.time() - 60, time.time()))
    await report(service, token_a, item["id"], [[20, 30]], 30)
    reply = await call(service, "GET", f"{API}/learning/report?unit_id={unit['id']}")
    assert reply.status == 200, reply.text
    body = reply.json()
    rows = {r["name"]: r for r in body["learners"]}
    assert rows["甲"]["videos_complete"] == 1 and rows["甲"]["lecture_attended"]
    assert not rows["甲"]["done"] and rows["甲"]["writeup"] is None  # no write-up yet
    assert rows["乙"]["videos_complete"] == 0 and rows["乙"]["videos_total"] == 1
    assert body["units"] == [{"id": unit["id"], "name": "第一专题", "learners": 2,
                              "readings_read": 0, "readings_total": 0, "videos_complete": 1,
                              "videos_total": 2, "lecture_attended": 1,
                              "writeups_accepted": 0, "done": 0}]
    assert {d["name"]: d["lecture_attended"] for d in body["districts"]} == {"北仑区": 1, "": 0}
    csv_reply = await call(service, "GET", f"{API}/learning/report?format=csv")
    assert csv_reply.status == 200 and csv_reply.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(csv_reply.body.decode("utf-8-sig"))))
    assert table[0][0] == "学员" and len(table) == 3
    assert (await call(service, "GET", f"{API}/learning/report?format=pdf")).status == 422
    chart = await call(service, "GET", f"{API}/learning/report/chart.svg?unit_id={unit['id']}")
    assert chart.status == 200 and chart.headers["Content-Type"] == "image/svg+xml"
    assert chart.body.lstrip().startswith(b"<?xml") and b"<svg" in chart.body
    assert (await call(service, "GET", f"{API}/learning/report/chart.svg?unit_id=x")).status \
        == 422
    # The learner sees its own.
    mine = (await as_learner(service, "GET", token_a, "/study")).json()
    assert mine["units"][0]["lecture_attended"] and mine["units"][0]["videos_complete"] == 1
    assert a["id"] != b["id"]


# --------------------------------------------------------------------------- readings


async def test_reading_list_files_and_marks(service: Service,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    unit, _ = await unit_with_video(service, 5)
    other = created(await call(service, "POST", f"{API}/units", {"name": "第二专题"}))
    book = created(await call(service, "POST", f"{API}/learning/units/{unit['id']}/readings",
                              {"title": "《基层治理概论》", "notes": "第一、二章"}))
    foreign = created(await call(service, "POST",
                                 f"{API}/learning/units/{other['id']}/readings",
                                 {"title": "别的专题的书"}))
    assert (await call(service, "POST", f"{API}/learning/units/{unit['id']}/readings",
                       {"title": ""})).status == 422
    # A PNG, however it is labelled, is refused; so is a file over the limit.
    before = tables(service)
    path = f"{API}/learning/readings/{book['id']}/file"
    reply = await call(service, "PUT", path, PNG, content_type="application/pdf")
    assert reply.status == 422 and "reading_file_type" in reply.text
    monkeypatch.setattr("web.api.learners.MAX_READING_BYTES", 1000)
    assert (await call(service, "PUT", path, PDF, content_type="application/pdf")).status \
        == 413
    assert (await call(service, "PUT", f"{API}/learning/readings/999/file", PDF,
                       content_type="application/pdf")).status == 404
    monkeypatch.undo()
    assert tables(service) == before
    folder = service.app[SCHOOL].readings.folder
    assert not folder.exists() or [p.name for p in folder.iterdir()] == []
    stored = await call(service, "PUT", path, PDF, content_type="application/octet-stream")
    assert stored.status == 200 and stored.json()["file_type"] == "pdf", stored.text
    assert stored.json()["file_size"] == len(PDF)

    learner, token = await learner_with_link(service, unit_id=unit["id"])
    study = (await as_learner(service, "GET", token, "/study")).json()
    assert study["units"][0]["readings"] == [
        {"id": book["id"], "title": "《基层治理概论》", "notes": "第一、二章",
         "file_type": "pdf", "file_size": len(PDF), "read": False}]
    async with service.http.get(f"{service.base}/learn/{token}/readings/{book['id']}/file",
                                headers={"Range": "bytes=0-4"}) as response:
        assert response.status == 206 and await response.read() == b"%PDF-"
        assert response.headers["Content-Type"] == "application/pdf"
    # Another unit's reading: neither its file nor a mark.
    assert (await as_learner(service, "GET", token,
                             f"/readings/{foreign['id']}/file")).status == 403
    assert (await as_learner(service, "POST", token, f"/readings/{foreign['id']}/read",
                             {"read": True})).status == 403
    assert (await as_learner(service, "POST", token, f"/readings/{book['id']}/read",
                             {"read": "yes"})).status == 422
    assert service.app[SCHOOL].db.all("SELECT * FROM reading_marks") == []
    assert (await as_learner(service, "POST", token, f"/readings/{book['id']}/read",
                             {"read": True})).status == 204
    study = (await as_learner(service, "GET", token, "/study")).json()
    assert study["units"][0]["readings"][0]["read"] and study["units"][0]["readings_read"] == 1
    report = (await call(service, "GET", f"{API}/learning/report")).json()
    row = next(r for r in report["learners"] if r["learner_id"] == learner["id"])
    assert (row["readings_read"], row["readings_total"]) == (1, 1)
    assert (await call(service, "DELETE", f"{API}/learning/readings/{book['id']}")).status == 204
    assert list(folder.iterdir()) == []


# --------------------------------------------------------------------------- write-ups


async def test_writeup_submitted_returned_resubmitted_and_accepted(service: Service) -> None:
    unit = created(await call(service, "POST", f"{API}/units", {"name": "第一专题"}))
    other = created(await call(service, "POST", f"{API}/units", {"name": "第二专题"}))
    learner, token = await learner_with_link(service, unit_id=unit["id"])
    path = f"/writeups/{unit['id']}"
    db = service.app[SCHOOL].db
    # Refused: too long, empty, not JSON, another unit, an attachment before any text.
    for body in ({"text": "字" * 5001}, {"text": "  "}, {"text": 5}, {}):
        reply = await as_learner(service, "PUT", token, path, body)
        assert reply.status == 422, (body, reply.status, reply.text)
    assert (await as_learner(service, "PUT", token, path, "{", "application/json")).status == 400
    assert (await as_learner(service, "PUT", token, path, {"text": "x"},
                             "text/plain")).status == 415
    assert (await as_learner(service, "PUT", token, f"/writeups/{other['id']}",
                             {"text": "别的专题"})).status == 403
    assert (await as_learner(service, "PUT", token, f"{path}/attachment", PDF,
                             "application/pdf")).status == 404
    assert db.all("SELECT * FROM writeups") == []
    # 5,000 characters, sent as \uXXXX escapes (30 KB): taken.
    text = "我把网格化管理用到了社区工作中。" * 312 + "完成"
    assert len(text) <= 5000
    reply = await as_learner(service, "PUT", token, path, {"text": text})
    assert reply.status == 200 and reply.json()["state"] == "submitted", reply.text
    # An attachment of the wrong type changes nothing; a PDF is kept.
    reply = await as_learner(service, "PUT", token, f"{path}/attachment", b"GIF89a" + b"0" * 50,
                             "image/png")
    assert reply.status == 422 and "writeup_file_type" in reply.text
    assert db.one("SELECT attachment_type FROM writeups")["attachment_type"] is None  # type: ignore[index]
    reply = await as_learner(service, "PUT", token, f"{path}/attachment", PDF, "application/pdf")
    assert reply.status == 200 and reply.json()["attachment_type"] == "pdf"

    listed = (await call(service, "GET", f"{API}/learning/writeups?state=submitted")).json()
    [writeup] = listed["writeups"]
    assert writeup["learner_name"] == "张三" and writeup["text"] == text
    attachment = await call(service, "GET", f"{API}/learning/writeups/{writeup['id']}/attachment")
    assert attachment.status == 200 and attachment.body == PDF
    review = f"{API}/learning/writeups/{writeup['id']}/review"
    assert (await call(service, "POST", review, {"decision": "return"})).status == 422
    assert (await call(service, "POST", review, {"decision": "maybe"})).status == 422
    reply = await call(service, "POST", review, {"decision": "return",
                                                 "comment": "请补充具体成效和数据"})
    assert reply.status == 200 and reply.json()["state"] == "returned"
    assert (await call(service, "POST", review, {"decision": "accept"})).status == 409
    mine = (await as_learner(service, "GET", token, "/study")).json()["units"][0]["writeup"]
    assert mine["state"] == "returned" and mine["comment"] == "请补充具体成效和数据"
    reply = await as_learner(service, "PUT", token, path, {"text": "补充了成效：办结率提高 20%。"})
    assert reply.json()["state"] == "submitted"
    assert (await call(service, "POST", review, {"decision": "accept",
                                                 "comment": "很好"})).status == 200
    mine = (await as_learner(service, "GET", token, "/study")).json()["units"][0]["writeup"]
    assert mine["state"] == "accepted"
    assert (await as_learner(service, "PUT", token, path, {"text": "再改"})).status == 409
    report = (await call(service, "GET", f"{API}/learning/report")).json()
    row = next(r for r in report["learners"] if r["learner_id"] == learner["id"])
    assert report["units"][0]["writeups_accepted"] == 1
    assert row["writeup"] == "accepted" and not row["done"]  # its room did not attend


# --------------------------------------------------------------------------- surveys

QUESTIONS = [
    {"kind": "single", "text": "您最需要哪方面的培训？",
     "choices": ["基层治理", "乡村振兴", "数字政府"]},
    {"kind": "multiple", "text": "您方便的学习方式（可多选）",
     "choices": ["集中授课", "自学视频", "读书"]},
    {"kind": "text", "text": "其他需求"},
]


async def test_a_survey_is_answered_once_per_learner_tallied_exported_and_closed(
        service: Service) -> None:
    bad_surveys = ({"title": "x", "questions": []},
                   {"title": "x", "questions": [{"kind": "single", "text": "q", "choices": ["a"]}]},
                   {"title": "x", "questions": [{"kind": "vote", "text": "q"}]},
                   {"title": "x", "questions": [{"kind": "single", "text": "q",
                                                  "choices": ["a", "a"]}]},
                   {"title": "", "questions": QUESTIONS})
    for body in bad_surveys:
        assert (await call(service, "POST", f"{API}/learning/surveys", body)).status == 422, body
    survey = created(await call(service, "POST", f"{API}/learning/surveys",
                                {"title": "2026 年干部培训需求调研", "questions": QUESTIONS}))
    _, token_a = await learner_with_link(service, "甲")
    _, token_b = await learner_with_link(service, "乙")
    _, outsider = await learner_with_link(service, "丙")
    sent = await call(service, "POST", f"{API}/learning/surveys/{survey['id']}/recipients",
                      {"learner_ids": [1, 2]})
    assert sent.status == 200 and sent.json() == {"count": 2}
    mine = (await as_learner(service, "GET", token_a, "/study")).json()["surveys"]
    assert [(s["id"], s["answers"]) for s in mine] == [(survey["id"], None)]
    assert (await as_learner(service, "GET", outsider, "/study")).json()["surveys"] == []
    path = f"/surveys/{survey['id']}"
    db = service.app[SCHOOL].db
    for answers in ([0, [1], None, None], [3, None, None], [0, [1, 1], None], [True, None, None],
                    [0, None, "长" * 2001], "0", [[0], None, None]):
        reply = await as_learner(service, "PUT", token_a, path, {"answers": answers})
        assert reply.status == 422, (answers, reply.status, reply.text)
    assert (await as_learner(service, "PUT", outsider, path,
                             {"answers": [0, None, None]})).status == 403
    assert db.all("SELECT * FROM survey_answers") == []
    assert (await as_learner(service, "PUT", token_a, path,
                             {"answers": [1, [0, 2], "希望多讲案例"]})).status == 200
    # One answer per learner: answering again replaces it.
    assert (await as_learner(service, "PUT", token_a, path,
                             {"answers": [0, [0, 2], "希望多讲案例"]})).status == 200
    assert (await as_learner(service, "PUT", token_b, path,
                             {"answers": [0, [1], None]})).status == 200
    results = (await call(service, "GET", f"{API}/learning/surveys/{survey['id']}")).json()
    assert (results["recipients"], results["answered"]) == (2, 2)
    assert [t["counts"] for t in results["tallies"]] == [[2, 0, 0], [1, 1, 1], []]
    assert results["tallies"][2]["texts"] == ["希望多讲案例"]
    export = await call(service, "GET", f"{API}/learning/surveys/{survey['id']}/export")
    assert export.status == 200
    table = list(csv.reader(io.StringIO(export.body.decode("utf-8-sig"))))
    assert table[0][3:] == ["1. 您最需要哪方面的培训？", "2. 您方便的学习方式（可多选）",
                            "3. 其他需求"]
    assert sorted((r[0], r[3], r[4], r[5]) for r in table[1:]) == [
        ("乙", "基层治理", "自学视频", ""), ("甲", "基层治理", "集中授课；读书", "希望多讲案例")]
    chart = await call(service, "GET",
                       f"{API}/learning/surveys/{survey['id']}/chart.svg?question=2")
    assert chart.status == 200 and b"<svg" in chart.body
    for bad in ("3", "9", "x"):
        reply = await call(service, "GET",
                           f"{API}/learning/surveys/{survey['id']}/chart.svg?question={bad}")
        assert reply.status == 422, bad
    # Closed: no answer is taken or changed.
    closed = await call(service, "POST", f"{API}/learning/surveys/{survey['id']}/close")
    assert closed.json()["state"] == "closed"
    before = db.all("SELECT * FROM survey_answers ORDER BY learner_id")
    assert (await as_learner(service, "PUT", token_b, path,
                             {"answers": [2, None, None]})).status == 409
    assert db.all("SELECT * FROM survey_answers ORDER BY learner_id") == before
    assert (await call(service, "POST", f"{API}/learning/surveys/{survey['id']}/recipients",
                       {"learner_ids": [3]})).status == 409
