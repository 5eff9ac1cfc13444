"""Timeshift (时移): a room that joined late watches the lecture from its start.

While a session is being recorded, one viewer's program transceivers can be
fed from a private slot that replays the growing recording
(``recordings.replay.RecordingReader``) instead of the live program slot. The
switch touches that viewer only: no renegotiation, its RTP timestamps stay on
one steady timeline (``RelayTrack.switch``), and the live viewers are not
disturbed. "Back to live" switches it back (a keyframe is asked of the
publisher). A timeshift that catches up with the end of a stopped recording
goes back to live by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from classroom.archive.items import Archive
from classroom.errors import StateConflict
from classroom.live.sessions import Session
from recordings.replay import ArchiveSource, RecordingReader
from streaming import aiortc_glue
from streaming.peers import Viewer
from streaming.slot import Slot

logger = logging.getLogger(__name__)

MAX_PER_SESSION = 50  # rooms in timeshift at once per session (a reader thread each)
SWEEP_INTERVAL = 2.0


@dataclass
class _Shift:
    session: Session
    viewer: Viewer
    slot: Slot
    source: ArchiveSource


class Timeshifts:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._shifts: dict[str, _Shift] = {}  # by viewer resource id
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def available(self, session_id: str) -> bool:
        return self.archive.recording_of(session_id) is not None

    def describe(self, viewer_id: str) -> dict[str, Any]:
        shift = self._shifts.get(viewer_id)
        if shift is None:
            return {"mode": "live", "position": None}
        return {"mode": "timeshift", "position": round(shift.source.position, 1)}

    async def start(self, session: Session, viewer: Viewer) -> dict[str, Any]:
        """Switch ``viewer`` to the start of the session's recording."""
        recording = self.archive.recording_of(session.id)
        if recording is None:
            raise StateConflict("this session is not being recorded: nothing to watch "
                                "from the beginning")
        if viewer.resource_id in self._shifts:
            await self.live(viewer)
        if sum(1 for s in self._shifts.values() if s.session.id == session.id) >= \
                MAX_PER_SESSION:
            raise StateConflict("too many rooms are watching from the beginning")
        item_id = recording["item_id"]
        recordings = self.archive.recordings
        parts = recordings.item_dir(item_id) / "parts"
        slot = Slot("timeshift", session.video_codec, aiortc_glue.make_packetizer)
        source = ArchiveSource(
            slot, parts,
            open_reader=lambda: RecordingReader(parts, lambda: item_id in recordings.active),
            on_end=lambda: self._spawn(self._caught_up(viewer)),
            on_error=lambda reason: self._spawn(self._caught_up(viewer, reason)))
        await source.start()
        if source.state != "playing":
            slot.close()
            raise StateConflict(f"the recording cannot be read yet: {source.error}")
        self._shifts[viewer.resource_id] = _Shift(session, viewer, slot, source)
        viewer.switch_slot("program", slot)
        logger.info("viewer %s (%s) watches session %s from the beginning",
                    viewer.resource_id, viewer.tag, session.id)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())
        return self.describe(viewer.resource_id)

    async def live(self, viewer: Viewer) -> dict[str, Any]:
        """Back to the live program."""
        shift = self._shifts.pop(viewer.resource_id, None)
        if shift is not None:
            viewer.switch_slot("program", shift.session.broadcast.program)
            await self._end(shift)
        return self.describe(viewer.resource_id)

    async def _caught_up(self, viewer: Viewer, reason: str | None = None) -> None:
        if reason is not None:
            logger.warning("timeshift of %s stopped: %s", viewer.resource_id, reason)
        await self.live(viewer)

    async def _end(self, shift: _Shift) -> None:
        await shift.source.stop()
        shift.slot.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        """Forget the timeshifts of viewers that have gone."""
        while self._shifts:
            await asyncio.sleep(SWEEP_INTERVAL)
            for viewer_id, shift in list(self._shifts.items()):
                room = shift.session.broadcast
                if room.closed or viewer_id not in room.viewers:
                    self._shifts.pop(viewer_id, None)
                    await self._end(shift)

    async def close(self) -> None:
        for shift in list(self._shifts.values()):
            await self._end(shift)
        self._shifts.clear()
        for task in list(self._tasks) + ([self._sweeper] if self._sweeper else []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
