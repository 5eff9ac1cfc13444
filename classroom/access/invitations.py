"""Invitation links: one per (session, site), signed, expiring, revocable.

The link identifies the site (分课堂) for attendance; it works in any browser
without a login. Its token is checked on every use: signature, session,
expiry, then revocation in the catalog.
"""

from __future__ import annotations

import time
from typing import Any

from classroom.access.signing import BadSignature, Signer
from classroom.catalog import Catalog
from classroom.errors import Forbidden, Gone, Missing, NotAuthorized


def is_invitation_token(token: str) -> bool:
    """Invitation tokens are ``payload.signature``; bearer tokens have no dot."""
    return "." in token


def invitation_url(base: str, token: str) -> str:
    return f"{base}/join/{token}"


def check_invitation(signer: Signer, catalog: Catalog, token: str, session_id: str | None,
                     now: float | None = None) -> dict[str, Any]:
    """The invitation row for a genuine, current token.

    NotAuthorized for a token that is not ours, Forbidden for another
    session's, Gone for an expired, revoked or withdrawn one.
    """
    try:
        claims = signer.verify(token)
    except BadSignature as exc:
        raise NotAuthorized("invalid token") from exc
    if session_id is not None and claims.session_id != session_id:
        raise Forbidden("this invitation belongs to another session")
    try:
        row = catalog.invitation(claims.invitation_id)
    except Missing:
        raise Gone("this invitation was withdrawn") from None
    if row["session_id"] != claims.session_id:
        raise Gone("this invitation was withdrawn")
    if row["revoked_at"] is not None:
        raise Gone("this invitation was revoked")
    if (now if now is not None else time.time()) >= row["expires_at"]:
        raise Gone("this invitation has expired")
    return row
