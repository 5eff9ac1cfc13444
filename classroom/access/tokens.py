"""Bearer tokens: random, compared in constant time, scoped to a session and a role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from classroom.errors import Forbidden, NotAuthorized


class Role(StrEnum):
    ADMIN = "admin"
    PUBLISH = "publish"
    VIEW = "view"


@dataclass(frozen=True)
class Grant:
    """What a token allows: a role, in one session (``None`` for admin)."""

    role: Role
    session_id: str | None


def new_token() -> str:
    return secrets.token_urlsafe(24)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenIndex:
    """Every live token, looked up by its SHA-256 digest.

    Looking up a digest reveals nothing about the token's bytes; the final
    comparison is constant-time anyway.
    """

    def __init__(self) -> None:
        self._grants: dict[bytes, tuple[str, Grant]] = {}

    def add(self, token: str, grant: Grant) -> None:
        self._grants[digest(token)] = (token, grant)

    def remove(self, token: str) -> None:
        self._grants.pop(digest(token), None)

    def lookup(self, token: str) -> Grant | None:
        entry = self._grants.get(digest(token))
        if entry is None or not hmac.compare_digest(entry[0].encode(), token.encode()):
            return None
        return entry[1]

    def require(self, token: str, role: Role, session_id: str | None) -> Grant:
        """The grant for ``token`` if it allows ``role`` in ``session_id``.

        NotAuthorized for a token that is valid nowhere; Forbidden for a
        real token of another session or another role.
        """
        grant = self.lookup(token)
        if grant is None:
            raise NotAuthorized("invalid token")
        if grant.role is Role.ADMIN and role is Role.ADMIN:
            return grant
        if grant.role is not role:
            raise Forbidden(f"this token is for the {grant.role.value} role, not {role.value}")
        if grant.session_id != session_id:
            raise Forbidden("this token belongs to another session")
        return grant

