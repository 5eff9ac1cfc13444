"""Signed invitation tokens and the server secret they are signed with.

An invitation link carries ``<payload>.<signature>``: the payload names the
invitation, its session and its expiry; the signature is HMAC-SHA256 with a
secret created on first start in the data folder. A token proves itself
without a database read; revocation is still checked against the catalog.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRET_FILE = "server-secret"
SECRET_BYTES = 32


def load_or_create_secret(data_dir: Path) -> bytes:
    """The server secret, created (mode 0600) on first start."""
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        secret = secrets.token_bytes(SECRET_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
        return secret
    if len(secret) < SECRET_BYTES:
        raise RuntimeError(f"{path} is shorter than {SECRET_BYTES} bytes: not a server secret")
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class InvitationClaims:
    invitation_id: str
    session_id: str
    expires_at: float


class BadSignature(ValueError):
    """Tampered, truncated or not a token of this server."""


class Signer:
    def __init__(self, secret: bytes) -> None:
        # A key of its own per purpose, so a signature can never be replayed
        # as something else.
        self._key = hmac.new(secret, b"zhixing invitation v1", hashlib.sha256).digest()

    def sign(self, claims: InvitationClaims) -> str:
        payload = json.dumps(
            {"i": claims.invitation_id, "s": claims.session_id, "e": int(claims.expires_at)},
            separators=(",", ":"),
        ).encode()
        signature = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(signature)}"

    def sign_invitation(self, row: Mapping[str, Any]) -> str:
        """The token of an invitation row of the catalog."""
        return self.sign(InvitationClaims(row["id"], row["session_id"], row["expires_at"]))

    def verify(self, token: str) -> InvitationClaims:
        """The claims of a genuine token (expiry is the caller's to check)."""
        payload_text, dot, signature_text = token.partition(".")
        if not dot or len(token) > 512:
            raise BadSignature("not an invitation token")
        try:
            payload = _unb64(payload_text)
            signature = _unb64(signature_text)
        except (ValueError, UnicodeEncodeError) as exc:
            raise BadSignature("not an invitation token") from exc
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise BadSignature("invitation signature does not match")
        try:
            fields = json.loads(payload)
            return InvitationClaims(str(fields["i"]), str(fields["s"]), float(fields["e"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadSignature("invitation payload is malformed") from exc
