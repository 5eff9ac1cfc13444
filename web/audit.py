"""The audit log's writer: every change that succeeded, as one row.

A middleware, so no route can forget it: after a POST, PATCH, PUT or
DELETE under ``/api/v1/`` (and a login or logout) answered below 400, it
records who (the caller ``web.auth`` set on the request), what (the method
and the route), which object (the route's ids, or the new object's from the
``Location`` or the reply), when, and from which address. A refused request
changed nothing and is not a change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from classroom.access.audit import Entry
from web.auth import CALLER, UNSAFE_METHODS, Caller
from web.keys import SCHOOL

logger = logging.getLogger(__name__)

API = "/api/v1/"
VERBS = {"POST": "create", "PATCH": "update", "PUT": "update", "DELETE": "delete"}
# What names an object in a reply, in the order looked for.
NAMES = ("title", "name", "username", "label", "site_name")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.method in UNSAFE_METHODS and response.status < 400 and (
            request.path.startswith(API) or request.path in ("/login", "/logout")):
        try:
            _record(request, response)
        except Exception:  # the change is made: a failed audit row must not undo its reply
            logger.exception("audit log: could not record %s %s", request.method, request.path)
    return response


def _record(request: web.Request, response: web.StreamResponse) -> None:
    caller: Caller | None = request.get(CALLER)
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource else request.path
    reply = _reply(response)
    if request.path in ("/login", "/logout"):
        if caller is None:
            return  # a logout without a login
        action, object_type, object_id = request.path[1:], "account", caller.username or ""
    else:
        action = f"{VERBS.get(request.method, request.method.lower())} {route}"
        object_type = route[len(API):].split("/")[0] if route.startswith(API) else route
        ids = [str(value) for value in info.values()]
        location = response.headers.get("Location", "")
        if location.startswith(API):
            ids.append(location.rsplit("/", 1)[-1])
        elif isinstance(reply, dict) and isinstance(reply.get("id"), str | int) \
                and str(reply["id"]) not in ids:
            ids.append(str(reply["id"]))
        object_id = "/".join(ids)
    detail = ""
    if isinstance(reply, dict):
        for name in NAMES:
            if isinstance(reply.get(name), str):
                detail = reply[name]
                break
        if isinstance(reply.get("imported"), int):
            detail = f"imported {reply['imported']}"
    scope = caller.scope if caller is not None else None
    request.app[SCHOOL].audit.record(Entry(
        account_id=scope.account_id if scope else None,
        username=(caller.username or "(admin token)") if caller else "(unknown)",
        role=scope.role.value if scope else "",
        action=action, object_type=object_type, object_id=object_id, detail=detail,
        address=request.remote or ""))


def _reply(response: web.StreamResponse) -> Any:
    """The reply's JSON object, if it is a small JSON reply."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    body = response.body
    if not isinstance(body, bytes) or len(body) > 256 * 1024:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
