"""Configuration: every option has a CLI flag and a ZHIXING_* environment variable."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from aiortc import RTCIceServer

from classroom.access.turn import TurnCredentials, TurnSecret
from web.limits import LimitSettings, add_limit_arguments, limit_settings_from_args

DEFAULT_PORT = 8080


@dataclass
class Config:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    data_dir: Path = Path("data")
    public_url: str | None = None
    ice_hosts: list[str] | None = None
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_username: str | None = None
    turn_password: str | None = None
    # The TURN server's --static-auth-secret: pages get time-limited
    # credentials made from it (classroom/access/turn.py), never a password.
    turn_secret: str | None = None
    turn_ttl: float = 12 * 3600.0
    admin_token: str | None = None
    # The first account's password (env ZHIXING_ADMIN_PASSWORD only; never a flag,
    # so it stays out of the process list). Used only when no account exists yet.
    admin_password: str | None = None
    log_level: str = "info"
    # How viewers' packets are sent: "native" (streaming/rtp_send.c, built by
    # `make install`) or "python" (the same path in Python, for comparison).
    send_path: str = "native"
    # A peer that has not connected by then (or whose ICE consent lapsed,
    # which aioice detects after about 30 s of silence) is closed and forgotten.
    connect_timeout: float = 30.0
    # A recording stops (item failed: disk full) when less than this is free.
    min_free_bytes: int = 64 * 1024 * 1024
    # The largest headcount (到场人数) a room may report.
    max_headcount: int = 500
    # /metrics on the main port also takes this bearer token (besides the admin token).
    metrics_token: str | None = None
    # (host, port) of a separate listener serving /metrics without authentication.
    metrics_listen: tuple[str, int] | None = None
    # What one link, token or address may hold (web/limits.py).
    limits: LimitSettings = field(default_factory=LimitSettings)
    # District edges (web/edge.py): the Redis they coordinate through, and
    # the bearer token with which they pull sessions over WHEP. Both unset:
    # one box, no cluster.
    redis_url: str | None = None
    edge_token: str | None = None
    node_name: str = "origin"
    # Worker processes for the rooms' viewers (web/workers.py); 1: this one alone.
    workers: int = 1

    def ice_servers(self) -> list[RTCIceServer]:
        servers = [RTCIceServer(urls=url) for url in self.stun_urls]
        servers += [
            RTCIceServer(urls=url, username=self.turn_username, credential=self.turn_password)
            for url in self.turn_urls
        ]
        return servers

    def browser_ice_servers(self, turn: TurnCredentials | None = None) -> list[dict[str, object]]:
        """The ICE servers a page should use: the STUN servers, and the TURN
        servers with ``turn``, credentials issued to that page (see
        :meth:`turn_issuer`). A static TURN password is the relay's own and
        never goes to a page."""
        servers: list[dict[str, object]] = [{"urls": url} for url in self.stun_urls]
        if turn is not None and self.turn_urls:
            servers.append({"urls": list(self.turn_urls), "username": turn.username,
                            "credential": turn.credential})
        return servers

    def turn_issuer(self) -> TurnSecret | None:
        """Who makes pages' TURN credentials (None: no --turn-secret)."""
        if not self.turn_secret or not self.turn_urls:
            return None
        return TurnSecret(self.turn_secret, self.turn_ttl)


def _env(name: str) -> str | None:
    value = os.environ.get("ZHIXING_" + name)
    return value if value not in (None, "") else None


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    env = _env
    parser.add_argument(
        "--host", default=env("HOST") or "0.0.0.0",
        help="address to listen on (env ZHIXING_HOST; default 0.0.0.0, every interface)")
    parser.add_argument(
        "--port", type=int, default=int(env("PORT") or DEFAULT_PORT),
        help=f"TCP port for HTTP (env ZHIXING_PORT; default {DEFAULT_PORT})")
    parser.add_argument(
        "--data", default=env("DATA") or "data", metavar="DIR",
        help="data folder for the catalog and the archive (env ZHIXING_DATA; default ./data)")
    parser.add_argument(
        "--public-url", default=env("PUBLIC_URL"), metavar="URL",
        help="base URL that links point to, e.g. https://zhixing.example.gov "
             "(env ZHIXING_PUBLIC_URL; default: the address each request came to)")
    parser.add_argument(
        "--ice-host", action="append", metavar="ADDR",
        help="an address to offer as ICE host candidate; repeat or comma-separate. "
             "Default: every interface address except loopback. Give 127.0.0.1 for a "
             "machine that is only reached locally (env ZHIXING_ICE_HOSTS)")
    parser.add_argument(
        "--stun", action="append", metavar="URL",
        help="STUN server URL (stun:host:port) for the relay and the pages; repeat or "
             "comma-separate. Default: none, no public server is ever used "
             "(env ZHIXING_STUN_URLS)")
    parser.add_argument(
        "--turn", action="append", metavar="URL",
        help="TURN server URL (turn:host:port?transport=udp|tcp) (env ZHIXING_TURN_URLS)")
    parser.add_argument(
        # The variable is read in config_from_args: --help must not print it.
        "--turn-secret", metavar="SECRET",
        help="the TURN server's shared secret (coturn --use-auth-secret "
             "--static-auth-secret): pages get credentials made from it that expire "
             "(env ZHIXING_TURN_SECRET, preferred: a flag shows in the process list)")
    parser.add_argument(
        "--turn-hours", type=_hours, default=env("TURN_HOURS") or "12", metavar="H",
        help="how long pages' TURN credentials last (env ZHIXING_TURN_HOURS; default 12)")
    parser.add_argument(
        "--turn-username", default=env("TURN_USERNAME"),
        help="TURN user name for the relay's own use, never given to pages "
             "(env ZHIXING_TURN_USERNAME)")
    parser.add_argument(
        "--turn-password", default=env("TURN_PASSWORD"),
        help="TURN password for the relay's own use (env ZHIXING_TURN_PASSWORD)")
    parser.add_argument(
        "--min-free-mb", type=int, default=int(env("MIN_FREE_MB") or 64), metavar="MB",
        help="stop a recording cleanly (item marked failed: disk full) when the data "
             "folder's disk has less than this many MiB free (env ZHIXING_MIN_FREE_MB; "
             "default 64)")
    parser.add_argument(
        # The variable is read in config_from_args: --help must not print the token.
        "--metrics-token", metavar="TOKEN",
        help="a bearer token that may read /metrics on the main port (Prometheus "
             "'authorization: credentials'); the admin token works too "
             "(env ZHIXING_METRICS_TOKEN, preferred: a flag shows in the process list; "
             "default: admin token only). See docs/metrics.md")
    parser.add_argument(
        "--metrics-listen", type=listen_address, default=env("METRICS_LISTEN"),
        metavar="HOST:PORT",
        help="also serve /metrics WITHOUT authentication on this address, e.g. "
             "127.0.0.1:9108 for a Prometheus on the same machine; bind it to loopback or "
             "a monitoring network only (env ZHIXING_METRICS_LISTEN; default: off)")
    parser.add_argument(
        "--max-headcount", type=_headcount_limit, default=env("MAX_HEADCOUNT") or "500",
        metavar="N",
        help="the largest number of people a sub-classroom may report as present "
             "(env ZHIXING_MAX_HEADCOUNT; default 500)")
    parser.add_argument(
        "--log-level", default=env("LOG_LEVEL") or "info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (env ZHIXING_LOG_LEVEL; default info)")
    parser.add_argument(
        "--redis", default=env("REDIS_URL"), metavar="URL",
        help="redis://host:port/0 of the Redis that district edges coordinate through "
             "(env ZHIXING_REDIS_URL; default: none, one box with no edges). See "
             "'zhixing edge --help'")
    parser.add_argument(
        # The variable is read in config_from_args: --help must not print the token.
        "--edge-token", metavar="TOKEN",
        help="the bearer token with which edges pull live sessions over WHEP; give the "
             "same to 'zhixing edge --token' (env ZHIXING_EDGE_TOKEN, preferred: a flag "
             "shows in the process list; default: no edge may pull)")
    parser.add_argument(
        "--workers", type=_workers, default=env("WORKERS") or str(_cores()), metavar="N",
        help="viewer processes: with N > 1, N workers on ports PORT+1 … PORT+N (open them "
             "in a firewall as PORT) pull each live session from this process once and the "
             "rooms' WHEP requests are redirected to the least loaded; they report to this "
             "process over their own sockets, or through --redis if it is given; 1: this "
             f"process alone (env ZHIXING_WORKERS; default the cores here, {_cores()})")
    parser.add_argument(
        "--send-path", default=env("SEND_PATH") or "native", choices=["native", "python"],
        help="how viewers' packets are built, protected and sent: native (one C call per "
             "frame and viewer, built by 'make install'; start-up fails if it is not built) "
             "or python (the same work in Python, about 1.6 times the CPU per viewer; for "
             "comparison) (env ZHIXING_SEND_PATH; default native)")
    add_limit_arguments(parser)


def listen_address(text: str | tuple[str, int]) -> tuple[str, int]:
    """'127.0.0.1:9108', '[::1]:9108' or ':9108' (loopback) as (host, port)."""
    if isinstance(text, tuple):
        return text
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return host, int(port)


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = 0.0
    if not 0 < hours <= 24 * 30:
        raise argparse.ArgumentTypeError(f"not a number of hours from 0 to 720: {text!r}")
    return hours


def _cores() -> int:
    """The cores this process may run on: ``--workers``' default."""
    try:
        return max(1, min(64, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(64, os.cpu_count() or 1))


def _workers(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"not a whole number from 1 to 64: {text!r}")
    return int(text)


def _headcount_limit(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"not a whole number from 1 to 100000: {text!r}")
    return int(text)


def config_from_args(args: argparse.Namespace) -> Config:
    def listed(flag: list[str] | None, env_name: str) -> list[str]:
        values = [v for item in flag or [] for v in _list(item)]
        return values or _list(_env(env_name))

    ice_hosts = listed(args.ice_host, "ICE_HOSTS")
    return Config(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data),
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        ice_hosts=ice_hosts or None,
        stun_urls=listed(args.stun, "STUN_URLS"),
        turn_urls=listed(args.turn, "TURN_URLS"),
        turn_username=args.turn_username,
        turn_password=args.turn_password,
        turn_secret=args.turn_secret or _env("TURN_SECRET"),
        turn_ttl=args.turn_hours * 3600.0,
        admin_token=_env("ADMIN_TOKEN"),
        admin_password=_env("ADMIN_PASSWORD"),
        log_level=args.log_level,
        send_path=args.send_path,
        min_free_bytes=max(0, args.min_free_mb) * 1024 * 1024,
        max_headcount=args.max_headcount,
        metrics_token=args.metrics_token or _env("METRICS_TOKEN"),
        metrics_listen=listen_address(args.metrics_listen) if args.metrics_listen else None,
        limits=limit_settings_from_args(args),
        redis_url=args.redis or None,
        edge_token=args.edge_token or _env("EDGE_TOKEN"),
        workers=args.workers,
    )
