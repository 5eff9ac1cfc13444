"""The ``zhixing`` command."""

from __future__ import annotations

import argparse
import datetime
import getpass
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from classroom.access.accounts import MAX_PASSWORD, MIN_PASSWORD, Accounts, UnknownUser
from classroom.access.audit import AuditLog, Entry
from classroom.archive.items import Archive
from classroom.catalog import MAX_NAME, Catalog
from classroom.db import Database
from classroom.errors import Invalid, Missing, StateConflict
from classroom.packages import exporter, importer
from classroom.packages.exporter import Selection
from classroom.packages.manifest import PackageRefused
from recordings.importer import ImportFailed, NotImportable, import_file, probe
from recordings.manager import Recordings
from streaming import aiortc_glue
from web import edge as edge_app
from web import maintenance
from web.access_log import AccessLogger
from web.app import ARCHIVE_DIR, DATABASE_FILE, create_app
from web.config import _env, add_serve_arguments, config_from_args
from web.i18n import catalog
from web.keys import ACCOUNTS, ADMIN_TOKEN
from web.package_player import player_files

# Times the catalog accepts (web.catalog.Fields.timestamp): 2000 … 2100.
EARLIEST, LATEST = 946684800.0, 4102444800.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhixing",
        description="Zhixing Classroom (知行课堂): relay a live lecture from the main "
                    "classroom to sub-classrooms over WebRTC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="run the service",
        description="Run the service on its embedded defaults: one process, a local data "
                    "folder. Every option can also be set by the environment variable named "
                    "in its help. ZHIXING_ADMIN_TOKEN sets the admin API bearer token; "
                    "without it a new one is generated and printed at start. "
                    "ZHIXING_ADMIN_PASSWORD (environment only) sets the password of the "
                    "admin account \"admin\" that the first start creates (log in at /login); "
                    "without it a password is generated and printed once, at that first "
                    "start. Later starts ignore it: use 'zhixing admin set-password admin'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_serve_arguments(serve)
    edge = commands.add_parser(
        "edge", help="run a district edge that relays the origin's live sessions",
        description="Run a district's edge: it pulls each live session from the origin once "
                    "(WHEP, with the origin's edge token) and serves the rooms of its "
                    "district, which the origin redirects here while this edge's entry in "
                    "Redis is fresh. Needs the origin's Redis and a copy of its server "
                    "secret (invitation tokens are checked without the catalog).")
    edge_app.add_edge_arguments(edge)
    admin = commands.add_parser("admin", help="manage admin accounts")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True,
                                          metavar="ACTION")
    set_password = admin_commands.add_parser(
        "set-password", help="set (reset) an admin account's password",
        description="Set an admin account's password and end its login sessions. The new "
                    "password is read from standard input (first line), or asked for twice "
                    "when standard input is a terminal.")
    set_password.add_argument("username", metavar="USERNAME", help="the account, e.g. admin")
    set_password.add_argument(
        "--data", default=_env("DATA") or "data", metavar="DIR",
        help="data folder, as for serve (env ZHIXING_DATA; default ./data)")
    archive = commands.add_parser("archive", help="manage the lecture archive (课程录像)")
    archive_commands = archive.add_subparsers(dest="archive_command", required=True,
                                              metavar="ACTION")
    import_files = archive_commands.add_parser(
        "import", help="import lecture videos as archive items",
        description="Import existing lecture videos (e.g. a course disc's files) into the "
                    "archive, one item per file, ready to play in the library. H.264 video "
                    "with AAC or Opus audio and VP8 video with Opus or Vorbis audio are "
                    "copied as they are (into MP4 or WebM); other files are refused unless "
                    "--transcode is given. Safe to run while the service runs on the same "
                    "data folder. Prints each new item's id and title.")
    import_files.add_argument("files", nargs="+", type=Path, metavar="FILE",
                              help="a video file to import")
    import_files.add_argument(
        "--data", default=_env("DATA") or "data", metavar="DIR",
        help="data folder, as for serve (env ZHIXING_DATA; default ./data)")
    import_files.add_argument("--course", type=int, metavar="ID",
                              help="the course (课程) the items belong to, by id")
    import_files.add_argument("--title", metavar="T",
                              help="the items' title (default: the file's name without "
                                   "its extension)")
    import_files.add_argument("--lecturer", metavar="L",
                              help="the lecturer (default: the course's lecturer)")
    import_files.add_argument("--recorded-at", type=_date, metavar="YYYY-MM-DD",
                              help="the day the lecture was given (default: the file's "
                                   "modification date)")
    import_files.add_argument("--transcode", action="store_true",
                              help="convert what the library cannot play as it is to "
                                   "H.264/AAC in MP4 (slow: about as long as the video "
                                   "or longer)")
    _add_package_commands(commands)
    maintenance.add_commands(commands)
    return parser


def _add_package_commands(commands: Any) -> None:
    package = commands.add_parser("package", help="export and import course packages (课程包)")
    actions = package.add_subparsers(dest="package_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="write a unit, a course or chosen lectures as a course package",
        description="Write a course package: the lectures as they are stored (no "
                    "transcoding), their posters, stage files and turns, a manifest "
                    "(manifest.json: the catalog's units, courses and items, and the SHA-256 "
                    "of every file) and an offline player: double-click index.html on the "
                    "USB stick or disc to watch with no server. The target's name decides "
                    "its form: FILE.zip, FILE.iso (needs xorriso) or a folder (new or "
                    "empty). Only lectures ready to play are exported. Safe to run while "
                    "the service runs on the same data folder.")
    chosen = export.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--unit", type=int, metavar="ID", help="every ready lecture of a unit")
    chosen.add_argument("--course", type=int, metavar="ID",
                        help="every ready lecture of a course")
    chosen.add_argument("--items", nargs="+", metavar="ID",
                        help="these lectures (archive item ids)")
    export.add_argument("-o", "--output", type=Path, required=True,
                        metavar="DIR|FILE.zip|FILE.iso", help="where to write the package")
    export.add_argument("--data", default=_env("DATA") or "data", metavar="DIR",
                        help="data folder, as for serve (env ZHIXING_DATA; default ./data)")
    import_package = actions.add_parser(
        "import", help="import a course package into the archive",
        description="Import a course package (a folder, a ZIP file or an ISO image): every "
                    "file's size and SHA-256 is checked against the manifest first, and a "
                    "partial or damaged package is refused naming the file, with nothing "
                    "imported. The lectures enter the archive with their units and courses "
                    "(matched by name, created when missing); lectures already in the archive "
                    "are left as they are, so importing a package twice changes nothing. "
                    "Safe to run while the service runs on the same data folder.")
    import_package.add_argument("path", type=Path, metavar="PATH",
                                help="the package: a folder, FILE.zip or FILE.iso")
    import_package.add_argument("--data", default=_env("DATA") or "data", metavar="DIR",
                                help="data folder, as for serve (env ZHIXING_DATA; "
                                     "default ./data)")


def _date(text: str) -> float:
    """A day (YYYY-MM-DD) as the timestamp of its local midnight."""
    try:
        day = datetime.datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    stamp = day.timestamp()
    if not EARLIEST <= stamp < LATEST:
        raise argparse.ArgumentTypeError(f"not a date between 2000 and 2100: {text!r}")
    return stamp


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("新密码 New password: ")
        if getpass.getpass("再输一次 Repeat: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def set_password(data_dir: Path, username: str) -> int:
    database = data_dir / DATABASE_FILE
    if not database.exists():
        print(f"zhixing: no database in {data_dir} (start the service once first)",
              file=sys.stderr)
        return 1
    try:
        password = _read_password()
    except (ValueError, EOFError) as exc:
        print(f"zhixing: {exc or 'no password given'}", file=sys.stderr)
        return 1
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        print(f"zhixing: the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters",
              file=sys.stderr)
        return 1
    db = Database(database)
    try:
        db.migrate()
        Accounts(db).set_password(username, password)
        AuditLog(db).record(Entry(None, "(command line)", "", "set-password", "account",
                                  username))
    except UnknownUser:
        print(f"zhixing: no admin account named {username!r}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"Password of {username!r} changed; its login sessions ended.")
    return 0


# ---------------------------------------------------------------------- archive import


class ProgressBar:
    """An import's progress on stderr.

    On a terminal, a bar redrawn in place; otherwise (a log, a pipe) a line
    at most every ``interval`` seconds, and one at the end.
    """

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label if len(label) <= 40 else label[:39] + "…"
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self._clock = clock
        self._shown = -1  # percent
        self._shown_at = clock()

    def __call__(self, share: float) -> None:
        percent = max(0, min(100, int(share * 100)))
        if percent <= self._shown:
            return
        if self.tty:
            filled = round(percent * self.WIDTH / 100)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}]"
                              f" {percent:3d}%")
            self.stream.flush()
        elif percent == 100 or self._clock() - self._shown_at >= self.interval:
            print(f"{self.label}: {percent}%", file=self.stream, flush=True)
            self._shown_at = self._clock()
        else:
            return
        self._shown = percent

    def close(self) -> None:
        """End the bar's line (the import finished, failed or was interrupted)."""
        if self.tty and self._shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def _default_title(path: Path) -> str:
    # A name that is not UTF-8 (an old disc's) keeps what can be read of it.
    title = (path.stem or path.name).encode("utf-8", "replace").decode("utf-8").strip()
    return title[:MAX_NAME] or "lecture"


def _modified(path: Path) -> float:
    """The file's modification time, if the catalog can take it; else now."""
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return time.time()
    return stamp if EARLIEST <= stamp < LATEST else time.time()


def _import_one(archive: Archive, path: Path, *, course: dict[str, Any] | None,
                title: str | None, lecturer: str | None, recorded_at: float | None,
                transcode: bool) -> dict[str, Any]:
    # Refusals come before the item exists: a refused file leaves nothing.
    probe(path, transcode)
    item = archive.create_item(
        title=title or _default_title(path),
        recorded_at=recorded_at if recorded_at is not None else _modified(path),
        origin="import", course_id=course["id"] if course else None,
        lecturer=lecturer if lecturer is not None else str(course["lecturer"] if course else ""),
        state="finishing")
    bar = ProgressBar(path.name)
    try:
        result = import_file(path, archive.recordings.item_dir(item["id"]),
                             transcode=transcode, progress=bar)
    except BaseException:
        archive.discard_import(item["id"])
        raise
    finally:
        bar.close()
    archive.record_result(item["id"], result)
    return archive.item(item["id"])


def import_files(data_dir: Path, files: Sequence[Path], *, course_id: int | None = None,
                 title: str | None = None, lecturer: str | None = None,
                 recorded_at: float | None = None, transcode: bool = False) -> int:
    """``zhixing archive import``: 0 when every file was imported, 1 otherwise."""
    if title is not None:
        title = title.strip()
        if not title or len(title) > MAX_NAME:
            print(f"zhixing: --title must have 1 to {MAX_NAME} characters", file=sys.stderr)
            return 1
    if lecturer is not None:
        lecturer = lecturer.strip()
        if len(lecturer) > MAX_NAME:
            print(f"zhixing: --lecturer must have at most {MAX_NAME} characters",
                  file=sys.stderr)
            return 1
    database = data_dir / DATABASE_FILE
    if not database.exists():
        print(f"zhixing: no database in {data_dir} (start the service once first, "
              "or give --data)", file=sys.stderr)
        return 1
    db = Database(database)
    try:
        db.migrate()
        course = None
        if course_id is not None:
            try:
                course = Catalog(db).course(course_id)
            except Missing:
                print(f"zhixing: no course with id {course_id} (the console's 课程 list "
                      "shows the ids)", file=sys.stderr)
                return 1
        archive = Archive(db, Recordings(data_dir / ARCHIVE_DIR))
        failed = 0
        for path in files:
            try:
                item = _import_one(archive, path, course=course, title=title,
                                   lecturer=lecturer, recorded_at=recorded_at,
                                   transcode=transcode)
            except ImportFailed as exc:
                failed += 1
                hint = ("; give --transcode to convert it to H.264/AAC"
                        if isinstance(exc, NotImportable) and exc.transcodable else "")
                print(f"zhixing: {path}: not imported: {exc}{hint}", file=sys.stderr)
                continue
            except KeyboardInterrupt:
                print(f"zhixing: interrupted; {path} was not imported", file=sys.stderr)
                return 130
            print(f"{item['id']}\t{item['title']}", flush=True)
    finally:
        db.close()
    if failed:
        print(f"zhixing: {failed} of {len(files)} files not imported", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------- course packages


def _open_archive(data_dir: Path) -> tuple[Database, Recordings] | None:
    database = data_dir / DATABASE_FILE
    if not database.exists():
        print(f"zhixing: no database in {data_dir} (start the service once first, "
              "or give --data)", file=sys.stderr)
        return None
    db = Database(database)
    db.migrate()
    return db, Recordings(data_dir / ARCHIVE_DIR)


def export_package(data_dir: Path, selection: Selection, target: Path) -> int:
    """``zhixing package export``: 0 when the package was written."""
    opened = _open_archive(data_dir)
    if opened is None:
        return 1
    db, recordings = opened
    bar = ProgressBar(target.name)
    try:
        manifest = exporter.export(db, recordings, selection, target, player_files(),
                                   created_at=time.time(), progress=bar)
    except (Invalid, Missing) as exc:
        print(f"zhixing: not exported: {_domain_text(exc)}", file=sys.stderr)
        return 1
    except (exporter.ExportFailed, OSError) as exc:
        print(f"zhixing: not exported: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"zhixing: interrupted; {target} was not written", file=sys.stderr)
        return 130
    finally:
        bar.close()
        db.close()
    size = sum(file.size for file in manifest.files)
    print(f"{target}\t{len(manifest.items)} lectures\t{size} bytes", flush=True)
    return 0


def import_package(data_dir: Path, path: Path) -> int:
    """``zhixing package import``: 0 when the package was verified and imported."""
    opened = _open_archive(data_dir)
    if opened is None:
        return 1
    db, recordings = opened
    bar = ProgressBar(path.name)
    try:
        report = importer.import_package(db, recordings, path, now=time.time(), progress=bar)
    except PackageRefused as exc:
        bar.close()
        print(f"zhixing: {path}: not imported: {exc.path}: {exc.reason}", file=sys.stderr)
        return 1
    except (StateConflict, OSError) as exc:
        bar.close()
        print(f"zhixing: {path}: not imported: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.close()
        print(f"zhixing: interrupted; {path} was not imported", file=sys.stderr)
        return 130
    finally:
        db.close()
    bar.close()
    for item_id in report.added:
        print(f"{item_id}\timported", flush=True)
    for item_id in report.present:
        print(f"{item_id}\talready in the archive", flush=True)
    print(f"{len(report.added)} lectures imported, {len(report.present)} already there; "
          f"{report.units_added} units and {report.courses_added} courses added", flush=True)
    return 0


def _domain_text(exc: Invalid | Missing) -> str:
    if isinstance(exc, Invalid):
        messages = catalog("en")
        return "; ".join(f"{name}: {messages.get(key, key)}" for name, key in exc.errors.items())
    return exc.message


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "package":
        if args.package_command == "export":
            selection = Selection(unit_id=args.unit, course_id=args.course,
                                  item_ids=tuple(args.items or ()))
            return export_package(Path(args.data), selection, args.output)
        return import_package(Path(args.data), args.path)
    if args.command in maintenance.COMMANDS:
        return maintenance.run(args)
    if args.command == "admin":
        return set_password(Path(args.data), args.username)
    if args.command == "edge":
        return edge_app.run(args)
    if args.command == "archive":
        return import_files(Path(args.data), args.files, course_id=args.course,
                            title=args.title, lecturer=args.lecturer,
                            recorded_at=args.recorded_at, transcode=args.transcode)
    config = config_from_args(args)
    if config.send_path == "native":
        try:
            aiortc_glue.require_native_send_path()
        except aiortc_glue.NativeSendPathMissing as exc:
            print(f"zhixing: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(config)
    shown_host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    base = config.public_url or f"http://{shown_host}:{config.port}"
    token = app[ADMIN_TOKEN]

    def announce(_: object) -> None:
        print(f"Zhixing Classroom 知行课堂 is running on {config.host}:{config.port}", flush=True)
        print(f"  Console (管理后台): {base}/admin  (log in at {base}/login)", flush=True)
        print(f"  Admin API:    {base}/api/v1/  (Authorization: Bearer {token})", flush=True)
        if config.workers > 1:
            print(f"  Workers (工作进程): {config.workers} on ports {config.port + 1}-"
                  f"{config.port + config.workers}, the rooms' video (open them in a firewall "
                  f"as {config.port}; --workers 1 for one process)", flush=True)
        if not config.admin_token:
            print("  (admin token generated for this run; set ZHIXING_ADMIN_TOKEN to fix it)",
                  flush=True)
        accounts = app[ACCOUNTS]
        if accounts.generated_password is not None:
            print(f"  Login (登录): {base}/login  user admin, password "
                  f"{accounts.generated_password}", flush=True)
            print("  (shown only now; change it with 'zhixing admin set-password admin')",
                  flush=True)
            accounts.generated_password = None

    web.run_app(app, host=config.host, port=config.port, print=announce,
                handle_signals=True, access_log_class=AccessLogger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
