"""The ``zhixing`` command."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from web.access_log import AccessLogger
from web.accounts import MAX_PASSWORD, MIN_PASSWORD, Accounts, UnknownUser
from web.app import DATABASE_FILE, create_app
from web.config import _env, add_serve_arguments, config_from_args
from web.db import Database
from web.keys import ACCOUNTS, ADMIN_TOKEN


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
    return parser


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
    except UnknownUser:
        print(f"zhixing: no admin account named {username!r}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"Password of {username!r} changed; its login sessions ended.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "admin":
        return set_password(Path(args.data), args.username)
    config = config_from_args(args)
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
