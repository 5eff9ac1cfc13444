"""``zhixing doctor`` (web/doctor.py): each check against the real thing —
the network namespace's interfaces, a real coturn, the disk, the catalog,
PyAV's codecs —
and the fixes printed in both languages."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from classroom.db import Database
from classroom.school import DATABASE_FILE
from web import cli
from web.config import Config
from web.doctor import (
    Finding,
    check_clock,
    check_disk,
    check_ice,
    check_media_libraries,
    check_redis,
    check_turn,
    check_worker_ports,
)

ROOT = Path(__file__).resolve().parents[2]
TURN_USER, TURN_PASSWORD = "zhixing", "turn-secret"


def _levels(findings: list[Finding]) -> list[str]:
    return [f.level for f in findings]


def test_only_loopback_is_a_warning_and_a_stranger_address_fails() -> None:
    # The suite runs in a namespace whose only interface is loopback.
    [alone] = check_ice(Config(ice_hosts=None))
    assert alone.level == "warn" and "no address to offer" in alone.detail
    [loopback] = check_ice(Config(ice_hosts=["127.0.0.1"]))
    assert loopback.level == "warn" and "only loopback remains (127.0.0.1)" in loopback.detail
    assert "--ice-host" in loopback.fix_zh and "--ice-host" in loopback.fix_en
    [stranger] = check_ice(Config(ice_hosts=["10.9.9.9", "127.0.0.1"]))
    assert stranger.level == "fail" and stranger.detail.startswith("10.9.9.9: UDP")
    assert "ip -brief address" in stranger.fix_en and "本机" in stranger.fix_zh
    [bad] = check_ice(Config(ice_hosts=["intranet"]))
    assert bad.level == "fail" and "not an IP address" in bad.detail


def test_an_intranet_address_is_offered_and_takes_udp(tmp_path: Path) -> None:
    """In a namespace of its own with one more interface (one end of a veth
    pair, with an intranet address), the command finds that address and UDP
    on it."""
    assert shutil.which("unshare"), "needs unshare: scripts/install-system-deps (util-linux)"
    script = (
        "ip link set lo up && ip link add v0 type veth peer name v1 && "
        "ip addr add 10.20.30.40/24 dev v0 && ip link set v0 up && ip link set v1 up && "
        f"exec {sys.executable} -m web.cli doctor --data {tmp_path}"
    )
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert "[ok]   ICE 候选地址 ICE host addresses: 10.20.30.40" in done.stdout, (
        done.stdout, done.stderr)
    assert "UDP works" in done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def coturn(tmp_path: Path) -> Iterator[int]:
    """A real TURN server (Debian's coturn) on loopback; its port."""
    if shutil.which("turnserver") is None:
        raise RuntimeError("turnserver is missing: run scripts/install-system-deps (coturn)")
    port = _free_port()
    log = (tmp_path / "turnserver.log").open("w")
    process = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
         "--relay-ip=127.0.0.1", "--min-port=49152", "--max-port=49300", "--lt-cred-mech",
         f"--user={TURN_USER}:{TURN_PASSWORD}", "--realm=zhixing", "--no-tls", "--no-dtls",
         "--no-cli", "--log-file=stdout", "--simple-log",
         f"--pidfile={tmp_path / 'turnserver.pid'}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:  # listening once its TCP port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "turnserver.log").read_text()
                assert time.monotonic() < deadline, "coturn did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_turn_servers_get_a_real_allocation(tmp_path: Path) -> None:
    with coturn(tmp_path) as port:
        urls = [f"turn:127.0.0.1:{port}", f"turn:127.0.0.1:{port}?transport=tcp"]
        findings = check_turn(Config(turn_urls=urls, turn_username=TURN_USER,
                                     turn_password=TURN_PASSWORD))
        assert _levels(findings) == ["ok", "ok"], findings
        assert all("allocated 127.0.0.1:" in f.detail for f in findings)
        [wrong] = check_turn(Config(turn_urls=urls[:1], turn_username=TURN_USER,
                                    turn_password="wrong"))
        assert wrong.level == "fail" and "401" in wrong.detail, wrong
        assert "--turn-password" in wrong.fix_en and "--turn-password" in wrong.fix_zh
    # Nobody listens there any more.
    [gone] = check_turn(Config(turn_urls=[f"turn:127.0.0.1:{port}?transport=tcp"]),
                        timeout=2)
    assert gone.level == "fail" and "no allocation" in gone.detail
    [odd] = check_turn(Config(turn_urls=["stun:127.0.0.1:3478"]))
    assert odd.level == "fail" and "not a turn: URL" in odd.detail
    [none] = check_turn(Config())
    assert none.level == "ok"


def test_free_disk_against_the_recordings_floor(tmp_path: Path) -> None:
    [fine] = check_disk(Config(data_dir=tmp_path / "data", min_free_bytes=0))
    assert fine.level in ("ok", "warn")  # the folder need not exist yet
    free = shutil.disk_usage(tmp_path).free
    [low] = check_disk(Config(data_dir=tmp_path, min_free_bytes=free + 1024 ** 3))
    assert low.level == "fail" and "recordings stop" in low.detail
    assert "archive/" in low.fix_zh and "archive/" in low.fix_en


def test_a_clock_set_back_fails(tmp_path: Path) -> None:
    db = Database(tmp_path / DATABASE_FILE)
    db.migrate()
    db.execute("INSERT INTO sessions (id, title, video_codec, publish_token, view_token, "
               "created_at) VALUES ('s1', '第一讲', 'H264', 'p', 'v', ?)", (time.time(),))
    db.close()
    config = Config(data_dir=tmp_path)
    [back] = check_clock(config, now=lambda: time.time() - 3600, synchronised=lambda: True)
    assert back.level == "fail" and "went back" in back.detail and "NTP" in back.fix_zh
    [unsynced] = check_clock(config, synchronised=lambda: False)
    assert unsynced.level == "warn" and "chrony" in unsynced.fix_en
    [fine] = check_clock(config, synchronised=lambda: True)
    assert fine.level == "ok"


def test_the_codecs_the_service_uses() -> None:
    [fine] = check_media_libraries()  # PyAV's own FFmpeg libraries
    assert fine.level == "ok" and "libavcodec" in fine.detail
    [broken] = check_media_libraries(lambda name, mode: name != "libopus")
    assert broken.level == "fail" and "libopus (encoder" in broken.detail
    assert "av==" in broken.fix_en and "av==" in broken.fix_zh
    [no_import] = check_media_libraries(lambda name, mode: (name, mode) != ("libx264", "w"))
    assert no_import.level == "warn" and "--transcode" in no_import.detail


def test_the_command_prints_fixes_in_both_languages_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["doctor", "--data", str(tmp_path), "--ice-host", "10.9.9.9"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] ICE 候选地址 ICE host addresses: 10.9.9.9" in out
    assert "修复：" in out and "Fix: " in out
    assert "[ok]   中文字体 CJK fonts" in out  # Debian's fonts-noto-cjk
    assert "[ok]   FFmpeg 库 FFmpeg libraries" in out
    assert out.rstrip().endswith("warnings")
    assert cli.main(["doctor", "--data", str(tmp_path), "--ice-host", "127.0.0.1"]) == 0


def _two_adjacent_ports() -> tuple[socket.socket, socket.socket]:
    """Two listening sockets on ports N and N+1 (this test's own, so that no
    other socket of the machine takes them while it checks)."""
    for _ in range(100):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        second = socket.socket()
        try:
            second.bind(("127.0.0.1", first.getsockname()[1] + 1))
        except OSError:
            first.close()
            second.close()
            continue
        first.listen()
        second.listen()
        return first, second
    raise AssertionError("no two adjacent free ports on loopback")


def test_the_workers_ports_are_checked_free() -> None:
    first, second = _two_adjacent_ports()
    taken = first.getsockname()[1]
    with first:
        with second:
            assert check_worker_ports(Config(host="127.0.0.1", port=taken - 1, workers=1)) == []
            [finding] = check_worker_ports(Config(host="127.0.0.1", port=taken - 1, workers=2))
            assert finding.level == "warn", finding
            assert f"{taken}, {taken + 1} in use" in finding.detail, finding
        # The second of the two ports free again: only the first is named.
        [finding] = check_worker_ports(Config(host="127.0.0.1", port=taken - 1, workers=2))
        assert finding.level == "warn" and f": {taken} in use" in finding.detail, finding
    [finding] = check_worker_ports(Config(host="127.0.0.1", port=taken - 1, workers=2))
    assert finding.level == "ok", finding


async def test_redis_and_the_directorys_edges_and_workers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from classroom.access.signing import load_or_create_secret
    from classroom.live.cluster import NodeEntry, cluster_key, seal
    from tests.support.redis_server import redis_server

    data = tmp_path / "data"
    data.mkdir()
    key = cluster_key(load_or_create_secret(data))
    [alone] = check_redis(Config(data_dir=data))
    assert alone.level == "ok" and "none configured" in alone.detail
    async with redis_server(tmp_path / "redis") as server:
        config = Config(data_dir=data, redis_url=server.url)
        client = aioredis.Redis.from_url(server.url)
        try:
            beilun = NodeEntry("edge-beilun", "http://10.8.0.5:8090", "北仑区", 12)
            worker = NodeEntry("worker-1", "http://127.0.0.1:8081", "*", 3)
            for entry in (beilun, worker):
                await client.set(f"zhixing:node:{entry.name}", seal(key, entry.to_fields()),
                                 px=1500)
            await client.set("zhixing:node:edge-forged", seal(b"x" * 32, {
                **beilun.to_fields(), "name": "edge-forged"}), px=2000)
            reachable, *nodes, forged = await asyncio.to_thread(check_redis, config)
        finally:
            await client.aclose()
        assert reachable.level == "ok" and server.url in reachable.detail
        assert "2 edge(s) or worker(s)" in reachable.detail
        assert [n.level for n in nodes] == ["ok", "ok"]
        assert nodes[0].detail.startswith(
            "edge-beilun (edge of 北仑区) at http://10.8.0.5:8090: 12 viewer(s), renewed 0.")
        assert nodes[1].detail.startswith("worker-1 (worker) at http://127.0.0.1:8081: 3 ")
        assert forged.level == "warn" and forged.detail.startswith("zhixing:node:edge-forged")
        assert "server-secret" in forged.fix_en and "server-secret" in forged.fix_zh
        await server.stop()
        status = await asyncio.to_thread(cli.main, [
            "doctor", "--data", str(data), "--ice-host", "127.0.0.1", "--redis", server.url])
    out = capsys.readouterr().out
    assert status == 1
    assert f"[FAIL] Redis 与分发节点 Redis and edges: {server.url}: unreachable" in out
    assert "redis-server" in out
