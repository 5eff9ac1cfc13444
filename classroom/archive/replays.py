"""Re-broadcast (重播): sessions whose program is an archived lecture.

A replay session is an ordinary session (same room page, links and
attendance) whose program slot is filled by ``recordings.replay.ArchiveSource``
instead of a WHIP publisher. It starts by itself at its scheduled start (the
schedule is in the catalog, so it survives a restart) or when the admin says
"start now"; the operator can pause, resume and seek; the end of the file ends
the session, and rooms see the end screen. A lecture recorded with rooms on
stage (研讨) brings them back too: their sound is in the lecture, and a
``StageFollower`` puts each turn's pictures on the session's stage while the
program plays through it.

Replay state lives in the session's row (``replay_state``: waiting, playing,
paused, ended, failed; ``replay_position`` saved every few seconds;
``replay_error``). A server restarted during a replay carries on from the
saved position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from classroom.archive.items import Archive
from classroom.db import Database
from classroom.errors import Invalid, Missing, StateConflict
from classroom.live.sessions import Session, SessionRegistry
from recordings.replay import (
    ArchiveSource,
    ReplayError,
    StageFollower,
    Turn,
    check_replayable,
)

logger = logging.getLogger(__name__)

SAVE_INTERVAL = 5.0  # seconds between saves of a playing replay's position


class Replays:
    def __init__(self, db: Database, archive: Archive, sessions: SessionRegistry,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.archive = archive
        self.sessions = sessions
        self._clock = clock
        self._sources: dict[str, ArchiveSource] = {}
        self._stages: dict[str, StageFollower] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._saver: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ validation

    def prepare(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A session form that names ``replay_item_id``: the item must be
        ready and sendable to rooms; the session takes the item's codec.

        Raises ``Invalid`` so the admin hears it when scheduling, not at 9:00.
        """
        values = dict(data)
        item_id = values.get("replay_item_id")
        if item_id in (None, ""):
            values.pop("replay_item_id", None)
            return values
        if not isinstance(item_id, str):
            raise Invalid({"replay_item_id": "error.not_text"})
        try:
            item = self.archive.item(item_id)
        except Missing as exc:
            raise Invalid({"replay_item_id": "error.replay_unknown_item"}) from exc
        if item["state"] != "ready":
            raise Invalid({"replay_item_id": "error.replay_not_ready"})
        try:
            info = check_replayable(self.archive.media_path(item_id))
        except ReplayError as exc:
            logger.info("item %s cannot be replayed: %s", item_id, exc)
            raise Invalid({"replay_item_id": "error.replay_unplayable"}) from exc
        codec = values.get("video_codec")
        if codec not in (None, info.video_codec):
            raise Invalid({"video_codec": "error.replay_codec_mismatch"})
        values["video_codec"] = info.video_codec
        if not values.get("title"):
            values["title"] = item["title"]
        if values.get("course_id") is None and item["course_id"] is not None:
            values["course_id"] = item["course_id"]
        return values

    # ------------------------------------------------------------ state

    def _row(self, session_id: str) -> dict[str, Any] | None:
        return self.db.one("SELECT id, state, scheduled_start, replay_item_id, replay_state, "
                           "replay_position, replay_error FROM sessions WHERE id = ?",
                           (session_id,))

    def _set(self, session_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        self.db.execute(f"UPDATE sessions SET {assignments} WHERE id = ?",
                        (*values.values(), session_id))

    def describe(self, session_id: str) -> dict[str, Any] | None:
        """What the console shows of a replay session (None for a live one)."""
        row = self._row(session_id)
        if row is None or row["replay_state"] is None:
            return None
        source = self._sources.get(session_id)
        item = None
        if row["replay_item_id"] is not None:
            with contextlib.suppress(Missing):
                item = self.archive.item(row["replay_item_id"])
        return {
            "item_id": row["replay_item_id"],
            "item_title": item["title"] if item else None,
            "state": row["replay_state"],
            "position": round(source.position if source else row["replay_position"], 1),
            "duration": item["duration"] if item else None,
            "error": row["replay_error"],
            "starts_at": row["scheduled_start"] if row["replay_state"] == "waiting" else None,
        }

    def playing(self) -> int:
        """How many replays are playing in sessions that have not ended."""
        row = self.db.one("SELECT COUNT(*) AS n FROM sessions "
                          "WHERE replay_state = 'playing' AND state != 'ended'")
        return int(row["n"]) if row is not None else 0

    def is_replay(self, session_id: str) -> bool:
        row = self._row(session_id)
        return row is not None and row["replay_state"] is not None

    # ------------------------------------------------------------ schedule

    async def restore(self) -> None:
        """At start-up: arm the timers, and carry on replays that were playing."""
        for row in self.db.all("SELECT id, scheduled_start, replay_state FROM sessions "
                               "WHERE replay_state IN ('waiting', 'playing', 'paused') "
                               "AND state != 'ended'"):
            if row["replay_state"] == "waiting":
                self.schedule(row["id"])
            else:
                self._spawn(self._start(row["id"], resume=True,
                                        paused=row["replay_state"] == "paused"))

    def schedule(self, session_id: str) -> None:
        """(Re)arm the start timer of a waiting replay from its scheduled start."""
        timer = self._timers.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        row = self._row(session_id)
        if row is None or row["replay_state"] != "waiting" or row["scheduled_start"] is None:
            return
        delay = max(0.0, float(row["scheduled_start"]) - self._clock())
        loop = asyncio.get_running_loop()
        self._timers[session_id] = loop.call_later(
            delay, lambda: self._spawn(self._start(session_id)))
        logger.info("replay session %s starts in %.0f s", session_id, delay)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ control

    async def start_now(self, session: Session) -> dict[str, Any]:
        row = self._row(session.id)
        if row is None or row["replay_state"] is None:
            raise StateConflict("this session is not a replay")
        if row["replay_state"] not in ("waiting", "failed") or session.state == "ended":
            raise StateConflict(f"the replay is {row['replay_state']}")
        timer = self._timers.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        # After a failure, try again from where it stopped.
        await self._start(session.id, resume=row["replay_state"] == "failed")
        described = self.describe(session.id)
        assert described is not None
        return described

    async def _start(self, session_id: str, resume: bool = False,
                     paused: bool = False) -> None:
        self._timers.pop(session_id, None)
        session = self.sessions.get(session_id)
        row = self._row(session_id)
        if session is None or row is None or session.state == "ended" or \
                session_id in self._sources:
            return
        try:
            path = self.archive.media_path(row["replay_item_id"] or "")
        except Missing:
            self._set(session_id, replay_state="failed",
                      replay_error="the archive item is gone or not ready")
            return
        source = ArchiveSource(
            session.broadcast.program, Path(path),
            on_end=lambda: self._spawn(self._ended(session_id)),
            on_error=lambda reason: self._failed(session_id, reason))
        self._sources[session_id] = source
        self.sessions.start(session)  # scheduled → live in the catalog
        position = float(row["replay_position"]) if resume else 0.0
        self._set(session_id, replay_state="playing", replay_error=None,
                  replay_position=position)
        await source.start(position)
        self._follow_stage(session, row["replay_item_id"] or "", source)
        if paused and source.state == "playing":
            await source.pause()
            self._set(session_id, replay_state="paused")
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_positions())
        logger.info("replay session %s: playing %s from %.1f s", session_id, path.name,
                    position)

    def _follow_stage(self, session: Session, item_id: str, source: ArchiveSource) -> None:
        """If the lecture has rooms' turns on stage, show them on the stage."""
        try:
            item = self.archive.item(item_id)
            path = Path(self.archive.media_path(item_id, stage=True))
        except Missing:
            return  # no stage in this lecture
        turns = [Turn(float(t["at"]), float(t["offset"]), float(t["duration"]),
                      str(t.get("site_name") or "")) for t in item["stage"]]
        if not turns:
            return
        room = session.broadcast
        follower = StageFollower(
            source, room.stage, path, turns,
            on_turn=lambda turn: room.show_replayed_stage(turn.name if turn else None),
            allowed=lambda: room.on_stage is None)  # a live room on stage comes first
        self._stages[session.id] = follower
        follower.start()

    async def _stop_stage(self, session_id: str) -> None:
        follower = self._stages.pop(session_id, None)
        if follower is not None:
            await follower.stop()

    async def control(self, session: Session, action: str,
                      position: float | None = None) -> dict[str, Any]:
        """pause / resume / seek (start is :meth:`start_now`)."""
        if action == "start":
            return await self.start_now(session)
        source = self._sources.get(session.id)
        if source is None or source.state not in ("playing", "paused"):
            raise StateConflict("the replay is not running")
        if action == "pause":
            await source.pause()
            self._set(session.id, replay_state="paused", replay_position=source.position)
        elif action == "resume":
            await source.resume()
            self._set(session.id, replay_state="playing")
        elif action == "seek":
            assert position is not None
            await source.seek(position)
            self._set(session.id, replay_state=source.state, replay_position=source.position)
        described = self.describe(session.id)
        assert described is not None
        return described

    async def _ended(self, session_id: str) -> None:
        await self._stop_stage(session_id)
        source = self._sources.pop(session_id, None)
        if source is not None:
            await source.stop()  # closes the file and its reader thread
        row = self._row(session_id)
        if row is None:
            return
        self._set(session_id, replay_state="ended")
        session = self.sessions.get(session_id)
        if session is not None and session.state != "ended":
            logger.info("replay session %s: end of the lecture, session ended", session_id)
            await self.sessions.end(session)

    def _failed(self, session_id: str, reason: str) -> None:
        source = self._sources.pop(session_id, None)
        self._set(session_id, replay_state="failed", replay_error=reason,
                  replay_position=source.position if source else 0.0)
        self._spawn(self._stop_stage(session_id))
        if source is not None:
            self._spawn(source.stop())

    async def _save_positions(self) -> None:
        while self._sources:
            await asyncio.sleep(SAVE_INTERVAL)
            for session_id, source in list(self._sources.items()):
                if source.state == "playing":
                    self._set(session_id, replay_position=source.position)

    async def stop(self, session_id: str) -> None:
        """The session ended by other means: stop its replay."""
        timer = self._timers.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        await self._stop_stage(session_id)
        source = self._sources.pop(session_id, None)
        if source is not None:
            await source.stop()
            self._set(session_id, replay_state="ended", replay_position=source.position)
        elif self.is_replay(session_id):
            self._set(session_id, replay_state="ended")  # ended before it started

    async def close(self) -> None:
        """Shutting down: stop every replay but keep its state, so the next
        start carries on."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for session_id in list(self._stages):
            await self._stop_stage(session_id)
        for session_id, source in list(self._sources.items()):
            self._set(session_id, replay_position=source.position)
            await source.stop()
        self._sources.clear()
        for task in list(self._tasks) + ([self._saver] if self._saver else []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
