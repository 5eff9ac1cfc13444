"""Course packages: exporting and importing ten 1-hour lectures, against
``cp`` of the same files, in one run.

Run as ``.venv/bin/python -m bench.packages`` (``--quick``: two 2-minute
lectures, for a smoke run). A clip of ``--bitrate`` H.264 + AAC is encoded
once by ffmpeg and made ``--minutes`` long by stream copy (no hours of
encoding); ``--lectures`` archive items get a copy of it each, with a poster
and the files' digests, as finishing keeps them.
Then, alternating ``--repeats`` times:

- export of the unit to a folder (``exporter.export``, in process) against
  ``cp -r`` of the items' folders (the same lectures and posters);
- the same as a ZIP file;
- the folder again with the lectures' kept digests forgotten (as for items
  recorded before digests were kept): every file hashed while it is copied;
- import of the exported folder into an empty data folder
  (``importer.import_package``: every file verified, the new ones copied)
  against ``cp -r`` of the package's media folder.

Each is timed until its files are written (to the page cache), and again
with a ``sync`` after it (on the disk); the ratio to cp is printed with the
1.2× target. Nothing is asserted; the temporary folder is removed at the
end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from classroom.archive.items import Archive
from classroom.catalog import Catalog
from classroom.db import Database
from classroom.packages import exporter, importer
from classroom.packages.exporter import Selection
from recordings.digests import item_digests
from recordings.finish import describe, make_poster
from recordings.manager import Recordings
from web.app import ARCHIVE_DIR, DATABASE_FILE
from web.package_player import player_files

TARGET = 1.2


@dataclass
class Timings:
    written: list[float] = field(default_factory=list)  # seconds until the files are written
    synced: list[float] = field(default_factory=list)  # … and on the disk

    def add(self, written: float, synced: float) -> None:
        self.written.append(written)
        self.synced.append(synced)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_lecture(folder: Path, minutes: int, bitrate: str) -> Path:
    """A lecture of ``minutes``: one minute encoded, then copied end to end."""
    clip, lecture = folder / "clip.mp4", folder / "lecture.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=25", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-t", "60", "-c:v", "libx264",
                    "-preset", "ultrafast", "-b:v", bitrate, "-maxrate", bitrate, "-bufsize",
                    bitrate, "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
                    str(clip)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", str(minutes - 1), "-i", str(clip),
                    "-c", "copy", "-movflags", "+faststart", str(lecture)], check=True)
    clip.unlink()
    return lecture


def make_data(data_dir: Path, lecture: Path, count: int) -> list[Path]:
    """A data folder with one unit, one course and ``count`` ready lectures;
    their folders."""
    data_dir.mkdir()
    db = Database(data_dir / DATABASE_FILE)
    db.migrate()
    try:
        catalog = Catalog(db)
        unit = catalog.create_unit({"name": "第三专题：法治政府"})
        course = catalog.create_course({"title": "行政复议法解读", "unit_id": unit["id"]})
        archive = Archive(db, Recordings(data_dir / ARCHIVE_DIR))
        folders = []
        poster: Path | None = None
        for number in range(count):
            item = archive.create_item(title=f"第{number + 1}讲", recorded_at=1.75e9 + number,
                                       course_id=course["id"], state="finishing")
            folder = archive.recordings.item_dir(item["id"])
            folder.mkdir()
            shutil.copyfile(lecture, folder / "lecture.mp4")
            result = describe(folder, "lecture.mp4")
            if poster is None:
                result.poster = make_poster(folder / "lecture.mp4", folder / "poster.jpg",
                                            result.duration)
                poster = folder / "poster.jpg"
            else:
                shutil.copyfile(poster, folder / "poster.jpg")
                result.poster = True
            result.digests = item_digests(folder, ("lecture.mp4", "poster.jpg"))  # as finishing
            archive.record_result(item["id"], result)
            folders.append(folder)
        return folders
    finally:
        db.close()


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(seconds until ``run`` returned, seconds until its writes were on disk)."""
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    run()
    written = time.perf_counter() - start
    subprocess.run(["sync"], check=True)
    return written, time.perf_counter() - start


def cp(sources: list[Path], target: Path) -> None:
    target.mkdir()
    subprocess.run(["cp", "-r", *map(str, sources), str(target)], check=True)


def export_to(data_dir: Path, target: Path) -> None:
    db = Database(data_dir / DATABASE_FILE)
    try:
        exporter.export(db, Recordings(data_dir / ARCHIVE_DIR), Selection(unit_id=1), target,
                        player_files(), created_at=time.time())
    finally:
        db.close()


def run_pair(results: dict[str, tuple[Timings, Timings]], baseline_first: bool, name: str,
             baseline: Callable[[], object], ours: Callable[[], object],
             after: Callable[[], None]) -> None:
    timings = results[name]
    order = [(timings[0], baseline), (timings[1], ours)]
    for store, run in order if baseline_first else order[::-1]:
        store.add(*timed(run))
        after()


def forget_digests(data_dir: Path, keep: str | None) -> str:
    """Set (or clear, for None) the items' kept digests; returns what was there."""
    db = Database(data_dir / DATABASE_FILE)
    try:
        rows = db.all("SELECT id, file_digests FROM archive_items")
        kept = json.dumps({row["id"]: row["file_digests"] for row in rows})
        values = json.loads(keep) if keep else {}
        for row in rows:
            db.execute("UPDATE archive_items SET file_digests = ? WHERE id = ?",
                       (values.get(row["id"], "{}"), row["id"]))
        return kept
    finally:
        db.close()


def import_into(package: Path, data_dir: Path) -> None:
    db = Database(data_dir / DATABASE_FILE)
    try:
        report = importer.import_package(db, Recordings(data_dir / ARCHIVE_DIR), package,
                                         now=time.time())
        assert report.added, "nothing imported"
    finally:
        db.close()


def empty_data(data_dir: Path) -> None:
    data_dir.mkdir()
    db = Database(data_dir / DATABASE_FILE)
    db.migrate()
    db.close()


def remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lectures", type=int, default=10)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--bitrate", default="1000k", help="video bitrate of the lectures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="two 2-minute lectures, once")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to work (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.lectures, args.minutes, args.repeats = 2, 2, 1
    work = Path(tempfile.mkdtemp(prefix="zhixing-bench-packages-", dir=args.dir))
    try:
        log(f"making a {args.minutes}-minute lecture at {args.bitrate} (stream copy) ...")
        lecture = make_lecture(work, args.minutes, args.bitrate)
        log(f"making {args.lectures} archive items ...")
        folders = make_data(work / "city", lecture, args.lectures)
        lecture.unlink()
        total = sum(path.stat().st_size for folder in folders for path in folder.iterdir())
        names = ("export, folder", "export, ZIP", "… hashing again", "import")
        results: dict[str, tuple[Timings, Timings]] = {
            name: (Timings(), Timings()) for name in names}
        for repeat in range(args.repeats):
            log(f"round {repeat + 1} of {args.repeats} ...")
            # Which of a pair goes first alternates from round to round.
            pair = functools.partial(run_pair, results, repeat % 2 == 0)
            pair("export, folder", lambda: cp(folders, work / "cp"),
                 lambda: export_to(work / "city", work / "package"),
                 lambda: remove(work / "cp"))  # the package is kept for the import
            pair("export, ZIP", lambda: cp(folders, work / "cp"),
                 lambda: export_to(work / "city", work / "package.zip"),
                 lambda: remove(work / "cp", work / "package.zip"))
            # Items whose digests were not kept (recorded before they were).
            kept = forget_digests(work / "city", None)
            pair("… hashing again", lambda: cp(folders, work / "cp"),
                 lambda: export_to(work / "city", work / "hashed"),
                 lambda: remove(work / "cp", work / "hashed"))
            forget_digests(work / "city", kept)
            media = sorted((work / "package" / "media").iterdir())
            empty_data(work / "district")
            pair("import", lambda media=media: cp(media, work / "cp"),
                 lambda: import_into(work / "package", work / "district"),
                 lambda: remove(work / "cp"))
            remove(work / "district", work / "package")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    gib = total / 2**30
    print(f"\nCourse packages: {args.lectures} lectures of {args.minutes} min at "
          f"{args.bitrate} ({gib:.2f} GiB with posters), medians of {args.repeats} "
          f"alternating runs; {os.cpu_count()} cores\n")
    print(f"{'':16} {'cp -r':>9} {'zhixing':>9} {'ratio':>7}   {'cp -r':>9} {'zhixing':>9} "
          f"{'ratio':>7}   target")
    print(f"{'':16} {'written (page cache)':^27}   {'on disk (with sync)':^27}")
    for name, (base, ours) in results.items():
        cells = []
        ratios = []
        for baseline, measured in ((base.written, ours.written), (base.synced, ours.synced)):
            b, m = statistics.median(baseline), statistics.median(measured)
            ratios.append(m / b)
            cells.append(f"{b:8.2f}s {m:8.2f}s {m / b:6.2f}×")
        verdict = "met" if ratios[1] <= TARGET else "MISSED"
        print(f"{name:16} {cells[0]}   {cells[1]}   ≤ {TARGET}× {verdict} (on disk)"
              + ("" if ratios[0] <= TARGET else f"; {ratios[0]:.2f}× to the page cache"))


if __name__ == "__main__":
    main()
