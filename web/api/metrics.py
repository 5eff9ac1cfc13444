"""``/metrics`` over HTTP: who may read it, and the separate listener.

On the main port, with the bearer admin token or the metrics token
(``--metrics-token``). Optionally also without authentication on a separate
listener (``--metrics-listen``), meant for loopback or a monitoring network,
for a Prometheus that scrapes from the same machine.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from classroom.access.tokens import Role
from classroom.live.metrics import RelayMetrics
from web.api.spec import Reply, operation
from web.http import bearer_token
from web.keys import CONFIG, METRICS, TOKENS

logger = logging.getLogger(__name__)


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics)]


def _authorize(request: web.Request) -> None:
    """The bearer metrics token (if configured) or the admin token; else 401/403."""
    token = bearer_token(request)
    expected = request.app[CONFIG].metrics_token
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return
    request.app[TOKENS].require(token, Role.ADMIN, None)


async def _exposition(metrics: RelayMetrics) -> web.Response:
    return web.Response(body=await metrics.exposition(),
                        headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,
                                 "Cache-Control": "no-store"})


@operation("Prometheus metrics (text format 0.0.4; names in docs/metrics.md). With the bearer "
           "admin token or metrics token; --metrics-listen also serves it without "
           "authentication on a separate address", security=("bearer", "metricsToken"),
           errors=(401, 403),
           replies={200: Reply("the metrics",
                               media={"text/plain": {"schema": {"type": "string"}}})})
async def metrics(request: web.Request) -> web.Response:
    _authorize(request)
    return await _exposition(request.app[METRICS])


async def _unauthenticated(request: web.Request) -> web.Response:
    return await _exposition(request.app[METRICS])


async def context(app: web.Application) -> AsyncIterator[None]:
    """Serve the separate listener without authentication, if configured."""
    relay = app[METRICS]
    runner: web.AppRunner | None = None
    listen = app[CONFIG].metrics_listen
    try:
        if listen is not None:
            side = web.Application()
            side[METRICS] = relay
            side.add_routes([web.get("/metrics", _unauthenticated)])
            runner = web.AppRunner(side, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, listen[0], listen[1]).start()
            relay.listen_addresses = list(runner.addresses)
            logger.info("metrics without authentication on %s", relay.listen_addresses)
        yield
    finally:
        if runner is not None:
            await runner.cleanup()
