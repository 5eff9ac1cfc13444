"""Completion reports: per learner and unit, summed per unit and per org node.

One learner's row in a unit says how many of the unit's readings it marked
read, how many of its self-study videos it completed (the server's measure,
``study.py``), whether its room attended the unit's lecture and where its
write-up stands. The report
is built from grouped queries (who is assigned, how many videos and readings
each unit has, the completed videos and the readings read per learner and
unit, the (unit, site) pairs with attendance) joined in memory: for 5,000
learners and 34 videos each it reads 170,000 progress rows once, in a worker
thread when called from the server (``build`` is synchronous and takes a
connection of its own).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from classroom.access.roles import Scope

ASSIGNED_SQL = ("SELECT lu.learner_id, lu.unit_id, u.name AS unit_name, l.name, l.org_node_id, "
                "l.site_id, st.name AS site_name, l.position FROM learner_units lu "
                "JOIN learners l ON l.id = lu.learner_id JOIN units u ON u.id = lu.unit_id "
                "LEFT JOIN sites st ON st.id = l.site_id")
VIDEO_COUNT_SQL = ("SELECT v.unit_id, COUNT(*) AS n FROM unit_videos v "
                   "JOIN archive_items a ON a.id = v.item_id AND a.state = 'ready' "
                   "GROUP BY v.unit_id")
COMPLETED_SQL = ("SELECT p.learner_id, v.unit_id, COUNT(*) AS n FROM video_progress p "
                 "JOIN unit_videos v ON v.item_id = p.item_id "
                 "WHERE p.completed_at IS NOT NULL GROUP BY p.learner_id, v.unit_id")
READINGS_COUNT_SQL = "SELECT unit_id, COUNT(*) FROM reading_items GROUP BY unit_id"
READ_SQL = ("SELECT m.learner_id, r.unit_id, COUNT(*) FROM reading_marks m "
            "JOIN reading_items r ON r.id = m.reading_id GROUP BY m.learner_id, r.unit_id")
WRITEUPS_SQL = "SELECT learner_id, unit_id, state FROM writeups"
ATTENDED_SQL = ("SELECT DISTINCT c.unit_id, ai.site_id FROM attendance_intervals ai "
                "JOIN sessions s ON s.id = ai.session_id JOIN courses c ON c.id = s.course_id "
                "WHERE c.unit_id IS NOT NULL")

WRITEUP_CELLS = {None: "未提交", "submitted": "待审阅", "accepted": "已通过", "returned": "已退回"}
CSV_HEADER = ("学员", "组织", "分课堂", "职务", "专题", "已读书目", "书目总数",
              "自学视频完成", "自学视频总数", "集中授课出勤", "学用成果总结", "全部完成")


@dataclass(frozen=True)
class LearnerRow:
    learner_id: int
    name: str
    org_node_id: int
    org_path: str
    site_name: str | None
    position: str
    unit_id: int
    unit_name: str
    readings_read: int
    readings_total: int
    videos_complete: int
    videos_total: int
    lecture_attended: bool
    writeup: str | None  # its state: submitted, accepted, returned; None if none

    @property
    def done(self) -> bool:
        return (self.readings_read >= self.readings_total
                and self.videos_complete >= self.videos_total and self.lecture_attended
                and self.writeup == "accepted")

    def json(self) -> dict[str, Any]:
        return {"learner_id": self.learner_id, "name": self.name,
                "org_node_id": self.org_node_id, "org_path": self.org_path,
                "site_name": self.site_name, "position": self.position,
                "unit_id": self.unit_id, "unit_name": self.unit_name,
                "readings_read": self.readings_read, "readings_total": self.readings_total,
                "videos_complete": self.videos_complete, "videos_total": self.videos_total,
                "lecture_attended": self.lecture_attended, "writeup": self.writeup,
                "done": self.done}

    def cells(self) -> list[Any]:
        return [self.name, self.org_path, self.site_name or "", self.position, self.unit_name,
                self.readings_read, self.readings_total, self.videos_complete, self.videos_total,
                "是" if self.lecture_attended else "否", WRITEUP_CELLS[self.writeup],
                "是" if self.done else "否"]


def build(conn: sqlite3.Connection, scope: Scope, path_of: Callable[[int], str],
          unit_id: int | None = None) -> list[LearnerRow]:
    """Every (learner, unit) row in the caller's scope (of one unit if given),
    by unit, then org path, then name."""
    totals = {r[0]: r[1] for r in conn.execute(VIDEO_COUNT_SQL)}
    completed = {(r[0], r[1]): r[2] for r in conn.execute(COMPLETED_SQL)}
    attended = {(r[0], r[1]) for r in conn.execute(ATTENDED_SQL)}
    readings = {r[0]: r[1] for r in conn.execute(READINGS_COUNT_SQL)}
    read = {(r[0], r[1]): r[2] for r in conn.execute(READ_SQL)}
    writeups = {(r[0], r[1]): r[2] for r in conn.execute(WRITEUPS_SQL)}
    sql, params = ASSIGNED_SQL, ()
    if unit_id is not None:
        sql, params = sql + " WHERE lu.unit_id = ?", (unit_id,)  # type: ignore[assignment]
    paths: dict[int, str] = {}
    rows: list[LearnerRow] = []
    for (learner_id, unit, unit_name, name, node, site_id, site_name,
         position) in conn.execute(sql, params):
        if not scope.covers(node):
            continue
        if node not in paths:
            paths[node] = path_of(node)
        rows.append(LearnerRow(
            learner_id, name, node, paths[node], site_name, position, unit, unit_name,
            read.get((learner_id, unit), 0), readings.get(unit, 0),
            completed.get((learner_id, unit), 0), totals.get(unit, 0),
            site_id is not None and (unit, site_id) in attended,
            writeups.get((learner_id, unit))))
    rows.sort(key=lambda r: (r.unit_id, r.org_path, r.name, r.learner_id))
    return rows


def summary(rows: list[LearnerRow], key: Callable[[LearnerRow], tuple[Any, str]]
            ) -> list[dict[str, Any]]:
    """Rows summed per group (``key``: (id, name)): learners, videos complete
    of all, lecture attended, loop done."""
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        group_id, group_name = key(row)
        group = groups.setdefault(group_id, {
            "id": group_id, "name": group_name, "learners": 0, "readings_read": 0,
            "readings_total": 0, "videos_complete": 0,
            "videos_total": 0, "lecture_attended": 0, "writeups_accepted": 0, "done": 0})
        group["learners"] += 1
        group["readings_read"] += row.readings_read
        group["readings_total"] += row.readings_total
        group["videos_complete"] += row.videos_complete
        group["videos_total"] += row.videos_total
        group["lecture_attended"] += row.lecture_attended
        group["writeups_accepted"] += row.writeup == "accepted"
        group["done"] += row.done
    return list(groups.values())


def district_of(row: LearnerRow) -> tuple[Any, str]:
    """The first level below the city (the city's own learners are '')."""
    name = row.org_path.split(" / ")[0] if row.org_path else ""
    return name, name


def unit_of(row: LearnerRow) -> tuple[Any, str]:
    return row.unit_id, row.unit_name
