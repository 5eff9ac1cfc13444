"""Personal links (学员链接): one signed link per learner, no password.

The link's token is ``<payload>.<signature>`` like a room's invitation, signed
with a key of its own derived from the server secret (a room's token can
never pass as a learner's, nor the other way round). The payload names the
learner and the link's generation; issuing a new link or revoking the link
moves the learner's generation on, so every earlier token stops working at
the next request (each use is checked against the roster).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

MAX_TOKEN = 256


@dataclass(frozen=True)
class LinkClaims:
    learner_id: int
    generation: int


class BadLink(ValueError):
    """Tampered, truncated, or not a learner link of this server."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"zhixing learner link v1", hashlib.sha256).digest()

    def sign(self, claims: LinkClaims) -> str:
        payload = json.dumps({"l": claims.learner_id, "g": claims.generation},
                             separators=(",", ":")).encode()
        signature = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(signature)}"

    def verify(self, token: str) -> LinkClaims:
        payload_text, dot, signature_text = token.partition(".")
        if not dot or len(token) > MAX_TOKEN:
            raise BadLink("not a learner link")
        try:
            payload = _unb64(payload_text)
            signature = _unb64(signature_text)
        except (ValueError, UnicodeEncodeError) as exc:
            raise BadLink("not a learner link") from exc
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise BadLink("learner link signature does not match")
        try:
            fields = json.loads(payload)
            learner, generation = fields["l"], fields["g"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadLink("learner link payload is malformed") from exc
        if not (isinstance(learner, int) and isinstance(generation, int)):
            raise BadLink("learner link payload is malformed")
        return LinkClaims(learner, generation)


def learner_url(base: str, token: str) -> str:
    return f"{base}/learn/{token}"
