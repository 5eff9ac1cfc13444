"""Learners for tests: a ready archive item made from a real file (ffmpeg's
test pattern, VP8 in WebM, which Chromium plays), learners with personal
links, and requests as a learner's link."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.catalog import Reply, call, created
from tests.support.service import Service
from web.keys import ARCHIVE, LIMITER, SCHOOL

API = "/api/v1"


def make_clip(path: Path, seconds: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=duration={seconds}:size=160x120:rate=10", "-c:v", "libvpx",
                    "-b:v", "100k", "-g", "20", str(path)], check=True, timeout=120)


def ready_item(service: Service, seconds: int, title: str = "案例一",
               session_id: str | None = None) -> dict[str, Any]:
    """An archive item, ready, whose file is a real ``seconds``-long WebM."""
    archive = service.app[ARCHIVE]
    item = archive.create_item(title=title, recorded_at=time.time(), origin="import",
                               session_id=session_id)
    folder = archive.recordings.item_dir(item["id"])
    folder.mkdir(parents=True, exist_ok=True)
    make_clip(folder / "lecture.webm", seconds)
    archive.db.execute(
        "UPDATE archive_items SET state = 'ready', media_file = 'lecture.webm', "
        "duration = ?, size = ?, video_codec = 'VP8' WHERE id = ?",
        (float(seconds), (folder / "lecture.webm").stat().st_size, item["id"]))
    return archive.item(item["id"])  # type: ignore[no-any-return]


async def learner_with_link(service: Service, name: str = "张三", unit_id: int | None = None,
                            **fields: Any) -> tuple[dict[str, Any], str]:
    """A learner at the city (or ``fields``' node), assigned to ``unit_id``,
    and its personal link's token."""
    learner = created(await call(service, "POST", f"{API}/learners",
                                 {"name": name, "org_node_id": 1, **fields}))
    if unit_id is not None:
        reply = await call(service, "POST", f"{API}/learning/units/{unit_id}/assign",
                           {"learner_ids": [learner["id"]]})
        assert reply.status == 200, reply.text
    link = created(await call(service, "POST", f"{API}/learners/{learner['id']}/link"))
    return learner, link["token"]


async def as_learner(service: Service, method: str, token: str, tail: str,
                     body: Any = None, content_type: str | None = None) -> Reply:
    return await call(service, method, f"/learn/{token}{tail}", body, token=None,
                      content_type=content_type)


def progress_rows(service: Service) -> list[dict[str, Any]]:
    return service.app[SCHOOL].db.all(  # type: ignore[no-any-return]
        "SELECT * FROM video_progress ORDER BY learner_id, item_id")


def lift_progress_limit(service: Service) -> None:
    """No rate limit on progress reports (for tests that send many quickly)."""
    limiter = service.app[LIMITER]
    limiter.settings = dataclasses.replace(limiter.settings, progress_burst=0)
