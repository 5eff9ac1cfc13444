"""研讨: room uplinks, the stage, hands and questions over the room-events WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCSessionDescription

from classroom.live.discussion import (
    HANDS_PER_WINDOW,
    MAX_ERRORS,
    QUESTION_MAX,
    QUESTIONS_PER_WINDOW,
)
from streaming.peers import Publisher
from tests.support.discussion import (
    A_START,
    B_START,
    Events,
    PairViewer,
    connect,
    source_of,
    start_pair_viewer,
    until_live,
    ws_url,
)
from tests.support.media import new_pc, post_offer, start_publisher
from tests.support.service import ADMIN_TOKEN, Service, invite
from web.app import create_app
from web.config import Config
from web.keys import DISCUSSIONS, SESSIONS
from web.sockets.events import PROTOCOL

pytestmark = pytest.mark.webrtc

API = "/api/v1"
PASSWORD = "discussion-test-password"


# ------------------------------------------------------------------ helpers


async def refused(service: Service, session_id: str, token: str | None, **kwargs: Any) -> int:
    protocols = [PROTOCOL] + ([f"bearer.{token}"] if token else [])
    with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
        ws = await service.http.ws_connect(ws_url(service, session_id), protocols=protocols,
                                           **kwargs)
        await ws.close()
    return refusal.value.status


async def full_state(service: Service, session_id: str) -> dict[str, Any]:
    """The admin's view, over plain HTTP (no upgrade)."""
    async with service.http.get(ws_url(service, session_id),
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
    assert body["type"] == "state"
    return body["state"]  # type: ignore[no-any-return]


@dataclass
class Setup:
    session: dict[str, Any]
    a: dict[str, Any]  # room A's invitation
    b: dict[str, Any]
    other_session: dict[str, Any]
    other_room: dict[str, Any]  # an invitation of the other session


async def setup(service: Service) -> Setup:
    session = await service.create_session()
    a = await invite(service, session, "新碶街道分课堂")
    b = await invite(service, session, "大碶街道分课堂")
    other_session = await service.create_session("第二讲")
    other_room = await invite(service, other_session, "霞浦街道分课堂")
    return Setup(session, a, b, other_session, other_room)


# ------------------------------------------------------------------ media

async def test_rooms_on_stage_reach_every_viewer_without_renegotiation(
    service: Service,
) -> None:
    s = await setup(service)
    sid = s.session["id"]
    room = service.app[SESSIONS].get(sid).broadcast
    # Small pictures (the barcode needs 256 × 32 pixels): three encoders and
    # six decoders of test peers share the machine with the relay.
    w, h = 256, 96
    program = await start_publisher(service.http, service.base, sid,
                                    s.session["publish_token"], width=w, height=h)
    uplink_a = await start_publisher(service.http, service.base, sid, s.a["token"],
                                     start=A_START, width=w, height=h)
    uplink_b = await start_publisher(service.http, service.base, sid, s.b["token"],
                                     start=B_START, width=w, height=h)
    viewers: list[PairViewer] = []
    presenter: Events | None = None
    try:
        # The rooms' tokens published uplinks, not the program.
        program_peer = room.publisher
        assert isinstance(program_peer, Publisher)
        await until_live(program_peer, *room.uplinks.values())
        assert room.program.source is program_peer and room.publishers_accepted == 1
        assert set(room.uplinks) == {s.a["id"], s.b["id"]}
        assert all(u.slot is None for u in room.uplinks.values())
        # A room cannot end the program publisher's resource either.
        assert program.location is not None
        async with service.http.delete(f"{service.base}{program.location}",
                                       headers={"Authorization": f"Bearer {s.a['token']}"}) as r:
            assert r.status == 403
        assert room.publisher is program_peer

        for token in (s.a["token"], s.b["token"], s.session["view_token"]):
            viewers.append(await start_pair_viewer(service, sid, token))
        deadline = time.monotonic() + 15
        for viewer in viewers:
            while len(viewer.program) < 10:
                assert time.monotonic() < deadline, "no program frames"
                await asyncio.sleep(0.05)
        assert not any(v.stage for v in viewers), "an empty stage sends nothing"

        presenter = await connect(service, sid, s.session["publish_token"])
        await presenter.wait_for("both uplinks connected", lambda st: [
            u["connected"] for u in st["uplinks"]] == [True, True])
        assert {u["name"] for u in presenter.state["uplinks"]} == {"新碶街道分课堂",
                                                                   "大碶街道分课堂"}

        async def on_stage(name: str, invitation_id: str | None) -> float:
            started = time.monotonic()
            reply = await presenter.call("stage", invitation_id=invitation_id)
            assert reply["type"] == "ack", reply
            if invitation_id is None:
                return started
            # No renegotiation, one keyframe wait: quick even on a loaded machine.
            while not all(name in v.stage_since(started) for v in viewers):
                assert time.monotonic() - started < 3.0, (
                    f"room {name} not on every viewer's stage within 3 s: "
                    f"{[v.stage_since(started)[-3:] for v in viewers]}")
                await asyncio.sleep(0.01)
            return started

        started = await on_stage("A", s.a["id"])
        assert presenter.state["stage"] == {"invitation_id": s.a["id"],
                                            "name": "新碶街道分课堂"}
        assert room.stage.source is room.uplinks[s.a["id"]]
        await asyncio.sleep(0.3)
        for viewer in viewers:
            assert set(viewer.stage_since(started)) == {"A"}

        switched = await on_stage("B", s.b["id"])
        await asyncio.sleep(0.3)
        for viewer in viewers:
            after = viewer.stage_since(switched)
            # Once B's frames come, nothing of A follows.
            assert "A" not in after[after.index("B"):], after

        # Switching back and then clearing: the stage goes quiet. (Frames A
        # sent before the clear may still be on their way or being decoded.)
        await on_stage("A", s.a["id"])
        cut = uplink_a.video.index  # A's next frame: nothing from here on may show
        cleared = await on_stage("", None)
        pushed = room.stage.video.stats.frames
        assert presenter.state["stage"] is None and room.stage.source is None
        await asyncio.sleep(1.5)
        assert room.stage.video.stats.frames == pushed, "the stage slot took frames"
        for viewer in viewers:
            late = [index for at, index in viewer.stage if at >= cleared]
            assert all(index < cut for index in late), (cut, late)

        # The program went on throughout, and nobody negotiated again.
        for viewer in viewers:
            assert viewer.program and all(source_of(i) == "program" for i in viewer.program)
            assert viewer.offers == 1
            assert viewer.pc.connectionState == "connected"
        assert room.program.source is program_peer
    finally:
        if presenter is not None:
            await presenter.close()
        for viewer in viewers:
            await viewer.close()
        for publisher in (uplink_a, uplink_b, program):
            await publisher.close()


async def test_mute_and_replace_an_uplink(service: Service) -> None:
    s = await setup(service)
    sid = s.session["id"]
    room = service.app[SESSIONS].get(sid).broadcast
    first = await start_publisher(service.http, service.base, sid, s.a["token"],
                                  start=A_START)
    second = None
    presenter = await connect(service, sid, ADMIN_TOKEN)
    room_a = await connect(service, sid, s.a["token"])
    try:
        await presenter.wait_for("A's uplink", lambda st: len(st["uplinks"]) == 1)
        assert (await presenter.call("stage", invitation_id=s.b["id"]))["code"] == \
            "unavailable"  # B sends nothing
        assert (await presenter.call("stage", invitation_id="nobody"))["code"] == "not_found"
        assert (await presenter.call("stage", invitation_id=s.other_room["id"]))["code"] == \
            "not_found"  # another session's room
        assert (await presenter.call("stage", invitation_id=s.a["id"]))["type"] == "ack"
        await room_a.wait_for("A sees itself on stage",
                              lambda st: st["uplinks"][0]["on_stage"] and st["stage"])

        # A new uplink of the same room replaces the old one and keeps the stage.
        old = room.uplinks[s.a["id"]]
        second = await start_publisher(service.http, service.base, sid, s.a["token"],
                                       start=A_START + 5000)
        assert room.uplinks[s.a["id"]] is not old and len(room.uplinks) == 1
        await until_live(room.uplinks[s.a["id"]])
        assert room.stage.source is room.uplinks[s.a["id"]]

        # Muting takes the room off stage; a muted room cannot go on stage.
        assert (await presenter.call("mute", invitation_id=s.a["id"], muted=True))["type"] == \
            "ack"
        assert presenter.state["stage"] is None and room.stage.source is None
        assert presenter.state["uplinks"][0]["muted"]
        assert (await presenter.call("stage", invitation_id=s.a["id"]))["code"] == \
            "unavailable"
        await room_a.wait_for("A sees it is muted", lambda st: st["uplinks"][0]["muted"])
        assert (await presenter.call("mute", invitation_id=s.a["id"], muted=False))["type"] \
            == "ack"
        assert (await presenter.call("stage", invitation_id=s.a["id"]))["type"] == "ack"

        # The uplink going away empties the stage.
        await second.close()
        await presenter.wait_for("the uplink gone", lambda st: not st["uplinks"], timeout=45)
        assert presenter.state["stage"] is None and room.stage.source is None
    finally:
        await presenter.close()
        await room_a.close()
        await first.close()
        if second is not None:
            await second.close()


async def test_an_uplink_answer_caps_its_video_bitrate(service: Service) -> None:
    s = await setup(service)
    pc = new_pc()
    try:
        pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="sendonly")
        status, answer, location = await post_offer(
            service.http, f"{service.base}/whip/{s.session['id']}", s.a["token"], pc)
        assert status == 201, answer
        video, audio = answer.split("\r\nm=")[1:3]
        assert video.startswith("video") and audio.startswith("audio")
        assert "b=AS:500\r\n" in video and "b=TIAS:500000\r\n" in video
        assert "b=" not in audio
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        # The program publisher's answer is left as it was.
        program = new_pc()
        program.addTransceiver("video", direction="sendonly")
        status, answer, _ = await post_offer(
            service.http, f"{service.base}/whip/{s.session['id']}",
            s.session["publish_token"], program)
        assert status == 201 and "b=AS" not in answer
        await program.close()
        assert location is not None
        async with service.http.delete(f"{service.base}{location}",
                                       headers={"Authorization": f"Bearer {s.a['token']}"}) as r:
            assert r.status == 200
        assert not service.app[SESSIONS].get(s.session["id"]).broadcast.uplinks
    finally:
        await pc.close()


# ------------------------------------------------------------------ who may do what

async def test_who_may_connect(tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN, admin_password=PASSWORD)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            service = Service(str(server.make_url("")).rstrip("/"), http, server.app)
            s = await setup(service)
            sid = s.session["id"]
            assert await refused(service, sid, None) == 401
            assert await refused(service, sid, "not-a-token") == 401
            assert await refused(service, sid, s.a["token"][:-3] + "abc") == 401
            assert await refused(service, sid, s.session["view_token"]) == 403
            assert await refused(service, sid, s.other_session["publish_token"]) == 403
            assert await refused(service, sid, s.other_room["token"]) == 403
            assert await refused(service, "no-such-session", ADMIN_TOKEN) == 404
            for token, role in ((s.a["token"], "room"), (s.session["publish_token"],
                                                         "presenter"), (ADMIN_TOKEN, "admin")):
                events = await connect(service, sid, token)
                assert events.state["you"]["role"] == role
                await events.close()
            # Scripts may use the Authorization header.
            ws = await http.ws_connect(ws_url(service, sid),
                                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "state"
            await ws.close()

            # The login cookie, from this server's pages only.
            async with http.post(f"{service.base}/login", allow_redirects=False,
                                 data={"username": "admin", "password": PASSWORD}) as response:
                assert response.status == 303
            for origin in ("http://evil.example", None):
                assert await refused(service, sid, None, origin=origin) == 403, origin
            events = await connect(service, sid, None, origin=service.base)
            assert events.state["you"]["role"] == "admin"
            await events.close()

            # A revoked invitation: refused, and its open socket is closed.
            room_b = await connect(service, sid, s.b["token"])
            async with http.delete(f"{service.base}{API}/invitations/{s.b['id']}",
                                   headers=service.admin) as response:
                assert response.status in (200, 204), await response.text()
            closing = await room_b.ws.receive(timeout=5)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4003
            assert await refused(service, sid, s.b["token"]) == 410

            # The session ends: sockets close with 4000, new ones are refused.
            room_a = await connect(service, sid, s.a["token"])
            async with http.delete(f"{service.base}{API}/sessions/{sid}",
                                   headers=service.admin) as response:
                assert response.status == 204
            closing = await room_a.ws.receive(timeout=5)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4000
            assert await refused(service, sid, ADMIN_TOKEN) == 410
            assert service.app[DISCUSSIONS].get(sid) is None
    finally:
        await server.close()


MODERATOR = {"presenter", "admin"}
ROOMS = {"a", "b"}
# (type, fields(question id, setup), who may send it)
MESSAGES: list[tuple[str, Callable[[int, Setup], dict[str, Any]], set[str]]] = [
    ("hand", lambda q, s: {"raised": True}, ROOMS),
    ("question", lambda q, s: {"text": "讲一讲基层治理?"}, ROOMS),
    ("answer", lambda q, s: {"question_id": q, "text": "会后详谈"}, MODERATOR),
    ("dismiss", lambda q, s: {"question_id": q}, MODERATOR),
    ("stage", lambda q, s: {"invitation_id": None}, MODERATOR),
    ("mute", lambda q, s: {"invitation_id": s.a["id"], "muted": True}, MODERATOR),
    ("lower_hand", lambda q, s: {"invitation_id": s.a["id"]}, MODERATOR),
    ("lower_all_hands", lambda q, s: {}, MODERATOR),
    ("lock_questions", lambda q, s: {"locked": False}, MODERATOR),
]


async def test_every_message_type_for_every_caller(service: Service) -> None:
    s = await setup(service)
    sid = s.session["id"]
    callers = {"a": await connect(service, sid, s.a["token"]),
               "b": await connect(service, sid, s.b["token"]),
               "presenter": await connect(service, sid, s.session["publish_token"]),
               "admin": await connect(service, sid, ADMIN_TOKEN)}
    try:
        asked = await callers["a"].call("question", text="第一个问题")
        assert asked["type"] == "ack"
        question_id = callers["a"].state["questions"][0]["id"]
        for kind, fields, allowed in MESSAGES:
            for who, events in callers.items():
                before = await full_state(service, sid)
                reply = await events.call(kind, **fields(question_id, s))
                if who in allowed:
                    assert reply["type"] == "ack", (kind, who, reply)
                    assert reply["request"] == kind
                else:
                    assert (reply["type"], reply["code"]) == ("error", "forbidden"), \
                        (kind, who, reply)
                    assert reply["request"] == kind and reply["ref"]
                    assert await full_state(service, sid) == before, (kind, who)
        # The view token and no token never get as far as a message.
        assert await refused(service, sid, s.session["view_token"]) == 403
        assert await refused(service, sid, None) == 401

        # What each side sees: rooms only their own; moderators everything.
        for events in callers.values():
            await events.settle()
        full = callers["admin"].state
        assert {q["invitation_id"] for q in full["questions"]} == {s.a["id"], s.b["id"]}
        assert callers["presenter"].state["questions"] == full["questions"]
        assert full["uplinks"] == [{"invitation_id": s.a["id"], "name": "新碶街道分课堂",
                                    "present": False, "connected": False, "muted": True,
                                    "on_stage": False}]
        for who, invitation, name in (("a", s.a, "新碶街道分课堂"), ("b", s.b, "大碶街道分课堂")):
            view = callers[who].state
            assert view["you"] == {"role": "room", "invitation_id": invitation["id"],
                                   "name": name}
            assert {q["invitation_id"] for q in view["questions"]} == {invitation["id"]}
            assert all(h["invitation_id"] == invitation["id"] for h in view["hands"])
            assert all(u["invitation_id"] == invitation["id"] for u in view["uplinks"])
        # A's first question was answered, then dismissed; A sees both.
        first = callers["a"].state["questions"][0]
        assert (first["status"], first["answer"]) == ("dismissed", "会后详谈")
        assert callers["b"].state["uplinks"] == []  # never another room's uplink
    finally:
        for events in callers.values():
            await events.close()


async def test_hands_in_order_and_lowered(service: Service) -> None:
    s = await setup(service)
    sid = s.session["id"]
    a = await connect(service, sid, s.a["token"])
    b = await connect(service, sid, s.b["token"])
    presenter = await connect(service, sid, s.session["publish_token"])
    try:
        assert (await b.call("hand", raised=True))["type"] == "ack"
        assert (await a.call("hand", raised=True))["type"] == "ack"
        assert (await b.call("hand", raised=True))["type"] == "ack"  # still first
        await presenter.wait_for("two hands", lambda st: len(st["hands"]) == 2)
        hands = presenter.state["hands"]
        assert [h["name"] for h in hands] == ["大碶街道分课堂", "新碶街道分课堂"]
        assert hands[0]["raised_at"] <= hands[1]["raised_at"]
        assert [h["invitation_id"] for h in a.state["hands"]] == [s.a["id"]]
        assert (await b.call("hand", raised=False))["type"] == "ack"
        await presenter.wait_for("one hand", lambda st: len(st["hands"]) == 1)
        assert (await b.call("hand", raised=True))["type"] == "ack"
        assert (await presenter.call("lower_all_hands"))["type"] == "ack"
        assert presenter.state["hands"] == []
        await a.wait_for("A's hand lowered", lambda st: st["hands"] == [])
        await b.wait_for("B's hand lowered", lambda st: st["hands"] == [])
    finally:
        for events in (a, b, presenter):
            await events.close()


async def test_rate_limits_per_room(service: Service) -> None:
    now = [1000.0]
    service.app[DISCUSSIONS].monotonic = lambda: now[0]
    s = await setup(service)
    sid = s.session["id"]
    a = await connect(service, sid, s.a["token"])
    b = await connect(service, sid, s.b["token"])
    try:
        for number in range(QUESTIONS_PER_WINDOW):
            assert (await a.call("question", text=f"问题 {number}"))["type"] == "ack"
        before = await full_state(service, sid)
        limited = await a.call("question", text="还有一个")
        assert (limited["type"], limited["code"]) == ("error", "rate_limited")
        assert await full_state(service, sid) == before
        assert (await b.call("question", text="另一个分课堂"))["type"] == "ack"
        for number in range(HANDS_PER_WINDOW):
            assert (await a.call("hand", raised=number % 2 == 0))["type"] == "ack"
        assert (await a.call("hand", raised=True))["code"] == "rate_limited"
        now[0] += 61
        assert (await a.call("question", text="一分钟后"))["type"] == "ack"
        assert (await a.call("hand", raised=True))["type"] == "ack"
    finally:
        await a.close()
        await b.close()


async def test_bad_messages_change_nothing(service: Service) -> None:
    s = await setup(service)
    sid = s.session["id"]
    a = await connect(service, sid, s.a["token"])
    presenter = await connect(service, sid, s.session["publish_token"])
    try:
        before = await full_state(service, sid)
        cases = [
            ("{not json", "bad_json"),
            ("[1, 2]", "bad_message"),
            ('"hand"', "bad_message"),
            ("{}", "unknown_type"),
            ('{"type": "shout"}', "unknown_type"),
            ('{"type": 7}', "unknown_type"),
            ('{"type": "hand"}', "bad_message"),
            ('{"type": "hand", "raised": "yes"}', "bad_message"),
            ('{"type": "question"}', "bad_message"),
            ('{"type": "question", "text": 5}', "bad_message"),
            ('{"type": "question", "text": "   "}', "empty"),
            (json.dumps({"type": "question", "text": "问" * (QUESTION_MAX + 1)}), "too_long"),
            (json.dumps({"type": "question", "text": "x" * 20000}), "too_large"),
        ]
        for text, code in cases:
            reply = await a.raw(text)
            assert (reply["type"], reply["code"]) == ("error", code), (text[:40], reply)
        for fields, code in (({"question_id": "1", "text": "x"}, "bad_message"),
                             ({"question_id": True, "text": "x"}, "bad_message"),
                             ({"question_id": 99, "text": "x"}, "not_found")):
            reply = await presenter.call("answer", **fields)
            assert (reply["type"], reply["code"]) == ("error", code), fields
        assert (await presenter.call("lock_questions", locked="yes"))["code"] == "bad_message"
        assert (await presenter.call("mute", invitation_id=s.a["id"]))["code"] == \
            "bad_message"
        assert await full_state(service, sid) == before
        assert not a.ws.closed

        # Exactly the limit is fine (stripped first); HTML comes back as text.
        assert (await a.call("question", text=" " + "问" * QUESTION_MAX + "\n"))["type"] == \
            "ack"
        html = "<script>alert('x')</script> & <b>粗体</b>"
        assert (await a.call("question", text=html))["type"] == "ack"
        await presenter.wait_for("two questions", lambda st: len(st["questions"]) == 2)
        assert presenter.state["questions"][0]["text"] == "问" * QUESTION_MAX
        assert presenter.state["questions"][1]["text"] == html
        assert a.state["questions"][1]["text"] == html
        assert (await full_state(service, sid))["questions"][1]["text"] == html

        # Locked questions.
        assert (await presenter.call("lock_questions", locked=True))["type"] == "ack"
        await a.wait_for("A sees the lock", lambda st: st["locked"])
        reply = await a.call("question", text="还能问吗")
        assert (reply["type"], reply["code"]) == ("error", "locked")
        assert len((await full_state(service, sid))["questions"]) == 2
        assert (await presenter.call("lock_questions", locked=False))["type"] == "ack"

        # Too many refused messages close the connection.
        for _ in range(MAX_ERRORS - 1):
            await a.ws.send_str("nonsense")
        closing = None
        with contextlib.suppress(TimeoutError):
            while True:
                closing = await a.ws.receive(timeout=5)
                if closing.type is not aiohttp.WSMsgType.TEXT:
                    break
        assert closing is not None and closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        # Others are untouched.
        assert (await presenter.call("lower_all_hands"))["type"] == "ack"
    finally:
        await a.close()
        await presenter.close()

