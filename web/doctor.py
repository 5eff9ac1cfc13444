"""``zhixing doctor``: checks what breaks deployments, and the fix of each
problem in Chinese and English.

Each check returns findings: ``ok``, ``warn`` (works, but rooms or
recordings may suffer) or ``fail`` (something will not work). What is
checked, with the configuration ``serve`` would use:

* the addresses offered to rooms as ICE host candidates: each must belong
  to this machine and take UDP (one datagram sent to a socket bound there
  must arrive); only loopback left means rooms on other machines cannot
  connect;
* each TURN server: a real allocation with the configured credentials;
* free disk in the data folder, against ``--min-free-mb`` and an hour of
  recording;
* the CJK fonts the attendance charts are drawn with;
* FFmpeg's libraries as PyAV brings them: the codecs recording, finishing,
  replay and import use (the service runs no ffmpeg program);
* the clock: the kernel's NTP state, and not behind the newest time the
  catalog has written (a clock set back makes attendance and links wrong);
* with ``--redis``: Redis answers, and the directory's edges and workers
  (each healthy entry with its district, address, load and the age of its
  last renewal; entries that do not verify with this data folder's secret
  are named).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import ipaddress
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aioice.stun
import aioice.turn
import av

from classroom.access.signing import SECRET_FILE
from classroom.attendance.charts import CJK_FONTS
from classroom.live.cluster import ALL_SITES, ENTRY_TTL, cluster_key
from classroom.school import DATABASE_FILE
from streaming import aiortc_glue
from web.config import Config, config_from_args

if TYPE_CHECKING:
    from classroom.live.redis_cluster import Directory

TURN_TIMEOUT = 5.0
HOUR_OF_RECORDING = 1024 ** 3 // 2  # about 1 Mbps of video and audio for an hour


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn" or "fail"
    what: str  # "中文 English": what was checked
    detail: str
    fix_zh: str = ""
    fix_en: str = ""


# ---------------------------------------------------------------------- ICE


def _udp_round_trip(address: str) -> str | None:
    """None when a datagram sent to a socket bound on ``address`` arrives; else why not."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as receiver, \
                socket.socket(family, socket.SOCK_DGRAM) as sender:
            receiver.bind((address, 0))
            receiver.settimeout(1.0)
            sender.sendto(b"zhixing doctor", receiver.getsockname()[:2])
            receiver.recv(64)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_ice(config: Config) -> list[Finding]:
    """The host candidates rooms will be offered, as the service chooses them."""
    what = "ICE 候选地址 ICE host addresses"
    configured = config.ice_hosts
    offered = list(configured) if configured is not None else \
        aiortc_glue.default_host_addresses()
    findings = []
    for address in offered:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            findings.append(Finding(
                "fail", what, f"{address!r} is not an IP address",
                "--ice-host 须为本机的 IP 地址，例如 192.168.1.10",
                "--ice-host takes an IP address of this machine, e.g. 192.168.1.10"))
            continue
        problem = _udp_round_trip(address)
        if problem is not None:
            findings.append(Finding(
                "fail", what, f"{address}: UDP does not work there ({problem})",
                f"{address} 不是本机地址或不能收发 UDP：用 'ip -brief address' 查看本机地址，"
                "改正 --ice-host（ZHIXING_ICE_HOSTS）",
                f"{address} is not an address of this machine or takes no UDP: list this "
                "machine's addresses with 'ip -brief address' and correct --ice-host "
                "(ZHIXING_ICE_HOSTS)"))
    usable = [a for a in offered if not ipaddress.ip_address(a).is_loopback] \
        if not findings else []
    if not offered or (not findings and not usable):
        shown = f"only loopback remains ({', '.join(offered)})" if offered else \
            "no address to offer (ICE leaves loopback out, and there is nothing else)"
        findings.append(Finding(
            "warn", what, f"{shown}: rooms on other machines cannot connect",
            "若分课堂在其他电脑上，请用 --ice-host 指定本机内网地址（ZHIXING_ICE_HOSTS），"
            "并确认网卡已启用",
            "if the rooms are on other machines, give this machine's intranet address with "
            "--ice-host (ZHIXING_ICE_HOSTS), and check that its network interface is up"))
    elif not findings:
        source = "--ice-host" if configured is not None else "every interface but loopback"
        findings.append(Finding("ok", what, f"{', '.join(usable)} ({source}; UDP works)"))
    return findings


# ---------------------------------------------------------------------- TURN


def _turn_address(url: str) -> tuple[str, int, str] | None:
    """(host, port, transport) of a turn: URL; None if it is not one."""
    scheme, _, rest = url.partition(":")
    if scheme not in ("turn", "turns") or not rest:
        return None
    parts = urlsplit("//" + rest)
    transport = "tcp" if scheme == "turns" else "udp"
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if key == "transport" and value in ("udp", "tcp"):
            transport = value
    try:
        port = parts.port or (5349 if scheme == "turns" else 3478)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port, transport


class _Allocation(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.ended = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


async def _allocate(host: str, port: int, transport: str, username: str | None,
                    password: str | None, timeout: float) -> tuple[str, int]:
    """A real TURN allocation, deleted again; returns the relayed address."""
    relay, allocation = await asyncio.wait_for(aioice.turn.create_turn_endpoint(
        _Allocation, server_addr=(host, port), username=username,
        password=password, lifetime=600, transport=transport), timeout)
    relayed: tuple[str, int] = relay.get_extra_info("sockname")
    relay.close()  # deletes the allocation, then ends the protocol
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(allocation.ended), timeout)
    return relayed


def check_turn(config: Config, timeout: float = TURN_TIMEOUT) -> list[Finding]:
    what = "TURN 服务器 TURN server"
    if not config.turn_urls:
        return [Finding("ok", what, "none configured (rooms reach the relay directly)")]
    findings = []
    for url in config.turn_urls:
        address = _turn_address(url)
        if address is None:
            findings.append(Finding("fail", what, f"{url}: not a turn: URL",
                                    "写成 turn:主机:端口?transport=udp",
                                    "write it as turn:host:port?transport=udp"))
            continue
        if url.startswith("turns:"):
            findings.append(Finding("warn", what, f"{url}: TLS (turns:) is not checked here"))
            continue
        host, port, transport = address
        try:
            relayed = asyncio.run(_allocate(host, port, transport, config.turn_username,
                                            config.turn_password, timeout))
        except (OSError, TimeoutError, ConnectionError, aioice.stun.TransactionError) as exc:
            reason = str(exc) or type(exc).__name__
            findings.append(Finding(
                "fail", what, f"{url}: no allocation ({reason})",
                "检查 TURN 服务器是否运行、防火墙是否放行该端口、--turn-username 与 "
                "--turn-password 是否与服务器配置一致",
                "check that the TURN server runs, that the firewall lets this port through, "
                "and that --turn-username/--turn-password match the server's"))
            continue
        findings.append(Finding("ok", what, f"{url}: allocated {relayed[0]}:{relayed[1]}"))
    return findings


# ---------------------------------------------------------------------- disk, fonts, tools


def check_disk(config: Config) -> list[Finding]:
    what = "磁盘空间 free disk"
    folder = config.data_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folder is made at the first start
    free = shutil.disk_usage(folder).free
    shown = f"{free / 1024 ** 3:.1f} GiB free in {folder.resolve()}"
    if free < config.min_free_bytes:
        return [Finding(
            "fail", what, f"{shown}, below --min-free-mb: recordings stop at once",
            "清理或扩容数据目录所在磁盘（录像在 archive/ 下），或将 --data 指向更大的磁盘",
            "free or enlarge the data folder's disk (lectures are under archive/), or point "
            "--data at a larger disk")]
    if free < config.min_free_bytes + HOUR_OF_RECORDING:
        return [Finding(
            "warn", what, f"{shown}: less than an hour of recording",
            "录制前请清理磁盘或扩容", "free some disk before recording")]
    hours = (free - config.min_free_bytes) / HOUR_OF_RECORDING
    return [Finding("ok", what, f"{shown} (about {hours:.0f} hours of recording)")]


def check_fonts() -> list[Finding]:
    what = "中文字体 CJK fonts"
    from matplotlib import font_manager

    for family in CJK_FONTS[:-1]:  # the last one, DejaVu Sans, has no Chinese
        try:
            path = font_manager.findfont(family, fallback_to_default=False)
        except ValueError:
            continue
        return [Finding("ok", what, f"{family} ({path})")]
    return [Finding(
        "warn", what, "no CJK font: the attendance charts show boxes instead of Chinese",
        "安装字体：apt-get install fonts-noto-cjk，然后重启服务",
        "install one: apt-get install fonts-noto-cjk, then restart the service")]


# What recording, finishing and replay need of FFmpeg's libraries (PyAV brings
# its own; the service runs no ffmpeg program): (codec, "r" decode | "w" encode, use).
NEEDED_CODECS = (
    ("h264", "r", "posters of H.264 lectures"),
    ("vp8", "r", "posters of VP8 lectures"),
    ("opus", "r", "rooms' voices mixed into a recording"),
    ("libopus", "w", "rooms' voices mixed in; imported lectures' sound replayed"),
    ("mjpeg", "w", "posters"),
)
IMPORT_CODECS = (
    ("aac", "r", "imported lectures' AAC sound, replayed"),
    ("libx264", "w", "'archive import --transcode'"),
    ("aac", "w", "'archive import --transcode'"),
)


def _has_codec(name: str, mode: str) -> bool:
    try:
        av.codec.Codec(name, "w" if mode == "w" else "r")
    except (ValueError, av.error.FFmpegError):
        return False
    return True


def check_media_libraries(has_codec: Callable[[str, str], bool] = _has_codec
                          ) -> list[Finding]:
    """FFmpeg's libraries as PyAV has them: the codecs the service uses."""
    what = "FFmpeg 库 FFmpeg libraries"
    version = ".".join(str(n) for n in av.library_versions.get("libavcodec", ()))
    fix_zh = ("重新安装 PyAV（它自带 FFmpeg 库）：pip install --force-reinstall "
              f"av=={av.__version__}")
    fix_en = (f"reinstall PyAV, which brings its own FFmpeg libraries: pip install "
              f"--force-reinstall av=={av.__version__}")
    missing = [f"{name} ({'decoder' if mode == 'r' else 'encoder'}: {use})"
               for name, mode, use in NEEDED_CODECS if not has_codec(name, mode)]
    if missing:
        return [Finding("fail", what, "missing " + "; ".join(missing), fix_zh, fix_en)]
    optional = [f"{name} ({'decoder' if mode == 'r' else 'encoder'}: {use})"
                for name, mode, use in IMPORT_CODECS if not has_codec(name, mode)]
    if optional:
        return [Finding("warn", what, "missing " + "; ".join(optional), fix_zh, fix_en)]
    return [Finding("ok", what, f"PyAV {av.__version__}, libavcodec {version}: every codec "
                                "the service uses")]


# ---------------------------------------------------------------------- the clock

TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


def kernel_clock_synchronised() -> bool | None:
    """The kernel's NTP state (adjtimex); None where it cannot be read."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


def _newest_catalog_time(data_dir: Path) -> float | None:
    path = data_dir / DATABASE_FILE
    if not path.is_file():
        return None
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True)
    try:
        newest = [conn.execute(f"SELECT max({column}) FROM {table}").fetchone()[0]
                  for table, column in (("sessions", "created_at"),
                                        ("archive_items", "updated_at"))]
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    known = [float(value) for value in newest if value is not None]
    return max(known) if known else None


def check_clock(config: Config, now: Callable[[], float] = time.time,
                synchronised: Callable[[], bool | None] = kernel_clock_synchronised,
                ) -> list[Finding]:
    what = "时钟 clock"
    fix_zh = ("启用时间同步（chrony 或 systemd-timesyncd），指向单位内网的 NTP 服务器；"
              "改时间后重启服务")
    fix_en = ("enable time synchronisation (chrony or systemd-timesyncd) against the "
              "intranet's NTP server; restart the service after the clock is corrected")
    current = now()
    shown = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(current))
    newest = _newest_catalog_time(config.data_dir)
    if newest is not None and current < newest - 60:
        behind = (newest - current) / 60
        return [Finding("fail", what, f"{shown}: {behind:.0f} minutes behind the newest "
                                      "time the catalog wrote (the clock went back)",
                        fix_zh, fix_en)]
    state = synchronised()
    if state is False:
        return [Finding("warn", what, f"{shown}: not synchronised (NTP)", fix_zh, fix_en)]
    note = "synchronised" if state else "synchronisation state unknown"
    return [Finding("ok", what, f"{shown} ({note})")]


# ---------------------------------------------------------------------- Redis and edges


REDIS_TIMEOUT = 3.0


async def _read_cluster(url: str, secret: bytes) -> Directory:
    # Imported here, as serve does: a box without --redis never loads the client.
    from classroom.live.redis_cluster import connect, read_directory

    client = connect(url)
    try:
        await asyncio.wait_for(client.ping(), REDIS_TIMEOUT)
        return await asyncio.wait_for(read_directory(client, cluster_key(secret)),
                                      REDIS_TIMEOUT)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def check_redis(config: Config) -> list[Finding]:
    """Redis reachable, and the edges and workers renewing their entries now."""
    what = "Redis 与分发节点 Redis and edges"
    if config.redis_url is None:
        return [Finding("ok", what, "none configured (one box: no edges, no workers)")]
    from redis.exceptions import RedisError

    shown = _without_password(config.redis_url)
    try:
        secret = (config.data_dir / SECRET_FILE).read_bytes()
    except OSError as exc:
        return [Finding("fail", what, f"{SECRET_FILE} cannot be read ({exc.strerror}): "
                                      "the directory's entries cannot be checked",
                        "在服务的数据目录中运行 doctor（--data），边缘节点的 --secret 须是其副本",
                        "run doctor on the service's data folder (--data); the edges' "
                        "--secret must be a copy of its server-secret")]
    try:
        directory = asyncio.run(_read_cluster(config.redis_url, secret))
    except (RedisError, OSError, TimeoutError) as exc:
        return [Finding(
            "fail", what, f"{shown}: unreachable ({str(exc) or type(exc).__name__})",
            "检查 redis-server 是否运行（systemctl status redis-server）、地址与端口是否正确、"
            "防火墙是否放行；Redis 不可用时分课堂都回到主服务器观看",
            "check that redis-server runs (systemctl status redis-server), that the address "
            "and port are right and the firewall lets them through; without Redis every room "
            "watches from the origin")]
    findings = [Finding("ok", what, f"{shown}: reachable, {len(directory.entries)} edge(s) "
                                    "or worker(s) renewing their entries")]
    for entry, ttl in sorted(directory.entries, key=lambda e: e[0].name):
        age = max(0.0, ENTRY_TTL - ttl / 1000)
        kind = "worker" if entry.district == ALL_SITES else f"edge of {entry.district}"
        findings.append(Finding("ok", what, f"{entry.name} ({kind}) at {entry.url}: "
                                            f"{entry.load} viewer(s), renewed {age:.1f} s ago"))
    for name, why in directory.refused:
        findings.append(Finding(
            "warn", what, f"{name[:100]} refused: {why}",
            "该节点的 --secret 须是本数据目录 server-secret 的副本；陈旧或伪造的条目不会被采用",
            "that node's --secret must be a copy of this data folder's server-secret; a "
            "stale or forged entry is never followed"))
    return findings


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


# ---------------------------------------------------------------------- the command


def check_worker_ports(config: Config) -> list[Finding]:
    """With workers, the ports PORT+1 … PORT+N: free to listen on (a worker
    that cannot listen leaves its share of the rooms to the others)."""
    if config.workers <= 1:
        return []
    what = "工作进程端口 worker ports"
    ports = range(config.port + 1, config.port + config.workers + 1)
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((config.host, port))
            except OSError:
                taken.append(port)
    shown = f"{config.workers} workers on TCP {ports[0]}-{ports[-1]}"
    if taken:
        return [Finding(
            "warn", what, f"{shown}: {', '.join(map(str, taken))} in use (by this service "
            "if it is running)",
            "若服务未运行，请释放这些端口，或用 --port 换一组端口，或 --workers 1",
            "if the service is not running, free those ports, or move them with --port, or "
            "use --workers 1")]
    return [Finding("ok", what, f"{shown} free; open them in the firewall like "
                    f"{config.port}")]


def run_checks(config: Config) -> list[Finding]:
    return [*check_ice(config), *check_turn(config), *check_disk(config), *check_fonts(),
            *check_media_libraries(), *check_clock(config), *check_worker_ports(config),
            *check_redis(config)]


MARKS = {"ok": "[ok]  ", "warn": "[warn]", "fail": "[FAIL]"}


def report(findings: Sequence[Finding]) -> tuple[str, int]:
    """The text to print and the exit status (1 if anything failed)."""
    lines = []
    for finding in findings:
        lines.append(f"{MARKS[finding.level]} {finding.what}: {finding.detail}")
        if finding.fix_zh:
            lines.append(f"       修复：{finding.fix_zh}")
        if finding.fix_en:
            lines.append(f"       Fix: {finding.fix_en}")
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    lines.append(f"{failed} 项失败 failed, {warned} 项警告 warnings")
    return "\n".join(lines), 1 if failed else 0


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    text, status = report(run_checks(config))
    print(text)
    return status
