"""The room wall (监控墙) shows the discussion (研讨): hands and questions in
order with their rooms, the rooms' cameras, mutes and the stage, on the
session's list and on each room's tile; the rooms' text as they typed it."""

from __future__ import annotations

from typing import Any

import pytest

from classroom.live import wall as wall_module
from tests.support.discussion import Events, connect
from tests.support.media import start_publisher
from tests.support.service import ADMIN_TOKEN, Service, invite
from tests.support.wall import raw_snapshot_until, wall

QUESTION_HTML = "<b>粗体</b> & <script>alert('x')</script>"
A_NAME, B_NAME = "新碶街道分课堂", "大碶街道分课堂"  # B sorts before A by name


def site(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in snapshot["sites"] if s["name"] == name)
    return found


def hands_shown(snapshot: dict[str, Any]) -> list[str]:
    return [hand["name"] for hand in snapshot["discussion"]["hands"]]


async def test_the_wall_shows_hands_and_questions_in_order_as_typed(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wall_module, "WALL_QUESTIONS", 3)  # a snapshot carries the latest 3
    session = await service.create_session()
    sid = session["id"]
    a = await invite(service, session, A_NAME)
    b = await invite(service, session, B_NAME)
    ws = await wall(service, sid)
    rooms: list[Events] = []
    try:
        # Nobody has opened the room-events socket yet: an empty discussion.
        _, first = await raw_snapshot_until(ws, "a first snapshot", lambda s: True)
        assert first["discussion"] == {"locked": False, "stage": None, "hands": [],
                                       "questions": [], "questions_total": 0,
                                       "open_questions": 0, "uplinks": []}
        assert site(first, A_NAME)["discussion"] == {"hand": None, "on_stage": False,
                                                     "uplink": None, "questions": 0,
                                                     "open_questions": 0}

        room_a, room_b = await connect(service, sid, a["token"]), \
            await connect(service, sid, b["token"])
        presenter = await connect(service, sid, session["publish_token"])
        rooms += [room_a, room_b, presenter]
        # A raises its hand first, then B (the reverse of their names' order).
        assert (await room_a.call("hand", raised=True))["type"] == "ack"
        assert (await room_b.call("hand", raised=True))["type"] == "ack"
        asked = [(room_b, B_NAME, "基层治理怎么抓？"), (room_a, A_NAME, QUESTION_HTML),
                 (room_b, B_NAME, "第二个问题"), (room_a, A_NAME, "第三个\n两行")]
        for room, _, text in asked:
            assert (await room.call("question", text=text))["type"] == "ack"

        raw, snapshot = await raw_snapshot_until(
            ws, "two hands and four questions",
            lambda s: len(s["discussion"]["hands"]) == 2
            and s["discussion"]["questions_total"] == 4)
        # The text goes out as typed: JSON escapes neither markup nor Chinese.
        assert "<b>粗体</b> & <script>alert('x')</script>" in raw
        assert "\\u003c" not in raw and "&lt;" not in raw and "&amp;" not in raw

        discussion = snapshot["discussion"]
        assert hands_shown(snapshot) == [A_NAME, B_NAME]
        assert [h["invitation_id"] for h in discussion["hands"]] == [a["id"], b["id"]]
        assert discussion["hands"][0]["raised_at"] <= discussion["hands"][1]["raised_at"]
        # The latest three questions, in the order asked, with their rooms.
        assert [(q["name"], q["text"]) for q in discussion["questions"]] == \
            [(name, text) for _, name, text in asked[1:]]
        assert [q["invitation_id"] for q in discussion["questions"]] == [a["id"], b["id"], a["id"]]
        times = [q["asked_at"] for q in discussion["questions"]]
        assert times == sorted(times) and all(q["status"] == "open"
                                              for q in discussion["questions"])
        assert (discussion["questions_total"], discussion["open_questions"]) == (4, 4)
        assert (snapshot["summary"]["hands"], snapshot["summary"]["open_questions"]) == (2, 4)
        # Each tile: its hand's place in the queue, its questions (all of them counted).
        marks_a, marks_b = site(snapshot, A_NAME)["discussion"], \
            site(snapshot, B_NAME)["discussion"]
        assert marks_a["hand"]["position"] == 1 and marks_b["hand"]["position"] == 2
        assert marks_a["hand"]["raised_at"] == discussion["hands"][0]["raised_at"]
        assert (marks_a["questions"], marks_a["open_questions"]) == (2, 2)
        assert (marks_b["questions"], marks_b["open_questions"]) == (2, 2)
        assert not marks_a["on_stage"] and marks_a["uplink"] is None

        # The presenter answers one and lowers A's hand: the wall follows.
        await presenter.wait_for("four questions", lambda st: len(st["questions"]) == 4)
        b_first = presenter.state["questions"][0]["id"]
        assert presenter.state["questions"][0]["invitation_id"] == b["id"]
        assert (await presenter.call("answer", question_id=b_first,
                                     text="会后<i>详谈</i>"))["type"] == "ack"
        assert (await presenter.call("lower_hand", invitation_id=a["id"]))["type"] == "ack"
        assert (await presenter.call("lock_questions", locked=True))["type"] == "ack"
        _, snapshot = await raw_snapshot_until(
            ws, "A's hand down, B's first question answered, questions locked",
            lambda s: hands_shown(s) == [B_NAME] and s["discussion"]["open_questions"] == 3
            and s["discussion"]["locked"])
        assert site(snapshot, A_NAME)["discussion"]["hand"] is None
        assert site(snapshot, B_NAME)["discussion"]["hand"]["position"] == 1
        assert (site(snapshot, B_NAME)["discussion"]["questions"],
                site(snapshot, B_NAME)["discussion"]["open_questions"]) == (2, 1)
        # (The answered question is older than the three shown.)
        assert all(q["status"] == "open" for q in snapshot["discussion"]["questions"])
    finally:
        for events in rooms:
            await events.close()
        await ws.close()


@pytest.mark.webrtc
async def test_the_wall_shows_cameras_mutes_and_the_stage(service: Service) -> None:
    session = await service.create_session()
    sid = session["id"]
    a = await invite(service, session, A_NAME)
    await invite(service, session, B_NAME)
    ws = await wall(service, sid)
    uplink = await start_publisher(service.http, service.base, sid, a["token"],
                                   width=256, height=96)
    presenter: Events | None = None
    try:
        # A camera with no discussion yet (a script publishing with the
        # room's token): the wall shows it all the same.
        _, snapshot = await raw_snapshot_until(
            ws, "A's camera connected",
            lambda s: [(u["name"], u["connected"]) for u in s["discussion"]["uplinks"]]
            == [(A_NAME, True)])
        assert site(snapshot, A_NAME)["discussion"]["uplink"] == {
            "present": True, "connected": True, "muted": False}
        assert site(snapshot, B_NAME)["discussion"]["uplink"] is None
        assert snapshot["summary"]["cameras"] == 1

        presenter = await connect(service, sid, ADMIN_TOKEN)
        assert (await presenter.call("mute", invitation_id=a["id"], muted=True))["type"] == "ack"
        _, snapshot = await raw_snapshot_until(
            ws, "A muted", lambda s: site(s, A_NAME)["discussion"]["uplink"]["muted"])
        assert snapshot["discussion"]["uplinks"][0]["muted"]

        assert (await presenter.call("mute", invitation_id=a["id"], muted=False))["type"] == \
            "ack"
        assert (await presenter.call("stage", invitation_id=a["id"]))["type"] == "ack"
        _, snapshot = await raw_snapshot_until(
            ws, "A on stage", lambda s: site(s, A_NAME)["discussion"]["on_stage"])
        assert snapshot["discussion"]["stage"] == {"invitation_id": a["id"], "name": A_NAME}
        assert snapshot["discussion"]["uplinks"][0]["on_stage"]
        assert not site(snapshot, A_NAME)["discussion"]["uplink"]["muted"]
        assert not site(snapshot, B_NAME)["discussion"]["on_stage"]

        assert (await presenter.call("stage", invitation_id=None))["type"] == "ack"
        _, snapshot = await raw_snapshot_until(
            ws, "the stage empty", lambda s: s["discussion"]["stage"] is None)
        assert not site(snapshot, A_NAME)["discussion"]["on_stage"]
    finally:
        if presenter is not None:
            await presenter.close()
        await uplink.close()
        await ws.close()
