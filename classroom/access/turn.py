"""Time-limited TURN credentials from a secret shared with the TURN server.

The scheme of coturn's ``--use-auth-secret`` (the "TURN REST API" draft,
draft-uberti-behave-turn-rest): the user name is ``<expiry>:<holder>`` (expiry
in Unix seconds), the password is base64(HMAC-SHA1(secret, user name)). The
TURN server recomputes it from the same secret, so nothing is stored and no
static password ever reaches a page; a leaked credential stops working at its
expiry. ``holder`` names who it was issued to (a room, a session's
presenter), which coturn writes in its log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_TTL = 12 * 3600.0  # longer than a day's lectures: an allocation refreshes with it
_HOLDER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


@dataclass(frozen=True)
class TurnCredentials:
    username: str
    credential: str
    expires_at: int


class TurnSecret:
    """Issues credentials that a TURN server with the same secret accepts."""

    def __init__(self, secret: str, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("the TURN secret is empty")
        if ttl <= 0:
            raise ValueError("the credentials' lifetime must be positive")
        self._secret = secret.encode()
        self._ttl = ttl
        self._clock = clock

    def issue(self, holder: str) -> TurnCredentials:
        if not _HOLDER.fullmatch(holder):
            raise ValueError(f"not a TURN holder name: {holder!r}")
        expires_at = int(self._clock() + self._ttl)
        username = f"{expires_at}:{holder}"
        digest = hmac.new(self._secret, username.encode(), hashlib.sha1).digest()
        return TurnCredentials(username, base64.b64encode(digest).decode("ascii"), expires_at)
