"""Fixtures for every layer's tests; the helpers they use are in tests/support/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import aioice.ice
import pytest
from aiohttp.test_utils import TestServer

from streaming import aiortc_glue
from tests.support.browser import Chromium, artifact_name, open_chromium
from tests.support.catalog import World, make_world
from tests.support.service import ADMIN_PASSWORD, ADMIN_TOKEN, Service
from web.app import create_app
from web.config import Config


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN)
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, app)
    await server.close()


@pytest.fixture
async def admin_service(tmp_path: Path) -> AsyncIterator[Service]:
    """The service with the admin account's password set (ADMIN_PASSWORD), and a
    client that keeps cookies (for logging in)."""
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN,
                    admin_password=ADMIN_PASSWORD)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    await server.close()


@pytest.fixture
async def world(service: Service) -> World:
    return await make_world(service)


@pytest.fixture
async def chromium(request: pytest.FixtureRequest) -> AsyncIterator[Chromium]:
    """A headless Chromium for this test only (see tests/support/browser.py)."""
    async with open_chromium(artifact_name(request.node.name)) as browser:
        yield browser


@pytest.fixture
def loopback_candidates() -> Iterator[None]:
    """This process's aiortc peers offer 127.0.0.1, for tests whose server is
    another process (an app made in this process sets it itself)."""
    before = aioice.ice.get_host_addresses
    aiortc_glue.configure_ice(["127.0.0.1"])
    yield
    aioice.ice.get_host_addresses = before
