"""The room-events WebSocket of a session (研讨: hands, questions, the stage).

``GET /api/v1/sessions/{session_id}/events/ws``. Who is calling decides what
it may send and see (``classroom/live/discussion.py``):

* a **room**: its invitation token;
* the **presenter**: the session's publish token;
* an **admin**: the admin token, or the login cookie with this server's
  Origin (as the room wall: another site's page must not open a socket with
  the admin's cookie).

Browsers cannot set ``Authorization`` on a WebSocket, and a token in the URL
would end up in logs and history, so a page sends its token as a
subprotocol: ``new WebSocket(url, ["zhixing.events.v1", "bearer." + token])``
(invitation and bearer tokens only use characters a subprotocol may hold).
The server answers with ``zhixing.events.v1``, never echoing the token.
Scripts may send ``Authorization: Bearer`` instead. The session's view
token, a token of another session and no token at all are refused before
the upgrade (401/403); an ended session is 410.

Every message is a JSON text with a ``type``; the server answers each one
with ``ack`` or ``error`` (with the ``id`` the client gave, as ``ref``), and
sends ``state`` once on connect and ``event`` when the recipient's view
changes. A refused message changes nothing and the connection stays, up to
``MAX_ERRORS`` refusals. Without an Upgrade header, the URL answers the
caller's view once as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, ClassVar, Literal

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import Field

from classroom.access.invitations import is_invitation_token
from classroom.access.tokens import Role
from classroom.live.discussion import (
    MAX_ERRORS,
    MESSAGE_MAX_BYTES,
    Discussion,
    Participant,
    Refused,
    Subscriber,
)
from classroom.live.sessions import Session
from web.api.spec import Reply, Shape, operation
from web.auth import COOKIE, authenticate_admin
from web.errors import Forbidden, Gone, NotAuthorized
from web.http import bearer_token, check_origin, session_of
from web.keys import CATALOG, LIMITER, SCHOOL, TOKENS

PROTOCOL = "zhixing.events.v1"
TOKEN_PREFIX = "bearer."
HEARTBEAT = 30.0
OUTBOX = 256  # messages queued for one socket before it counts as too slow
SEND_TIMEOUT = 5.0
MAX_FRAME = 64 * 1024  # aiohttp closes the socket (1009) above this

# ---------------------------------------------------------------------- the contract


class DiscussionYou(Shape):
    role: Literal["room", "presenter", "admin"]
    invitation_id: str | None
    name: str | None


class OnStage(Shape):
    invitation_id: str | None
    name: str
    replayed: bool


class RaisedHand(Shape):
    invitation_id: str
    name: str
    raised_at: float


class Question(Shape):
    id: int
    invitation_id: str
    name: str
    text: str = Field(description="plain text as typed (stripped), never HTML")
    asked_at: float
    status: Literal["open", "answered", "dismissed"]
    answer: str | None
    answered_at: float | None


class Uplink(Shape):
    invitation_id: str
    name: str
    present: bool = Field(description="an uplink is published")
    connected: bool
    muted: bool
    on_stage: bool


class DiscussionState(Shape):
    """研讨 as one participant may see it. The presenter and admins see every hand (in the
    order raised), question and uplink; a room sees the same shape holding only its own
    hand, questions (with answers) and uplink, plus who is on stage and whether questions
    are locked"""

    component: ClassVar[bool] = True
    session_id: str
    you: DiscussionYou
    locked: bool = Field(description="questions are closed")
    stage: OnStage | None = Field(
        description="who is on stage: a room's uplink, or in a replay a recorded turn (no "
                    "invitation, replayed: true)")
    hands: list[RaisedHand]
    questions: list[Question]
    uplinks: list[Uplink]


class StateMessage(Shape):
    type: Literal["state"]
    state: DiscussionState


EVENTS_SUMMARY = (
    "The room-events WebSocket (研讨: hands, questions, the stage). Authentication: a room's "
    "invitation token, the session's publish token (presenter) or the admin token, sent by a "
    "browser as a subprotocol (new WebSocket(url, ['zhixing.events.v1', 'bearer.' + token]); "
    "the server answers zhixing.events.v1) or by a script as Authorization: Bearer; or the "
    "admin login cookie with this server's Origin. The view token is refused (403). Server → "
    "client JSON texts: {type: 'state', state} on connect; {type: 'event', event, state} when "
    "the recipient's view changed; {type: 'ack' | 'error', ref, request, code, message} for "
    "each client message (ref = the client's id). Client → server, room: {type: 'hand', "
    "raised: bool} (6 a minute), {type: 'question', text} (≤ 500 characters, 3 a minute, "
    "refused while locked); presenter and admin: {type: 'answer', question_id, text} "
    "(≤ 1000), {type: 'dismiss', question_id}, {type: 'stage', invitation_id | null}, "
    "{type: 'mute', invitation_id, muted}, {type: 'lower_hand', invitation_id}, "
    "{type: 'lower_all_hands'}, {type: 'lock_questions', locked}. Error codes: bad_json, "
    "bad_message, unknown_type, forbidden, empty, too_long, too_large, rate_limited, locked, "
    "not_found, unavailable, full; after 20 errors the socket closes (1008). Closed with 4000 "
    "when the session ends, 4003 when the room's invitation is revoked, 1001 when the server "
    "stops. Without an Upgrade header: the caller's state once, as JSON")


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/sessions/{session_id}/events/ws", events_socket)]


def _offered_token(request: web.Request) -> str | None:
    if "Authorization" in request.headers:
        return bearer_token(request)
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(TOKEN_PREFIX) and len(protocol) > len(TOKEN_PREFIX):
            return protocol[len(TOKEN_PREFIX):]
    return None


def _participant(request: web.Request, session: Session) -> Participant:
    """Who is calling, or 401/403 (before any upgrade)."""
    token = _offered_token(request)
    if token is None:
        if COOKIE not in request.cookies:
            raise NotAuthorized("a token (subprotocol bearer.<token>) or a login is needed")
        caller = authenticate_admin(request)
        check_origin(request)
        if not caller.scope.manages_session(session.row):
            raise Forbidden("this session belongs to another part of the organization")
        return Participant("admin")
    if is_invitation_token(token):
        row = request.app[SCHOOL].check_invitation(token, session.id)
        invitation_id = str(row["id"])
        name = request.app[CATALOG].current_site_name(invitation_id, session.id)
        return Participant("room", invitation_id, name)
    grant = request.app[TOKENS].lookup(token)
    if grant is None:
        raise NotAuthorized("invalid token")
    if grant.role is Role.ADMIN:
        return Participant("admin")
    if grant.session_id != session.id:
        raise Forbidden("this token belongs to another session")
    if grant.role is not Role.PUBLISH:
        raise Forbidden("the view token takes no part in the discussion: use a room's link")
    return Participant("presenter")


def _ref(message: Any) -> Any:
    """The client's id of a message, echoed in the reply."""
    if isinstance(message, dict):
        ref = message.get("id")
        if isinstance(ref, str | int) and not isinstance(ref, bool) and len(str(ref)) <= 64:
            return ref
    return None


class _Connection:
    """One socket's outgoing side: a bounded queue and the task that drains it."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.closing = False  # a close is queued or under way: read no more
        self._queue: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(OUTBOX)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, text: str) -> None:
        if self.closing:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            # Too slow to keep up: the page reconnects and gets a fresh state.
            self._drop_queue()
            self.close(WSCloseCode.GOING_AWAY, "too slow")

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued has been sent."""
        if self.closing:
            return
        self.closing = True
        if self._queue.full():
            self._drop_queue()
        self._queue.put_nowait((code, reason))

    def _drop_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def reply(self, kind: str, ref: Any, **fields: Any) -> None:
        self.send(json.dumps({"type": kind, "ref": ref, **fields}, ensure_ascii=False))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, tuple):
                await self.ws.close(code=item[0], message=item[1].encode())
                return
            try:
                await asyncio.wait_for(self.ws.send_str(item), SEND_TIMEOUT)
            except (ConnectionError, RuntimeError, TimeoutError):
                await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"too slow")
                return

    async def finish(self) -> None:
        """The socket's reader has stopped: let a close under way end, then stop."""
        if self.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), SEND_TIMEOUT)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _receive(discussion: Discussion, who: Participant, connection: _Connection,
             data: str) -> bool:
    """Handle one text message; whether it was refused."""
    if len(data) > MESSAGE_MAX_BYTES or len(data.encode("utf-8", "replace")) > MESSAGE_MAX_BYTES:
        connection.reply("error", None, code="too_large",
                         message=f"a message is at most {MESSAGE_MAX_BYTES} bytes")
        return True
    try:
        message = json.loads(data)
    except ValueError:
        connection.reply("error", None, code="bad_json", message="not JSON")
        return True
    ref = _ref(message)
    request = message.get("type") if isinstance(message, dict) else None
    try:
        discussion.handle(who, message)
    except Refused as exc:
        connection.reply("error", ref, request=request if isinstance(request, str) else None,
                         code=exc.code, message=exc.message)
        return True
    connection.reply("ack", ref, request=request)
    return False


@operation(EVENTS_SUMMARY, errors=(401, 403, 404, 410,
                                   (429, "this token has its share of open sockets")),
           replies={101: Reply("WebSocket upgrade"),
                    200: Reply("the caller's view (no Upgrade header)", StateMessage)})
async def events_socket(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if session.ended_at is not None or session.broadcast.closed:
        raise Gone("this session has ended")
    who = _participant(request, session)
    discussion = request.app[SCHOOL].discussion(session)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, protocols=(PROTOCOL,),
                               max_msg_size=MAX_FRAME)
    if not ws.can_prepare(request).ok:
        return web.json_response({"type": "state", "state": discussion.view(who)},
                                 headers={"Cache-Control": "no-store"})
    secret = _offered_token(request) or request.cookies.get(COOKIE, "")
    label = f"room invitation {who.invitation_id}" if who.role == "room" else \
        f"{who.role} of session {session.id}"
    with request.app[LIMITER].socket(secret, label):
        return await _serve(request, ws, discussion, who)


async def _serve(request: web.Request, ws: web.WebSocketResponse, discussion: Discussion,
                 who: Participant) -> web.WebSocketResponse:
    await ws.prepare(request)
    connection = _Connection(ws)
    subscriber = Subscriber(who, connection.send, connection.close)
    discussion.subscribe(subscriber)
    errors = 0
    try:
        # The loop ends when the socket closes, from either side (a close the
        # server decides goes out through the connection's queue, after the
        # replies before it).
        async for message in ws:
            if connection.closing or discussion.ended:
                continue
            if message.type is WSMsgType.TEXT:
                errors += _receive(discussion, who, connection, message.data)
            else:
                connection.reply("error", None, code="bad_message",
                                 message="only JSON text messages")
                errors += 1
            if errors >= MAX_ERRORS:
                connection.close(WSCloseCode.POLICY_VIOLATION, "too many refused messages")
    finally:
        discussion.unsubscribe(subscriber)
        await connection.finish()
    return ws


async def shutdown(app: web.Application) -> None:
    """Before the server waits for its handlers: close the discussion sockets."""
    if SCHOOL in app:
        app[SCHOOL].discussions.close()
