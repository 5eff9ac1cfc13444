"""The room wall (监控墙): every invited site of a session as a tile, for the admin.

A snapshot of a session says, per invited site (分课堂): whether its room is
connected and since when, how often it came back, the headcount it reported,
and how well its viewer receives (bitrate from the bytes sent between two
snapshots; loss, RTT and jitter from the viewer's RTCP receiver reports;
frames sent), with a problem level so the tiles sort problems first. Viewers
that came with the session's generic view token have no site: they are only
counted.

The snapshot also carries the session's discussion (研讨) as an admin sees it
(``classroom/live/discussion.py``): hands in the order raised, questions in the order
asked (the latest ``WALL_QUESTIONS``), who is on stage, and the rooms'
uplinks; and each tile says whether its room has a hand up, is on stage,
sends its camera, and how many questions it asked. The wall only reads it:
moderation stays on the presenter page.

Reconnects are counted in memory (this process): every "connected" of an
invitation's viewer after its first is one. :class:`SiteHistory` must watch
each broadcast from its creation (the session registry's broadcast listeners).
The wall's sockets (one snapshot per session every 2 s, shared by all of
them) are in ``web/sockets/wall.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from classroom.archive.items import Archive
from classroom.catalog import Catalog
from classroom.live.cluster import LinkReport
from classroom.live.discussion import Discussions, Participant
from classroom.live.sessions import Session
from streaming.broadcast import Broadcast
from streaming.peers import Viewer

logger = logging.getLogger(__name__)

LATE_AFTER = 300.0  # seconds after the start: a room not in yet is late
LOSS_LIMIT = 0.05  # fraction of packets lost in the last receiver report
RTT_LIMIT = 0.4  # seconds
NO_MEDIA_BITRATE = 16_000  # bits/s: below this while on air, the room gets no picture
NO_MEDIA_GRACE = 5.0  # seconds after connecting before "no picture" is said
RATE_MIN_WINDOW = 0.5  # seconds: samples closer than this keep the previous bitrate
SNAPSHOT_INTERVAL = 2.0  # seconds between two snapshots pushed to the wall's sockets
SEND_TIMEOUT = 5.0  # seconds a socket may take to accept a snapshot before it is closed
CLOSE_ENDED = 4000  # WebSocket close code: the session has ended (the page stops)
# Questions a snapshot carries (the latest): a session keeps up to 2000, each up
# to 500 characters, and the snapshot goes out every 2 s.
WALL_QUESTIONS = 200
WALL_VIEWER = Participant("admin")  # the wall sees the discussion as an admin does

# Problem levels: the higher, the earlier the tile.
OK, NOTICE, WARNING, CRITICAL = 0, 1, 2, 3
LEVELS = {
    "late": CRITICAL,  # never came, 5 minutes after the start
    "dropped": WARNING,  # was connected, is not
    "loss": WARNING,
    "rtt": WARNING,
    "no_media": WARNING,  # connected, but (almost) nothing reaches it while on air
    "offline": NOTICE,  # not connected yet
}


@dataclass
class SiteRecord:
    """What this process saw of one invitation's viewers."""

    connects: int = 0
    connected_at: float | None = None  # of the latest connect
    left_at: float | None = None  # when its last viewer went away
    # Its viewers on district edges now (resource -> connected at), from the
    # edges' viewer events: no link figures, but connected.
    remote: dict[str, float] = field(default_factory=dict)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


class SiteHistory:
    """Connects per invitation, kept from the viewer listeners of every room."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rooms: dict[str, tuple[Broadcast, dict[str, SiteRecord]]] = {}

    def watch(self, room: Broadcast) -> None:
        self.prune()
        if room.broadcast_id in self._rooms:
            return
        records: dict[str, SiteRecord] = {}
        self._rooms[room.broadcast_id] = (room, records)

        def on_viewer(viewer: Viewer, event: str) -> None:
            if viewer.tag is None:
                return
            record = records.setdefault(viewer.tag, SiteRecord())
            if event == "connected":
                record.connects += 1
                record.connected_at = viewer.connected_at or self._clock()
                record.left_at = None
            elif event == "closed" and viewer.connected_at is not None:
                still = any(other.tag == viewer.tag and other.connection_state == "connected"
                            for other in room.viewers.values())
                if not still:
                    record.left_at = self._clock()

        room.viewer_listeners.append(on_viewer)

    def remote_viewer(self, session_id: str, tag: str, resource: str, event: str,
                      at: float) -> None:
        """A room's viewer on an edge connected (``open``) or left (``close``)."""
        entry = self._rooms.get(session_id)
        if entry is None:
            return
        room, records = entry
        record = records.setdefault(tag, SiteRecord())
        if event == "open":
            if resource in record.remote:
                return
            record.remote[resource] = at
            record.connects += 1
            record.connected_at = at
            record.left_at = None
        elif record.remote.pop(resource, None) is not None and not record.remote:
            still = any(other.tag == tag and other.connection_state == "connected"
                        for other in room.viewers.values())
            if not still:
                record.left_at = at

    def records(self, session_id: str) -> Mapping[str, SiteRecord]:
        entry = self._rooms.get(session_id)
        return entry[1] if entry is not None else {}

    def prune(self) -> None:
        """Forget rooms whose session has ended."""
        for room_id, (room, _) in list(self._rooms.items()):
            if room.closed:
                del self._rooms[room_id]


def _rounded(value: float | None, digits: int = 0) -> float | None:
    if value is None:
        return None
    return round(value, digits) if digits else round(value)


def sent_bytes(stats: Mapping[str, Any]) -> float:
    """The RTP payload bytes a viewer was sent, over its tracks (``Viewer.stats()``)."""
    return sum(entry.get("bytes_sent") or 0 for entry in stats.values()
               if isinstance(entry, dict))


def link_quality(stats: Mapping[str, Any], bitrate: float | None) -> dict[str, Any]:
    """A viewer's link figures as the wall shows them, from ``Viewer.stats()``
    (an edge reports its rooms' with this too, so both read alike)."""
    tracks = [entry for entry in stats.values() if isinstance(entry, dict)]
    video = stats.get("program_video") or {}
    fraction = video.get("fraction_lost")
    jitter = video.get("jitter")
    return {
        "bitrate": _rounded(bitrate),
        # The receiver report's 8-bit fixed-point fraction, over its last interval.
        "fraction_lost": round(fraction / 256, 4) if fraction is not None else None,
        "packets_lost": sum(max(0, entry.get("packets_lost") or 0) for entry in tracks),
        "rtt": _rounded(video.get("rtt"), 4),
        "jitter": _rounded(jitter, 4),
        "frames_sent": video.get("frames_sent", 0),
        "nacks": sum(entry.get("nacks") or 0 for entry in tracks),
        "keyframe_requests": sum(entry.get("plis") or 0 for entry in tracks),
        "overflows": sum(entry.get("overflows") or 0 for entry in tracks),
    }


class BitrateSampler:
    """Bits a second sent to each viewer, from its byte count between two readings."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        # viewer resource id -> (bytes sent, when, bits/s or None)
        self._samples: dict[str, tuple[float, float, float | None]] = {}

    def rate(self, resource_id: str, sent: float) -> float | None:
        now = self._monotonic()
        previous = self._samples.get(resource_id)
        if previous is None or sent < previous[0]:
            rate = None
        elif now - previous[1] < RATE_MIN_WINDOW:
            return previous[2]
        else:
            rate = (sent - previous[0]) * 8 / (now - previous[1])
        self._samples[resource_id] = (sent, now, rate)
        return rate

    def keep(self, resource_ids: set[str]) -> None:
        """Forget the viewers not in ``resource_ids`` (gone)."""
        for resource_id in set(self._samples) - resource_ids:
            del self._samples[resource_id]


class Wall:
    """Computes snapshots; remembers, per session, the bytes each viewer had
    been sent at the previous one (for the bitrate)."""

    def __init__(self, catalog: Catalog, history: SiteHistory, archive: Archive | None = None,
                 discussions: Discussions | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.history = history
        self.archive = archive
        self.discussions = discussions
        self._clock = clock
        self._monotonic = monotonic
        self._samples: dict[str, BitrateSampler] = {}
        # The edges' link reports (set by the school; none on one box).
        self.edge_links: Callable[[], list[LinkReport]] = list

    def forget(self, session_id: str) -> None:
        self._samples.pop(session_id, None)

    async def _quality(self, session_id: str, viewer: Viewer) -> dict[str, Any]:
        stats = await viewer.stats()
        sampler = self._samples.setdefault(session_id, BitrateSampler(self._monotonic))
        return link_quality(stats, sampler.rate(viewer.resource_id, sent_bytes(stats)))

    async def snapshot(self, session: Session) -> dict[str, Any]:
        """Everything the wall shows of ``session`` now."""
        room = session.broadcast
        now = self._clock()
        state = session.state
        on_air = room.program_on_air
        row = session.row
        start = row.get("scheduled_start") or row.get("started_at")
        connected = [v for v in room.viewers.values() if v.connection_state == "connected"]
        by_tag: dict[str, list[Viewer]] = {}
        for viewer in connected:
            by_tag.setdefault(viewer.tag or "", []).append(viewer)
        records = self.history.records(session.id)
        self._samples.setdefault(session.id, BitrateSampler(self._monotonic)).keep(
            {v.resource_id for v in connected})
        links = {link.resource: link for report in self.edge_links()
                 for link in report.viewers if link.session_id == session.id}

        invitations = self.catalog.invitations(session.id)
        view = self._discussion(session, {str(i["id"]): i["site_name"] for i in invitations})
        marks = _site_marks(view)
        questions = view["questions"]
        discussion = {
            "locked": view["locked"],
            "stage": view["stage"],
            "hands": view["hands"],
            "questions": questions[-WALL_QUESTIONS:],
            "questions_total": len(questions),
            "open_questions": sum(1 for q in questions if q["status"] == "open"),
            "uplinks": view["uplinks"],
        }

        sites: list[dict[str, Any]] = []
        invited: set[str] = set()
        for invitation in invitations:
            if invitation["revoked_at"] is not None:
                continue
            tag = str(invitation["id"])
            invited.add(tag)
            viewers = by_tag.get(tag, [])
            record = records.get(tag) or SiteRecord()
            # The newest connection is the room's own; an older one may linger
            # until its ICE consent runs out after a network drop.
            primary = max(viewers, key=lambda v: v.connected_at or 0.0, default=None)
            quality = await self._quality(session.id, primary) if primary else None
            # A room on a district edge: connected; its link figures come with
            # the edge's next report (its newest viewer's, as here).
            on_edge = max(record.remote.values(), default=None)
            if quality is None and record.remote:
                reported = [links[r] for r in record.remote if r in links]
                newest = max(reported, key=lambda link: link.connected_at, default=None)
                quality = dict(newest.quality) if newest is not None else None
            site = {
                "invitation_id": tag,
                "site_id": invitation["site_id"],
                "name": invitation["site_name"],
                "org_path": invitation["org_path"],
                "connected": primary is not None or on_edge is not None,
                "viewers": len(viewers) + len(record.remote),
                "connected_since": primary.connected_at if primary else on_edge,
                "disconnected_since": record.left_at
                if primary is None and on_edge is None else None,
                "reconnects": record.reconnects,
                "headcount": invitation["headcount"],
                "headcount_at": invitation["headcount_at"],
                "quality": quality,
                "discussion": marks.get(tag) or dict(_NO_MARKS),
            }
            site["problem"] = self._problem(site, record, state, on_air, start, now)
            sites.append(site)
        sites.sort(key=lambda s: (-s["problem"]["level"], s["org_path"], s["name"]))

        recording = self.archive is not None and self.archive.recording_of(session.id) is not None
        publisher = room.publisher
        return {
            "type": "snapshot",
            "at": now,
            "session": {
                "id": session.id,
                "title": session.title,
                "state": state,
                "scheduled_start": row.get("scheduled_start"),
                "scheduled_end": row.get("scheduled_end"),
                "started_at": row.get("started_at"),
                "on_air": on_air,
                "publisher_connected": publisher is not None
                and publisher.connection_state == "connected",
                "replay": row.get("replay_state"),
                "recording": recording,
                "ingress": {"video": room.program.video.stats.snapshot(),
                            "audio": room.program.audio.stats.snapshot()},
            },
            "summary": {
                "invited": len(sites),
                "connected": sum(1 for s in sites if s["connected"]),
                "problems": sum(1 for s in sites if s["problem"]["level"] >= WARNING),
                "late": sum(1 for s in sites if s["problem"]["reason"] == "late"),
                "headcount": sum(s["headcount"] or 0 for s in sites if s["connected"]),
                "viewers": len(connected) + sum(len(r.remote) for r in records.values()),
                # Viewers without a site: the generic view token, or a replaced link.
                "other_viewers": sum(len(v) for tag, v in by_tag.items() if tag not in invited),
                "hands": len(discussion["hands"]),
                "open_questions": discussion["open_questions"],
                "cameras": sum(1 for u in discussion["uplinks"] if u["present"]),
            },
            "discussion": discussion,
            "sites": sites,
        }

    def _discussion(self, session: Session, names: Mapping[str, str]) -> dict[str, Any]:
        """The discussion of ``session`` as an admin sees it.

        ``names``: invitation id -> site name, for when nobody has opened the
        room-events socket yet. Then there is no :class:`Discussion`, so no
        hand, question or stage; but a room may publish its uplink with a
        script (OBS, its invitation token), and the wall shows it.
        """
        room = session.broadcast
        found = self.discussions.get(session.id) if self.discussions is not None else None
        if found is not None and found.broadcast is room and not found.ended:
            return found.view(WALL_VIEWER)
        uplinks = []
        for invitation_id in sorted(set(room.uplinks) | room.muted,
                                    key=lambda i: (names.get(i, ""), i)):
            peer = room.uplinks.get(invitation_id)
            uplinks.append({"invitation_id": invitation_id, "name": names.get(invitation_id, ""),
                            "present": peer is not None,
                            "connected": peer is not None
                            and peer.connection_state == "connected",
                            "muted": invitation_id in room.muted, "on_stage": False})
        return {"locked": False, "stage": None, "hands": [], "questions": [],
                "uplinks": uplinks}

    @staticmethod
    def _problem(site: Mapping[str, Any], record: SiteRecord, state: str, on_air: bool,
                 start: float | None, now: float) -> dict[str, Any]:
        reasons: list[str] = []
        quality = site["quality"]
        if state == "ended":
            pass
        elif quality is None and record.remote:
            pass  # on a district edge, its figures not reported yet
        elif quality is None:
            if record.connects:
                reasons.append("dropped")
            elif start is not None and now >= start + LATE_AFTER:
                reasons.append("late")
            else:
                reasons.append("offline")
        else:
            if (quality["fraction_lost"] or 0) > LOSS_LIMIT:
                reasons.append("loss")
            if (quality["rtt"] or 0) > RTT_LIMIT:
                reasons.append("rtt")
            bitrate = quality["bitrate"]
            settled = now - (site["connected_since"] or now) >= NO_MEDIA_GRACE
            if on_air and settled and bitrate is not None and bitrate < NO_MEDIA_BITRATE:
                reasons.append("no_media")
        reasons.sort(key=lambda reason: -LEVELS[reason])
        return {"level": LEVELS[reasons[0]] if reasons else OK,
                "reason": reasons[0] if reasons else None, "reasons": reasons}


_NO_MARKS: dict[str, Any] = {"hand": None, "on_stage": False, "uplink": None,
                             "questions": 0, "open_questions": 0}


def _site_marks(view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per invitation, from the admin's view of the discussion: what its tile
    says (only rooms that took part have an entry)."""
    marks: dict[str, dict[str, Any]] = {}

    def mark(invitation_id: str) -> dict[str, Any]:
        return marks.setdefault(invitation_id, dict(_NO_MARKS))

    for position, hand in enumerate(view["hands"], start=1):
        mark(hand["invitation_id"])["hand"] = {"position": position,
                                               "raised_at": hand["raised_at"]}
    # Counted over every question, not only the ones the snapshot carries.
    for question in view["questions"]:
        entry = mark(question["invitation_id"])
        entry["questions"] += 1
        entry["open_questions"] += int(question["status"] == "open")
    for uplink in view["uplinks"]:
        mark(uplink["invitation_id"])["uplink"] = {
            "present": uplink["present"], "connected": uplink["connected"],
            "muted": uplink["muted"]}
    if view["stage"] is not None and view["stage"]["invitation_id"] is not None:
        mark(view["stage"]["invitation_id"])["on_stage"] = True
    return marks


def within_path(org_path: str, prefix: str) -> bool:
    """Whether a site's org path lies under ``prefix`` (whole parts; '' is all)."""
    return not prefix or org_path == prefix or org_path.startswith(prefix + " / ")


def scoped_snapshot(snapshot: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The wall as a district's account sees a session organized above it:
    only its own rooms (sites under ``prefix``), their hands, questions and
    cameras, and the summary over them. The session's own facts and who is on
    stage (which every room sees anyway) stay."""
    if not prefix:
        return dict(snapshot)
    sites = [s for s in snapshot["sites"] if within_path(s["org_path"], prefix)]
    own = {s["invitation_id"] for s in sites}
    whole = snapshot["discussion"]
    questions = [q for q in whole["questions"] if q["invitation_id"] in own]
    discussion = {**whole,
                  "hands": [h for h in whole["hands"] if h["invitation_id"] in own],
                  "questions": questions, "questions_total": len(questions),
                  "open_questions": sum(1 for q in questions if q["status"] == "open"),
                  "uplinks": [u for u in whole["uplinks"] if u["invitation_id"] in own]}
    summary = {
        "invited": len(sites),
        "connected": sum(1 for s in sites if s["connected"]),
        "problems": sum(1 for s in sites if s["problem"]["level"] >= WARNING),
        "late": sum(1 for s in sites if s["problem"]["reason"] == "late"),
        "headcount": sum(s["headcount"] or 0 for s in sites if s["connected"]),
        "viewers": sum(s["viewers"] for s in sites),
        "other_viewers": 0,
        "hands": len(discussion["hands"]),
        "open_questions": discussion["open_questions"],
        "cameras": sum(1 for u in discussion["uplinks"] if u["present"]),
    }
    return {**snapshot, "summary": summary, "discussion": discussion, "sites": sites}
