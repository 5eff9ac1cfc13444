"""Sessions (场次): rows in the catalog, and the broadcast of each.

The catalog (SQLite) is the truth for a session's schedule, state and tokens;
the broadcast (slots, publisher, viewers) exists in memory only while the session
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
    """The sessions, and the broadcast of each that has not ended.

    A broadcast is made explicitly: for every session not ended when the
    school opens (``open_live``, once the listeners are in place) and for
    each new session (``create``); looking a session up never makes one.
    An ended session's broadcast is a closed one nobody can join.
    """

    def __init__(self, catalog: Catalog, tokens: TokenIndex, peer_settings: PeerSettings) -> None:
        self.catalog = catalog
        self._tokens = tokens
        self._peer_settings = peer_settings
        self._broadcasts: dict[str, Broadcast] = {}
        # Called with every new broadcast, before anyone can join it (the
        # attendance log, the room wall and the metrics hear its viewers from
        # the start).
        self.broadcast_listeners: list[Callable[[Broadcast], None]] = []
        for row in catalog.db.all("SELECT id, publish_token, view_token FROM sessions "
                                  "WHERE state != 'ended'"):
            self._index(row)

    def _index(self, row: Mapping[str, Any]) -> None:
        self._tokens.add(row["publish_token"], Grant(Role.PUBLISH, row["id"]))
        self._tokens.add(row["view_token"], Grant(Role.VIEW, row["id"]))

    def open_live(self) -> None:
        """A broadcast for every session that has not ended (at start-up)."""
        for row in self.catalog.db.all("SELECT id, video_codec FROM sessions "
                                       "WHERE state != 'ended'"):
            if row["id"] not in self._broadcasts:
                self._open(row)

    def _open(self, row: Mapping[str, Any]) -> Broadcast:
        broadcast = Broadcast(row["id"], row["video_codec"], self._peer_settings)
        self._broadcasts[row["id"]] = broadcast
        for listener in list(self.broadcast_listeners):
            listener(broadcast)
        return broadcast

    def _broadcast(self, row: Mapping[str, Any]) -> Broadcast:
        broadcast = self._broadcasts.get(row["id"])
        if broadcast is None:
            # Ended (its broadcast was closed), or not opened yet: nobody can join.
            broadcast = Broadcast(row["id"], row["video_codec"], self._peer_settings)
            broadcast.closed = True
        return broadcast

    def broadcasts(self) -> list[Broadcast]:
        """The broadcasts of the sessions that have not ended."""
        return list(self._broadcasts.values())

    def create(self, data: Mapping[str, Any]) -> Session:
        """Validate and store a new session (raises ``catalog.Invalid``)."""
        row = self.catalog.create_session(data, new_token(), new_token())
        self._index(row)
        return Session(row, self._open(row))

    def get(self, session_id: str) -> Session | None:
        row = self.catalog.db.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            return None
        return Session(self.catalog.session(session_id), self._broadcast(row))

    def all(self) -> list[Session]:
        return [Session(row, self._broadcast(row)) for row in self.catalog.sessions()]

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
        broadcast = self._broadcasts.pop(session.id, None)
        if broadcast is not None:
            await broadcast.close()
        return session

    async def close(self) -> None:
        """Shutting down: close every broadcast (the sessions stay as they are)."""
        broadcasts = list(self._broadcasts.values())
        self._broadcasts.clear()
        for broadcast in broadcasts:
            await broadcast.close()
