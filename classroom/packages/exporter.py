"""Export: a unit, a course or chosen lectures as a course package.

The lectures go as they are stored (no transcoding), with their posters and
stage files; the catalog rows they belong to go into the manifest and, for
the offline player, into ``catalog.js``. Each file is hashed while it is
copied (one read of every byte), so an export costs about what ``cp`` of the
same files costs. The player's own files (HTML, JS, CSS, its messages) are
given by the caller: they are the web layer's.

Targets: a folder (which must not exist or be empty), a ZIP file (stored,
not compressed: video does not compress; ZIP64 for files over 4 GiB) or an
ISO image (ISO 9660 level 3 with Rock Ridge and Joliet, by Debian's
``xorriso``, which reads the media from the archive itself). A file target
is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import mmap
import os
import shutil
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from classroom.db import Database
from classroom.errors import Invalid, Missing
from classroom.packages.manifest import (
    CATALOG_SCRIPT,
    MANIFEST_NAME,
    Manifest,
    PackageFile,
    item_paths,
)
from recordings.finish import POSTER_NAME
from recordings.manager import Recordings, valid_item_id

CHUNK = 4 * 1024 * 1024
KERNEL_CHUNK = 64 * 1024 * 1024
WORKERS = 2  # files copied and hashed at once: SHA-256 runs at about cp's speed per core
FORMATS = ("dir", "zip", "iso")
ITEM_COLUMNS = ("id", "course_id", "title", "lecturer", "description", "recorded_at", "origin",
                "duration", "size", "video_codec", "audio_codec", "width", "height",
                "media_file", "stage_file")
Progress = Callable[[float], None]
T = TypeVar("T")


class ExportFailed(Exception):
    """The target could not be written (disk full, xorriso missing…)."""


@dataclass(frozen=True)
class Selection:
    """What to export: one of a unit, a course, or items by id."""

    unit_id: int | None = None
    course_id: int | None = None
    item_ids: tuple[str, ...] = ()


def format_of(target: Path) -> str:
    """A target's format by its name: ``*.zip``, ``*.iso``, else a folder."""
    suffix = target.suffix.lower()
    return {".zip": "zip", ".iso": "iso"}.get(suffix, "dir")


# ---------------------------------------------------------------------- the plan


def plan(db: Database, recordings: Recordings, selection: Selection,
         created_at: float) -> tuple[Manifest, dict[str, Path]]:
    """The manifest (without its file list) and the archive file of each
    package path. Raises Invalid (nothing chosen, an item not ready) or
    Missing (no such unit, course or item)."""
    chosen = sum((selection.unit_id is not None, selection.course_id is not None,
                  bool(selection.item_ids)))
    if chosen != 1:
        raise Invalid({"selection": "error.package_selection"})
    sql = ("SELECT a.*, c.unit_id AS unit_id FROM archive_items a "
           "LEFT JOIN courses c ON c.id = a.course_id ")
    title = ""
    if selection.unit_id is not None:
        unit = db.one("SELECT * FROM units WHERE id = ?", (selection.unit_id,))
        if unit is None:
            raise Missing("no such unit")
        title = unit["name"]
        rows = db.all(sql + "WHERE c.unit_id = ? AND a.state = 'ready' "
                      "ORDER BY a.recorded_at, a.id", (selection.unit_id,))
    elif selection.course_id is not None:
        course = db.one("SELECT * FROM courses WHERE id = ?", (selection.course_id,))
        if course is None:
            raise Missing("no such course")
        title = course["title"]
        rows = db.all(sql + "WHERE a.course_id = ? AND a.state = 'ready' "
                      "ORDER BY a.recorded_at, a.id", (selection.course_id,))
    else:
        rows = []
        for item_id in dict.fromkeys(selection.item_ids):
            row = db.one(sql + "WHERE a.id = ?", (item_id,)) if valid_item_id(item_id) else None
            if row is None:
                raise Missing(f"no such archive item: {item_id[:40]}")
            if row["state"] != "ready":
                raise Invalid({"item_ids": "error.package_item_not_ready"})
            rows.append(row)
    if not rows:
        raise Invalid({"selection": "error.package_empty"})
    course_ids = {row["course_id"] for row in rows if row["course_id"] is not None}
    if selection.course_id is not None:
        course_ids.add(selection.course_id)
    courses = [{"id": c["id"], "unit_id": c["unit_id"], "title": c["title"],
                "lecturer": c["lecturer"]}
               for c in db.all("SELECT * FROM courses ORDER BY id")
               if c["id"] in course_ids]
    unit_ids = {course["unit_id"] for course in courses if course["unit_id"] is not None}
    if selection.unit_id is not None:
        unit_ids.add(selection.unit_id)
    units = [{"id": u["id"], "name": u["name"], "description": u["description"]}
             for u in db.all("SELECT * FROM units ORDER BY id") if u["id"] in unit_ids]
    items: list[dict[str, Any]] = []
    sources: dict[str, Path] = {}
    for row in rows:
        item = {column: row[column] for column in ITEM_COLUMNS}
        item["poster_file"] = POSTER_NAME if row["has_poster"] else None
        item["stage_turns"] = json.loads(row["stage_turns"] or "[]") if row["stage_file"] \
            else []
        folder = recordings.item_dir(row["id"])
        for kind, path in item_paths(item).items():
            column = "poster_file" if kind == "poster" else f"{kind}_file"
            source = folder / str(item[column])
            if not source.is_file() or source.is_symlink():
                raise Missing(f"the archive lacks a file of item {row['id']}: {item[column]}")
            sources[path] = source
        items.append(item)
    manifest = Manifest(created_at=created_at, title=title, units=units, courses=courses,
                        items=items)
    return manifest, sources


def catalog_script(manifest: Manifest) -> bytes:
    """``catalog.js``: the catalog as a global the player reads (a page opened
    from file:// may not fetch() JSON beside it, but it may load a script)."""
    items = []
    for item in manifest.items:
        paths = item_paths(item)
        items.append({
            "id": item["id"], "course_id": item["course_id"], "title": item["title"],
            "lecturer": item["lecturer"], "description": item["description"],
            "recorded_at": item["recorded_at"], "duration": item["duration"],
            "media": paths["media"], "poster": paths.get("poster"), "stage": paths.get("stage"),
            "mime_type": "video/mp4" if item["media_file"].endswith(".mp4") else "video/webm",
            "stage_turns": item["stage_turns"]})
    catalog = {"title": manifest.title, "created_at": manifest.created_at,
               "units": manifest.units, "courses": manifest.courses, "items": items}
    text = json.dumps(catalog, ensure_ascii=False, indent=1)
    return f"window.ZHIXING_PACKAGE = {text};\n".encode()


# ---------------------------------------------------------------------- copying


def copy_hashing(source: IO[bytes], target: IO[bytes] | None,
                 advance: Callable[[int], None]) -> tuple[int, str]:
    """Copy ``source`` to ``target`` (or only read it, for None); (size, SHA-256)."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    size = 0
    while count := source.readinto(buffer):  # type: ignore[attr-defined]
        chunk = view[:count]
        digest.update(chunk)  # releases the GIL: hashing a chunk costs no event-loop time
        if target is not None:
            target.write(chunk)
        size += count
        advance(count)
    return size, digest.hexdigest()


def hash_file(path: Path, advance: Callable[[int], None]) -> tuple[int, str]:
    """(size, SHA-256) of a file, hashed from a memory map: no copy of the
    bytes into Python, and the GIL is released while each slice is hashed."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return 0, digest.hexdigest()
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                for start in range(0, size, CHUNK):
                    digest.update(view[start:start + CHUNK])
                    advance(min(CHUNK, size - start))
            finally:
                view.release()
    return size, digest.hexdigest()


def run_all(tasks: list[Callable[[], T]], workers: int) -> list[T]:
    """The tasks' results in order, ``workers`` at a time; the first failure
    is raised once the running tasks end (the queued ones do not start)."""
    if workers <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(workers, thread_name_prefix="package") as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def copy_file(source: Path, target: Path, advance: Callable[[int], None]) -> tuple[int, str]:
    """Copy ``source`` to a new ``target``; (size, SHA-256 of what was copied).

    The kernel copies (``copy_file_range``, as ``cp`` does: the bytes never
    pass through Python) while this thread hashes the source from a memory
    map; the two overlap, and the second read comes from the page cache the
    first one filled."""
    with source.open("rb") as reading, target.open("xb") as writing, \
            ThreadPoolExecutor(1, thread_name_prefix="package-copy") as pool:
        copying = pool.submit(_kernel_copy, reading.fileno(), writing.fileno())
        try:
            size, digest = hash_file(source, advance)
        finally:
            copied = copying.result()
    if copied != size:
        raise OSError(errno.EIO, f"{source} changed while it was copied")
    return size, digest


def _kernel_copy(source: int, target: int) -> int:
    """Copy from the current offsets to the end; the bytes copied."""
    copied = 0
    try:
        while count := os.copy_file_range(source, target, KERNEL_CHUNK):
            copied += count
        return copied
    except OSError as exc:
        # Another file system, or an old kernel: sendfile, then plain reads.
        if copied or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP,
                                       errno.EINVAL):
            raise
    try:
        while count := os.sendfile(target, source, None, KERNEL_CHUNK):
            copied += count
        return copied
    except OSError as exc:
        if copied or exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    while chunk := os.read(source, CHUNK):
        os.write(target, chunk)  # a regular file takes all of it
        copied += len(chunk)
    return copied


class _Writer:
    """One kind of target; ``add`` writes a file and returns its entry
    (from several threads at once when ``parallel``)."""

    parallel = False

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None]
            ) -> PackageFile:
        raise NotImplementedError

    def finish(self, manifest: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def _opened(source: Path | bytes) -> IO[bytes]:
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")


class _FolderWriter(_Writer):
    parallel = True

    def __init__(self, root: Path) -> None:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise Invalid({"target": "error.package_target_exists"})
        self.made = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None]
            ) -> PackageFile:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            size, digest = copy_file(source, target, advance)
            return PackageFile(path, size, digest)
        with _opened(source) as reading, target.open("xb") as writing:
            size, digest = copy_hashing(reading, writing, advance)
        return PackageFile(path, size, digest)

    def finish(self, manifest: bytes) -> None:
        (self.root / MANIFEST_NAME).write_bytes(manifest)

    def abort(self) -> None:
        if self.made:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            for child in self.root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


class _ZipWriter(_Writer):
    def __init__(self, target: Path) -> None:
        if target.exists():
            raise Invalid({"target": "error.package_target_exists"})
        self.target = target
        self.partial = target.with_name(target.name + ".partial")
        self.zip = zipfile.ZipFile(self.partial, "w", zipfile.ZIP_STORED, allowZip64=True)

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None]
            ) -> PackageFile:
        info = zipfile.ZipInfo(path, date_time=(2000, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with _opened(source) as reading, self.zip.open(info, "w", force_zip64=True) as writing:
            size, digest = copy_hashing(reading, writing, advance)
        return PackageFile(path, size, digest)

    def finish(self, manifest: bytes) -> None:
        self.zip.writestr(MANIFEST_NAME, manifest)
        self.zip.close()
        os.replace(self.partial, self.target)

    def abort(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.zip.close()
        self.partial.unlink(missing_ok=True)


class _IsoWriter(_Writer):
    """The small files are written to a folder beside the image; the media
    are hashed where they are and grafted into the image by xorriso."""

    parallel = True

    def __init__(self, target: Path) -> None:
        if target.exists():
            raise Invalid({"target": "error.package_target_exists"})
        if shutil.which("xorriso") is None:
            raise ExportFailed("ISO images need xorriso (apt-get install xorriso)")
        self.target = target
        self.partial = target.with_name(target.name + ".partial")
        self.staging = Path(tempfile.mkdtemp(prefix=".package-", dir=target.parent))
        self.grafts: list[str] = []

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None]
            ) -> PackageFile:
        if isinstance(source, bytes):
            staged = self.staging / path
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(source)
            size, digest = len(source), hashlib.sha256(source).hexdigest()
            advance(size)
            return PackageFile(path, size, digest)
        size, digest = hash_file(source, advance)
        # '=' and '\\' are xorriso's graft syntax; the archive's paths have neither.
        self.grafts.append(f"/{path}={source.resolve()}")
        return PackageFile(path, size, digest)

    def finish(self, manifest: bytes) -> None:
        (self.staging / MANIFEST_NAME).write_bytes(manifest)
        command = ["xorriso", "-as", "mkisofs", "-quiet", "-iso-level", "3", "-R", "-J",
                   "-joliet-long", "-V", "ZHIXING", "-o", str(self.partial), "-graft-points",
                   *self.grafts, f"/={self.staging}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ExportFailed(f"xorriso failed: {done.stderr.strip()[-500:]}")
        os.replace(self.partial, self.target)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.partial.unlink(missing_ok=True)


def _writer(target: Path, kind: str) -> _Writer:
    if kind == "zip":
        return _ZipWriter(target)
    if kind == "iso":
        return _IsoWriter(target)
    return _FolderWriter(target)


class Advance:
    """Bytes done of ``total``, from any thread, as a share to ``progress``."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total or 1
        self.progress = progress
        self.done = 0
        self._lock = threading.Lock()

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            share = min(self.done / self.total, 0.999)
        if self.progress is not None:
            self.progress(share)


def export(db: Database, recordings: Recordings, selection: Selection, target: Path,
           player: Mapping[str, bytes], *, created_at: float, kind: str | None = None,
           progress: Progress | None = None) -> Manifest:
    """Write the package of ``selection`` to ``target``; returns its manifest.

    ``player`` maps package paths (``index.html``, ``player/…``) to the
    offline player's files. Raises Invalid / Missing before anything is
    written, ExportFailed (or OSError) with the partial target removed."""
    manifest, sources = plan(db, recordings, selection, created_at)
    files: list[tuple[str, Path | bytes]] = [
        *player.items(), (CATALOG_SCRIPT, catalog_script(manifest)), *sources.items()]
    total = sum(len(s) if isinstance(s, bytes) else s.stat().st_size for _, s in files) or 1
    advance = Advance(total, progress)
    writer = _writer(target, kind or format_of(target))
    try:
        manifest.files = run_all(
            [functools.partial(writer.add, path, source, advance) for path, source in files],
            WORKERS if writer.parallel else 1)
        writer.finish(manifest.dumps())
    except BaseException:
        writer.abort()
        raise
    if progress is not None:
        progress(1.0)
    return manifest
