"""The ``zhixing`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from web.app import create_app
from web.config import add_serve_arguments, config_from_args
from web.keys import ADMIN_TOKEN


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
                    "without it a new one is generated and printed at start.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_serve_arguments(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        print(f"  Admin (管理):  {base}/#token={token}", flush=True)
        print(f"  Admin API:    {base}/api/v1/  (Authorization: Bearer {token})", flush=True)
        if not config.admin_token:
            print("  (admin token generated for this run; set ZHIXING_ADMIN_TOKEN to fix it)",
                  flush=True)

    web.run_app(app, host=config.host, port=config.port, print=announce,
                handle_signals=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
