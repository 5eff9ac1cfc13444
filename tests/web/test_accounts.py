"""Admin accounts: password login, the session cookie, CSRF, the login rate limit, the CLI."""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from classroom.access.accounts import SESSION_SECONDS, Accounts, LoginLimiter
from classroom.db import Database
from tests.support.fakes import FakeClock
from tests.support.service import ADMIN_TOKEN, Service
from web import cli
from web.app import DATABASE_FILE, create_app
from web.auth import COOKIE
from web.config import Config
from web.keys import ACCOUNTS, LOGIN_LIMITER

PASSWORD = "test-password"


@pytest.fixture
async def accounts_service(tmp_path: Path) -> AsyncIterator[Service]:
    """The service with Config.admin_password set (as ZHIXING_ADMIN_PASSWORD would)."""
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN, admin_password=PASSWORD)
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    # unsafe=True: keep cookies for an IP address host such as 127.0.0.1.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, app)
    await server.close()


async def log_in(service: Service, password: str = PASSWORD, username: str = "admin",
                 headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    async with service.http.post(f"{service.base}/login", allow_redirects=False,
                                 data={"username": username, "password": password},
                                 headers=headers) as response:
        await response.read()
        return response


def set_cookie(response: aiohttp.ClientResponse) -> SimpleCookie | None:
    header = response.headers.get("Set-Cookie")
    if header is None:
        return None
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(header)
    return cookie


async def me(service: Service, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with service.http.get(f"{service.base}/api/v1/me", headers=headers) as response:
        return response.status, await response.json()


async def create_unit(service: Service, headers: dict[str, str] | None = None) -> int:
    async with service.http.post(f"{service.base}/api/v1/units", json={"name": "专题"},
                                 headers=headers) as response:
        return response.status


async def unit_count(service: Service) -> int:
    async with service.http.get(f"{service.base}/api/v1/units", headers=service.admin) as r:
        return len((await r.json())["units"])


# --------------------------------------------------------------------------
# logging in


async def test_the_login_page_is_served(accounts_service: Service) -> None:
    async with accounts_service.http.get(f"{accounts_service.base}/login") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        text = await response.text()
    assert "登录" in text and "Log in" in text
    assert 'name="username"' in text and 'name="password"' in text
    assert "http://" not in text and "https://" not in text  # no external resources


async def test_login_sets_a_strict_http_only_cookie(accounts_service: Service) -> None:
    response = await log_in(accounts_service)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    cookie = set_cookie(response)
    assert cookie is not None and COOKIE in cookie
    morsel = cookie[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert int(morsel["max-age"]) == SESSION_SECONDS
    assert len(morsel.value) >= 43  # 32 random bytes, base64url
    status, body = await me(accounts_service)
    assert status == 200
    assert body["username"] == "admin"
    assert isinstance(body["csrf_token"], str) and body["csrf_token"]
    # Only the token's SHA-256 digest is stored.
    db = accounts_service.app[ACCOUNTS].db
    rows = db.all("SELECT id_digest FROM login_sessions")
    assert len(rows) == 1 and len(rows[0]["id_digest"]) == 32
    assert morsel.value.encode() not in rows[0]["id_digest"]


async def test_me_with_the_bearer_token_has_no_csrf_token(accounts_service: Service) -> None:
    assert await me(accounts_service, accounts_service.admin) == (
        200, {"username": None, "csrf_token": None, "role": "city_admin", "org_node_id": 1,
              "org_path": "", "org_name": "全市"})
    status, _ = await me(accounts_service)
    assert status == 401


@pytest.mark.parametrize(("username", "password"),
                         [("admin", "wrong-password"), ("nobody", PASSWORD), ("admin", "")])
async def test_a_wrong_login_is_401_without_a_cookie(
    accounts_service: Service, username: str, password: str
) -> None:
    async with accounts_service.http.post(
        f"{accounts_service.base}/login", allow_redirects=False,
        data={"username": username, "password": password}) as response:
        assert response.status == 401
        assert "Set-Cookie" not in response.headers
        text = await response.text()
    # The same message whether or not the user exists.
    assert "用户名或密码错误" in text and "Wrong user name or password" in text
    assert "<form" in text
    status, _ = await me(accounts_service)
    assert status == 401


async def test_a_cross_origin_login_is_refused(accounts_service: Service) -> None:
    for headers in ({"Origin": "http://evil.example"},
                    {"Referer": "http://evil.example/login"},
                    {"Origin": "null"}):
        response = await log_in(accounts_service, headers=headers)
        assert response.status == 403, headers
        assert set_cookie(response) is None
    response = await log_in(accounts_service, headers={"Origin": accounts_service.base})
    assert response.status == 303


# --------------------------------------------------------------------------
# the login rate limit


def test_the_limiter_blocks_after_five_failures_until_the_window_passes() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock=clock)
    for _ in range(4):
        assert limiter.retry_after("10.0.0.1", "admin") is None
        limiter.failed("10.0.0.1", "admin")
        clock.now += 10
    limiter.failed("10.0.0.1", "admin")  # the fifth, 40 s after the first
    assert limiter.retry_after("10.0.0.1", "admin") == 600 - 40
    # Other pairs are not affected.
    assert limiter.retry_after("10.0.0.2", "admin") is None
    assert limiter.retry_after("10.0.0.1", "other") is None
    clock.now += 600 - 40 - 1
    assert limiter.retry_after("10.0.0.1", "admin") == 1
    clock.now += 1  # the first failure leaves the window
    assert limiter.retry_after("10.0.0.1", "admin") is None


def test_the_limiter_forgets_after_a_success_and_old_failures() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock=clock)
    for _ in range(4):
        limiter.failed("a", "admin")
    limiter.succeeded("a", "admin")
    limiter.failed("a", "admin")
    assert limiter.retry_after("a", "admin") is None
    clock.now += 601
    for _ in range(4):
        limiter.failed("a", "admin")
    assert limiter.retry_after("a", "admin") is None  # the earlier failure expired


def test_the_limiter_stays_small() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock=clock, max_keys=10)
    for n in range(100):
        limiter.failed("a", f"user{n}")
    assert len(limiter._failures) <= 10


async def test_failed_logins_are_rate_limited(accounts_service: Service) -> None:
    clock = FakeClock()
    accounts_service.app[LOGIN_LIMITER].clock = clock
    for _ in range(5):
        assert (await log_in(accounts_service, "wrong-password")).status == 401
    # Blocked now, even with the right password.
    response = await log_in(accounts_service)
    assert response.status == 429
    assert int(response.headers["Retry-After"]) == 600
    assert set_cookie(response) is None
    clock.now += 601
    response = await log_in(accounts_service)
    assert response.status == 303
    assert set_cookie(response) is not None


# --------------------------------------------------------------------------
# CSRF, logout, expiry


async def test_cookie_writes_need_the_csrf_token(accounts_service: Service) -> None:
    await log_in(accounts_service)
    _, body = await me(accounts_service)
    csrf = body["csrf_token"]
    assert await create_unit(accounts_service) == 403
    assert await create_unit(accounts_service, {"X-CSRF-Token": csrf + "x"}) == 403
    async with accounts_service.http.post(f"{accounts_service.base}/api/v1/units",
                                          json={"name": "专题"}) as response:
        assert (await response.json())["error"] == "CSRF token missing or wrong"
    assert await unit_count(accounts_service) == 0
    assert await create_unit(accounts_service, {"X-CSRF-Token": csrf}) == 201
    assert await unit_count(accounts_service) == 1
    # Reads need no CSRF token.
    async with accounts_service.http.get(f"{accounts_service.base}/api/v1/units") as response:
        assert response.status == 200


async def test_bearer_writes_need_no_csrf_token(service: Service) -> None:
    assert await create_unit(service, service.admin) == 201


async def test_logout_invalidates_the_cookie(accounts_service: Service) -> None:
    await log_in(accounts_service)
    token = accounts_service.http.cookie_jar.filter_cookies(
        URL(accounts_service.base))[COOKIE].value
    assert (await me(accounts_service))[0] == 200
    async with accounts_service.http.post(f"{accounts_service.base}/logout",
                                          allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/login"
    assert (await me(accounts_service))[0] == 401
    # The old cookie value is dead on the server too, not just dropped by the browser.
    assert (await me(accounts_service, {"Cookie": f"{COOKIE}={token}"}))[0] == 401
    assert accounts_service.app[ACCOUNTS].db.all("SELECT * FROM login_sessions") == []


async def test_an_expired_login_is_401(accounts_service: Service) -> None:
    await log_in(accounts_service)
    assert (await me(accounts_service))[0] == 200
    accounts = accounts_service.app[ACCOUNTS]
    accounts.clock = lambda: time.time() + SESSION_SECONDS + 1
    status, body = await me(accounts_service)
    assert status == 401
    assert "log in again" in body["error"]
    assert accounts.db.all("SELECT * FROM login_sessions") == []


async def test_a_bogus_cookie_is_401(accounts_service: Service) -> None:
    assert (await me(accounts_service, {"Cookie": f"{COOKIE}=bogus"}))[0] == 401


# --------------------------------------------------------------------------
# the first account and stored passwords


async def test_passwords_are_stored_as_scrypt_hashes(accounts_service: Service) -> None:
    rows = accounts_service.app[ACCOUNTS].db.all("SELECT username, password_hash FROM admins")
    assert [row["username"] for row in rows] == ["admin"]
    stored = rows[0]["password_hash"]
    assert stored.startswith("scrypt$")
    assert PASSWORD not in stored
    assert accounts_service.app[ACCOUNTS].generated_password is None


async def test_without_a_password_one_is_generated(service: Service) -> None:
    accounts = service.app[ACCOUNTS]
    generated = accounts.generated_password
    assert generated is not None and len(generated) >= 12
    assert accounts.verify("admin", generated) is not None
    assert generated not in accounts.password_hash("admin")


def test_the_first_account_is_created_only_once(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    db.migrate()
    accounts = Accounts(db)
    assert accounts.ensure_admin(None) is not None
    assert accounts.ensure_admin("another-password") is None
    assert accounts.count() == 1
    assert accounts.verify("admin", "another-password") is None
    db.close()


# --------------------------------------------------------------------------
# zhixing admin set-password


def make_data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    db = Database(data / DATABASE_FILE)
    db.migrate()
    accounts = Accounts(db)
    accounts.ensure_admin(PASSWORD)
    token, _ = accounts.start_session(accounts.verify("admin", PASSWORD) or pytest.fail())
    assert accounts.session(token) is not None
    db.close()
    return data


def test_set_password_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = make_data_dir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-new-password\n"))
    assert cli.main(["admin", "set-password", "admin", "--data", str(data)]) == 0
    assert "changed" in capsys.readouterr().out
    db = Database(data / DATABASE_FILE)
    accounts = Accounts(db)
    assert accounts.verify("admin", "a-new-password") is not None
    assert accounts.verify("admin", PASSWORD) is None
    assert (accounts.password_hash("admin") or "").startswith("scrypt$")
    assert db.all("SELECT * FROM login_sessions") == []  # logged out everywhere
    # The audit log says so.
    assert [(e["username"], e["action"], e["object_id"]) for e in db.all(
        "SELECT * FROM audit_log")] == [("(command line)", "set-password", "admin")]
    db.close()


@pytest.mark.parametrize(("username", "stdin", "message"), [
    ("nobody", "a-new-password\n", "no admin account"),
    ("admin", "short\n", "8 to"),
    ("admin", "", "8 to"),
])
def test_set_password_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str], username: str,
                              stdin: str, message: str) -> None:
    data = make_data_dir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert cli.main(["admin", "set-password", username, "--data", str(data)]) == 1
    assert message in capsys.readouterr().err
    with sqlite3.connect(data / DATABASE_FILE) as conn:
        assert conn.execute("SELECT COUNT(*) FROM login_sessions").fetchone()[0] == 1
    conn.close()


def test_set_password_without_a_database(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["admin", "set-password", "admin", "--data", str(tmp_path / "none")]) == 1
    assert "no database" in capsys.readouterr().err


def test_serve_help_documents_the_admin_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "ZHIXING_ADMIN_PASSWORD" in capsys.readouterr().out
