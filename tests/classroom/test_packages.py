"""Course packages: export → import between two data folders (catalog equal,
media byte-identical) as a folder, a ZIP file and an ISO image; importing
twice changes nothing; a damaged package (a flipped byte, a missing file, a
manifest naming a path outside the package, a link out of it) is refused
naming the file, with nothing imported. Media are made by ffmpeg."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from classroom.errors import Invalid, Missing
from classroom.packages import exporter, importer
from classroom.packages.exporter import Selection
from classroom.packages.manifest import PackageRefused
from tests.support.packages import TURN, Archived, make_archive, make_media, open_archive
from web.app import ARCHIVE_DIR, DATABASE_FILE
from web.package_player import player_files

NOW = 1.77e9
ITEM_FIELDS = ("id", "title", "lecturer", "description", "recorded_at", "origin", "state",
               "duration", "size", "video_codec", "audio_codec", "width", "height",
               "media_file", "has_poster", "stage_file", "stage_turns", "course_title",
               "course_lecturer", "unit_name", "unit_description")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def source(tmp_path: Path, media: tuple[Path, Path]) -> Archived:
    return make_archive(tmp_path / "city", media)


@pytest.fixture
def district(tmp_path: Path) -> Path:
    db, _ = open_archive(tmp_path / "district")
    db.close()
    return tmp_path / "district"


def export(data_dir: Path, selection: Selection, target: Path) -> exporter.Manifest:
    db, archive = open_archive(data_dir)
    try:
        return exporter.export(db, archive.recordings, selection, target, player_files(),
                               created_at=NOW)
    finally:
        db.close()


def import_package(data_dir: Path, path: Path) -> importer.ImportReport:
    db, archive = open_archive(data_dir)
    try:
        return importer.import_package(db, archive.recordings, path, now=NOW)
    finally:
        db.close()


def catalog_of(data_dir: Path, item_ids: set[str] | None = None) -> dict[str, Any]:
    """Units, courses and items by their names (ids differ between servers)."""
    conn = sqlite3.connect(data_dir / DATABASE_FILE)
    conn.row_factory = sqlite3.Row
    try:
        items = [dict(row) for row in conn.execute(
            "SELECT a.*, c.title AS course_title, c.lecturer AS course_lecturer, "
            "u.name AS unit_name, u.description AS unit_description FROM archive_items a "
            "LEFT JOIN courses c ON c.id = a.course_id LEFT JOIN units u ON u.id = c.unit_id")]
        chosen = [item for item in items if item_ids is None or item["id"] in item_ids]
        return {"items": sorted(({k: item[k] for k in ITEM_FIELDS} for item in chosen),
                                key=lambda item: item["id"]),
                "courses": sorted({(item["course_title"], item["course_lecturer"],
                                    item["unit_name"]) for item in chosen
                                   if item["course_title"] is not None})}
    finally:
        conn.close()


def snapshot(data_dir: Path) -> tuple[Any, ...]:
    """Everything an import could change: every table's rows, every file."""
    conn = sqlite3.connect(data_dir / DATABASE_FILE)
    try:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = {table: sorted(map(repr, conn.execute(f"SELECT * FROM {table}")))
                for table in tables}
    finally:
        conn.close()
    archive = data_dir / ARCHIVE_DIR
    files = sorted((str(path.relative_to(archive)), path.stat().st_size, path.stat().st_mtime_ns)
                   for path in archive.rglob("*"))
    return rows, files


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir())}


@pytest.mark.parametrize("name", ["package", "package.zip", "package.iso"])
def test_round_trip_between_two_data_folders(source: Archived, district: Path, tmp_path: Path,
                                             name: str) -> None:
    law = source.units[0]
    target = tmp_path / name
    manifest = export(source.data_dir, Selection(unit_id=law["id"]), target)
    exported = {item["id"] for item in source.items[:3]}  # the law unit's ready lectures
    assert {item["id"] for item in manifest.items} == exported
    assert [unit["name"] for unit in manifest.units] == [law["name"]]
    assert len(manifest.courses) == 2
    paths = {file.path for file in manifest.files}
    assert {"index.html", "catalog.js", "player/player.js", "player/player.css",
            "player/messages.js"} <= paths
    with_stage = source.items[0]["id"]
    assert f"media/{with_stage}/stage.mp4" in paths and f"media/{with_stage}/poster.jpg" in paths

    if name.endswith(".zip"):  # Info-ZIP reads it too
        checked = subprocess.run(["unzip", "-tq", str(target)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with zipfile.ZipFile(target) as opened:
            assert opened.testzip() is None
            assert sorted(opened.namelist()) == sorted([*paths, "manifest.json"])
    report = import_package(district, target)
    assert sorted(report.added) == sorted(exported) and report.present == []
    assert (report.units_added, report.courses_added) == (1, 2)
    assert catalog_of(district) == catalog_of(source.data_dir, exported)
    imported = catalog_of(district)["items"]
    assert {item["state"] for item in imported} == {"ready"}
    assert [json.loads(i["stage_turns"]) for i in imported if i["id"] == with_stage] == [[TURN]]
    for item_id in exported:
        original = source.data_dir / ARCHIVE_DIR / item_id
        copy = district / ARCHIVE_DIR / item_id
        assert digests(copy) == digests(original), item_id
    # No staging folder or extracted image is left in the archive.
    assert sorted(p.name for p in (district / ARCHIVE_DIR).iterdir()) == sorted(exported)


def test_importing_the_same_package_twice_changes_nothing(source: Archived, district: Path,
                                                          tmp_path: Path) -> None:
    target = tmp_path / "unit.zip"
    export(source.data_dir, Selection(unit_id=source.units[0]["id"]), target)
    import_package(district, target)
    before = snapshot(district)
    report = import_package(district, target)
    assert report.added == [] and len(report.present) == 3
    assert (report.units_added, report.courses_added) == (0, 0)
    assert snapshot(district) == before
    # A later package of the same unit adds only what is new to the same
    # unit and courses; a package back to the city adds nothing there.
    course = source.courses[0]
    export(source.data_dir, Selection(course_id=course["id"]), tmp_path / "course")
    assert import_package(district, tmp_path / "course").added == []
    city = snapshot(source.data_dir)
    assert import_package(source.data_dir, target).added == []
    assert snapshot(source.data_dir) == city


def test_items_export_and_their_courses(source: Archived, district: Path,
                                        tmp_path: Path) -> None:
    lone = source.items[3]  # a course of the other unit
    loose = source.items[4]  # no course at all
    target = tmp_path / "three"
    chosen = (lone["id"], source.items[1]["id"], loose["id"])
    manifest = export(source.data_dir, Selection(item_ids=chosen), target)
    assert sorted(unit["name"] for unit in manifest.units) == sorted(
        unit["name"] for unit in source.units)
    script = (target / "catalog.js").read_text(encoding="utf-8")
    assert script.startswith("window.ZHIXING_PACKAGE = {")
    catalog = json.loads(script.removeprefix("window.ZHIXING_PACKAGE = ").rstrip().rstrip(";"))
    assert {item["media"] for item in catalog["items"]} == {
        f"media/{item_id}/lecture.mp4" for item_id in chosen}
    assert [item["course_id"] for item in catalog["items"] if item["id"] == loose["id"]] == [None]
    import_package(district, target)
    assert catalog_of(district) == catalog_of(source.data_dir, set(chosen))
    assert len(catalog_of(district)["items"]) == 3


def _zip_with(original: Path, target: Path, change: Callable[[str, bytes], bytes | None]) -> None:
    """A copy of a ZIP package with each member changed (None: left out)."""
    with zipfile.ZipFile(original) as reading, zipfile.ZipFile(target, "w") as writing:
        for info in reading.infolist():
            data = change(info.filename, reading.read(info))
            if data is not None:
                writing.writestr(info.filename, data)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _manifest_with(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    manifest = json.loads(data)
    edit(manifest)
    return json.dumps(manifest).encode()


def test_damaged_packages_are_refused_naming_the_file(source: Archived, district: Path,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "good"
    export(source.data_dir, Selection(unit_id=source.units[0]["id"]), folder)
    zipped = tmp_path / "good.zip"
    export(source.data_dir, Selection(unit_id=source.units[0]["id"]), zipped)
    item = source.items[0]["id"]
    lecture = f"media/{item}/lecture.mp4"
    stage = f"media/{item}/stage.mp4"
    before = snapshot(district)

    def refused(path: Path, named: str, reason: str) -> None:
        with pytest.raises(PackageRefused) as caught:
            import_package(district, path)
        assert caught.value.path == named, caught.value
        assert reason in caught.value.reason, caught.value
        kinds = {"SHA-256 differs": "damaged", "missing": "missing", "bytes where": "incomplete",
                 "outside": "outside", "a link": "outside", "not a package": "not_package"}
        assert caught.value.kind == next(
            (kind for text, kind in kinds.items() if text in reason), "manifest"), caught.value
        assert snapshot(district) == before, f"{path.name} changed the archive"

    # A flipped byte in the middle of a lecture, in a folder and in a ZIP.
    flipped = tmp_path / "flipped"
    shutil.copytree(folder, flipped)
    data = (flipped / lecture).read_bytes()
    (flipped / lecture).write_bytes(_flip(data, len(data) // 2))
    refused(flipped, lecture, "SHA-256 differs")
    _zip_with(zipped, tmp_path / "flipped.zip",
              lambda name, data: _flip(data, len(data) // 2) if name == stage else data)
    refused(tmp_path / "flipped.zip", stage, "SHA-256 differs")
    # A file missing (a partial copy), and one cut short.
    missing = tmp_path / "missing"
    shutil.copytree(folder, missing)
    (missing / stage).unlink()
    refused(missing, stage, "missing")
    _zip_with(zipped, tmp_path / "missing.zip",
              lambda name, data: None if name == "player/player.js" else data)
    refused(tmp_path / "missing.zip", "player/player.js", "missing")
    _zip_with(zipped, tmp_path / "short.zip",
              lambda name, data: data[:-100] if name == lecture else data)
    refused(tmp_path / "short.zip", lecture, "bytes where the manifest says")

    # The manifest names a path outside the package (with the file there).
    for bad in ("../outside.mp4", "/etc/passwd", "media/../../x", "media//x", "media\\x"):
        outside = tmp_path / "outside.zip"
        _zip_with(zipped, outside, lambda name, data, bad=bad: _manifest_with(
            data, lambda m: m["files"].append({"path": bad, "size": 4, "sha256": "0" * 64}))
            if name == "manifest.json" else data)
        refused(outside, bad, "outside the package")
        outside.unlink()
    # An item whose media are not its own files (a path the archive would not use).
    renamed = tmp_path / "renamed.zip"
    _zip_with(zipped, renamed, lambda name, data: _manifest_with(
        data, lambda m: m["items"][0].update(media_file="../../zhixing.sqlite3"))
        if name == "manifest.json" else data)
    refused(renamed, "manifest.json", "not one of the archive's file names")
    # A folder package whose file is a link out of it.
    linked = tmp_path / "linked"
    shutil.copytree(folder, linked)
    (linked / lecture).unlink()
    (linked / lecture).symlink_to(source.data_dir / ARCHIVE_DIR / item / "lecture.mp4")
    refused(linked, lecture, "a link")
    # Not a package at all.
    (tmp_path / "notes.txt").write_text("课程表")
    refused(tmp_path / "notes.txt", "notes.txt", "not a package")
    broken = tmp_path / "broken.zip"
    _zip_with(zipped, broken, lambda name, data: b"{" if name == "manifest.json" else data)
    refused(broken, "manifest.json", "not JSON")
    # The sound package still imports after all that.
    assert len(import_package(district, zipped).added) == 3


def test_bad_selections_write_nothing(source: Archived, tmp_path: Path) -> None:
    target = tmp_path / "package.zip"
    failed = next(row for row in catalog_of(source.data_dir)["items"] if row["state"] == "failed")
    cases: list[tuple[Selection, type[Exception]]] = [
        (Selection(), Invalid),
        (Selection(unit_id=1, course_id=1), Invalid),
        (Selection(unit_id=999), Missing),
        (Selection(course_id=999), Missing),
        (Selection(item_ids=("0123456789abcdef",)), Missing),
        (Selection(item_ids=("../../etc",)), Missing),
        (Selection(item_ids=(failed["id"],)), Invalid),
    ]
    for selection, error in cases:
        with pytest.raises(error):
            export(source.data_dir, selection, target)
        assert not target.exists() and list(tmp_path.glob("package*")) == []
    # A unit with no ready lecture: nothing to export.
    db, _ = open_archive(source.data_dir)
    try:
        empty = db.execute("INSERT INTO units (name, created_at) VALUES ('空专题', 0)")
    finally:
        db.close()
    with pytest.raises(Invalid):
        export(source.data_dir, Selection(unit_id=empty), target)
    # A folder target must be new or empty; a file target must not exist.
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(Invalid):
        export(source.data_dir, Selection(unit_id=1), tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    target.write_bytes(b"old")
    with pytest.raises(Invalid):
        export(source.data_dir, Selection(unit_id=1), target)
    assert target.read_bytes() == b"old"


def test_digests_kept_since_a_lecture_was_made_are_used(source: Archived, district: Path,
                                                         tmp_path: Path) -> None:
    """A lecture's SHA-256 is computed where it is made and kept; an export
    copies it without reading it again, so a file damaged since then is
    caught by the import, not blessed by the export. A digest whose file
    changed (size or time) is not used."""
    item = source.items[0]["id"]
    lecture = source.data_dir / ARCHIVE_DIR / item / "lecture.mp4"
    conn = sqlite3.connect(source.data_dir / DATABASE_FILE)
    try:
        kept = json.loads(conn.execute("SELECT file_digests FROM archive_items WHERE id = ?",
                                       (item,)).fetchone()[0])
        assert set(kept) == {"lecture.mp4", "poster.jpg", "stage.mp4"}
        assert kept["lecture.mp4"]["sha256"] == hashlib.sha256(lecture.read_bytes()).hexdigest()
        # The file is damaged on the disk, its size and time unchanged.
        data = lecture.read_bytes()
        stat = lecture.stat()
        lecture.write_bytes(_flip(data, 5000))
        os.utime(lecture, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    finally:
        conn.close()
    for name in ("kept", "kept.zip"):
        manifest = export(source.data_dir, Selection(item_ids=(item,)), tmp_path / name)
        listed = {file.path: file.sha256 for file in manifest.files}
        assert listed[f"media/{item}/lecture.mp4"] == kept["lecture.mp4"]["sha256"]
        with pytest.raises(PackageRefused) as caught:
            import_package(district, tmp_path / name)
        assert caught.value.path == f"media/{item}/lecture.mp4" and caught.value.kind == "damaged"
    # Touched since: the digest no longer applies and the file is hashed again.
    os.utime(lecture)
    manifest = export(source.data_dir, Selection(item_ids=(item,)), tmp_path / "again")
    listed = {file.path: file.sha256 for file in manifest.files}
    assert listed[f"media/{item}/lecture.mp4"] == hashlib.sha256(lecture.read_bytes()).hexdigest()
    assert import_package(district, tmp_path / "again").added == [item]
    # That export kept the new digest for the next one.
    conn = sqlite3.connect(source.data_dir / DATABASE_FILE)
    try:
        again = json.loads(conn.execute("SELECT file_digests FROM archive_items WHERE id = ?",
                                        (item,)).fetchone()[0])
    finally:
        conn.close()
    assert again["lecture.mp4"]["sha256"] == listed[f"media/{item}/lecture.mp4"]
    assert again["lecture.mp4"]["mtime_ns"] == lecture.stat().st_mtime_ns
    assert again["stage.mp4"] == kept["stage.mp4"]  # the others as they were
    # The district keeps the verified digests of what it imported.
    conn = sqlite3.connect(district / DATABASE_FILE)
    try:
        imported = json.loads(conn.execute("SELECT file_digests FROM archive_items WHERE id = ?",
                                           (item,)).fetchone()[0])
    finally:
        conn.close()
    assert imported["lecture.mp4"]["sha256"] == listed[f"media/{item}/lecture.mp4"]


def test_two_imports_of_one_package_at_once_add_it_once(
        source: Archived, district: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's upload and the command at the same time: whichever
    enters the catalog second finds the lectures there and adds nothing."""
    target = tmp_path / "unit.zip"
    export(source.data_dir, Selection(unit_id=source.units[0]["id"]), target)
    verify = importer._verify_and_stage
    reports: list[importer.ImportReport] = []
    started: list[bool] = []

    def meanwhile(*args: Any) -> None:
        verify(*args)
        if not started:  # the other import finishes while this one verifies
            started.append(True)
            reports.append(import_package(district, target))

    monkeypatch.setattr(importer, "_verify_and_stage", meanwhile)
    second = import_package(district, target)
    assert len(reports[0].added) == 3
    assert second.added == [] and sorted(second.present) == sorted(reports[0].added)
    assert (second.units_added, second.courses_added) == (0, 0)
    assert len(catalog_of(district)["items"]) == 3
    assert sorted(p.name for p in (district / ARCHIVE_DIR).iterdir()) == \
        sorted(reports[0].added)
