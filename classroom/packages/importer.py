"""Import: a course package's lectures enter this server's archive.

Every file the manifest lists is read once and its size and SHA-256 checked;
the files of lectures this archive lacks are copied while they are read, into
a staging folder inside the archive. Only when every file is sound do the
units, courses and items enter the catalog (one transaction) and the staged
folders take their items' places. A partial or damaged package is refused
naming the file, and leaves nothing behind.

Lectures keep their ids, so importing a package again, or a later package of
the same unit, adds only what is new; units are matched by name and courses
by title within their unit, so a district that imports every month's disc
gets one unit per topic, not one per disc.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from classroom.db import Database
from classroom.errors import StateConflict
from classroom.packages.copying import (
    WORKERS,
    Advance,
    copy_file,
    copy_hashing,
    hash_file,
    run_all,
)
from classroom.packages.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST,
    Manifest,
    PackageFile,
    PackageRefused,
    item_paths,
    parse,
)
from recordings.digests import Digest
from recordings.manager import Recordings

Progress = Callable[[float], None]
ISO_MAGIC_OFFSET = 0x8001  # "CD001" of the first volume descriptor


@dataclass
class ImportReport:
    title: str
    added: list[str] = field(default_factory=list)  # item ids new to this archive
    present: list[str] = field(default_factory=list)  # already here: left as they are
    units_added: int = 0
    courses_added: int = 0

    def json(self) -> dict[str, Any]:
        return {"title": self.title, "added": self.added, "present": self.present,
                "units_added": self.units_added, "courses_added": self.courses_added}


# ---------------------------------------------------------------------- sources


class _Folder:
    """A package folder (a USB stick, a mounted disc, an extracted image)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def file(self, path: str) -> Path:
        # The path is checked (manifest.safe_path); links are not followed,
        # so nothing outside the package is ever read.
        current = self.root
        for part in path.split("/"):
            current = current / part
            if current.is_symlink():
                raise PackageRefused(path, "a link, not a file of the package", "outside")
        if not current.is_file():
            raise PackageRefused(path, "missing from the package", "missing")
        return current

    def open(self, path: str) -> IO[bytes]:
        return self.file(path).open("rb")

    def close(self) -> None:
        pass


class _Zip:
    def __init__(self, path: Path) -> None:
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise PackageRefused(path.name, f"not a readable ZIP file ({exc})",
                                 "not_package") from None

    def open(self, path: str) -> IO[bytes]:
        try:
            return self.zip.open(path)
        except KeyError:
            raise PackageRefused(path, "missing from the package", "missing") from None
        # NotImplementedError: a compression method zipfile cannot read.
        except (zipfile.BadZipFile, NotImplementedError, OSError) as exc:
            raise PackageRefused(path, f"unreadable ({exc})", "damaged") from None

    def close(self) -> None:
        self.zip.close()


def _is_iso(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(ISO_MAGIC_OFFSET)
        return file.read(5) == b"CD001"


@contextlib.contextmanager
def _opened(path: Path, scratch: Path) -> Iterator[_Folder | _Zip]:
    """The package at ``path``: a folder, a ZIP file or an ISO image (whose
    files are extracted by xorriso into a folder under ``scratch``)."""
    if path.is_dir():
        yield _Folder(path)
        return
    if not path.is_file():
        raise PackageRefused(path.name, "no such file or folder", "missing")
    if zipfile.is_zipfile(path):
        source = _Zip(path)
        try:
            yield source
        finally:
            source.close()
        return
    if not _is_iso(path):
        raise PackageRefused(path.name, "not a package folder, ZIP file or ISO image",
                             "not_package")
    if shutil.which("xorriso") is None:
        raise PackageRefused(path.name, "ISO images need xorriso (apt-get install xorriso)",
                             "not_package")
    folder = Path(tempfile.mkdtemp(prefix=".package-iso-", dir=scratch))
    try:
        done = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(path),
                               "-extract", "/", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PackageRefused(path.name, f"unreadable ISO image: {done.stderr[-300:]}",
                                     "damaged")
        yield _Folder(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _manifest(source: _Folder | _Zip) -> Manifest:
    with source.open(MANIFEST_NAME) as file:
        return parse(file.read(MAX_MANIFEST + 1))


# ---------------------------------------------------------------------- importing


def read_manifest(path: Path, scratch: Path) -> Manifest:
    """The checked manifest of the package at ``path`` (files not verified)."""
    with _opened(path, scratch) as source:
        return _manifest(source)


def import_package(db: Database, recordings: Recordings, path: Path, *, now: float,
                   progress: Progress | None = None) -> ImportReport:
    """Verify the package at ``path`` and import the lectures this archive lacks.

    Raises PackageRefused (naming the file) with nothing imported."""
    root = recordings.root
    with _opened(path, root) as source:
        manifest = _manifest(source)
        report = ImportReport(manifest.title)
        for item in manifest.items:
            present = db.one("SELECT 1 FROM archive_items WHERE id = ?", (item["id"],))
            (report.present if present else report.added).append(item["id"])
        copies = {item_path: item for item in manifest.items if item["id"] in report.added
                  for item_path in item_paths(item).values()}
        needed = sum(file.size for file in manifest.files if file.path in copies)
        if needed and shutil.disk_usage(root).free < needed + 64 * 1024 * 1024:
            raise StateConflict(f"not enough free disk space for the package's "
                                f"{needed // 2**20} MiB")
        staging = root / f".package-{secrets.token_hex(6)}"
        staging.mkdir()
        try:
            _verify_and_stage(source, manifest, copies, staging, progress)
            _enter(db, recordings, manifest, report, staging, now)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if progress is not None:
        progress(1.0)
    return report


def _verify_and_stage(source: _Folder | _Zip, manifest: Manifest,
                      copies: dict[str, dict[str, Any]], staging: Path,
                      progress: Progress | None) -> None:
    advance = Advance(sum(file.size for file in manifest.files), progress)

    def check(entry: PackageFile) -> None:
        copied = entry.path in copies
        target = staging / entry.path
        if copied:
            target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if isinstance(source, _Folder):
                path = source.file(entry.path)
                size, digest = copy_file(path, target, advance) if copied \
                    else hash_file(path, advance)[:2]
            else:
                with source.open(entry.path) as reading, \
                        (target.open("xb") if copied else contextlib.nullcontext()) as writing:
                    size, digest = copy_hashing(reading, writing, advance)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise PackageRefused(entry.path, f"damaged ({exc})", "damaged") from None
        if size != entry.size:
            raise PackageRefused(entry.path, f"{size} bytes where the manifest says "
                                             f"{entry.size}: the file is incomplete or damaged",
                                 "incomplete")
        if digest != entry.sha256:
            raise PackageRefused(entry.path, "its SHA-256 differs from the manifest's: "
                                             "the file is damaged", "damaged")

    # A folder's files are read two at a time (hashing is the cost); a ZIP
    # file is one stream.
    run_all([functools.partial(check, entry) for entry in manifest.files],
            WORKERS if isinstance(source, _Folder) else 1)


def _enter(db: Database, recordings: Recordings, manifest: Manifest, report: ImportReport,
           staging: Path, now: float) -> None:
    """Catalog rows and item folders, all or nothing (called once every file is sound)."""
    placed: list[Path] = []
    try:
        with db.transaction():
            units: dict[int, int] = {}
            for unit in manifest.units:
                row = db.one("SELECT id FROM units WHERE name = ? ORDER BY id LIMIT 1",
                             (unit["name"],))
                if row is None:
                    units[unit["id"]] = db.execute(
                        "INSERT INTO units (name, description, created_at) VALUES (?, ?, ?)",
                        (unit["name"], unit["description"], now))
                    report.units_added += 1
                else:
                    units[unit["id"]] = row["id"]
            courses: dict[int, int] = {}
            for course in manifest.courses:
                unit_id = units.get(course["unit_id"]) if course["unit_id"] else None
                row = db.one("SELECT id FROM courses WHERE title = ? AND unit_id IS ? "
                             "ORDER BY id LIMIT 1", (course["title"], unit_id))
                if row is None:
                    courses[course["id"]] = db.execute(
                        "INSERT INTO courses (title, lecturer, unit_id, created_at) "
                        "VALUES (?, ?, ?, ?)", (course["title"], course["lecturer"], unit_id, now))
                    report.courses_added += 1
                else:
                    courses[course["id"]] = row["id"]
            for item in manifest.items:
                if item["id"] not in report.added:
                    continue
                if db.one("SELECT 1 FROM archive_items WHERE id = ?", (item["id"],)):
                    # Another import of it finished while this one verified.
                    report.added.remove(item["id"])
                    report.present.append(item["id"])
                    continue
                _insert(db, item, courses.get(item["course_id"]) if item["course_id"] else None,
                        now)
                folder = recordings.item_dir(item["id"])
                if folder.exists():  # left by an item deleted from the catalog only
                    shutil.rmtree(folder)
                os.replace(staging / "media" / item["id"], folder)
                placed.append(folder)
                db.execute("UPDATE archive_items SET file_digests = ? WHERE id = ?",
                           (json.dumps(_digests(manifest, item, folder)), item["id"]))
    except BaseException:
        for folder in placed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _insert(db: Database, item: dict[str, Any], course_id: int | None, now: float) -> None:
    db.execute(
        "INSERT INTO archive_items (id, course_id, title, lecturer, description, recorded_at,"
        " origin, state, progress, duration, size, video_codec, audio_codec, width, height,"
        " media_file, has_poster, stage_file, stage_turns, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'ready', 1.0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (item["id"], course_id, item["title"], item["lecturer"], item["description"],
         item["recorded_at"], item["origin"], item["duration"], item["size"],
         item["video_codec"], item["audio_codec"], item["width"], item["height"],
         item["media_file"], int(item["poster_file"] is not None), item["stage_file"],
         json.dumps(item["stage_turns"], ensure_ascii=False), now, now))


def _digests(manifest: Manifest, item: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The item's files' digests as verified (a package of it made here
    later copies them without hashing them again)."""
    entries = {file.path: file for file in manifest.files}
    digests = {}
    for path in item_paths(item).values():
        name = path.rsplit("/", 1)[1]
        entry = entries[path]
        digests[name] = Digest(entry.size, (folder / name).stat().st_mtime_ns,
                               entry.sha256).json()
    return digests
