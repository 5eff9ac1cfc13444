"""Admin accounts: creation, password login, login sessions and a login rate limit.

Passwords are stored as scrypt hashes (web.passwords). A login session is a
random 32-byte token held by the browser in a cookie; the database keeps only
its SHA-256 digest, with the session's CSRF token and expiry.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from classroom.access.passwords import hash_password, verify_password
from classroom.db import Database

DEFAULT_USERNAME = "admin"
SESSION_SECONDS = 12 * 3600
MAX_USERNAME = 200
MAX_PASSWORD = 1024
MIN_PASSWORD = 8

Clock = Callable[[], float]

# Verified against when the user name is unknown, so that a login for a
# missing account costs the same time as one with a wrong password.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class UnknownUser(LookupError):
    """No admin account by that name."""


@dataclass(frozen=True)
class Admin:
    id: int
    username: str


@dataclass(frozen=True)
class LoginSession:
    admin: Admin
    csrf_token: str
    expires_at: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def generate_password() -> str:
    return secrets.token_urlsafe(12)


class Accounts:
    """Admin accounts and login sessions in the catalog database."""

    def __init__(self, db: Database, clock: Clock = time.time) -> None:
        self.db = db
        self.clock = clock
        # Set when the first account was created with a generated password,
        # for the start-up banner to print once.
        self.generated_password: str | None = None

    def count(self) -> int:
        row = self.db.one("SELECT COUNT(*) AS n FROM admins")
        return int(row["n"]) if row else 0

    def ensure_admin(self, password: str | None) -> str | None:
        """Create the account "admin" if there is none at all.

        Uses ``password`` (ZHIXING_ADMIN_PASSWORD) if given, else generates
        one; returns the generated password (``None`` if none was generated).
        """
        if self.count():
            return None
        generated = None if password else generate_password()
        self.create(DEFAULT_USERNAME, password or generated or "")
        self.generated_password = generated
        return generated

    def create(self, username: str, password: str) -> Admin:
        if not password:
            raise ValueError("the password must not be empty")
        admin_id = self.db.execute(
            "INSERT INTO admins (username, password_hash, created_at) VALUES (?, ?, ?)",
            (username, hash_password(password), self.clock()))
        return Admin(admin_id, username)

    def set_password(self, username: str, password: str) -> None:
        """Replace the password and end every login session of that account."""
        if not password:
            raise ValueError("the password must not be empty")
        row = self.db.one("SELECT id FROM admins WHERE username = ?", (username,))
        if row is None:
            raise UnknownUser(username)
        with self.db.transaction():
            self.db.execute("UPDATE admins SET password_hash = ? WHERE id = ?",
                            (hash_password(password), row["id"]))
            self.db.execute("DELETE FROM login_sessions WHERE admin_id = ?", (row["id"],))

    def password_hash(self, username: str) -> str | None:
        row = self.db.one("SELECT password_hash FROM admins WHERE username = ?", (username,))
        return str(row["password_hash"]) if row else None

    def find(self, username: str) -> tuple[Admin, str] | None:
        """The account and its stored hash (checking is up to the caller, see verify)."""
        if len(username) > MAX_USERNAME:
            return None
        row = self.db.one("SELECT id, username, password_hash FROM admins WHERE username = ?",
                          (username,))
        if row is None:
            return None
        return Admin(int(row["id"]), str(row["username"])), str(row["password_hash"])

    def verify(self, username: str, password: str) -> Admin | None:
        """The account if the password is right; ``None`` otherwise (same cost either way).

        Slow (scrypt): call it off the event loop, or use ``find`` there and
        ``check_password`` in a thread.
        """
        found = self.find(username)
        if not check_password(password, found) or found is None:
            return None
        return found[0]

    def start_session(self, admin: Admin) -> tuple[str, LoginSession]:
        """A new login session: (cookie token, session). Expired ones are swept."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        session = LoginSession(admin, secrets.token_urlsafe(24), now + SESSION_SECONDS)
        with self.db.transaction():
            self.db.execute("DELETE FROM login_sessions WHERE expires_at <= ?", (now,))
            self.db.execute(
                "INSERT INTO login_sessions (id_digest, admin_id, csrf_token, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (_digest(token), admin.id, session.csrf_token, session.expires_at))
        return token, session

    def session(self, token: str) -> LoginSession | None:
        """The unexpired login session for a cookie token, if any."""
        if not token or len(token) > 200:
            return None
        row = self.db.one(
            "SELECT s.csrf_token, s.expires_at, a.id, a.username FROM login_sessions s "
            "JOIN admins a ON a.id = s.admin_id WHERE s.id_digest = ?", (_digest(token),))
        if row is None:
            return None
        if row["expires_at"] <= self.clock():
            self.end_session(token)
            return None
        return LoginSession(Admin(int(row["id"]), str(row["username"])),
                            str(row["csrf_token"]), float(row["expires_at"]))

    def end_session(self, token: str) -> None:
        self.db.execute("DELETE FROM login_sessions WHERE id_digest = ?", (_digest(token),))


def check_password(password: str, found: tuple[Admin, str] | None) -> bool:
    """scrypt-verify ``password`` against ``found``'s hash (a dummy one if not found)."""
    if len(password) > MAX_PASSWORD:
        return False
    stored = found[1] if found else _DUMMY_HASH
    ok = verify_password(password, stored)
    return ok and found is not None


class LoginLimiter:
    """Failed logins per (client address, user name) in a sliding window.

    After ``limit`` failures within ``window`` seconds, ``retry_after`` says
    how long to wait until the oldest of them leaves the window.
    """

    def __init__(self, clock: Clock = time.monotonic, limit: int = 5,
                 window: float = 600.0, max_keys: int = 10_000) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str]) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        cutoff = self.clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, address: str, username: str) -> int | None:
        """Seconds to wait (at least 1) if this pair is blocked now, else ``None``."""
        times = self._recent((address, username))
        if times is None or len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window - self.clock()))

    def failed(self, address: str, username: str) -> None:
        key = (address, username)
        if key not in self._failures and len(self._failures) >= self.max_keys:
            self._sweep()
        times = self._recent(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(self.clock())

    def succeeded(self, address: str, username: str) -> None:
        self._failures.pop((address, username), None)

    def _sweep(self) -> None:
        for key in list(self._failures):
            self._recent(key)
        while len(self._failures) >= self.max_keys:  # still full: forget the oldest pair
            del self._failures[next(iter(self._failures))]
