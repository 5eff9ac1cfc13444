"""The lecture archive (课程录像): catalog rows, recording control, library links.

An archive item is one lecture: made by recording a session (state
recording → finishing → ready, or failed with the reason) or by importing a
file. Its media live in ``<data>/archive/<item id>/`` under names the server
chooses; no path is ever built from anything a client sent but a validated
item id.

This module ties the catalog (SQLite, validated like every other form) to
``recordings.manager.Recordings``, which runs the recorders and the finishing
child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from classroom.catalog import MAX_TEXT, Fields
from classroom.db import ROOT_NODE, Database
from classroom.errors import Invalid, Missing, StateConflict
from recordings.finish import POSTER_NAME, FinishError, FinishResult
from recordings.manager import Recordings, valid_item_id
from streaming.slot import Slot

logger = logging.getLogger(__name__)

NOTICE_INTERVAL = 10.0  # at most one notice of a kind per item in this many seconds
MAX_NOTICES = 20
STATES = ("recording", "finishing", "ready", "failed")
# Items with their course's title and unit.
ITEMS_SQL = ("SELECT a.*, c.title AS course_title, c.unit_id AS unit_id, u.name AS unit_name, "
             "o.name AS owner_name FROM archive_items a "
             "LEFT JOIN courses c ON c.id = a.course_id "
             "LEFT JOIN units u ON u.id = c.unit_id "
             "LEFT JOIN org_nodes o ON o.id = a.owner_id")


@dataclass
class Notice:
    at: float
    kind: str
    message: str

    def json(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "message": self.message}


@dataclass
class _Live:
    """What the console sees of a running recording."""

    item_id: str
    session_id: str
    started_at: float
    notices: deque[Notice] = field(default_factory=lambda: deque(maxlen=MAX_NOTICES))
    last_notice: dict[str, float] = field(default_factory=dict)


class Archive:
    def __init__(self, db: Database, recordings: Recordings,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.recordings = recordings
        self._clock = clock
        self._live: dict[str, _Live] = {}  # by session id
        self._finishing: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ catalog

    def _row(self, item_id: str) -> dict[str, Any] | None:
        return self.db.one(ITEMS_SQL + " WHERE a.id = ?", (item_id,))

    def item(self, item_id: str) -> dict[str, Any]:
        row = self._row(item_id) if valid_item_id(item_id) else None
        if row is None:
            raise Missing("no such archive item")
        return self._public(row)

    def items(self, *, state: str | None = None, course_id: int | None = None,
              unit_id: int | None = None, query: str | None = None) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("a.state = ?")
            params.append(state)
        if course_id is not None:
            where.append("a.course_id = ?")
            params.append(course_id)
        if unit_id is not None:
            where.append("c.unit_id = ?")
            params.append(unit_id)
        if query:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%") \
                .replace("_", "\\_") + "%"
            where.append("(a.title LIKE ? ESCAPE '\\' OR a.lecturer LIKE ? ESCAPE '\\' "
                         "OR c.title LIKE ? ESCAPE '\\')")
            params += [pattern, pattern, pattern]
        sql = ITEMS_SQL
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY a.recorded_at DESC, a.created_at DESC"
        return [self._public(row) for row in self.db.all(sql, params)]

    def _public(self, row: dict[str, Any]) -> dict[str, Any]:
        ready = row["state"] == "ready"
        item = {key: row[key] for key in (
            "id", "session_id", "course_id", "course_title", "unit_id", "unit_name", "title",
            "lecturer", "description", "recorded_at", "origin", "state", "failure", "progress",
            "duration", "size", "video_codec", "audio_codec", "width", "height", "created_at",
            "owner_id", "owner_name")}
        item["media_url"] = f"/archive/{row['id']}/media" if ready else None
        item["poster_url"] = (f"/archive/{row['id']}/{POSTER_NAME}"
                              if ready and row["has_poster"] else None)
        item["mime_type"] = ("video/mp4" if (row["media_file"] or "").endswith(".mp4")
                             else "video/webm") if ready else None
        # The rooms' turns on stage: their sound is in the media, their
        # pictures in the stage media, at ``offset`` for the lecture's ``at``.
        item["stage_url"] = f"/archive/{row['id']}/stage" if ready and row["stage_file"] \
            else None
        item["stage"] = json.loads(row["stage_turns"] or "[]") if item["stage_url"] else []
        return item

    def create_item(self, *, title: str, recorded_at: float, origin: str = "recording",
                    session_id: str | None = None, course_id: int | None = None,
                    lecturer: str = "", description: str = "",
                    state: str = "recording", owner_id: int = ROOT_NODE) -> dict[str, Any]:
        """A new item, owned by an org node (its session's organizer; the city
        for an import)."""
        item_id = secrets.token_hex(8)
        now = self._clock()
        self.db.execute(
            "INSERT INTO archive_items (id, session_id, course_id, title, lecturer, description,"
            " recorded_at, origin, state, created_at, updated_at, owner_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, session_id, course_id, title, lecturer, description, recorded_at,
             origin, state, now, now, owner_id))
        return self.item(item_id)

    def update_item(self, item_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Edit an item's metadata (PATCH semantics; raises Invalid / Missing)."""
        self.item(item_id)
        fields = Fields(data, partial=True)
        fields.text("title", required=True)
        fields.text("lecturer")
        fields.text("description", max_length=MAX_TEXT)
        fields.reference("course_id", lambda row_id: self.db.one(
            "SELECT 1 FROM courses WHERE id = ?", (row_id,)) is not None)
        fields.timestamp("recorded_at")
        unknown = set(data) - {"title", "lecturer", "description", "course_id", "recorded_at"}
        for name in sorted(unknown):
            fields.errors[name] = "error.not_editable"
        values = fields.check()
        if "recorded_at" in values and values["recorded_at"] is None:
            raise Invalid({"recorded_at": "error.required"})
        self._set(item_id, **values)
        return self.item(item_id)

    def _set(self, item_id: str, **values: Any) -> None:
        values["updated_at"] = self._clock()
        # Column names come from this module, never from input.
        assignments = ", ".join(f"{column} = ?" for column in values)
        self.db.execute(f"UPDATE archive_items SET {assignments} WHERE id = ?",
                        (*values.values(), item_id))

    def delete_item(self, item_id: str) -> None:
        """Remove an item and its files; refused while it is recorded or finished."""
        item = self.item(item_id)
        if item["state"] in ("recording", "finishing"):
            raise StateConflict(f"the item is {item['state']}; stop the recording and wait")
        if self.db.one("SELECT 1 FROM sessions WHERE replay_item_id = ? AND state != 'ended'",
                       (item_id,)) is not None:
            raise StateConflict("a session that has not ended replays this item")
        directory = self.recordings.item_dir(item_id)
        self.db.execute("DELETE FROM archive_items WHERE id = ?", (item_id,))
        shutil.rmtree(directory, ignore_errors=True)

    def discard_import(self, item_id: str) -> None:
        """Take back an item whose import failed: its row and whatever reached
        its folder (``delete_item`` refuses it: an import is 'finishing' until
        it ends)."""
        row = self._row(item_id) if valid_item_id(item_id) else None
        if row is None or row["origin"] != "import":
            raise ValueError(f"{item_id} is not an import")
        self.db.execute("DELETE FROM archive_items WHERE id = ?", (item_id,))
        shutil.rmtree(self.recordings.item_dir(item_id), ignore_errors=True)

    def media_path(self, item_id: str, poster: bool = False, stage: bool = False) -> Any:
        """The file to serve for a ready item (its lecture, poster or stage),
        or raise Missing."""
        row = self._row(item_id) if valid_item_id(item_id) else None
        if row is None or row["state"] != "ready" or not row["media_file"]:
            raise Missing("no such archive item")
        directory = self.recordings.item_dir(item_id)
        if poster:
            if not row["has_poster"]:
                raise Missing("no such archive item")
            return directory / POSTER_NAME
        if stage:
            if not row["stage_file"]:
                raise Missing("no such archive item")
            return directory / str(row["stage_file"])
        return directory / str(row["media_file"])

    # ------------------------------------------------------------------ recording

    def recording_of(self, session_id: str) -> dict[str, Any] | None:
        """The running recording of a session, for the console, or None."""
        live = self._live.get(session_id)
        if live is None:
            return None
        recorder = self.recordings.active.get(live.item_id)
        stats = recorder.stats if recorder is not None else None
        return {
            "item_id": live.item_id,
            "started_at": live.started_at,
            "duration": round(stats.duration, 1) if stats else 0.0,
            "bytes": stats.bytes if stats else 0,
            "segments": stats.segments if stats else 0,
            "restarts": stats.restarts if stats else 0,
            "notices": [notice.json() for notice in live.notices],
        }

    def start_recording(self, session_row: Mapping[str, Any], slot: Slot,
                        stage: Slot | None = None) -> dict[str, Any]:
        """Start recording a session's program slot into a new item, and its
        stage slot beside it (the rooms brought on stage, named by invitation)."""
        session_id = str(session_row["id"])
        if session_id in self._live:
            raise StateConflict("this session is already being recorded")
        if session_row["state"] == "ended":
            raise StateConflict("the session has ended")
        now = self._clock()
        title = str(session_row.get("title") or session_row.get("course_title") or "")
        item = self.create_item(
            title=title, recorded_at=now, session_id=session_id,
            course_id=session_row.get("course_id"),
            lecturer=str(session_row.get("lecturer") or ""),
            owner_id=int(session_row.get("organizer_id") or ROOT_NODE))
        item_id = item["id"]
        self._live[session_id] = _Live(item_id, session_id, now)
        try:
            self.recordings.start(item_id, slot, stage, label=_uplink_invitation)
        except BaseException:
            del self._live[session_id]
            self.db.execute("DELETE FROM archive_items WHERE id = ?", (item_id,))
            raise
        logger.info("session %s: recording into item %s", session_id, item_id)
        return item

    def stop_recording(self, session_id: str) -> dict[str, Any]:
        """Stop a session's recording; finishing runs in the background."""
        live = self._live.pop(session_id, None)
        if live is None:
            raise StateConflict("this session is not being recorded")
        self.recordings.stop(live.item_id)
        item = self.item(live.item_id)
        if item["state"] == "recording":
            self._begin_finishing(live.item_id)
        return self.item(live.item_id)

    def on_recorder_event(self, item_id: str, kind: str, detail: str) -> None:
        """Events of a running recorder (``Recordings``' callback)."""
        live = next((entry for entry in self._live.values() if entry.item_id == item_id), None)
        if kind == "failed":
            # The recorder stopped for good (the relay goes on). Its segments
            # stay on disk until the item is deleted.
            if live is not None:
                self._live.pop(live.session_id, None)
            self._set(item_id, state="failed", failure=detail)
        if live is None or (kind == "segment" and detail.endswith("0001.mkv")):
            return
        now = self._clock()
        if now - live.last_notice.get(kind, -NOTICE_INTERVAL) < NOTICE_INTERVAL:
            return  # rate-limited: a flapping writer must not flood the console
        live.last_notice[kind] = now
        messages = {"segment": "new segment (the source or picture size changed)",
                    "restart": f"the writer failed and was restarted: {detail}",
                    "failed": f"recording stopped: {detail}",
                    "stage-restart": f"the stage writer failed and was restarted: {detail}",
                    "stage-failed": f"the stage is no longer recorded: {detail}"}
        live.notices.append(Notice(now, kind, messages.get(kind, detail)))

    def _begin_finishing(self, item_id: str) -> None:
        self._set(item_id, state="finishing", progress=0.0)
        task = asyncio.create_task(self._finish(item_id))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, item_id: str) -> None:
        last = [0.0]

        def progress(share: float) -> None:
            if share - last[0] >= 0.05 or share >= 1.0:
                last[0] = share
                self._set(item_id, progress=share)

        try:
            result = await self.recordings.finish(item_id, progress)
        except FinishError as exc:
            logger.error("item %s failed: %s", item_id, exc)
            self._set(item_id, state="failed", failure=str(exc))
            return
        self.record_result(item_id, result)

    def record_result(self, item_id: str, result: FinishResult) -> None:
        """Store a finished item's facts; it is ready to be played."""
        self._set(item_id, state="ready", failure=None, progress=1.0,
                  duration=result.duration, size=result.size,
                  video_codec=result.video_codec, audio_codec=result.audio_codec,
                  width=result.width, height=result.height, media_file=result.media_file,
                  has_poster=int(result.poster), stage_file=result.stage_file,
                  stage_turns=json.dumps(self._named_turns(result.stage), ensure_ascii=False),
                  file_digests=json.dumps(result.digests))
        logger.info("item %s finished: %.1f s, %d bytes", item_id, result.duration, result.size)

    def _named_turns(self, turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The stage's turns with the name of the room each was (by invitation)."""
        named = []
        for turn in turns:
            site = None
            if isinstance(turn.get("source"), str):
                site = self.db.one("SELECT s.name, s.org_path FROM invitations i "
                                   "JOIN sites s ON s.id = i.site_id WHERE i.id = ?",
                                   (turn["source"],))
            named.append({"at": turn["at"], "offset": turn["offset"],
                          "duration": turn["duration"],
                          "site_name": site["name"] if site else None,
                          "org_path": site["org_path"] if site else None})
        return named

    async def recover(self) -> None:
        """At start-up: finish the items a crash or shutdown left unfinished."""
        # Imports are finished by the import command itself (perhaps running now).
        for row in self.db.all("SELECT id FROM archive_items WHERE origin = 'recording' "
                               "AND state IN ('recording', 'finishing')"):
            logger.info("item %s was left unfinished: finishing it now", row["id"])
            self._begin_finishing(row["id"])

    async def wait_finished(self) -> None:
        """Until no item is being finished (tests, shutdown)."""
        while self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)

    async def close(self) -> None:
        """Shutting down: recorders stop with their files closed; unfinished
        items are finished at the next start."""
        for task in list(self._finishing):
            task.cancel()
        for task in list(self._finishing):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._live.clear()
        await self.recordings.close()


def _uplink_invitation(source: object | None) -> str | None:
    """The invitation whose uplink fills the stage (a publisher's tag)."""
    tag = getattr(source, "tag", None)
    return tag if isinstance(tag, str) else None


# ---------------------------------------------------------------------- library links


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class LibraryLinks:
    """Links that open the library (课程回放) for cadres, without an account."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def create(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """Returns (row, token); only the token's digest is stored."""
        fields = Fields(data)
        fields.text("label", required=True)
        fields.timestamp("expires_at")
        values = fields.check()
        expires = values.get("expires_at")
        if expires is not None and expires <= self._clock():
            raise Invalid({"expires_at": "error.in_the_past"})
        token = secrets.token_urlsafe(24)
        link_id = secrets.token_hex(6)
        self.db.execute(
            "INSERT INTO library_links (id, label, token_digest, expires_at, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (link_id, values["label"], _digest(token), expires, self._clock()))
        return self.link(link_id), token

    def link(self, link_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT id, label, expires_at, revoked_at, created_at "
                          "FROM library_links WHERE id = ?", (link_id,))
        if row is None:
            raise Missing("no such library link")
        return row

    def links(self) -> list[dict[str, Any]]:
        return self.db.all("SELECT id, label, expires_at, revoked_at, created_at "
                           "FROM library_links ORDER BY created_at DESC")

    def revoke(self, link_id: str) -> dict[str, Any]:
        self.link(link_id)
        self.db.execute("UPDATE library_links SET revoked_at = COALESCE(revoked_at, ?) "
                        "WHERE id = ?", (self._clock(), link_id))
        return self.link(link_id)

    def check(self, token: str) -> dict[str, Any] | None:
        """The link a token opens, if it is valid now."""
        if not token or len(token) > 200:
            return None
        row = self.db.one("SELECT id, label, expires_at, revoked_at, created_at "
                          "FROM library_links WHERE token_digest = ?", (_digest(token),))
        if row is None or row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= self._clock():
            return None
        return row
