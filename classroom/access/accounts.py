"""Accounts: creation, roles, password login, login sessions and a login rate limit.

An account has a role and an organization node (classroom.access.roles); a
disabled account cannot log in and its login sessions end.

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
from classroom.access.roles import ROLES, AccountRole
from classroom.db import ROOT_NODE, Database
from classroom.errors import Invalid, Missing, StateConflict

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
    role: AccountRole = AccountRole.CITY_ADMIN
    org_node_id: int = ROOT_NODE


ACCOUNT_COLUMNS = "a.id, a.username, a.role, a.org_node_id, a.disabled_at, a.created_at"


def _admin(row: dict[str, object]) -> Admin:
    return Admin(int(str(row["id"])), str(row["username"]), AccountRole(str(row["role"])),
                 int(str(row["org_node_id"] or ROOT_NODE)))


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

    def create(self, username: str, password: str,
               role: AccountRole = AccountRole.CITY_ADMIN,
               org_node_id: int = ROOT_NODE) -> Admin:
        if not password:
            raise ValueError("the password must not be empty")
        admin_id = self.db.execute(
            "INSERT INTO admins (username, password_hash, created_at, role, org_node_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (username, hash_password(password), self.clock(), role.value, org_node_id))
        return Admin(admin_id, username, role, org_node_id)

    # ------------------------------------------------------------ management

    def account(self, account_id: int) -> dict[str, object]:
        row = self.db.one(f"SELECT {ACCOUNT_COLUMNS} FROM admins a WHERE a.id = ?",
                          (account_id,))
        if row is None:
            raise Missing("no such account")
        return row

    def accounts(self) -> list[dict[str, object]]:
        return self.db.all(f"SELECT {ACCOUNT_COLUMNS} FROM admins a ORDER BY a.username")

    @staticmethod
    def check_fields(data: dict[str, object], partial: bool) -> dict[str, object]:
        """username (new accounts), role, org_node_id, password, disabled: every
        bad field at once (Invalid)."""
        errors: dict[str, str] = {}
        values: dict[str, object] = {}
        if not partial:
            name = data.get("username")
            if not isinstance(name, str) or not name.strip():
                errors["username"] = "error.required"
            elif len(name.strip()) > MAX_USERNAME or any(ord(c) < 33 for c in name.strip()):
                errors["username"] = "error.bad_username"
            else:
                values["username"] = name.strip()
        if "role" in data or not partial:
            if data.get("role") not in ROLES:
                errors["role"] = "error.bad_choice"
            else:
                values["role"] = data["role"]
        if "org_node_id" in data:
            node = data["org_node_id"]
            if isinstance(node, bool) or not isinstance(node, int) or node <= 0:
                errors["org_node_id"] = "error.not_a_number"
            else:
                values["org_node_id"] = node
        if "password" in data and data["password"] not in (None, ""):
            password = data["password"]
            if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
                errors["password"] = "error.bad_password"
            else:
                values["password"] = password
        if "disabled" in data:
            if not isinstance(data["disabled"], bool):
                errors["disabled"] = "error.not_a_boolean"
            else:
                values["disabled"] = data["disabled"]
        if errors:
            raise Invalid(errors)
        return values

    def add(self, values: dict[str, object]) -> tuple[dict[str, object], str | None]:
        """A new account from checked values; (row, the generated password or None)."""
        username = str(values["username"])
        if self.db.one("SELECT 1 FROM admins WHERE username = ?", (username,)):
            raise Invalid({"username": "error.duplicate_username"})
        generated = None if values.get("password") else generate_password()
        admin = self.create(username, str(values.get("password") or generated),
                            AccountRole(str(values["role"])),
                            int(str(values.get("org_node_id", ROOT_NODE))))
        return self.account(admin.id), generated

    def change(self, account_id: int, values: dict[str, object]) -> dict[str, object]:
        """Role, node, disabled (a disabled account's login sessions end)."""
        current = self.account(account_id)
        role = values.get("role", current["role"])
        disabled = values.get("disabled", current["disabled_at"] is not None)
        if current["role"] == AccountRole.CITY_ADMIN and (
                role != AccountRole.CITY_ADMIN or disabled) and self._other_city_admins(
                account_id) == 0:
            raise StateConflict("the last city admin must stay an enabled city admin")
        with self.db.transaction():
            for column in ("role", "org_node_id"):
                if column in values:
                    self.db.execute(f"UPDATE admins SET {column} = ? WHERE id = ?",
                                    (values[column], account_id))
            if "disabled" in values:
                self.db.execute("UPDATE admins SET disabled_at = ? WHERE id = ?",
                                (self.clock() if disabled else None, account_id))
            if disabled or "role" in values or "org_node_id" in values:
                # A changed account logs in again with its new rights.
                self.db.execute("DELETE FROM login_sessions WHERE admin_id = ?", (account_id,))
        return self.account(account_id)

    def _other_city_admins(self, account_id: int) -> int:
        row = self.db.one("SELECT COUNT(*) AS n FROM admins WHERE role = 'city_admin' AND "
                          "disabled_at IS NULL AND id != ?", (account_id,))
        return int(row["n"]) if row else 0

    def reset_password(self, account_id: int, password: str | None) -> str | None:
        """A new password (generated if none given; returned then)."""
        row = self.account(account_id)
        generated = None if password else generate_password()
        self.set_password(str(row["username"]), password or generated or "")
        return generated

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
        row = self.db.one("SELECT id, username, role, org_node_id, password_hash FROM admins "
                          "WHERE username = ? AND disabled_at IS NULL", (username,))
        if row is None:
            return None
        return _admin(row), str(row["password_hash"])

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
            "SELECT s.csrf_token, s.expires_at, a.id, a.username, a.role, a.org_node_id "
            "FROM login_sessions s JOIN admins a ON a.id = s.admin_id "
            "WHERE s.id_digest = ? AND a.disabled_at IS NULL", (_digest(token),))
        if row is None:
            return None
        if row["expires_at"] <= self.clock():
            self.end_session(token)
            return None
        return LoginSession(_admin(row), str(row["csrf_token"]), float(row["expires_at"]))

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
