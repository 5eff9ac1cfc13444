"""Sessions (场次): a title, two tokens and the room that carries the media.

Kept in memory for now; the catalog moves to SQLite with the admin pages.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streaming.peers import PeerSettings
from streaming.room import Room
from web.tokens import Grant, Role, TokenIndex, new_token


@dataclass
class Session:
    id: str
    title: str
    video_codec: str
    publish_token: str
    view_token: str
    created_at: float
    room: Room
    ended_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.ended_at is not None:
            return "ended"
        publisher = self.room.publisher
        if publisher is not None and publisher.connection_state == "connected":
            return "live"
        return "waiting"


class SessionRegistry:
    def __init__(
        self,
        tokens: TokenIndex,
        peer_settings: PeerSettings,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tokens
        self._peer_settings = peer_settings
        self._wall_clock = wall_clock
        self._sessions: dict[str, Session] = {}

    def create(self, title: str, video_codec: str) -> Session:
        session_id = secrets.token_urlsafe(8)
        session = Session(
            id=session_id,
            title=title,
            video_codec=video_codec,
            publish_token=new_token(),
            view_token=new_token(),
            created_at=self._wall_clock(),
            room=Room(session_id, video_codec, self._peer_settings),
        )
        self._tokens.add(session.publish_token, Grant(Role.PUBLISH, session_id))
        self._tokens.add(session.view_token, Grant(Role.VIEW, session_id))
        self._sessions[session_id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    async def end(self, session: Session) -> None:
        """Disconnect everyone; the tokens stop working, the record stays."""
        if session.ended_at is not None:
            return
        session.ended_at = self._wall_clock()
        self._tokens.remove(session.publish_token)
        self._tokens.remove(session.view_token)
        await session.room.close()

    async def close(self) -> None:
        for session in self.all():
            await self.end(session)
