"""Sessions (场次): rows in the catalog, and the live room of each.

The catalog (SQLite) is the truth for a session's schedule, state and tokens;
the room (slots, publisher, viewers) exists in memory only while the session
can still be joined. Tokens of sessions that have not ended are indexed at
start-up, so links keep working across a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from classroom.access.tokens import Grant, Role, TokenIndex, new_token
from classroom.catalog import Catalog
from streaming.broadcast import Broadcast
from streaming.peers import PeerSettings


@dataclass
class Session:
    row: dict[str, Any]
    broadcast: Broadcast

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def title(self) -> str:
        return str(self.row["title"])

    @property
    def video_codec(self) -> str:
        return str(self.row["video_codec"])

    @property
    def publish_token(self) -> str:
        return str(self.row["publish_token"])

    @property
    def view_token(self) -> str:
        return str(self.row["view_token"])

    @property
    def ended_at(self) -> float | None:
        value = self.row["ended_at"]
        return float(value) if value is not None else None

    @property
    def state(self) -> str:
        """scheduled / live / ended, as stored; live while the program is on
        air (a connected publisher, or a replay playing)."""
        if self.row["state"] == "ended":
            return "ended"
        if self.broadcast.program_on_air:
            return "live"
        return str(self.row["state"])


class SessionRegistry:
    def __init__(self, catalog: Catalog, tokens: TokenIndex, peer_settings: PeerSettings) -> None:
        self.catalog = catalog
        self._tokens = tokens
        self._peer_settings = peer_settings
        self._rooms: dict[str, Broadcast] = {}
        # Called with every new live room, before anyone can join it (the room
        # wall and the metrics listen to its viewers from the start).
        self.broadcast_listeners: list[Callable[[Broadcast], None]] = []
        for row in catalog.db.all("SELECT id, publish_token, view_token FROM sessions "
                                  "WHERE state != 'ended'"):
            self._index(row)

    def _index(self, row: Mapping[str, Any]) -> None:
        self._tokens.add(row["publish_token"], Grant(Role.PUBLISH, row["id"]))
        self._tokens.add(row["view_token"], Grant(Role.VIEW, row["id"]))

    def _room(self, row: Mapping[str, Any]) -> Broadcast:
        room = self._rooms.get(row["id"])
        if room is None:
            room = Broadcast(row["id"], row["video_codec"], self._peer_settings)
            if row["state"] == "ended":
                room.closed = True  # nobody can join an ended session
            else:
                self._rooms[row["id"]] = room
                for listener in list(self.broadcast_listeners):
                    listener(room)
        return room

    def broadcasts(self) -> list[Broadcast]:
        """The live rooms (of sessions not ended that were looked at since start-up)."""
        return list(self._rooms.values())

    def create(self, data: Mapping[str, Any]) -> Session:
        """Validate and store a new session (raises ``catalog.Invalid``)."""
        row = self.catalog.create_session(data, new_token(), new_token())
        self._index(row)
        return Session(row, self._room(row))

    def get(self, session_id: str) -> Session | None:
        row = self.catalog.db.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            return None
        return Session(self.catalog.session(session_id), self._room(row))

    def all(self) -> list[Session]:
        return [Session(row, self._room(row)) for row in self.catalog.sessions()]

    def update(self, session: Session, data: Mapping[str, Any]) -> Session:
        return Session(self.catalog.update_session(session.id, data), session.broadcast)

    def start(self, session: Session) -> Session:
        if session.row["state"] == "scheduled":
            return Session(self.catalog.set_session_state(session.id, "live"), session.broadcast)
        return session

    async def end(self, session: Session) -> Session:
        """Disconnect everyone; the tokens stop working, the record stays."""
        if session.row["state"] != "ended":
            session = Session(self.catalog.set_session_state(session.id, "ended"),
                              session.broadcast)
        self._tokens.remove(session.publish_token)
        self._tokens.remove(session.view_token)
        room = self._rooms.pop(session.id, None)
        if room is not None:
            await room.close()
        return session

    async def close(self) -> None:
        """Shutting down: close every room (the sessions stay as they are)."""
        rooms = list(self._rooms.values())
        self._rooms.clear()
        for room in rooms:
            await room.close()
