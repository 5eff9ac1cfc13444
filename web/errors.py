"""Errors as HTTP: the request-level taxonomy, and the one middleware that
maps it and the domain's errors (``classroom.errors``) to statuses.

A handler raises one of these, or lets a domain error through; the text is
safe to show to the client (it names what was wrong with the request, never
internals). Like Galène's ``httpError``: one place decides every status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from classroom import errors as domain
from classroom.errors import Forbidden, Gone, NotAuthorized

__all__ = ["Forbidden", "Gone", "NotAuthorized"]  # the domain's, raised by handlers too

logger = logging.getLogger(__name__)

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="zhixing"'}

# The domain's errors, each with its status (the most specific class first).
DOMAIN_STATUS: tuple[tuple[type[domain.DomainError], int], ...] = (
    (domain.Invalid, 422),
    (domain.Missing, 404),
    (domain.StateConflict, 409),
    (domain.NotAuthorized, 401),
    (domain.Forbidden, 403),
    (domain.Gone, 410),
)


class AppError(Exception):
    """An error of the request itself (its form, method, size, type)."""

    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(AppError):
    status = 400


class NotFound(AppError):
    status = 404


class MethodNotAllowed(AppError):
    status = 405


class NotAcceptable(AppError):
    status = 406


class Conflict(AppError):
    status = 409


class PayloadTooLarge(AppError):
    status = 413


class UnsupportedMediaType(AppError):
    status = 415


class Unprocessable(AppError):
    status = 422


def status_of(exc: AppError | domain.DomainError) -> int:
    """The HTTP status of a request or domain error."""
    if isinstance(exc, AppError):
        return exc.status
    for kind, status in DOMAIN_STATUS:
        if isinstance(exc, kind):
            return status
    return 400


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        return _error_response(request, exc.status, exc.message, exc.headers)
    except domain.DomainError as exc:
        headers = BEARER_CHALLENGE if isinstance(exc, NotAuthorized) else {}
        return _error_response(request, status_of(exc), exc.message, headers)
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
