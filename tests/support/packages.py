"""Archives for the course-package tests: a data folder with units, courses
and ready lectures made by ffmpeg (a few seconds of test picture and tone,
a stage file with one room's turn), without recording anything live."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classroom.archive.items import Archive
from classroom.catalog import Catalog
from classroom.db import Database
from recordings.digests import item_digests
from recordings.finish import describe, make_poster
from recordings.manager import Recordings
from web.app import ARCHIVE_DIR, DATABASE_FILE

LECTURE_SECONDS = 20  # the player resumes between 2 s in and 10 s from the end
TURN = {"at": 3.0, "offset": 0.0, "duration": 3.0, "site_name": "新碶街道分课堂",
        "org_path": "北仑区 / 新碶街道"}
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25"]


def make_media(folder: Path) -> tuple[Path, Path]:
    """(lecture.mp4, stage.mp4): H.264 + AAC test picture and tone, and a
    green stage picture of one turn."""
    folder.mkdir(parents=True, exist_ok=True)
    lecture, stage = folder / "lecture.mp4", folder / "stage.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-t", str(LECTURE_SECONDS), *H264,
                    "-c:a", "aac", "-movflags", "+faststart", str(lecture)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "color=c=0x00c000:size=160x120:rate=25", "-t", str(TURN["duration"]),
                    *H264, "-movflags", "+faststart", str(stage)], check=True)
    return lecture, stage


@dataclass
class Archived:
    data_dir: Path
    units: list[dict[str, Any]]
    courses: list[dict[str, Any]]
    items: list[dict[str, Any]]


def open_archive(data_dir: Path) -> tuple[Database, Archive]:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(data_dir / DATABASE_FILE)
    db.migrate()
    return db, Archive(db, Recordings(data_dir / ARCHIVE_DIR))


def add_lecture(archive: Archive, media: tuple[Path, Path], *, title: str,
                course_id: int | None, lecturer: str = "", recorded_at: float = 1.75e9,
                stage: bool = False) -> dict[str, Any]:
    item = archive.create_item(title=title, recorded_at=recorded_at, course_id=course_id,
                               lecturer=lecturer, description=f"{title}：课堂实录",
                               state="finishing")
    folder = archive.recordings.item_dir(item["id"])
    folder.mkdir()
    shutil.copyfile(media[0], folder / "lecture.mp4")
    result = describe(folder, "lecture.mp4")
    result.poster = make_poster(folder / "lecture.mp4", folder / "poster.jpg", result.duration)
    if stage:
        shutil.copyfile(media[1], folder / "stage.mp4")
        result.stage_file = "stage.mp4"
    # As finishing keeps them.
    result.digests = item_digests(folder, ("lecture.mp4", "poster.jpg", result.stage_file))
    archive.record_result(item["id"], result)
    if stage:  # the room's name as finishing would have found it by invitation
        archive.db.execute("UPDATE archive_items SET stage_turns = ? WHERE id = ?",
                           (json.dumps([TURN], ensure_ascii=False), item["id"]))
    return archive.item(item["id"])


def make_archive(data_dir: Path, media: tuple[Path, Path]) -> Archived:
    """Two units; three courses (one of another unit); five ready lectures
    (the first with a room on stage, the last without a course) and one
    failed item."""
    db, archive = open_archive(data_dir)
    try:
        catalog = Catalog(db)
        law = catalog.create_unit({"name": "第三专题：法治政府", "description": "依法行政"})
        economy = catalog.create_unit({"name": "第四专题：数字经济"})
        first = catalog.create_course({"title": "行政复议法解读", "lecturer": "王教授",
                                       "unit_id": law["id"]})
        second = catalog.create_course({"title": "行政执法规范", "lecturer": "李老师",
                                        "unit_id": law["id"]})
        other = catalog.create_course({"title": "数据要素市场", "unit_id": economy["id"]})
        items = [
            add_lecture(archive, media, title="第一讲 复议范围", course_id=first["id"],
                        lecturer="王教授", stage=True),
            add_lecture(archive, media, title="第二讲 复议程序", course_id=first["id"],
                        lecturer="王教授", recorded_at=1.76e9),
            add_lecture(archive, media, title="执法规范化", course_id=second["id"],
                        lecturer="李老师"),
            add_lecture(archive, media, title="数据要素", course_id=other["id"]),
            add_lecture(archive, media, title="专题报告会", course_id=None, lecturer="张主任"),
        ]
        archive.create_item(title="断电的一讲", recorded_at=1.75e9, course_id=first["id"],
                            state="failed")
        return Archived(data_dir, catalog.units(), catalog.courses(), items)
    finally:
        db.close()
