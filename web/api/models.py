"""Models that more than one resource's contract uses (a session's reply
carries its running recording, which the archive's recording routes return)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from web.api.spec import Shape


class RecordingNotice(Shape):
    at: float
    kind: str
    message: str


class Recording(Shape):
    """a running recording"""

    component: ClassVar[bool] = True
    item_id: str
    started_at: float
    duration: float = Field(description="seconds recorded so far")
    bytes: int
    segments: int = Field(description="a new one per publisher reconnect or size change")
    restarts: int = Field(description="writer failures recovered")
    notices: list[RecordingNotice]
