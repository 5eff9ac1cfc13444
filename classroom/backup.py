"""Backups of a data folder, taken while the service runs, and their restore.

A backup is one tar file holding:

* ``zhixing.sqlite3`` — the catalog, copied with SQLite's backup API: a
  consistent snapshot even while the service writes (WAL), never a copy of a
  file caught between two writes;
* ``server-secret`` — without it every invitation link handed out stops
  working (they are signed with it), so the backup file is created mode 0600;
* ``manifest.json`` — what the backup holds and what the archive folder held
  when it was taken: each lecture file's path and size (and the digest of
  the catalog), so a restore can say which lecture files are missing;
* the lecture files themselves only when asked (``include_archive``): an
  archive of months of lectures is usually copied on its own (rsync), and
  the manifest then tells whether that copy is complete.

A restore goes into a data folder without a catalog (a fresh folder, or one
whose catalog was lost): it checks the catalog's digest and SQLite's
integrity check before the file takes its place, refuses a backup made by a
newer version (a catalog migrated further than this one knows), and reports
the lecture files that the manifest lists but the folder lacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from classroom.access.signing import SECRET_FILE
from classroom.db import MIGRATIONS
from classroom.school import ARCHIVE_DIR, DATABASE_FILE

FORMAT = "zhixing-backup"
VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1024 * 1024


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why and what to do."""


@dataclass
class Manifest:
    created_at: float
    schema_version: int
    catalog_sha256: str
    items: int
    archive_files: list[dict[str, Any]]  # {"path": "archive/<item>/…", "size": n}
    includes_archive: bool

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "created_at": self.created_at,
                "schema_version": self.schema_version, "catalog_sha256": self.catalog_sha256,
                "items": self.items, "includes_archive": self.includes_archive,
                "archive_files": self.archive_files}

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError("not a Zhixing backup (its manifest.json is not one)")
        if data.get("version") != VERSION:
            raise BackupError(f"backup format version {data.get('version')!r} is not known "
                              "to this version of the program")
        try:
            return cls(created_at=float(data["created_at"]),
                       schema_version=int(data["schema_version"]),
                       catalog_sha256=str(data["catalog_sha256"]), items=int(data["items"]),
                       archive_files=[{"path": str(f["path"]), "size": int(f["size"])}
                                      for f in data["archive_files"]],
                       includes_archive=bool(data["includes_archive"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"the backup's manifest is damaged: {exc}") from exc


@dataclass
class RestoreReport:
    manifest: Manifest
    restored_files: int = 0  # lecture files taken from the backup
    missing: list[str] = field(default_factory=list)  # listed, but not in the folder
    different: list[str] = field(default_factory=list)  # in the folder with another size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_catalog(source: Path, target: Path) -> int:
    """Copy the catalog with SQLite's backup API; returns its schema version."""
    if not source.is_file():
        raise BackupError(f"no catalog at {source} (is this the data folder?)")
    # mode=rw: never create a catalog that is not there. Nothing is written to
    # it; a read-only connection would fail on a WAL catalog whose service is
    # stopped (no -shm file to open).
    src = sqlite3.connect(source.resolve().as_uri() + "?mode=rw", uri=True)
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            version = int(dst.execute("PRAGMA user_version").fetchone()[0])
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"reading the catalog failed: {exc}") from exc
    finally:
        src.close()
    return version


def _archive_files(data_dir: Path) -> list[dict[str, Any]]:
    root = data_dir / ARCHIVE_DIR
    files = []
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                relative = path.relative_to(data_dir).as_posix()
                files.append({"path": relative, "size": path.stat().st_size})
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def make_backup(data_dir: Path, destination: Path, include_archive: bool = False) -> Manifest:
    """Write a backup of ``data_dir`` to ``destination`` (a new file)."""
    secret = data_dir / SECRET_FILE
    if not secret.is_file():
        raise BackupError(f"no {SECRET_FILE} in {data_dir} (is this the data folder?)")
    if destination.exists():
        raise BackupError(f"{destination} exists already; give a new file name")
    with tempfile.TemporaryDirectory(prefix="zhixing-backup-") as scratch:
        catalog = Path(scratch) / DATABASE_FILE
        version = snapshot_catalog(data_dir / DATABASE_FILE, catalog)
        items = _count_items(catalog)
        manifest = Manifest(created_at=time.time(), schema_version=version,
                            catalog_sha256=_sha256(catalog), items=items,
                            archive_files=_archive_files(data_dir),
                            includes_archive=include_archive)
        partial = destination.with_name(destination.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest.to_json(), ensure_ascii=False,
                                                     indent=1).encode("utf-8"), 0o644)
                tar.add(catalog, DATABASE_FILE, recursive=False, filter=_private)
                _add_bytes(tar, SECRET_FILE, secret.read_bytes())
                if include_archive:
                    for entry in manifest.archive_files:
                        path = data_dir / entry["path"]
                        with contextlib.suppress(FileNotFoundError):  # finished meanwhile
                            tar.add(path, entry["path"], recursive=False, filter=_private)
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(destination)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    return info


def _count_items(catalog: Path) -> int:
    conn = sqlite3.connect(catalog)
    try:
        return int(conn.execute("SELECT count(*) FROM archive_items").fetchone()[0])
    except sqlite3.Error:
        return 0  # a catalog from before the archive existed
    finally:
        conn.close()


def read_manifest(backup: Path) -> Manifest:
    with _open(backup) as tar:
        return _manifest_of(tar)


@contextlib.contextmanager
def _open(backup: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(backup, mode="r") as tar:
            yield tar
    except (tarfile.TarError, EOFError) as exc:  # not a tar file, or a cut one
        raise BackupError(f"{backup} is not a whole backup: {exc}") from exc


def _manifest_of(tar: tarfile.TarFile) -> Manifest:
    try:
        member = tar.extractfile(MANIFEST)
    except KeyError:
        member = None
    if member is None:
        raise BackupError("not a Zhixing backup (no manifest.json)")
    try:
        data = json.loads(member.read())
    except ValueError as exc:
        raise BackupError("the backup's manifest is damaged (not JSON)") from exc
    return Manifest.from_json(data)


def restore_backup(backup: Path, data_dir: Path) -> RestoreReport:
    """Restore ``backup`` into ``data_dir``, which must hold no catalog."""
    if (data_dir / DATABASE_FILE).exists():
        raise BackupError(f"{data_dir} holds a catalog already; restore into a new, empty "
                          "data folder (stop the service, move the old folder aside)")
    with _open(backup) as tar:
        manifest = _manifest_of(tar)
        if manifest.schema_version > len(MIGRATIONS):
            raise BackupError(f"the backup's catalog (version {manifest.schema_version}) is "
                              f"newer than this program knows ({len(MIGRATIONS)}): restore "
                              "it with the version that made it, or a later one")
        data_dir.mkdir(parents=True, exist_ok=True)
        catalog = data_dir / (DATABASE_FILE + ".restoring")
        secret = data_dir / (SECRET_FILE + ".restoring")
        try:
            _extract(tar, DATABASE_FILE, catalog)
            _extract(tar, SECRET_FILE, secret)
            if _sha256(catalog) != manifest.catalog_sha256:
                raise BackupError("the backup's catalog does not match its manifest "
                                  "(damaged file)")
            _check_integrity(catalog)
            report = RestoreReport(manifest)
            if manifest.includes_archive:
                report.restored_files = _extract_archive(tar, manifest, data_dir)
            secret.replace(data_dir / SECRET_FILE)
            catalog.replace(data_dir / DATABASE_FILE)
        finally:
            catalog.unlink(missing_ok=True)
            secret.unlink(missing_ok=True)
    for entry in manifest.archive_files:
        path = data_dir / entry["path"]
        if not path.is_file():
            report.missing.append(entry["path"])
        elif path.stat().st_size != entry["size"]:
            report.different.append(entry["path"])
    return report


def _extract(tar: tarfile.TarFile, name: str, target: Path) -> None:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise BackupError(f"the backup lacks {name}") from None
    source = tar.extractfile(member) if member.isfile() else None
    if source is None:
        raise BackupError(f"the backup's {name} is not a file")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        while chunk := source.read(CHUNK):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())


def _extract_archive(tar: tarfile.TarFile, manifest: Manifest, data_dir: Path) -> int:
    """The lecture files the manifest lists, and nothing else (no other path,
    no link, nothing outside ``archive/``)."""
    count = 0
    for entry in manifest.archive_files:
        name = entry["path"]
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or parts[0] != ARCHIVE_DIR or ".." in parts or name.startswith("/"):
            raise BackupError(f"the backup names a file outside the archive: {name!r}")
        try:
            tar.getmember(name)
        except KeyError:
            continue  # it was gone (finished, deleted) by the time it was read
        target = data_dir / Path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        _extract(tar, name, target)
        os.chmod(target, 0o644)
        count += 1
    return count


def _check_integrity(catalog: Path) -> None:
    conn = sqlite3.connect(catalog)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupError(f"the backup's catalog is not a database: {exc}") from exc
    finally:
        conn.close()
    if result != "ok":
        raise BackupError(f"the backup's catalog failed SQLite's integrity check: {result}")
