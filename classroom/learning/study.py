"""我的学习: what a learner studies per unit, and the progress the server measures.

Per unit: its reading list (marked read by the learner), its self-study
videos, its lecture replays, whether the lecture was attended, and the
learner's write-up with its review.

A unit's **self-study videos** are archive items the city chooses, in order;
its **lecture replays** are the ready items recorded from the unit's sessions.
A learner may play, and report progress for, the items of the units assigned
to it and no other. Each report's ranges are merged into what was kept
(``progress.py``) in one transaction: the union, the seconds played, the
position to resume from on any device, and when the item became complete
(≥ 90 % played; it stays complete).

The lecture counts as **attended** when the learner's room (its site) has
attendance in one of the unit's sessions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from classroom.db import Database
from classroom.errors import Forbidden, Invalid, Missing
from classroom.learning import progress

MAX_VIDEOS = 100

LECTURES_SQL = ("SELECT a.id, a.title, a.duration, c.unit_id FROM archive_items a "
                "JOIN sessions s ON s.id = a.session_id JOIN courses c ON c.id = s.course_id "
                "WHERE a.state = 'ready' AND a.duration > 0")
VIDEOS_SQL = ("SELECT v.unit_id, a.id, a.title, a.duration, a.state FROM unit_videos v "
              "JOIN archive_items a ON a.id = v.item_id")


class Study:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    # ------------------------------------------------------------ a unit's videos

    def _unit(self, unit_id: int) -> dict[str, Any]:
        row = self.db.one("SELECT id, name FROM units WHERE id = ?", (unit_id,))
        if row is None:
            raise Missing("no such unit")
        return row

    def videos(self, unit_id: int) -> list[dict[str, Any]]:
        self._unit(unit_id)
        return [{k: row[k] for k in ("id", "title", "duration", "state")} for row in
                self.db.all(VIDEOS_SQL + " WHERE v.unit_id = ? ORDER BY v.position",
                            (unit_id,))]

    def set_videos(self, unit_id: int, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The unit's self-study videos, in order: ready archive items."""
        self._unit(unit_id)
        ids = data.get("item_ids")
        if not isinstance(ids, list) or len(ids) > MAX_VIDEOS or \
                any(not isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
            raise Invalid({"item_ids": "error.learning_videos"})
        for item_id in ids:
            row = self.db.one("SELECT state, duration FROM archive_items WHERE id = ?",
                              (item_id,))
            if row is None or row["state"] != "ready" or not row["duration"]:
                raise Invalid({"item_ids": "error.unknown_reference"})
        with self.db.transaction():
            self.db.execute("DELETE FROM unit_videos WHERE unit_id = ?", (unit_id,))
            for position, item_id in enumerate(ids):
                self.db.execute("INSERT INTO unit_videos (unit_id, item_id, position) "
                                "VALUES (?, ?, ?)", (unit_id, item_id, position))
        return self.videos(unit_id)

    # ------------------------------------------------------------ a learner's units

    def _items_of_units(self, unit_ids: list[int]) -> dict[int, dict[str, list[dict[str, Any]]]]:
        found: dict[int, dict[str, list[dict[str, Any]]]] = {
            u: {"videos": [], "lectures": []} for u in unit_ids}
        if not unit_ids:
            return found
        marks = ",".join("?" * len(unit_ids))
        for row in self.db.all(VIDEOS_SQL + f" WHERE v.unit_id IN ({marks}) AND "
                               "a.state = 'ready' ORDER BY v.position", unit_ids):
            found[row["unit_id"]]["videos"].append(row)
        for row in self.db.all(LECTURES_SQL + f" AND c.unit_id IN ({marks}) "
                               "ORDER BY a.recorded_at", unit_ids):
            found[row["unit_id"]]["lectures"].append(row)
        return found

    def _unit_ids(self, learner_id: int) -> list[int]:
        return [r["unit_id"] for r in self.db.all(
            "SELECT unit_id FROM learner_units WHERE learner_id = ? ORDER BY unit_id",
            (learner_id,))]

    def assigned_item(self, learner_id: int, item_id: str) -> dict[str, Any]:
        """The item (id, title, duration) if it is a video or lecture of one of
        the learner's units; Forbidden otherwise (also for an unknown id)."""
        for unit in self._items_of_units(self._unit_ids(learner_id)).values():
            for row in (*unit["videos"], *unit["lectures"]):
                if row["id"] == item_id:
                    return row
        raise Forbidden("this item is not assigned to this learner")

    def require_assigned_unit(self, learner_id: int, unit_id: int) -> None:
        """Forbidden unless the unit is one of the learner's."""
        if unit_id not in self._unit_ids(learner_id):
            raise Forbidden("this unit is not assigned to this learner")

    def attended_units(self, site_id: int | None) -> set[int]:
        """The units whose sessions the site (a learner's room) attended."""
        if site_id is None:
            return set()
        return {r["unit_id"] for r in self.db.all(
            "SELECT DISTINCT c.unit_id FROM attendance_intervals ai "
            "JOIN sessions s ON s.id = ai.session_id JOIN courses c ON c.id = s.course_id "
            "WHERE ai.site_id = ? AND c.unit_id IS NOT NULL", (site_id,))}

    def overview(self, learner: Mapping[str, Any], org_path: str) -> dict[str, Any]:
        """我的学习: the learner and, per unit, its videos and lecture replays
        with the progress kept for each, and whether its lecture was attended."""
        learner_id = int(learner["id"])
        unit_ids = self._unit_ids(learner_id)
        items = self._items_of_units(unit_ids)
        kept = {r["item_id"]: r for r in self.db.all(
            "SELECT item_id, played, position, completed_at FROM video_progress "
            "WHERE learner_id = ?", (learner_id,))}
        attended = self.attended_units(learner["site_id"])
        names = {r["id"]: r["name"] for r in self.db.all("SELECT id, name FROM units")}

        def entry(row: Mapping[str, Any]) -> dict[str, Any]:
            mine = kept.get(row["id"])
            return {"id": row["id"], "title": row["title"], "duration": row["duration"],
                    "played": mine["played"] if mine else 0.0,
                    "position": mine["position"] if mine else 0.0,
                    "complete": bool(mine and mine["completed_at"] is not None)}

        readings: dict[int, list[dict[str, Any]]] = {u: [] for u in unit_ids}
        for row in self.db.all(
                "SELECT r.id, r.unit_id, r.title, r.notes, r.file_type, r.file_size, "
                "m.read_at IS NOT NULL AS read FROM learner_units lu "
                "JOIN reading_items r ON r.unit_id = lu.unit_id "
                "LEFT JOIN reading_marks m ON m.reading_id = r.id AND m.learner_id = ? "
                "WHERE lu.learner_id = ? ORDER BY r.id", (learner_id, learner_id)):
            readings[row["unit_id"]].append(
                {"id": row["id"], "title": row["title"], "notes": row["notes"],
                 "file_type": row["file_type"], "file_size": row["file_size"],
                 "read": bool(row["read"])})
        writeups = {r["unit_id"]: r for r in self.db.all(
            "SELECT id, unit_id, text, attachment_type, state, comment, submitted_at, "
            "reviewed_at FROM writeups WHERE learner_id = ?", (learner_id,))}
        units = []
        for unit_id in unit_ids:
            videos = [entry(r) for r in items[unit_id]["videos"]]
            units.append({"id": unit_id, "name": names.get(unit_id, ""),
                          "readings": readings[unit_id],
                          "readings_read": sum(r["read"] for r in readings[unit_id]),
                          "videos": videos,
                          "lectures": [entry(r) for r in items[unit_id]["lectures"]],
                          "videos_complete": sum(v["complete"] for v in videos),
                          "lecture_attended": unit_id in attended,
                          "writeup": writeups.get(unit_id)})
        return {"name": learner["name"], "org_path": org_path,
                "site_name": learner.get("site_name"), "units": units}

    # ------------------------------------------------------------ progress

    def report(self, learner_id: int, item_id: str, ranges: object,
               position: object) -> dict[str, Any]:
        """Merge a player's report; Invalid (nothing kept) for ranges outside
        the item, a position outside it, or more played than the time since
        the previous report allows; Forbidden for an item not assigned."""
        item = self.assigned_item(learner_id, item_id)
        duration = float(item["duration"])
        if isinstance(position, bool) or not isinstance(position, int | float) or \
                not 0 <= position <= duration + progress.END_TOLERANCE_S:
            raise Invalid({"position": "error.progress_outside"})
        try:
            reported = progress.parse(ranges, duration)
        except progress.BadReport as exc:
            raise Invalid({"ranges": exc.reason}) from None
        now = self._clock()
        with self.db.transaction():
            row = self.db.one("SELECT ranges, reported_at, completed_at FROM video_progress "
                              "WHERE learner_id = ? AND item_id = ?", (learner_id, item_id))
            kept = [(float(s), float(e)) for s, e in json.loads(row["ranges"])] if row else []
            elapsed = now - row["reported_at"] if row else None
            try:
                merged = progress.merge(kept, reported, elapsed)
            except progress.BadReport as exc:
                raise Invalid({"ranges": exc.reason}) from None
            completed_at = row["completed_at"] if row else None
            if completed_at is None and merged.complete(duration):
                completed_at = now
            self.db.execute(
                "INSERT INTO video_progress (learner_id, item_id, ranges, played, duration, "
                "position, completed_at, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (learner_id, item_id) DO UPDATE SET ranges = excluded.ranges, "
                "played = excluded.played, duration = excluded.duration, "
                "position = excluded.position, completed_at = excluded.completed_at, "
                "reported_at = excluded.reported_at",
                (learner_id, item_id, json.dumps([[round(s, 3), round(e, 3)]
                                                  for s, e in merged.ranges]),
                 merged.played, duration, min(float(position), duration), completed_at, now))
        return {"item_id": item_id, "duration": duration, "played": merged.played,
                "position": min(float(position), duration),
                "complete": completed_at is not None}
