"""The room wall (监控墙) over its WebSocket: connect, and read pushed snapshots."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.service import ADMIN_TOKEN, Service

API = "/api/v1"
SNAPSHOT_TIMEOUT = 30.0


def ws_url(service: Service, session_id: str) -> str:
    return f"{service.base}{API}/sessions/{session_id}/wall/ws"


async def wall(service: Service, session_id: str,
               **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
    headers = kwargs.pop("headers", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    ws: aiohttp.ClientWebSocketResponse = await service.http.ws_connect(
        ws_url(service, session_id), headers=headers, **kwargs)
    return ws


async def raw_snapshot_until(ws: aiohttp.ClientWebSocketResponse, what: str,
                             done: Callable[[dict[str, Any]], bool],
                             timeout: float = SNAPSHOT_TIMEOUT) -> tuple[str, dict[str, Any]]:
    """Read pushed snapshots until one satisfies ``done``: (its text as sent, parsed)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last snapshot:\n"
                                 + json.dumps(last, ensure_ascii=False, indent=1))
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            continue
        assert message.type == aiohttp.WSMsgType.TEXT, (message, last)
        parsed: dict[str, Any] = json.loads(message.data)
        last = parsed
        if done(parsed):
            return message.data, parsed
