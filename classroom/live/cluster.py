"""The seam between relays: what an origin and its edges tell each other.

An origin (``zhixing serve --redis …``) and the district edges
(``zhixing edge``) share three things, and nothing else:

* **the directory**: each edge's entry (its public URL, the org path of the
  district it serves, its load), renewed twice a second with a 2 s time to
  live, so an edge that dies leaves it within ``ENTRY_TTL`` seconds;
* **events** from the origin: an invitation revoked, a session ended;
* **viewer events** from the edges: a room connected or left, which the
  origin's attendance log takes as if the viewer had been its own.

On a single box with one process there is no cluster at all
(:class:`SingleNode`: no directory, nothing sent). The transports are
``classroom/live/redis_cluster.py`` (edges, and workers with ``--redis``) and
``classroom/live/local_cluster.py`` (the workers of one box, over their
sockets to the main process); both carry the same sealed texts, read by the
same code here (:class:`OriginEvents`, :class:`ViewerEvent`).

Everything that crosses is sealed with an HMAC whose key is derived from the
server secret (the secret an edge holds to verify invitations): an entry or
event that does not verify, or that is not the shape it should be, is logged
and ignored, so a forged directory entry can never send a room anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from classroom.access.org import split_path

logger = logging.getLogger(__name__)

# An entry lives 2 s without renewal, renewed every 0.5 s: a dead edge leaves
# the directory within 2.5 s (with the origin's reading), so the room page's
# first retry after it noticed the silence lands at the origin.
ENTRY_TTL = 2.0
HEARTBEAT = 0.5
DIRECTORY_REFRESH = 0.5  # seconds between two readings of the directory at the origin
MAX_FIELD = 512
# The district of a worker (``zhixing serve --workers N``): every site, after
# the edges of the site's own district.
ALL_SITES = "*"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def cluster_key(secret: bytes) -> bytes:
    """The key that seals what relays tell each other (its own purpose, so
    it can never be replayed as an invitation)."""
    return hmac.new(secret, b"zhixing cluster v1", hashlib.sha256).digest()


def seal(key: bytes, fields: dict[str, Any]) -> str:
    payload = json.dumps(fields, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return payload + "|" + base64.urlsafe_b64encode(mac).decode("ascii")


class Unsealed(ValueError):
    """Not something a relay of this city sealed (forged, damaged, garbage)."""


def unseal(key: bytes, raw: object) -> dict[str, Any]:
    """The fields of a sealed text, or :class:`Unsealed`."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Unsealed("not UTF-8") from None
    if not isinstance(raw, str) or len(raw) > 8192:
        raise Unsealed("not a sealed text")
    payload, bar, mac_text = raw.rpartition("|")
    if not bar:
        raise Unsealed("no seal")
    try:
        mac = base64.urlsafe_b64decode(mac_text)
    except ValueError:
        raise Unsealed("a damaged seal") from None
    expected = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise Unsealed("the seal does not match (another city's secret, or forged)")
    try:
        fields = json.loads(payload)
    except ValueError:
        raise Unsealed("not JSON") from None
    if not isinstance(fields, dict):
        raise Unsealed("not an object")
    return fields


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise Unsealed(f"field {name!r} is not a text")
    return value


def _number(fields: dict[str, Any], name: str) -> float:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
            or value < 0:
        raise Unsealed(f"field {name!r} is not a number")
    return float(value)


@dataclass(frozen=True)
class NodeEntry:
    """An edge in the directory."""

    name: str
    url: str  # its public base URL, e.g. http://edge-beilun.example:8080
    district: str  # the org path of the district it serves
    load: int  # viewers it holds now

    def to_fields(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "district": self.district,
                "load": self.load}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> NodeEntry:
        name, url, district = (_text(fields, "name"), _text(fields, "url"),
                               _text(fields, "district"))
        if not NAME_PATTERN.match(name):
            raise Unsealed("a node name must be letters, digits, '.', '_' or '-'")
        if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", url):
            raise Unsealed("a node URL must be http(s)://host[:port][/path]")
        if district != ALL_SITES and not split_path(district):
            raise Unsealed("a district must be an org path (or * for a worker)")
        return cls(name, url.rstrip("/"), district, int(_number(fields, "load")))

    @property
    def origin(self) -> str:
        """scheme://host[:port] of its URL."""
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    def serves(self, org_path: str) -> bool:
        """Whether a site at ``org_path`` lies in this edge's district."""
        if self.district == ALL_SITES:
            return True
        mine = split_path(self.district)
        return split_path(org_path)[:len(mine)] == mine


@dataclass(frozen=True)
class ViewerEvent:
    """A room's viewer on an edge connected ("open") or left ("close")."""

    session_id: str
    invitation_id: str
    resource: str  # unique in the city: "<node>/<resource id>"
    event: str
    at: float  # wall time of the connection (open) or of the leaving (close)

    def to_fields(self) -> dict[str, Any]:
        return {"s": self.session_id, "i": self.invitation_id, "r": self.resource,
                "e": self.event, "t": self.at}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> ViewerEvent:
        event = _text(fields, "e")
        if event not in ("open", "close"):
            raise Unsealed("a viewer event is open or close")
        return cls(_text(fields, "s"), _text(fields, "i"), _text(fields, "r"), event,
                   _number(fields, "t"))


def closest_edge(entries: list[NodeEntry], org_path: str | None) -> NodeEntry | None:
    """The edge a site at ``org_path`` should watch through: of the edges
    whose district holds it, the narrowest district, then the least loaded."""
    if not org_path:
        return None
    candidates = [entry for entry in entries if entry.serves(org_path)]
    if not candidates:
        return None
    return min(candidates, key=lambda e: (
        1 if e.district == ALL_SITES else -len(split_path(e.district)), e.load, e.name))


class Cluster(Protocol):
    """What the origin and the edges need of their coordination."""

    def healthy_edges(self) -> list[NodeEntry]:
        """The edges whose entry is fresh and genuine (the origin's view)."""

    def sent(self, entry: NodeEntry) -> None:
        """A room was just sent to ``entry``: count it in its load until the
        edge's next entry says, so a join storm spreads over the workers."""

    def edge_origins(self) -> list[str]:
        """The scheme://host:port of every edge seen since start: a page
        whose WHEP request may be redirected there must be allowed to
        connect to it (its Content-Security-Policy)."""

    def session_ended(self, session_id: str) -> None:
        """Tell the edges a session has ended (the origin)."""

    def invitation_revoked(self, session_id: str, invitation_id: str) -> None:
        """Tell the edges an invitation no longer works (the origin)."""

    async def close(self) -> None:
        """Stop every task and connection."""


class SingleNode:
    """One box: no other relay to tell anything, no edge to send a room to."""

    def healthy_edges(self) -> list[NodeEntry]:
        return []

    def edge_origins(self) -> list[str]:
        return []

    def sent(self, entry: NodeEntry) -> None:
        pass

    def session_ended(self, session_id: str) -> None:
        pass

    def invitation_revoked(self, session_id: str, invitation_id: str) -> None:
        pass

    async def close(self) -> None:
        pass


class OriginEvents:
    """What an edge has been told by the origin, whatever carried it: the
    invitations revoked and the sessions ended, each applied once. A new kind
    of event is added here, and every transport carries it unchanged."""

    def __init__(self, key: bytes, on_revoked: Callable[[str, str], None],
                 on_ended: Callable[[str], None]) -> None:
        self._key = key
        self._on_revoked = on_revoked
        self._on_ended = on_ended
        self.revoked: set[str] = set()
        self.ended: set[str] = set()

    def apply(self, raw: object) -> None:
        """Apply one sealed event; anything else is logged and ignored."""
        try:
            fields = unseal(self._key, raw)
            kind, session_id = fields.get("k"), fields.get("s")
            if not isinstance(session_id, str) or not session_id:
                raise Unsealed("no session")
            if kind == "ended":
                if session_id not in self.ended:
                    self.ended.add(session_id)
                    self._on_ended(session_id)
            elif kind == "revoked":
                invitation_id = fields.get("i")
                if not isinstance(invitation_id, str) or not invitation_id:
                    raise Unsealed("no invitation")
                if invitation_id not in self.revoked:
                    self.revoked.add(invitation_id)
                    self._on_revoked(session_id, invitation_id)
            else:
                raise Unsealed(f"unknown kind {str(kind)[:20]!r}")
        except Unsealed as exc:
            logger.warning("origin event refused: %s", exc)


def origin_event(key: bytes, kind: str, session_id: str, invitation_id: str = "") -> str:
    """The sealed text of an origin's event (``ended``, ``revoked``)."""
    return seal(key, {"k": kind, "s": session_id, "i": invitation_id})


ViewerEventListener = Callable[[ViewerEvent], None]


def wall_now() -> float:
    return time.time()
