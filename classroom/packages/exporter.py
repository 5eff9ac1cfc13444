"""Export: a unit, a course or chosen lectures as a course package.

The lectures go as they are stored (no transcoding), with their posters and
stage files; the catalog rows they belong to go into the manifest and, for
the offline player, into ``catalog.js``. Each file is hashed while the
kernel copies it, two files at a time (``copying.py``). The player's own
files (HTML, JS, CSS, its messages) are given by the caller: they are the
web layer's.

Targets: a folder (which must not exist or be empty), a ZIP file (stored,
not compressed, ZIP64: ``zipstore.py``) or an ISO image (ISO 9660 level 3
with Rock Ridge and Joliet, by Debian's ``xorriso``, which reads the media
from the archive itself). A file target is written under a temporary name
and renamed when complete.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from classroom.db import Database
from classroom.errors import Invalid, Missing
from classroom.packages.copying import (
    WORKERS,
    Advance,
    Progress,
    copy_file,
    hash_file,
    run_all,
)
from classroom.packages.manifest import (
    CATALOG_SCRIPT,
    MANIFEST_NAME,
    Manifest,
    PackageFile,
    item_paths,
)
from classroom.packages.zipstore import StoredZip
from recordings.digests import Digest
from recordings.digests import known as digests_known
from recordings.finish import POSTER_NAME
from recordings.manager import Recordings, valid_item_id

ITEM_COLUMNS = ("id", "course_id", "title", "lecturer", "description", "recorded_at", "origin",
                "duration", "size", "video_codec", "audio_codec", "width", "height",
                "media_file", "stage_file")


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


@dataclass
class Plan:
    manifest: Manifest  # without its file list
    sources: dict[str, Path]  # package path → archive file
    known: dict[str, Digest]  # package path → the digest kept since it was made


def plan(db: Database, recordings: Recordings, selection: Selection,
         created_at: float) -> Plan:
    """What a package of ``selection`` holds. Raises Invalid (nothing
    chosen, an item not ready) or Missing (no such unit, course or item)."""
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
    known: dict[str, Digest] = {}
    for row in rows:
        digests = json.loads(row["file_digests"] or "{}")
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
            digest = digests_known(digests, str(item[column]), source)
            if digest is not None:
                known[path] = digest
        items.append(item)
    manifest = Manifest(created_at=created_at, title=title, units=units, courses=courses,
                        items=items)
    return Plan(manifest, sources, known)


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


# ---------------------------------------------------------------------- writing


class _Writer(Protocol):
    """One kind of target; ``add`` writes a file and returns its entry
    (from several threads at once when ``parallel``)."""

    parallel: bool

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None],
            known: Digest | None = None) -> PackageFile: ...

    def finish(self, manifest: bytes) -> None: ...

    def abort(self) -> None: ...


class _FolderWriter:
    parallel = True

    def __init__(self, root: Path) -> None:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise Invalid({"target": "error.package_target_exists"})
        self.made = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None],
            known: Digest | None = None) -> PackageFile:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            size, digest = copy_file(source, target, advance, known)
        else:
            target.write_bytes(source)
            size, digest = len(source), hashlib.sha256(source).hexdigest()
            advance(size)
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


class _ZipWriter:
    # One entry at a time: two kernel copies into one file at once ran at a
    # quarter of the speed of one after the other here (ext4).
    parallel = False

    def __init__(self, target: Path) -> None:
        if target.exists():
            raise Invalid({"target": "error.package_target_exists"})
        self.target = target
        self.partial = target.with_name(target.name + ".partial")
        self.partial.unlink(missing_ok=True)  # a previous attempt's
        self.zip = StoredZip(self.partial)

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None],
            known: Digest | None = None) -> PackageFile:
        if isinstance(source, bytes):
            size, digest = self.zip.add_bytes(path, source)
            advance(size)
        else:
            size, digest = self.zip.add_file(path, source, advance, known)
        return PackageFile(path, size, digest)

    def finish(self, manifest: bytes) -> None:
        self.zip.add_bytes(MANIFEST_NAME, manifest)
        self.zip.close()
        os.replace(self.partial, self.target)

    def abort(self) -> None:
        self.zip.discard()
        self.partial.unlink(missing_ok=True)


class _IsoWriter:
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

    def add(self, path: str, source: Path | bytes, advance: Callable[[int], None],
            known: Digest | None = None) -> PackageFile:
        if isinstance(source, bytes):
            staged = self.staging / path
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(source)
            size, digest = len(source), hashlib.sha256(source).hexdigest()
            advance(size)
            return PackageFile(path, size, digest)
        if known is not None and known.size == source.stat().st_size:
            size, digest = known.size, known.sha256
            advance(size)
        else:
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


def export(db: Database, recordings: Recordings, selection: Selection, target: Path,
           player: Mapping[str, bytes], *, created_at: float, kind: str | None = None,
           progress: Progress | None = None) -> Manifest:
    """Write the package of ``selection`` to ``target``; returns its manifest.

    ``player`` maps package paths (``index.html``, ``player/…``) to the
    offline player's files. Raises Invalid / Missing before anything is
    written, ExportFailed (or OSError) with the partial target removed."""
    planned = plan(db, recordings, selection, created_at)
    manifest, sources = planned.manifest, planned.sources
    files: list[tuple[str, Path | bytes]] = [
        *player.items(), (CATALOG_SCRIPT, catalog_script(manifest)), *sources.items()]
    total = sum(len(s) if isinstance(s, bytes) else s.stat().st_size for _, s in files) or 1
    advance = Advance(total, progress)
    # The files hashed now, as they were before (a lecture finished before
    # digests were kept): their digests are kept afterwards.
    hashed = {path: source.stat() for path, source in sources.items()
              if path not in planned.known}
    writer = _writer(target, kind or format_of(target))
    try:
        manifest.files = run_all(
            [functools.partial(writer.add, path, source, advance, planned.known.get(path))
             for path, source in files],
            WORKERS if writer.parallel else 1)
        writer.finish(manifest.dumps())
    except BaseException:
        writer.abort()
        raise
    _keep_digests(db, manifest, sources, hashed)
    if progress is not None:
        progress(1.0)
    return manifest


def _keep_digests(db: Database, manifest: Manifest, sources: Mapping[str, Path],
                  hashed: Mapping[str, os.stat_result]) -> None:
    """Keep the digests of the files this export hashed, for the next one
    (only of a file that did not change while it was read)."""
    found = {file.path: file for file in manifest.files}
    by_item: dict[str, dict[str, Any]] = {}
    for path, before in hashed.items():
        after = sources[path].stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) \
                or found[path].size != after.st_size:
            continue
        _, item_id, name = path.split("/")
        by_item.setdefault(item_id, {})[name] = Digest(
            after.st_size, after.st_mtime_ns, found[path].sha256).json()
    for item_id, digests in by_item.items():
        row = db.one("SELECT file_digests FROM archive_items WHERE id = ?", (item_id,))
        if row is not None:
            kept = {**json.loads(row["file_digests"] or "{}"), **digests}
            db.execute("UPDATE archive_items SET file_digests = ? WHERE id = ?",
                       (json.dumps(kept), item_id))
