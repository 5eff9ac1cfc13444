"""The commands of a school's IT staff: ``zhixing backup``, ``zhixing restore``
and ``zhixing doctor`` (its checks are in ``web/doctor.py``).

Each prints what it did, or what is wrong and the fix, in Chinese and in
English, and exits 0 when all is well, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from classroom.backup import BackupError, make_backup, restore_backup
from web import doctor
from web.config import _env, add_serve_arguments

COMMANDS = ("backup", "restore", "doctor")


def _data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", default=_env("DATA") or "data", metavar="DIR",
        help="data folder, as for serve (env ZHIXING_DATA; default ./data)")


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backup = commands.add_parser(
        "backup", help="back up the catalog, the server secret and the archive's manifest",
        description="Write one tar file with a consistent copy of the catalog (taken with "
                    "SQLite's backup API: safe while the service runs), the server secret "
                    "(it signs every invitation link: keep the backup as safe as the server) "
                    "and a manifest listing every lecture file of the archive with its size. "
                    "The lecture files themselves are included only with --include-archive; "
                    "otherwise copy the data folder's archive/ on its own (e.g. rsync), and "
                    "'zhixing restore' checks that copy against the manifest.")
    backup.add_argument("file", type=Path, nargs="?", metavar="FILE",
                        help="the backup file to write (default: "
                             "zhixing-backup-YYYYMMDD-HHMMSS.tar in the current folder)")
    backup.add_argument("--include-archive", action="store_true",
                        help="also put the lecture files into the backup (large)")
    _data_argument(backup)
    restore = commands.add_parser(
        "restore", help="restore a backup into a new data folder",
        description="Restore a backup made by 'zhixing backup' into a data folder that has "
                    "no catalog (a new folder; stop the service and move a damaged one "
                    "aside first). The catalog is checked (its digest and SQLite's "
                    "integrity check) before it takes its place. Lecture files in the "
                    "backup are restored; those the manifest lists but the folder lacks "
                    "are named, with the fix.")
    restore.add_argument("file", type=Path, metavar="FILE", help="the backup file")
    _data_argument(restore)
    checks = commands.add_parser(
        "doctor", help="check what breaks deployments, and print the fixes",
        description="Check the addresses offered to rooms as ICE host candidates (and UDP "
                    "on them), each TURN server (a real allocation), free disk in the data "
                    "folder, the fonts the charts need, the codecs of PyAV's FFmpeg "
                    "libraries, the clock and, with --redis, Redis and the edges and "
                    "workers in its directory; print each problem's fix in Chinese and "
                    "English. Takes the options and variables of serve, so it checks what "
                    "serve would use. Exit status 1 when a check fails.")
    add_serve_arguments(checks)


def run(args: argparse.Namespace) -> int:
    if args.command == "backup":
        return backup(Path(args.data), args.file, args.include_archive)
    if args.command == "restore":
        return restore(args.file, Path(args.data))
    return doctor.main(args)


def backup(data_dir: Path, file: Path | None, include_archive: bool) -> int:
    if file is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        file = Path(f"zhixing-backup-{stamp}.tar")
    try:
        manifest = make_backup(data_dir, file, include_archive)
    except BackupError as exc:
        print(f"zhixing: 备份失败 backup failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"zhixing: 备份失败 backup failed: {exc}", file=sys.stderr)
        return 1
    total = sum(entry["size"] for entry in manifest.archive_files)
    print(f"已备份 Backed up {data_dir} → {file}")
    print(f"  目录 catalog: version {manifest.schema_version}, {manifest.items} 个录像 items")
    print(f"  录像文件 lecture files: {len(manifest.archive_files)} "
          f"({total / 1024 ** 2:.1f} MiB), "
          + ("已包含 included" if include_archive else
             "未包含，请另行复制 archive/ not included: copy archive/ separately"))
    print("  备份含服务器密钥，请妥善保管 The backup holds the server secret: keep it safe.")
    return 0


def restore(file: Path, data_dir: Path) -> int:
    try:
        report = restore_backup(file, data_dir)
    except BackupError as exc:
        print(f"zhixing: 恢复失败 restore failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"zhixing: 恢复失败 restore failed: {exc}", file=sys.stderr)
        return 1
    manifest = report.manifest
    made = datetime.datetime.fromtimestamp(manifest.created_at).strftime("%Y-%m-%d %H:%M:%S")
    print(f"已恢复 Restored {file} (made {made}) → {data_dir}")
    print(f"  目录 catalog: version {manifest.schema_version}, {manifest.items} 个录像 items; "
          "服务器密钥 server secret restored")
    if report.restored_files:
        print(f"  录像文件 lecture files restored from the backup: {report.restored_files}")
    listed = len(manifest.archive_files)
    problems = report.missing + report.different
    print(f"  录像文件 lecture files present: {listed - len(problems)} of {listed}")
    for path in report.missing:
        print(f"  缺少 missing: {path}")
    for path in report.different:
        print(f"  大小不符 size differs: {path}")
    if problems:
        print(f"  修复 Fix: 将原数据目录的 archive/ 复制到 {data_dir / 'archive'} "
              f"(copy the old data folder's archive/ to {data_dir / 'archive'}).")
        return 1
    return 0
