"""The audit log over HTTP (city admins only): the newest changes as JSON,
or every change of a period as a CSV download."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Generator
from itertools import islice
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field

from web import i18n
from web.api.spec import ABSENT, Reply, Shape, Validated, operation
from web.auth import require_city
from web.exports import CsvExport
from web.keys import SCHOOL

CSV = {"text/csv": {"schema": {"type": "string"}}}
COLUMNS = ("at", "username", "role", "action", "object_type", "object_id", "detail",
           "address")

# ---------------------------------------------------------------------- the contract


class AuditEntry(Shape):
    component: ClassVar[bool] = True
    id: int
    at: float = Field(description="unix time")
    account_id: int | None = Field(description="null for the admin token")
    username: str
    role: str
    action: str = Field(description="create / update / delete and the route, or login / logout")
    object_type: str = Field(description="the resource: sessions, sites, org, accounts, ...")
    object_id: str = Field(description="the route's ids, '/'-joined")
    detail: str = Field(description="the object's name or title, as the reply gave it")
    address: str = Field(description="the client's address")


class AuditQuery(Validated):
    since: float = Field(ABSENT, ge=0, description="unix time, included")
    until: float = Field(ABSENT, ge=0, description="unix time, excluded")
    username: str = Field(ABSENT, max_length=200)
    format: Literal["json", "csv"] = Field(
        "json", description="csv: every matching row (UTF-8 with BOM, opens in Excel); json: "
                            "the newest 1000")
    utc_offset: int = Field(ABSENT, ge=-720, le=840,
                            description="minutes east of UTC for the CSV's times")
    refusals: ClassVar[dict[str, str]] = {
        "since": "error.not_a_number", "until": "error.not_a_number",
        "username": "error.too_long", "format": "error.bad_choice",
        "utc_offset": "error.bad_utc_offset"}


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/audit", audit_log)]


def _query(request: web.Request) -> AuditQuery:
    raw: dict[str, Any] = {k: v for k, v in request.query.items() if v != ""}
    for name in ("since", "until", "utc_offset"):
        if name in raw:
            with contextlib.suppress(ValueError):  # left as text: the model refuses it
                raw[name] = float(raw[name]) if name != "utc_offset" else int(raw[name])
    return AuditQuery.parse(raw)


@operation("The audit log: who changed what, which object, when, from where (city admins)",
           query=(AuditQuery,), errors=(401, 403, 422),
           replies={200: Reply("{entries: [AuditEntry]} newest first, or CSV", AuditEntry,
                               listed="entries", media=CSV)})
async def audit_log(request: web.Request) -> web.StreamResponse:
    require_city(request)
    query = _query(request)
    log = request.app[SCHOOL].audit
    given = query.model_fields_set
    since = query.since if "since" in given else None
    until = query.until if "until" in given else None
    username = query.username if "username" in given else None
    if query.format == "json":
        return web.json_response(
            {"entries": log.entries(since=since, until=until, username=username)},
            headers={"Cache-Control": "no-store"})
    tz = (dt.timezone(dt.timedelta(minutes=query.utc_offset))
          if "utc_offset" in query.model_fields_set else dt.datetime.now().astimezone().tzinfo)
    texts = i18n.catalog(i18n.language_of(request))
    day = dt.datetime.now(tz).strftime("%Y-%m-%d")
    export = CsvExport(request, texts["audit.file"].format(date=day) + ".csv",
                       f"audit-{day}.csv")
    await export.start([texts[f"audit.csv.{name}"] for name in COLUMNS])
    rows = log.stream(since=since, until=until, username=username)
    try:
        while True:
            batch = await asyncio.to_thread(_take, rows, 200)
            if not batch:
                break
            for row in batch:
                at = dt.datetime.fromtimestamp(row["at"], tz).strftime("%Y-%m-%d %H:%M:%S")
                await export.row([at, *(row[name] for name in COLUMNS[1:])])
    finally:
        rows.close()
    return await export.finish()


def _take(rows: Generator[dict[str, Any], None, None], count: int) -> list[dict[str, Any]]:
    return list(islice(rows, count))
