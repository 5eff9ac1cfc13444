"""The room wall (监控墙) and /metrics: who may see them, what they say about
real aiortc rooms connecting, leaving and coming back, and the wall in Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from classroom.live.wall import CLOSE_ENDED, CRITICAL, NOTICE, OK, WARNING, SiteRecord, Wall
from tests.support import media
from tests.support.browser import ARTIFACTS, Chromium
from tests.support.media import start_publisher, start_viewer
from tests.support.pages import open_console
from tests.support.service import ADMIN_PASSWORD, ADMIN_TOKEN, Service, invite
from tests.support.service import call_json as call
from tests.support.wall import SNAPSHOT_TIMEOUT, raw_snapshot_until, wall, ws_url
from web.app import create_app
from web.cli import build_parser
from web.config import Config, config_from_args
from web.keys import METRICS

API = "/api/v1"
PASSWORD = ADMIN_PASSWORD
METRICS_TOKEN = "test-metrics-token"


# --------------------------------------------------------------------------
# helpers


@pytest.fixture
async def admin_service(tmp_path: Path) -> AsyncIterator[Service]:
    """The service with a login password and a metrics token; a client that keeps cookies."""
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN, admin_password=PASSWORD,
                    metrics_token=METRICS_TOKEN)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    await server.close()


async def leave(service: Service, viewer: media.TestViewer, token: str) -> None:
    """WHEP DELETE of the viewer's resource, then close its peer connection."""
    assert viewer.location is not None
    async with service.http.delete(f"{service.base}{viewer.location}",
                                   headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
    await viewer.close()


async def scrape(service: Service, token: str | None = ADMIN_TOKEN,
                 base: str | None = None) -> dict[str, float]:
    """/metrics as {sample name{labels}: value}; the text must parse."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with service.http.get(f"{base or service.base}/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def counters(values: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in values.items()
            if name.startswith("zhixing_") and "_total" in name}


async def eventually(what: str, probe: Callable[[], Awaitable[Any]],
                     done: Callable[[Any], bool], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {value!r})")
        await asyncio.sleep(0.3)


async def snapshot_until(ws: aiohttp.ClientWebSocketResponse, what: str,
                         done: Callable[[dict[str, Any]], bool],
                         timeout: float = SNAPSHOT_TIMEOUT) -> dict[str, Any]:
    """Read pushed snapshots until one satisfies ``done``."""
    return (await raw_snapshot_until(ws, what, done, timeout))[1]


async def connect_events(service: Service, session_id: str,
                         token: str) -> aiohttp.ClientWebSocketResponse:
    """A room's room-events socket (研讨), its first state read."""
    ws = await service.http.ws_connect(
        f"{service.base}{API}/sessions/{session_id}/events/ws",
        protocols=["zhixing.events.v1", f"bearer.{token}"])
    assert json.loads((await ws.receive(timeout=5)).data)["type"] == "state"
    return ws


async def events_call(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> None:
    """Send one message on a room-events socket and wait for its ack."""
    await ws.send_json({**message, "id": "m"})
    while True:
        reply = json.loads((await ws.receive(timeout=5)).data)
        if reply["type"] in ("ack", "error"):
            assert reply["type"] == "ack", reply
            return


def by_name(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {site["name"]: site for site in snapshot["sites"]}


def receiving(site: dict[str, Any]) -> bool:
    quality = site["quality"]
    return bool(site["connected"] and quality and (quality["bitrate"] or 0) > 0)


# --------------------------------------------------------------------------
# /metrics


async def test_metrics_need_the_admin_or_the_metrics_token(admin_service: Service) -> None:
    session = await admin_service.create_session()
    async with admin_service.http.get(f"{admin_service.base}/metrics") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for token, status in (("wrong", 401), (ADMIN_TOKEN + "x", 401),
                          (session["view_token"], 403), (session["publish_token"], 403)):
        async with admin_service.http.get(f"{admin_service.base}/metrics",
                                          headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == status, (token, r.status)
    by_admin = await scrape(admin_service, ADMIN_TOKEN)
    by_metrics_token = await scrape(admin_service, METRICS_TOKEN)
    for values in (by_admin, by_metrics_token):
        for name in ("zhixing_sessions_live", "zhixing_publishers_connected",
                     "zhixing_viewers_connected", "zhixing_recordings_running",
                     "zhixing_replays_playing", "zhixing_rooms_open",
                     "zhixing_egress_bits_per_second", "zhixing_egress_packets_total",
                     "zhixing_egress_bytes_total", "zhixing_viewer_nacked_packets_total",
                     "zhixing_viewer_retransmitted_packets_total",
                     "zhixing_viewer_packets_lost_total", "zhixing_plis_sent_upstream_total",
                     "zhixing_viewer_overflows_total", "zhixing_viewer_connections_total",
                     "zhixing_ingress_bits_per_second{kind=video}",
                     "zhixing_ingress_bytes_total{kind=audio}",
                     "zhixing_event_loop_lag_seconds_count"):
            assert name in values, name
    # The login cookie is for pages and the admin API, not for scrapers.
    async with admin_service.http.post(f"{admin_service.base}/login", allow_redirects=False,
                                       data={"username": "admin", "password": PASSWORD}) as r:
        assert r.status == 303
    async with admin_service.http.get(f"{admin_service.base}/metrics") as response:
        assert response.status == 401


async def test_the_separate_listener_serves_metrics_without_a_token(tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN,
                    metrics_listen=("127.0.0.1", 0))
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            service = Service(str(server.make_url("")).rstrip("/"), http, app)
            addresses = app[METRICS].listen_addresses
            assert len(addresses) == 1
            host, port = addresses[0][:2]
            assert host == "127.0.0.1" and port != server.port
            values = await scrape(service, token=None, base=f"http://{host}:{port}")
            assert values["zhixing_rooms_open"] == 0
            # Only /metrics there; the main port still wants a token.
            async with http.get(f"http://{host}:{port}/api/v1/sessions") as response:
                assert response.status == 404
            async with http.get(f"{service.base}/metrics") as response:
                assert response.status == 401
    finally:
        await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://{host}:{port}/metrics"):
            pass


def test_the_metrics_options_have_flags_variables_and_help(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--metrics-listen", "127.0.0.1:9108",
                              "--metrics-token", "t1"])
    config = config_from_args(args)
    assert (config.metrics_listen, config.metrics_token) == (("127.0.0.1", 9108), "t1")
    assert config_from_args(parser.parse_args(["serve", "--metrics-listen", "[::1]:9"])) \
        .metrics_listen == ("::1", 9)
    monkeypatch.setenv("ZHIXING_METRICS_LISTEN", ":9200")
    monkeypatch.setenv("ZHIXING_METRICS_TOKEN", "from-env")
    config = config_from_args(build_parser().parse_args(["serve"]))
    assert (config.metrics_listen, config.metrics_token) == (("127.0.0.1", 9200), "from-env")
    monkeypatch.delenv("ZHIXING_METRICS_LISTEN")
    monkeypatch.delenv("ZHIXING_METRICS_TOKEN")
    assert config_from_args(build_parser().parse_args(["serve"])).metrics_listen is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--metrics-listen", "localhost"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--metrics-token", "ZHIXING_METRICS_TOKEN", "--metrics-listen",
                   "ZHIXING_METRICS_LISTEN", "WITHOUT authentication", "docs/metrics.md"):
        assert needle in text, needle
    assert os.path.exists(Path(__file__).parents[2] / "docs" / "metrics.md")


@pytest.mark.webrtc
async def test_counters_never_go_down_when_viewers_and_sessions_go(service: Service) -> None:
    session = await service.create_session()
    invitation = await invite(service, session, "新碶街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    tokens = [invitation["token"], session["view_token"], session["view_token"]]
    viewers: list[media.TestViewer] = []
    try:
        for token in tokens:
            viewers.append(await start_viewer(service.http, service.base, session["id"], token))
        for viewer in viewers:
            await viewer.wait_for_frames(20, timeout=15)
        before = await eventually(
            "three viewers counted", lambda: scrape(service),
            lambda v: v["zhixing_viewers_connected"] == 3
            and v["zhixing_viewer_connections_total"] == 3
            # (the ingress rate is measured over 2 s windows)
            and v["zhixing_ingress_bits_per_second{kind=video}"] > 0)
        assert before["zhixing_publishers_connected"] == 1
        assert before["zhixing_sessions_live"] == 1
        assert before[f"zhixing_session_viewers_connected{{session={session['id']}}}"] == 3
        assert before[f"zhixing_session_on_air{{session={session['id']}}}"] == 1
        assert before["zhixing_egress_bytes_total"] > 0
        assert before["zhixing_egress_packets_total"] > 0
        assert before["zhixing_egress_frames_total"] > 0
        assert before["zhixing_ingress_bytes_total{kind=video}"] > 0
        assert before["zhixing_plis_sent_upstream_total"] >= 1
        assert before["zhixing_event_loop_lag_seconds_count"] > 0

        await leave(service, viewers[0], tokens[0])
        await leave(service, viewers[1], tokens[1])
        after_leaving = await eventually(
            "one viewer left", lambda: scrape(service),
            lambda v: v["zhixing_viewers_connected"] == 1)
        for name, value in counters(before).items():
            assert after_leaving[name] >= value, (name, value, after_leaving[name])
        # (a rate over at least 1 s between scrapes)
        await eventually("the egress rate", lambda: scrape(service),
                         lambda v: v["zhixing_egress_bits_per_second"] > 0)

        assert (await call(service, "DELETE", f"{API}/sessions/{session['id']}"))[0] == 204
        ended = await eventually(
            "the session's room retired", lambda: scrape(service),
            lambda v: v["zhixing_rooms_open"] == 0 and v["zhixing_viewers_connected"] == 0)
        for name, value in counters(after_leaving).items():
            assert ended[name] >= value, (name, value, ended[name])
        assert not any(name.startswith("zhixing_session_") for name in ended)
        again = await scrape(service)
        assert counters(again) == counters(ended)
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


# --------------------------------------------------------------------------
# the wall: who may open it


async def test_the_wall_socket_is_for_admins_only(admin_service: Service) -> None:
    service = admin_service
    session = await service.create_session()
    invitation = await invite(service, session, "新碶街道分课堂")
    url = ws_url(service, session["id"])
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                            ({"Authorization": f"Bearer {invitation['token']}"}, 401),
                            ({"Authorization": f"Bearer {session['view_token']}"}, 403),
                            ({"Authorization": f"Bearer {session['publish_token']}"}, 403),
                            ({"Authorization": f"Bearer {METRICS_TOKEN}"}, 401)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await service.http.ws_connect(url, headers=headers)
        assert refused.value.status == status, headers
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await wall(service, "no-such-session")
    assert refused.value.status == 404

    # Logged in: the cookie works from this server's pages only.
    async with service.http.post(f"{service.base}/login", allow_redirects=False,
                                 data={"username": "admin", "password": PASSWORD}) as response:
        assert response.status == 303
    for origin in ("http://evil.example", f"{service.base}.evil.example",
                   service.base.replace("127.0.0.1", "localhost"), None):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await service.http.ws_connect(url, origin=origin)
        assert refused.value.status == 403, origin
    ws = await service.http.ws_connect(url, origin=service.base)
    try:
        first = await snapshot_until(ws, "a first snapshot", lambda s: True, timeout=5)
        assert first["type"] == "snapshot"
        assert first["session"]["id"] == session["id"]
        assert [site["name"] for site in first["sites"]] == ["新碶街道分课堂"]
    finally:
        await ws.close()

    # Without an Upgrade header: one snapshot as JSON.
    status, body = await call(service, "GET", f"{API}/sessions/{session['id']}/wall/ws")
    assert status == 200 and body["sites"][0]["invitation_id"] == invitation["id"]
    status, _ = await call(service, "GET", f"{API}/sessions/{session['id']}/wall/ws",
                           token=session["view_token"])
    assert status == 403


async def test_the_wall_page_needs_a_login(admin_service: Service) -> None:
    service = admin_service
    session = await service.create_session()
    path = f"{service.base}/admin/wall/{session['id']}"
    async with service.http.get(path, allow_redirects=False, headers=service.admin) as response:
        assert (response.status, response.headers["Location"]) == (303, "/login")
    async with service.http.post(f"{service.base}/login", allow_redirects=False,
                                 data={"username": "admin", "password": PASSWORD}) as response:
        assert response.status == 303
    async with service.http.get(path, allow_redirects=False) as response:
        assert response.status == 200 and response.content_type == "text/html"
        text = await response.text()
        assert "/static/wall.js" in text
        assert "http://" not in text and "https://" not in text  # nothing from outside
        assert response.headers["X-Frame-Options"] == "DENY"
    async with service.http.get(f"{service.base}/admin/wall/nope?lang=en") as response:
        assert response.status == 404
        assert "No such session" in await response.text()


async def test_sockets_are_closed_when_the_session_ends_and_at_shutdown(
        tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    closing: asyncio.Task[None] | None = None
    async with aiohttp.ClientSession() as http:
        service = Service(str(server.make_url("")).rstrip("/"), http, server.app)
        try:
            ending = await service.create_session("第一讲")
            staying = await service.create_session("第二讲")
            first, second = await wall(service, ending["id"]), await wall(service, ending["id"])
            other = await wall(service, staying["id"])
            for ws in (first, second, other):
                await snapshot_until(ws, "a first snapshot", lambda s: True, timeout=5)
            assert (await call(service, "DELETE", f"{API}/sessions/{ending['id']}"))[0] == 204
            for ws in (first, second):
                last = await snapshot_until(ws, "the ended session",
                                            lambda s: s["session"]["state"] == "ended")
                assert last["sites"] == []
                message = await ws.receive(timeout=10)
                assert message.type == aiohttp.WSMsgType.CLOSE, message
                assert ws.close_code == CLOSE_ENDED
            closing = asyncio.create_task(server.close())
            message = await other.receive(timeout=10)
            while message.type == aiohttp.WSMsgType.TEXT:
                message = await other.receive(timeout=10)
            assert message.type == aiohttp.WSMsgType.CLOSE, message
            assert other.close_code == aiohttp.WSCloseCode.GOING_AWAY
            await asyncio.wait_for(closing, 15)
        finally:
            if closing is None:
                await server.close()


# --------------------------------------------------------------------------
# the wall: what it says


def site_for(connected: bool, bitrate: float | None = 500_000.0, loss: float = 0.0,
             rtt: float = 0.01, since: float = 900.0) -> dict[str, Any]:
    quality = {"bitrate": bitrate, "fraction_lost": loss, "rtt": rtt} if connected else None
    return {"quality": quality, "connected_since": since if connected else None}


@pytest.mark.parametrize(("site", "record", "state", "on_air", "start", "expected"), [
    (site_for(True), SiteRecord(1), "live", True, 0.0, (OK, None)),
    (site_for(True, loss=0.08), SiteRecord(1), "live", True, 0.0, (WARNING, "loss")),
    (site_for(True, rtt=0.5), SiteRecord(1), "live", True, 0.0, (WARNING, "rtt")),
    (site_for(True, bitrate=2000.0), SiteRecord(1), "live", True, 0.0, (WARNING, "no_media")),
    # Just connected, or the program is off: no picture is no problem yet.
    (site_for(True, bitrate=2000.0, since=998.0), SiteRecord(1), "live", True, 0.0, (OK, None)),
    (site_for(True, bitrate=2000.0), SiteRecord(1), "scheduled", False, 0.0, (OK, None)),
    (site_for(True, bitrate=None), SiteRecord(1), "live", True, 0.0, (OK, None)),
    (site_for(False), SiteRecord(), "live", True, 1000.0 - 301, (CRITICAL, "late")),
    (site_for(False), SiteRecord(), "scheduled", False, 1000.0 - 299, (NOTICE, "offline")),
    (site_for(False), SiteRecord(), "scheduled", False, None, (NOTICE, "offline")),
    (site_for(False), SiteRecord(2), "live", True, 0.0, (WARNING, "dropped")),
    (site_for(False), SiteRecord(), "ended", False, 0.0, (OK, None)),
])
def test_problem_levels(site: dict[str, Any], record: SiteRecord, state: str, on_air: bool,
                        start: float | None, expected: tuple[int, str | None]) -> None:
    problem = Wall._problem(site, record, state, on_air, start, now=1000.0)
    assert (problem["level"], problem["reason"]) == expected


@pytest.mark.webrtc
async def test_the_wall_follows_rooms_that_connect_leave_and_come_back(
        service: Service) -> None:
    # Started six minutes ago: a room not in yet is late.
    session = await service.create_session("第二讲", scheduled_start=time.time() - 360)
    names = ["01 新碶街道分课堂", "02 大碶街道分课堂", "03 霞浦街道分课堂"]
    invitations = {name: await invite(service, session, name) for name in names}
    never = await invite(service, session, "99 柴桥街道分课堂")
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewers: dict[str, media.TestViewer] = {}
    generic: media.TestViewer | None = None
    ws = await wall(service, session["id"])
    try:
        for name in names:
            viewers[name] = await start_viewer(service.http, service.base, session["id"],
                                               invitations[name]["token"])
        generic = await start_viewer(service.http, service.base, session["id"],
                                     session["view_token"])
        status, _ = await call(service, "POST", f"{API}/room/headcount", {"count": 35},
                               token=invitations[names[1]]["token"])
        assert status == 204

        snapshot = await snapshot_until(
            ws, "three rooms receiving, RTT reported",
            lambda s: all(receiving(by_name(s)[name])
                          and by_name(s)[name]["quality"]["rtt"] is not None
                          for name in names))
        assert snapshot["session"]["on_air"] and snapshot["session"]["publisher_connected"]
        assert snapshot["session"]["ingress"]["video"]["bitrate"] > 0
        summary = snapshot["summary"]
        assert (summary["invited"], summary["connected"], summary["late"]) == (4, 3, 1)
        assert (summary["viewers"], summary["other_viewers"]) == (4, 1)  # the view token's
        # The late room first, in spite of its name; then the others by name.
        first = snapshot["sites"][0]
        assert (first["invitation_id"], first["connected"]) == (never["id"], False)
        assert (first["problem"]["level"], first["problem"]["reason"]) == (CRITICAL, "late")
        assert [site["name"] for site in snapshot["sites"][1:]] == names
        for name in names:
            site = by_name(snapshot)[name]
            assert site["problem"]["level"] == OK, site
            assert site["reconnects"] == 0 and site["viewers"] == 1
            assert site["connected_since"] <= snapshot["at"]
            quality = site["quality"]
            assert quality["frames_sent"] > 0 and quality["jitter"] is not None
            assert 0 <= quality["fraction_lost"] <= 1 and quality["packets_lost"] >= 0
        assert by_name(snapshot)[names[1]]["headcount"] == 35
        assert by_name(snapshot)[names[1]]["headcount_at"] is not None

        # The first room leaves (WHEP DELETE with its own link's token) …
        gone = names[0]
        await leave(service, viewers.pop(gone), invitations[gone]["token"])
        snapshot = await snapshot_until(ws, "the first room shown disconnected",
                                        lambda s: not by_name(s)[gone]["connected"])
        site = by_name(snapshot)[gone]
        assert site["quality"] is None and site["disconnected_since"] is not None
        assert (site["problem"]["level"], site["problem"]["reason"]) == (WARNING, "dropped")
        assert [s["name"] for s in snapshot["sites"][:2]] == ["99 柴桥街道分课堂", gone]
        assert snapshot["summary"]["connected"] == 2

        # … and comes back: one reconnect.
        viewers[gone] = await start_viewer(service.http, service.base, session["id"],
                                           invitations[gone]["token"])
        snapshot = await snapshot_until(ws, "the first room back, receiving",
                                        lambda s: receiving(by_name(s)[gone]))
        site = by_name(snapshot)[gone]
        assert site["reconnects"] == 1 and site["disconnected_since"] is None
        assert site["problem"]["level"] == OK
        assert all(by_name(snapshot)[name]["reconnects"] == 0 for name in names[1:])
        assert snapshot["summary"]["connected"] == 3

        # A second wall of the same session shares the snapshots: it gets the
        # latest at once.
        second = await wall(service, session["id"])
        try:
            shown = await snapshot_until(second, "the latest snapshot", lambda s: True,
                                         timeout=1.5)
            assert shown["summary"]["connected"] == 3
        finally:
            await second.close()
    finally:
        await ws.close()
        for viewer in viewers.values():
            await viewer.close()
        if generic is not None:
            await generic.close()
        await publisher.close()


# --------------------------------------------------------------------------
# Chromium

QUESTION = "请问<b>新质生产力</b>怎么理解？"

WALL_READY = """() => {
  const z = window.zhixing;
  if (!z || !z.snapshot || z.snapshot.summary.connected !== 5) return false;
  const tiles = [...document.querySelectorAll('.tile[data-connected=true]')];
  return tiles.length === 5 && z.snapshot.sites.every(
    (s) => !s.connected || (s.quality && s.quality.bitrate > 0 && s.quality.rtt !== null));
}"""


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_wall_in_chromium_with_five_rooms(admin_service: Service,
                                                     chromium: Chromium) -> None:
    service = admin_service
    session = await service.create_session("第三讲 新质生产力（第一批）",
                                           scheduled_start=time.time() - 420)
    rooms = [("新碶街道分课堂", "北仑区 / 新碶街道"), ("大碶街道分课堂", "北仑区 / 大碶街道"),
             ("霞浦街道分课堂", "北仑区 / 霞浦街道"), ("春晓街道分课堂", "北仑区 / 春晓街道"),
             ("白峰街道分课堂", "北仑区 / 白峰街道")]
    invitations = [await invite(service, session, name, path) for name, path in rooms]
    await invite(service, session, "柴桥街道分课堂", "北仑区 / 柴桥街道")  # never comes
    publisher = await start_publisher(service.http, service.base, session["id"],
                                      session["publish_token"])
    viewers: list[media.TestViewer] = []
    events: list[aiohttp.ClientWebSocketResponse] = []
    try:
        for invitation, count in zip(invitations, (35, 28, 0, 41, 19), strict=True):
            viewers.append(await start_viewer(service.http, service.base, session["id"],
                                              invitation["token"]))
            if count:
                await call(service, "POST", f"{API}/room/headcount", {"count": count},
                           token=invitation["token"])
        page = await open_console(chromium, service.base, "wall-5-rooms")
        await page.page.set_viewport_size({"width": 1280, "height": 820})
        await page.page.goto(f"{service.base}/admin/wall/{session['id']}")
        await chromium.wait_for_js(page, "five rooms connected and receiving", WALL_READY, 40)
        tiles = await page.evaluate(
            "() => [...document.querySelectorAll('.tile')].map((t) => ({"
            "  name: t.querySelector('.name').textContent, level: t.dataset.level,"
            "  text: t.textContent }))")
        assert len(tiles) == 6
        assert (tiles[0]["name"], tiles[0]["level"]) == ("柴桥街道分课堂", "3")  # late, first
        assert "迟到" in tiles[0]["text"]
        assert all("kbps" in tile["text"] or "Mbps" in tile["text"] for tile in tiles[1:])
        assert "已连接 5 / 邀请 6" in await page.evaluate(
            "() => document.getElementById('summary').textContent")

        # 研讨: two rooms raise their hands (霞浦 first) and ask, one with markup.
        events = [await connect_events(service, session["id"], invitations[i]["token"])
                  for i in (2, 0)]
        for ws in events:
            await events_call(ws, {"type": "hand", "raised": True})
        await events_call(events[0], {"type": "question", "text": QUESTION})
        await events_call(events[1], {"type": "question", "text": "基层怎么落实？"})
        await chromium.wait_for_js(page, "the hands and questions on the wall", """() => {
          const texts = (s) => [...document.querySelectorAll(s)].map((e) => e.textContent);
          return texts('#hands li .name').join('|') === '霞浦街道分课堂|新碶街道分课堂'
            && texts('#questions li .q-text').length === 2;
        }""", 15)
        shown = await page.evaluate("""() => ({
          questions: [...document.querySelectorAll('#questions li')].map((li) => ({
            name: li.querySelector('.name').textContent,
            text: li.querySelector('.q-text').textContent })),
          bold: document.querySelectorAll('#discussion b, .tile b').length,
          hands: [...document.querySelectorAll('.tile[data-hand=true] .mark.hand')]
            .map((m) => m.closest('.tile').querySelector('.name').textContent
                        + ' ' + m.textContent),
          summary: document.getElementById('summary').textContent })""")
        assert shown["questions"] == [
            {"name": "霞浦街道分课堂", "text": QUESTION},
            {"name": "新碶街道分课堂", "text": "基层怎么落实？"}]
        assert shown["bold"] == 0  # the markup is text, not an element
        assert sorted(h.split(" · ")[:2] for h in shown["hands"]) == [
            ["新碶街道分课堂 举手", "第 2 位"], ["霞浦街道分课堂 举手", "第 1 位"]]
        assert "举手 2" in shown["summary"] and "待回答提问 2" in shown["summary"]
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "wall-5-rooms.png"
        await page.page.screenshot(path=shot, full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        for ws in events:
            await ws.close()
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
