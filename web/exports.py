"""CSV downloads for Excel as organizers use it: UTF-8 with a byte-order mark
(else Excel reads Chinese as mojibake), CRLF lines, a Chinese file name in
``filename*`` (RFC 6266 / 5987) with an ASCII fallback, and text cells that
would start a formula made inert. Streamed as chunks while a cursor is read,
so a year of rows costs the memory of a few rows. Shared by the reports and
the audit log.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web

FLUSH_BYTES = 16 * 1024
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def _cell(value: Any) -> Any:
    """A text cell that Excel would take for a formula starts with a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class CsvExport:
    """A streamed CSV download: BOM and header first, rows as they come."""

    def __init__(self, request: web.Request, filename: str, fallback: str) -> None:
        self.request = request
        safe = UNSAFE_FILENAME.sub("_", filename).strip() or fallback
        disposition = (f'attachment; filename="{fallback}"; '
                       f"filename*=UTF-8''{quote(safe, safe='')}")
        self.response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": disposition,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        })
        self.response.enable_chunked_encoding()
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    async def start(self, header: Sequence[str]) -> None:
        await self.response.prepare(self.request)
        self._buffer.write("\ufeff")
        await self.row(header)

    async def row(self, values: Sequence[Any]) -> None:
        self._writer.writerow([_cell(value) for value in values])
        if self._buffer.tell() >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        data = self._buffer.getvalue().encode("utf-8")
        self._buffer.seek(0)
        self._buffer.truncate()
        if data:
            await self.response.write(data)

    async def finish(self) -> web.StreamResponse:
        await self._flush()
        await self.response.write_eof()
        return self.response
