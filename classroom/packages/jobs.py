"""Packages made and taken in by the running server (the console's 课程包).

An export runs in a worker thread with a connection of its own (the event
loop's connection is never used from another thread), writing into
``<data>/packages/``; the console polls its progress and downloads the file.
One export runs at a time: two would only share the disk's speed. The last
few packages are kept for download; the folder is emptied at start-up (what
a restart interrupted is of no use).

An uploaded package is written to the same folder, then verified and
imported in a worker thread, and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classroom.db import Database
from classroom.errors import Invalid, Missing, StateConflict
from classroom.packages import exporter, importer
from classroom.packages.exporter import Selection
from recordings.manager import Recordings

logger = logging.getLogger(__name__)

KEEP = 5  # packages kept for download
PROGRESS_STEP = 0.01
FILE_FORMATS = ("zip", "iso")


class _Stopped(Exception):
    """The server is closing: the export in progress gives up."""


@dataclass
class ExportJob:
    id: str
    format: str
    selection: Selection
    title: str
    items: int
    created_at: float
    path: Path
    state: str = "running"  # running → ready | failed
    progress: float = 0.0
    size: int | None = None
    error: str | None = None

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "format": self.format, "title": self.title, "items": self.items,
                "unit_id": self.selection.unit_id, "course_id": self.selection.course_id,
                "item_ids": list(self.selection.item_ids), "created_at": self.created_at,
                "state": self.state, "progress": round(self.progress, 3), "size": self.size,
                "error": self.error}


class PackageJobs:
    def __init__(self, db: Database, recordings: Recordings, folder: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.recordings = recordings
        self.folder = folder
        self._clock = clock
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self._jobs: dict[str, ExportJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # ---------------------------------------------------------------- exports

    def start_export(self, selection: Selection, kind: str,
                     player: Mapping[str, bytes]) -> dict[str, Any]:
        """Check the selection (Invalid / Missing at once) and start writing
        the package in the background; returns the job."""
        if kind not in FILE_FORMATS:
            raise ValueError(kind)
        if any(job.state == "running" for job in self._jobs.values()):
            raise StateConflict("a package is being exported; wait until it is ready")
        now = self._clock()
        manifest = exporter.plan(self.db, self.recordings, selection, now).manifest
        job_id = secrets.token_hex(6)
        job = ExportJob(job_id, kind, selection, manifest.title, len(manifest.items), now,
                        self.folder / f"{job_id}.{kind}")
        self._jobs[job_id] = job
        self._forget_old()
        task = asyncio.create_task(self._export(job, dict(player)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.json()

    async def _export(self, job: ExportJob, player: dict[str, bytes]) -> None:
        def progress(share: float) -> None:
            if self._stopping:
                raise _Stopped
            if share - job.progress >= PROGRESS_STEP or share >= 1.0:
                job.progress = share  # read by the loop: a float is written at once

        def run() -> None:
            db = Database(self.db.path)
            try:
                exporter.export(db, self.recordings, job.selection, job.path, player,
                                created_at=job.created_at, kind=job.format, progress=progress)
            finally:
                db.close()

        try:
            await asyncio.to_thread(run)
        except _Stopped:
            return
        except (exporter.ExportFailed, OSError, Missing, Invalid) as exc:  # e.g. deleted since
            job.state, job.error = "failed", str(exc)
            logger.error("package %s failed: %s", job.id, exc)
            return
        except Exception as exc:
            job.state, job.error = "failed", "internal error"
            logger.exception("package %s failed", job.id, exc_info=exc)
            return
        job.size = job.path.stat().st_size
        job.state, job.progress = "ready", 1.0
        logger.info("package %s ready: %d lectures, %d bytes", job.id, job.items, job.size)

    def _forget_old(self) -> None:
        finished = sorted((job for job in self._jobs.values() if job.state != "running"),
                          key=lambda job: job.created_at)
        while len(self._jobs) > KEEP and finished:
            job = finished.pop(0)
            del self._jobs[job.id]
            job.path.unlink(missing_ok=True)

    def jobs(self) -> list[dict[str, Any]]:
        return [job.json() for job in sorted(self._jobs.values(), key=lambda j: -j.created_at)]

    def job(self, job_id: str) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            raise Missing("no such package")
        return job.json()

    def file(self, job_id: str) -> tuple[Path, dict[str, Any]]:
        """The ready package's file, and its job."""
        job = self._jobs.get(job_id)
        if job is None or job.state != "ready" or not job.path.is_file():
            raise Missing("no such package, or not ready yet")
        return job.path, job.json()

    # ---------------------------------------------------------------- imports

    def upload_path(self) -> Path:
        """A new file in the packages folder for an upload (the caller removes it)."""
        return self.folder / f"upload-{secrets.token_hex(6)}"

    async def import_file(self, path: Path) -> importer.ImportReport:
        """Verify and import a package file (PackageRefused names what is wrong)."""

        def run() -> importer.ImportReport:
            db = Database(self.db.path)
            try:
                return importer.import_package(db, self.recordings, path, now=self._clock())
            finally:
                db.close()

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        shutil.rmtree(self.folder, ignore_errors=True)
