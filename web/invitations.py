"""Invitation links: one per (session, site), signed, expiring, revocable.

The link identifies the site (分课堂) for attendance; it works in any browser
without a login. Its token is checked on every use: signature, session,
expiry, then revocation in the catalog.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from web.errors import Forbidden, Gone, NotAuthorized
from web.keys import CATALOG, DISCUSSIONS, SESSIONS, SIGNER
from web.signing import BadSignature


def is_invitation_token(token: str) -> bool:
    """Invitation tokens are ``payload.signature``; bearer tokens have no dot."""
    return "." in token


def invitation_url(base: str, token: str) -> str:
    return f"{base}/join/{token}"


def check_invitation(app: web.Application, token: str, session_id: str | None,
                     now: float | None = None) -> dict[str, Any]:
    """The invitation row for a genuine, current token.

    401 for a token that is not ours, 403 for another session's, 410 for an
    expired or revoked one.
    """
    try:
        claims = app[SIGNER].verify(token)
    except BadSignature as exc:
        raise NotAuthorized("invalid token") from exc
    if session_id is not None and claims.session_id != session_id:
        raise Forbidden("this invitation belongs to another session")
    row = app[CATALOG].db.one("SELECT * FROM invitations WHERE id = ?",
                              (claims.invitation_id,))
    if row is None or row["session_id"] != claims.session_id:
        raise Gone("this invitation was withdrawn")
    if row["revoked_at"] is not None:
        raise Gone("this invitation was revoked")
    if (now if now is not None else time.time()) >= row["expires_at"]:
        raise Gone("this invitation has expired")
    return row


async def disconnect_invitation(app: web.Application, session_id: str,
                                invitation_id: str) -> int:
    """Close every viewer that joined with this invitation, and its uplink;
    returns how many viewers."""
    session = app[SESSIONS].get(session_id)
    if session is None:
        return 0
    viewers = [v for v in session.room.viewers.values() if v.tag == invitation_id]
    for viewer in viewers:
        await viewer.close()
    await session.room.close_uplink(invitation_id)
    discussion = app[DISCUSSIONS].get(session_id) if DISCUSSIONS in app else None
    if discussion is not None:
        discussion.forget_room(invitation_id)
    return len(viewers)
