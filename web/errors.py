"""The error taxonomy, mapped to HTTP in one middleware.

A handler raises one of these; the text is safe to show to the client (it
names what was wrong with the request, never internals).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

logger = logging.getLogger(__name__)


class AppError(Exception):
    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(AppError):
    status = 400


class NotAuthorized(AppError):
    """No credentials, or credentials that are not valid anywhere."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": 'Bearer realm="zhixing"'})


class Forbidden(AppError):
    """Valid credentials, but not for this resource or role."""

    status = 403


class NotFound(AppError):
    status = 404


class MethodNotAllowed(AppError):
    status = 405


class NotAcceptable(AppError):
    status = 406


class Conflict(AppError):
    status = 409


class Gone(AppError):
    status = 410


class PayloadTooLarge(AppError):
    status = 413


class UnsupportedMediaType(AppError):
    status = 415


class Unprocessable(AppError):
    status = 422


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        return _error_response(request, exc.status, exc.message, exc.headers)
    except web.HTTPRequestEntityTooLarge:
        return _error_response(request, 413, "request body too large", {})
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error_response(request, exc.status, exc.reason, dict(exc.headers))
        raise


def _error_response(
    request: web.Request, status: int, message: str, headers: dict[str, str]
) -> web.Response:
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if request.path.startswith("/api/"):
        return web.json_response({"error": message}, status=status, headers=headers)
    return web.Response(text=message + "\n", status=status, headers=headers)
