"""The access log, with link tokens taken out of logged paths.

A room's link carries its token in the path (``/join/<token>``), and so do
a library link (``/library/k/<token>``) and a learner's personal link
(``/learn/<token>``); a log line must not hand them to
whoever reads the logs.
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

_SECRET_PATH = re.compile(r"^/(join|library/k|learn)/[^/]+")


def redact(path: str) -> str:
    return _SECRET_PATH.sub(r"/\1/…", path)


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %d %.3fs', request.remote, request.method,
                         redact(request.path), response.status, time)
