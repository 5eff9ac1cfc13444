"""The audit log (操作日志): who changed what, which object, when, from where.

Every change anyone makes through the API is one row (the web layer writes
it when a change succeeded). Rows are never changed or deleted by the
application. City admins read them, filtered, and export them as CSV.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from classroom.db import Database

MAX_DETAIL = 500
MAX_LIST = 1000


@dataclass(frozen=True)
class Entry:
    account_id: int | None
    username: str
    role: str
    action: str  # e.g. "create", "update", "delete", "login"
    object_type: str  # e.g. "session", "site", "org_node"
    object_id: str
    detail: str = ""
    address: str = ""


class AuditLog:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def record(self, entry: Entry) -> None:
        self.db.execute(
            "INSERT INTO audit_log (at, account_id, username, role, action, object_type, "
            "object_id, detail, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self._clock(), entry.account_id, entry.username[:200], entry.role, entry.action,
             entry.object_type, entry.object_id[:200], entry.detail[:MAX_DETAIL],
             entry.address[:100]))

    @staticmethod
    def _where(since: float | None, until: float | None,
               username: str | None) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if until is not None:
            where.append("at < ?")
            params.append(until)
        if username:
            where.append("username = ?")
            params.append(username)
        return (" WHERE " + " AND ".join(where)) if where else "", params

    def entries(self, *, since: float | None = None, until: float | None = None,
                username: str | None = None, limit: int = MAX_LIST) -> list[dict[str, Any]]:
        """The newest first, at most ``limit``."""
        where, params = self._where(since, until, username)
        return self.db.all(f"SELECT * FROM audit_log{where} ORDER BY at DESC, id DESC LIMIT ?",
                           (*params, limit))

    def stream(self, *, since: float | None = None, until: float | None = None,
               username: str | None = None) -> Generator[dict[str, Any], None, None]:
        """Every matching row, oldest first, read from one cursor (for an export)."""
        where, params = self._where(since, until, username)
        conn = self.db.reader()
        try:
            cursor = conn.execute(f"SELECT * FROM audit_log{where} ORDER BY at, id", params)
            while True:
                rows = cursor.fetchmany(500)
                if not rows:
                    return
                for row in rows:
                    yield dict(row)
        finally:
            conn.close()
