"""The seam between relays: what an origin and its edges tell each other.

An origin (``zhixing serve --redis …``) and the district edges
(``zhixing edge``) share three things, and nothing else:

* **the directory**: each edge's entry (its public URL, the org path of the
  district it serves, its load), renewed twice a second with a 2 s time to
  live, so an edge that dies leaves it within ``ENTRY_TTL`` seconds;
* **events** from the origin: an invitation revoked, a session ended;
* **viewer events** from the edges: a room connected or left, which the
  origin's attendance log takes as if the viewer had been its own;
* **link reports** from the edges: every ``LINK_INTERVAL`` seconds one per
  edge, each of its rooms' link figures (the wall's loss, RTT, bitrate) and
  counters (``/metrics``), kept at the origin by a :class:`LinkBoard` until
  the next report or ``LINK_TTL`` (an edge that vanished is forgotten).

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
from collections.abc import Callable, Iterable
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


def unseal(key: bytes, raw: object, limit: int = 8192) -> dict[str, Any]:
    """The fields of a sealed text of at most ``limit`` characters, or
    :class:`Unsealed`."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Unsealed("not UTF-8") from None
    if not isinstance(raw, str) or len(raw) > limit:
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


# Link reports: an edge's rooms' link figures, every LINK_INTERVAL seconds;
# a node's report is forgotten LINK_TTL seconds after it came (its edge died,
# or lost Redis: its rooms are then not on the wall's figures, as before).
LINK_INTERVAL = 2.0
LINK_TTL = 3 * LINK_INTERVAL
# Rooms one report may name: a district's edge holds hundreds (a box about
# 800); a room takes at most about 700 characters of a sealed report.
MAX_LINK_VIEWERS = 3000
MAX_LINK_REPORT = 2_500_000
# The wall's figures of a viewer (classroom/live/wall.py, link_quality).
LINK_QUALITY = ("bitrate", "fraction_lost", "packets_lost", "rtt", "jitter", "frames_sent",
                "nacks", "keyframe_requests", "overflows")
COUNTER_NAME = re.compile(r"^zhixing_[a-z_]{1,60}$")
MAX_COUNTERS = 16


def _optional_number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
            or not 0 <= value < 1e18:
        raise Unsealed(f"field {name!r} is not a number")
    return value


@dataclass(frozen=True)
class ViewerLink:
    """One room's viewer on an edge, as its link looked at the report."""

    session_id: str
    invitation_id: str
    resource: str  # "<node>/<resource id>", as in its viewer events
    connected_at: float  # wall time
    quality: dict[str, float | None]  # the wall's figures (LINK_QUALITY)
    totals: dict[str, float]  # its /metrics counters so far (metric name -> value)

    def to_fields(self) -> dict[str, Any]:
        return {"s": self.session_id, "i": self.invitation_id, "r": self.resource,
                "c": self.connected_at, "q": self.quality, "m": self.totals}

    @classmethod
    def from_fields(cls, fields: object) -> ViewerLink:
        if not isinstance(fields, dict):
            raise Unsealed("a viewer's link is not an object")
        quality, totals = fields.get("q"), fields.get("m")
        if not isinstance(quality, dict) or not isinstance(totals, dict):
            raise Unsealed("a viewer's link has no figures")
        if set(quality) - set(LINK_QUALITY):
            raise Unsealed("a viewer's link has unknown figures")
        fraction = _optional_number(quality.get("fraction_lost"), "fraction_lost")
        if fraction is not None and fraction > 1:
            raise Unsealed("a fraction lost above 1")
        if len(totals) > MAX_COUNTERS or not all(
                isinstance(name, str) and COUNTER_NAME.match(name) for name in totals):
            raise Unsealed("a viewer's counters are not metric names")
        counted: dict[str, float] = {}
        for name, value in totals.items():
            number = _optional_number(value, name)
            if number is None:
                raise Unsealed(f"counter {name!r} has no value")
            counted[name] = float(number)
        return cls(_text(fields, "s"), _text(fields, "i"), _text(fields, "r"),
                   _number(fields, "c"),
                   {name: _optional_number(quality.get(name), name) for name in LINK_QUALITY},
                   counted)


@dataclass(frozen=True)
class LinkReport:
    """An edge's rooms' links at one moment (one report replaces the last)."""

    node: str
    at: float  # wall time of the reading
    viewers: tuple[ViewerLink, ...]

    def to_fields(self) -> dict[str, Any]:
        return {"k": "links", "n": self.node, "t": self.at,
                "v": [viewer.to_fields() for viewer in self.viewers]}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> LinkReport:
        if fields.get("k") != "links":
            raise Unsealed("not a link report")
        node = _text(fields, "n")
        if not NAME_PATTERN.match(node):
            raise Unsealed("a node name must be letters, digits, '.', '_' or '-'")
        viewers = fields.get("v")
        if not isinstance(viewers, list) or len(viewers) > MAX_LINK_VIEWERS:
            raise Unsealed(f"a report names a list of at most {MAX_LINK_VIEWERS} viewers")
        links = tuple(ViewerLink.from_fields(viewer) for viewer in viewers)
        if any(not link.resource.startswith(node + "/") for link in links):
            raise Unsealed("a report names another node's viewer")
        return cls(node, _number(fields, "t"), links)


class LinkBoard:
    """The origin's latest link report of each edge, whatever carries them.

    A transport hands every sealed report it receives to :meth:`receive`
    (refused and logged unless it verifies and is well formed). A report
    replaces its node's last; a node not heard from for ``LINK_TTL`` seconds
    is dropped. The counters of viewers that leave a report (or whose node
    is dropped) go into :attr:`retired`, so the sums ``/metrics`` serves
    never go down.
    """

    def __init__(self, key: bytes, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = key
        self._clock = clock
        self._reports: dict[str, tuple[float, LinkReport]] = {}
        self.retired: dict[str, float] = {}
        self.refused = 0

    def receive(self, raw: object) -> LinkReport | None:
        previous: tuple[float, LinkReport] | None = None
        try:
            report = LinkReport.from_fields(unseal(self._key, raw, MAX_LINK_REPORT))
            previous = self._reports.get(report.node)
            if previous is not None and report.at < previous[1].at:
                # A genuine old report sent again: never take it back in time.
                raise Unsealed(f"{report.node}'s report is older than its last")
        except Unsealed as exc:
            if self.refused % 30 == 0:  # once a minute for one edge at its pace
                logger.warning("link report refused: %s", exc)
            self.refused += 1
            return None
        if previous is not None:
            staying = {viewer.resource for viewer in report.viewers}
            self._retire(v for v in previous[1].viewers if v.resource not in staying)
        self._reports[report.node] = (self._clock(), report)
        return report

    def reports(self) -> list[LinkReport]:
        """The fresh reports (a node silent for ``LINK_TTL`` is dropped now)."""
        now = self._clock()
        for node, (came, report) in list(self._reports.items()):
            if now - came > LINK_TTL:
                del self._reports[node]
                self._retire(report.viewers)
        return [report for _, report in self._reports.values()]

    def _retire(self, viewers: Iterable[ViewerLink]) -> None:
        for viewer in viewers:
            for name, value in viewer.totals.items():
                self.retired[name] = self.retired.get(name, 0.0) + value


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

    def edge_links(self) -> list[LinkReport]:
        """The edges' fresh link reports (the origin's view)."""

    def retired_edge_totals(self) -> dict[str, float]:
        """The counters of edge viewers no longer in any report, summed."""

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

    def edge_links(self) -> list[LinkReport]:
        return []

    def retired_edge_totals(self) -> dict[str, float]:
        return {}

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
