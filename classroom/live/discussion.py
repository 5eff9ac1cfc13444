"""研讨: hands, questions and the stage of one live session.

After the lecture, rooms (分课堂) raise a hand (举手) or type a question
(提问); the presenter (or an admin) answers in text, dismisses, or brings a
room on stage: that room's uplink (its own camera and microphone, published
over WHIP with its invitation token) fills the session's stage slot, which
every viewer negotiated when it joined.

This module holds the rules and the state, in memory per live session, and
fans changes out to subscribers; it knows nothing of HTTP or sockets
(``web/sockets/events.py`` carries it over the room-events WebSocket). A
subscriber gets its own *view* of the state after each change, and only when
its view changed:

* the presenter and admins see everything: every hand in order, every
  question with its room, every uplink present and whether it is muted;
* a room sees the same shape filtered to itself (its own hand, its own
  questions with their answers, its own uplink), plus what is public: who is
  on stage (every screen shows it anyway) and whether questions are locked.
  It never learns of other rooms' hands, questions or uplinks.

Text is kept and sent as the plain text it was typed (stripped); showing it
safely (no HTML interpretation) is the page's job.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streaming.broadcast import Broadcast, StageError

logger = logging.getLogger(__name__)

QUESTION_MAX = 500  # characters, after stripping
ANSWER_MAX = 1000
MESSAGE_MAX_BYTES = 8 * 1024  # a text message larger than this is refused unread
QUESTIONS_PER_WINDOW = 3  # per room
HANDS_PER_WINDOW = 6  # per room, raising and lowering alike
RATE_WINDOW = 60.0  # seconds
MAX_QUESTIONS = 2000  # per session: memory stays bounded whatever the rooms do
MAX_ERRORS = 20  # refused messages on one connection before it is closed
CLOSE_ENDED = 4000  # close code: the session has ended (the page stops)
CLOSE_GOING_AWAY = 1001
CLOSE_REVOKED = 4003  # close code: the room's invitation was revoked

ROOM_TYPES = frozenset({"hand", "question"})
MODERATOR_TYPES = frozenset({"answer", "dismiss", "stage", "mute", "lower_hand",
                             "lower_all_hands", "lock_questions"})
MESSAGE_TYPES = ROOM_TYPES | MODERATOR_TYPES


class Refused(Exception):
    """A message that changes nothing; ``code`` is stable, the text safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Participant:
    """Who is on the other end of a connection."""

    role: str  # "room", "presenter" or "admin"
    invitation_id: str | None = None  # a room's invitation
    name: str | None = None  # a room's site name

    @property
    def moderates(self) -> bool:
        return self.role in ("presenter", "admin")


@dataclass
class Hand:
    invitation_id: str
    name: str
    raised_at: float


@dataclass
class Question:
    id: int
    invitation_id: str
    name: str
    text: str
    asked_at: float
    status: str = "open"  # open, answered, dismissed
    answer: str | None = None
    answered_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "invitation_id": self.invitation_id, "name": self.name,
                "text": self.text, "asked_at": self.asked_at, "status": self.status,
                "answer": self.answer, "answered_at": self.answered_at}


class RateLimit:
    """At most ``limit`` events per key within any ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True


@dataclass(eq=False)
class Subscriber:
    participant: Participant
    send: Callable[[str], None]  # must not block; the transport queues
    close: Callable[[int, str], None]  # (close code, reason); must not block either
    last_view: str | None = None


@dataclass(eq=False)
class Discussion:
    """The discussion of one live session."""

    session_id: str
    broadcast: Broadcast
    names: Callable[[str], str | None]  # invitation id -> site name, None if not ours
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    hands: dict[str, Hand] = field(default_factory=dict)  # in the order raised
    questions: dict[int, Question] = field(default_factory=dict)  # in the order asked
    locked: bool = False
    subscribers: list[Subscriber] = field(default_factory=list)
    on_end: Callable[[Discussion], None] | None = None

    def __post_init__(self) -> None:
        self._next_id = 1
        self._hand_limit = RateLimit(HANDS_PER_WINDOW, RATE_WINDOW, self.monotonic)
        self._question_limit = RateLimit(QUESTIONS_PER_WINDOW, RATE_WINDOW, self.monotonic)
        self._handling = False  # media changes during a message: its own event says it
        self.ended = False
        self._names: dict[str, str] = {}
        self.broadcast.media_listeners.append(self._media_changed)

    # ------------------------------------------------------------ views
    def _name(self, invitation_id: str) -> str:
        name = self._names.get(invitation_id)
        if name is None:
            name = self._names[invitation_id] = self.names(invitation_id) or ""
        return name

    def view(self, who: Participant) -> dict[str, Any]:
        """The state as ``who`` may see it."""
        room = self.broadcast
        stage = room.on_stage
        mine = who.invitation_id
        hands = [h for h in self.hands.values() if who.moderates or h.invitation_id == mine]
        questions = [q for q in self.questions.values()
                     if who.moderates or q.invitation_id == mine]
        uplink_ids = set(room.uplinks) | room.muted
        if not who.moderates:
            uplink_ids &= {mine} if mine is not None else set()
        uplinks = []
        for invitation_id in sorted(uplink_ids, key=lambda i: (self._name(i), i)):
            peer = room.uplinks.get(invitation_id)
            uplinks.append({
                "invitation_id": invitation_id,
                "name": self._name(invitation_id),
                "present": peer is not None,
                "connected": peer is not None and peer.connection_state == "connected",
                "muted": invitation_id in room.muted,
                "on_stage": stage == invitation_id,
            })
        return {
            "session_id": self.session_id,
            "you": {"role": who.role, "invitation_id": who.invitation_id, "name": who.name},
            "locked": self.locked,
            "stage": self._stage_view(stage),
            "hands": [{"invitation_id": h.invitation_id, "name": h.name,
                       "raised_at": h.raised_at} for h in hands],
            "questions": [q.as_json() for q in questions],
            "uplinks": uplinks,
        }

    def _stage_view(self, stage: str | None) -> dict[str, Any] | None:
        """Who is on stage: a room's uplink, or in a replay a recorded turn
        (no invitation: that room is not in this session)."""
        if stage is not None:
            return {"invitation_id": stage, "name": self._name(stage)}
        if self.broadcast.replayed_stage is not None:
            return {"invitation_id": None, "name": self.broadcast.replayed_stage, "replayed": True}
        return None

    # ------------------------------------------------------------ subscribers
    def subscribe(self, subscriber: Subscriber) -> None:
        """Add ``subscriber`` and send it a ``state`` message at once."""
        self.subscribers.append(subscriber)
        view = self._encode_view(subscriber.participant)
        subscriber.last_view = view
        subscriber.send(f'{{"type": "state", "state": {view}}}')

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    def _encode_view(self, who: Participant) -> str:
        return json.dumps(self.view(who), ensure_ascii=False)

    def publish(self, event: str) -> None:
        """Send ``event`` with the new view to every subscriber whose view changed."""
        for subscriber in list(self.subscribers):
            view = self._encode_view(subscriber.participant)
            if view == subscriber.last_view:
                continue
            subscriber.last_view = view
            subscriber.send(f'{{"type": "event", "event": {json.dumps(event)}, '
                            f'"state": {view}}}')

    def _media_changed(self) -> None:
        if self.broadcast.closed:
            self.end()
        elif not self._handling:
            self.publish("uplinks")

    def end(self, code: int = CLOSE_ENDED, reason: str = "session ended") -> None:
        """The session is over (or the server stops): forget everything and
        close every connection with ``code``."""
        if self.ended:
            return
        self.ended = True
        if self._media_changed in self.broadcast.media_listeners:
            self.broadcast.media_listeners.remove(self._media_changed)
        subscribers, self.subscribers = self.subscribers, []
        for subscriber in subscribers:
            subscriber.close(code, reason)
        if self.on_end is not None:
            self.on_end(self)

    def forget_room(self, invitation_id: str) -> None:
        """A revoked invitation: its connections close and its hand goes down
        (its questions stay, as asked)."""
        for subscriber in list(self.subscribers):
            if subscriber.participant.invitation_id == invitation_id:
                self.subscribers.remove(subscriber)
                subscriber.close(CLOSE_REVOKED, "invitation revoked")
        if self.hands.pop(invitation_id, None) is not None:
            self.publish("hand")

    # ------------------------------------------------------------ messages
    def handle(self, who: Participant, message: Any) -> None:
        """Apply one decoded message from ``who``, or raise :class:`Refused`
        having changed nothing."""
        if not isinstance(message, dict):
            raise Refused("bad_message", "a message is a JSON object with a type")
        kind = message.get("type")
        if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
            raise Refused("unknown_type", "unknown message type")
        if kind in ROOM_TYPES and who.role != "room":
            raise Refused("forbidden", "only a room sends this")
        if kind in MODERATOR_TYPES and not who.moderates:
            raise Refused("forbidden", "only the presenter or an admin sends this")
        self._handling = True
        try:
            event = getattr(self, f"_on_{kind}")(who, message)
        finally:
            self._handling = False
        self.publish(event)

    def _on_hand(self, who: Participant, message: dict[str, Any]) -> str:
        raised = _field(message, "raised", bool)
        assert who.invitation_id is not None
        if not self._hand_limit.allow(who.invitation_id):
            raise Refused("rate_limited",
                          f"at most {HANDS_PER_WINDOW} hands a minute; wait a moment")
        if raised and who.invitation_id not in self.hands:
            self.hands[who.invitation_id] = Hand(who.invitation_id, who.name or "",
                                                 self.clock())
        elif not raised:
            self.hands.pop(who.invitation_id, None)
        return "hand"

    def _on_question(self, who: Participant, message: dict[str, Any]) -> str:
        text = _text(message, "text", QUESTION_MAX)
        assert who.invitation_id is not None
        if self.locked:
            raise Refused("locked", "questions are closed")
        if len(self.questions) >= MAX_QUESTIONS:
            raise Refused("full", "no more questions in this session")
        if not self._question_limit.allow(who.invitation_id):
            raise Refused("rate_limited",
                          f"at most {QUESTIONS_PER_WINDOW} questions a minute; wait a moment")
        question = Question(self._next_id, who.invitation_id, who.name or "", text,
                            self.clock())
        self._next_id += 1
        self.questions[question.id] = question
        return "question"

    def _question(self, message: dict[str, Any]) -> Question:
        question_id = _field(message, "question_id", int)
        question = self.questions.get(question_id)
        if question is None:
            raise Refused("not_found", "no such question")
        return question

    def _on_answer(self, who: Participant, message: dict[str, Any]) -> str:
        question = self._question(message)
        text = _text(message, "text", ANSWER_MAX)
        question.status, question.answer, question.answered_at = "answered", text, self.clock()
        return "answer"

    def _on_dismiss(self, who: Participant, message: dict[str, Any]) -> str:
        self._question(message).status = "dismissed"
        return "dismiss"

    def _invitation(self, message: dict[str, Any], nullable: bool = False) -> str | None:
        if nullable and message.get("invitation_id", ...) is None:
            return None
        invitation_id = str(_field(message, "invitation_id", str))
        if self.names(invitation_id) is None:
            raise Refused("not_found", "no such room in this session")
        return invitation_id

    def _on_stage(self, who: Participant, message: dict[str, Any]) -> str:
        invitation_id = self._invitation(message, nullable=True)
        try:
            self.broadcast.put_on_stage(invitation_id)
        except StageError as exc:
            raise Refused("unavailable", str(exc)) from exc
        if invitation_id is not None:
            self.hands.pop(invitation_id, None)  # its turn has come
        return "stage"

    def _on_mute(self, who: Participant, message: dict[str, Any]) -> str:
        invitation_id = self._invitation(message)
        muted = _field(message, "muted", bool)
        assert invitation_id is not None
        self.broadcast.mute_uplink(invitation_id, muted)
        return "mute"

    def _on_lower_hand(self, who: Participant, message: dict[str, Any]) -> str:
        invitation_id = self._invitation(message)
        assert invitation_id is not None
        self.hands.pop(invitation_id, None)
        return "hand"

    def _on_lower_all_hands(self, who: Participant, message: dict[str, Any]) -> str:
        self.hands.clear()
        return "hands_lowered"

    def _on_lock_questions(self, who: Participant, message: dict[str, Any]) -> str:
        self.locked = _field(message, "locked", bool)
        return "lock"


def _field(message: dict[str, Any], name: str, kind: type) -> Any:
    value = message.get(name)
    # JSON true is not a number here, and a number is not a flag.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Refused("bad_message", f"{name} must be a {kind.__name__}")
    return value


def _text(message: dict[str, Any], name: str, limit: int) -> str:
    text = str(_field(message, name, str)).strip()
    if not text:
        raise Refused("empty", f"{name} is empty")
    if len(text) > limit:
        raise Refused("too_long", f"{name} is longer than {limit} characters")
    return text


class Discussions:
    """The discussions of the live sessions, made on first use."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        # Wall time for what is shown, monotonic time for rate limits; both
        # are read by discussions made after they are set (tests set them).
        self.clock = clock
        self.monotonic = monotonic
        self._by_session: dict[str, Discussion] = {}
        # Told when a discussion ends (its session ended): close its connections.
        self.end_listeners: list[Callable[[Discussion], None]] = []

    def of(self, session_id: str, room: Broadcast,
           names: Callable[[str], str | None]) -> Discussion:
        discussion = self._by_session.get(session_id)
        if discussion is None or discussion.broadcast is not room:
            if discussion is not None:
                discussion.end()
            discussion = Discussion(session_id, room, names, self.clock, self.monotonic,
                                    on_end=self._ended)
            self._by_session[session_id] = discussion
        return discussion

    def get(self, session_id: str) -> Discussion | None:
        return self._by_session.get(session_id)

    def _ended(self, discussion: Discussion) -> None:
        if self._by_session.get(discussion.session_id) is discussion:
            del self._by_session[discussion.session_id]
        for listener in list(self.end_listeners):
            listener(discussion)

    def close(self) -> None:
        """The server stops: every connection is closed as going away."""
        for discussion in list(self._by_session.values()):
            discussion.end(CLOSE_GOING_AWAY, "server shutting down")
