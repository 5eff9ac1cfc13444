"""Backups taken while the catalog is written, and their restore
(classroom/backup.py); the whole round trip through the service and the
``zhixing`` command is in tests/web/test_maintenance.py."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import threading
from pathlib import Path

import pytest

from classroom.access.signing import SECRET_FILE, load_or_create_secret
from classroom.backup import (
    MANIFEST,
    BackupError,
    make_backup,
    read_manifest,
    restore_backup,
)
from classroom.db import MIGRATIONS, Database
from classroom.school import DATABASE_FILE


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    db = Database(folder / DATABASE_FILE)
    db.migrate()
    db.close()
    load_or_create_secret(folder)
    return folder


def _units(catalog: Path) -> list[str]:
    conn = sqlite3.connect(catalog)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [row[0] for row in conn.execute("SELECT name FROM units ORDER BY id")]
    finally:
        conn.close()


def test_a_backup_taken_during_writes_holds_whole_transactions(
    data_dir: Path, tmp_path: Path
) -> None:
    """A writer commits two units per transaction as fast as it can; every
    backup taken meanwhile holds an even number of them, in pairs."""
    db = Database(data_dir / DATABASE_FILE)
    stop = threading.Event()
    written = [0]

    def write() -> None:
        while not stop.is_set():
            with db.transaction():
                for half in ("a", "b"):
                    db.execute("INSERT INTO units (name, created_at) VALUES (?, 0)",
                               (f"{written[0]}{half}",))
            written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    counts = []
    try:
        for number in range(5):
            backup = tmp_path / f"b{number}.tar"
            make_backup(data_dir, backup)
            target = tmp_path / f"restored{number}"
            restore_backup(backup, target)
            names = _units(target / DATABASE_FILE)
            assert len(names) % 2 == 0, names[-3:]
            assert names == [f"{i}{half}" for i in range(len(names) // 2) for half in "ab"]
            assert (target / SECRET_FILE).read_bytes() == (data_dir / SECRET_FILE).read_bytes()
            counts.append(len(names))
    finally:
        stop.set()
        writer.join()
        db.close()
    assert counts[-1] > 0 and written[0] > 0  # the writer really was writing


def test_the_backup_file_is_private_and_describes_the_archive(
    data_dir: Path, tmp_path: Path
) -> None:
    lecture = data_dir / "archive" / "0123456789abcdef" / "lecture.mp4"
    lecture.parent.mkdir(parents=True)
    lecture.write_bytes(b"x" * 1000)
    backup = tmp_path / "b.tar"
    manifest = make_backup(data_dir, backup)
    assert backup.stat().st_mode & 0o777 == 0o600
    assert manifest.archive_files == [{"path": "archive/0123456789abcdef/lecture.mp4",
                                       "size": 1000}]
    assert manifest.schema_version == len(MIGRATIONS)
    assert read_manifest(backup) == manifest
    with tarfile.open(backup) as tar:
        assert sorted(tar.getnames()) == [MANIFEST, SECRET_FILE, DATABASE_FILE]
    # Refused: an existing file is never overwritten.
    with pytest.raises(BackupError, match="exists"):
        make_backup(data_dir, backup)
    # With the lecture files, they come back as they were.
    full = tmp_path / "full.tar"
    make_backup(data_dir, full, include_archive=True)
    report = restore_backup(full, tmp_path / "fresh")
    assert report.restored_files == 1 and report.missing == [] and report.different == []
    restored = tmp_path / "fresh" / "archive" / "0123456789abcdef" / "lecture.mp4"
    assert restored.read_bytes() == lecture.read_bytes()


def test_a_restore_names_the_lecture_files_it_lacks(data_dir: Path, tmp_path: Path) -> None:
    for name, size in (("a", 10), ("b", 20)):
        path = data_dir / "archive" / name / "lecture.webm"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * size)
    backup = tmp_path / "b.tar"
    make_backup(data_dir, backup)
    target = tmp_path / "fresh"
    (target / "archive" / "b").mkdir(parents=True)
    (target / "archive" / "b" / "lecture.webm").write_bytes(b"short")
    report = restore_backup(backup, target)
    assert report.missing == ["archive/a/lecture.webm"]
    assert report.different == ["archive/b/lecture.webm"]


def _rewrite(backup: Path, target: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(backup) as source, tarfile.open(target, "w") as out:
        for member in source.getmembers():
            data = change.get(member.name)
            if data is None:
                extracted = source.extractfile(member)
                assert extracted is not None
                data = extracted.read()
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def test_a_bad_backup_or_target_changes_nothing(data_dir: Path, tmp_path: Path) -> None:
    backup = tmp_path / "b.tar"
    make_backup(data_dir, backup)
    manifest = read_manifest(backup).to_json()
    before = (data_dir / DATABASE_FILE).read_bytes()
    with pytest.raises(BackupError, match="holds a catalog"):
        restore_backup(backup, data_dir)
    assert (data_dir / DATABASE_FILE).read_bytes() == before

    damaged = b"SQLite format 3\x00" + b"\x01" * 200
    cases = {
        # The manifest agrees with it: SQLite's integrity check is what refuses it.
        "damaged catalog": {DATABASE_FILE: damaged, MANIFEST: json.dumps(
            {**manifest, "catalog_sha256": hashlib.sha256(damaged).hexdigest()}).encode()},
        "catalog not the manifest's": {DATABASE_FILE: before},
        "newer catalog": {MANIFEST: json.dumps({**manifest, "schema_version": 999}).encode()},
        "not a manifest": {MANIFEST: b"[]"},
        "escaping path": {MANIFEST: json.dumps({
            **manifest, "includes_archive": True,
            "archive_files": [{"path": "archive/../../evil", "size": 1}]}).encode()},
    }
    for name, change in cases.items():
        bad = tmp_path / f"{name}.tar"
        _rewrite(backup, bad, change)
        target = tmp_path / name
        with pytest.raises(BackupError):
            restore_backup(bad, target)
        left = sorted(p.name for p in target.iterdir()) if target.exists() else []
        assert left == [], (name, left)
    assert not (tmp_path / "evil").exists()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(backup.read_bytes()[:700])
    with pytest.raises(BackupError):
        restore_backup(cut, tmp_path / "cut")
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(BackupError, match="not a whole backup"):
        restore_backup(tmp_path / "plain.txt", tmp_path / "plain")
    with pytest.raises(BackupError, match=r"no server-secret"):
        make_backup(tmp_path / "nowhere", tmp_path / "x.tar")
