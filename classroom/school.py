"""The composition root: every service of the school, built and closed in one place.

``School.open`` builds the services in the order they need each other and
brings back what a crash or a restart left (attendance intervals left open,
recordings to finish, replays to carry on); ``close`` ends them in the
reverse order. The HTTP layer holds one School and calls its services and
the use cases below, which are the operations that touch more than one
service (revoking a link also disconnects its room; ending a session also
finishes its recording and stops its replay).

Nothing here knows HTTP: errors are the domain's (``classroom.errors``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classroom.access.accounts import Accounts, Admin
from classroom.access.audit import AuditLog
from classroom.access.invitations import check_invitation
from classroom.access.org import OrgTree
from classroom.access.roles import AccountRole, Scope
from classroom.access.signing import Signer, load_or_create_secret
from classroom.access.tokens import TokenIndex
from classroom.archive.items import Archive, LibraryLinks
from classroom.archive.replays import Replays
from classroom.archive.timeshift import Timeshifts
from classroom.attendance.log import AttendanceLog
from classroom.catalog import Catalog
from classroom.db import ROOT_NODE, Database
from classroom.errors import Forbidden, Invalid
from classroom.learning.learners import Learners
from classroom.learning.links import LinkSigner
from classroom.learning.readings import Readings
from classroom.learning.study import Study
from classroom.learning.surveys import Surveys
from classroom.learning.writeups import Writeups
from classroom.live.cluster import Cluster, SingleNode, ViewerEvent, cluster_key
from classroom.live.discussion import Discussion, Discussions
from classroom.live.metrics import RelayMetrics
from classroom.live.sessions import Session, SessionRegistry
from classroom.live.wall import SiteHistory, Wall
from classroom.packages.jobs import PackageJobs
from recordings.manager import Recordings
from streaming.peers import PeerSettings

logger = logging.getLogger(__name__)

DATABASE_FILE = "zhixing.sqlite3"
ARCHIVE_DIR = "archive"
PACKAGES_DIR = "packages"
LEARNING_DIR = "learning"  # readings and write-ups' attachments
CATALOG_KINDS = ("units", "courses", "sites")


@dataclass(frozen=True)
class SchoolSettings:
    """What the school needs from the process's configuration."""

    data_dir: Path
    admin_password: str | None = None
    min_free_bytes: int = 0
    # Edges: the Redis they coordinate through (None: one box, no cluster).
    redis_url: str | None = None
    node_name: str = "origin"
    # Workers of this box without Redis: they report over their sockets
    # (classroom/live/local_cluster.py).
    local_workers: bool = False


class School:
    """The school's services (open with :meth:`open`, end with :meth:`close`)."""

    db: Database
    catalog: Catalog
    org: OrgTree
    accounts: Accounts
    audit: AuditLog
    signer: Signer
    sessions: SessionRegistry
    attendance: AttendanceLog
    archive: Archive
    library_links: LibraryLinks
    replays: Replays
    timeshifts: Timeshifts
    packages: PackageJobs
    discussions: Discussions
    site_history: SiteHistory
    wall: Wall
    metrics: RelayMetrics
    cluster: Cluster
    learners: Learners
    study: Study
    readings: Readings
    writeups: Writeups
    surveys: Surveys

    def __init__(self, settings: SchoolSettings, tokens: TokenIndex,
                 peer_settings: PeerSettings) -> None:
        self.settings = settings
        self.tokens = tokens
        self.peer_settings = peer_settings
        # Each service's closing is pushed as it is built: closing runs them in
        # the reverse order, and a failed start closes what it had built.
        self._closing = contextlib.AsyncExitStack()

    @classmethod
    async def open(cls, settings: SchoolSettings, tokens: TokenIndex,
                   peer_settings: PeerSettings) -> School:
        school = cls(settings, tokens, peer_settings)
        try:
            await school._build()
        except BaseException:
            await school.close()
            raise
        return school

    async def _build(self) -> None:
        closing = self._closing
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(data_dir / DATABASE_FILE)
        closing.callback(self.db.close)
        self.db.migrate()
        self.catalog = Catalog(self.db)
        self.org = self.catalog.org
        self.accounts = Accounts(self.db)
        self.audit = AuditLog(self.db)
        self.accounts.ensure_admin(self.settings.admin_password)
        secret = load_or_create_secret(data_dir)
        self.signer = Signer(secret)
        self.learners = Learners(self.db, self.org, LinkSigner(secret))
        self.study = Study(self.db)
        self.readings = Readings(self.db, data_dir / LEARNING_DIR / "readings")
        self.writeups = Writeups(self.db, data_dir / LEARNING_DIR / "writeups")
        self.surveys = Surveys(self.db)
        # Attendance closes after the broadcasts, so their viewers' leaving is written.
        self.attendance = AttendanceLog(self.db)
        closing.push_async_callback(self.attendance.close)
        self.attendance.recover()  # ends the intervals a crash left open
        self.sessions = SessionRegistry(self.catalog, self.tokens, self.peer_settings)
        closing.push_async_callback(self.sessions.close)
        self.archive = Archive(self.db, Recordings(
            data_dir / ARCHIVE_DIR, self._on_recorder_event,
            min_free_bytes=self.settings.min_free_bytes))
        closing.push_async_callback(self.archive.close)
        self.library_links = LibraryLinks(self.db)
        self.replays = Replays(self.db, self.archive, self.sessions)
        closing.push_async_callback(self.replays.close)
        self.timeshifts = Timeshifts(self.archive)
        closing.push_async_callback(self.timeshifts.close)
        self.packages = PackageJobs(self.db, self.archive.recordings, data_dir / PACKAGES_DIR)
        closing.push_async_callback(self.packages.close)
        self.discussions = Discussions()
        closing.callback(self.discussions.close)
        self.site_history = SiteHistory()
        self.wall = Wall(self.catalog, self.site_history, self.archive, self.discussions)
        self.metrics = RelayMetrics()
        closing.push_async_callback(self.metrics.close)
        self.metrics.recordings_running = lambda: len(self.archive.recordings.active)
        self.metrics.recording = lambda session_id: (
            self.archive.recording_of(session_id) is not None)
        self.metrics.replays_playing = self.replays.playing
        # Every broadcast is heard from its creation: the live sessions' now,
        # a new session's when it is scheduled.
        self.sessions.broadcast_listeners += [
            self.attendance.watch, self.site_history.watch, self.metrics.watch]
        closing.callback(self.sessions.broadcast_listeners.clear)
        self.sessions.open_live()
        self.cluster = self._cluster()
        closing.push_async_callback(self.cluster.close)
        # The edges' rooms' link figures: on the wall and in /metrics as local ones.
        self.wall.edge_links = self.cluster.edge_links
        self.metrics.edge_links = self.cluster.edge_links
        self.metrics.retired_edge_totals = self.cluster.retired_edge_totals
        self.metrics.node_name = self.settings.node_name
        self.attendance.start()
        self.metrics.start()
        await self.archive.recover()  # finishes what a crash left recording or finishing
        await self.replays.restore()  # replays carry on where they were

    def _cluster(self) -> Cluster:
        """The edges' coordination (Redis), the workers' sockets, or none on
        one process."""
        if self.settings.redis_url is None and self.settings.local_workers:
            from classroom.live.local_cluster import LocalOrigin

            # The links revoked in sessions still to come or on: a worker
            # checks tokens by their signature and must know them too.
            revoked = self.db.all(
                "SELECT i.session_id, i.id FROM invitations i JOIN sessions s"
                " ON s.id = i.session_id WHERE i.revoked_at IS NOT NULL AND s.ended_at IS NULL")
            return LocalOrigin(cluster_key(load_or_create_secret(self.settings.data_dir)),
                               self._on_edge_viewer,
                               [(row["session_id"], row["id"]) for row in revoked])
        if self.settings.redis_url is None:
            return SingleNode()
        # Imported here: a single box never loads the Redis client.
        from classroom.live.redis_cluster import RedisOrigin

        secret = load_or_create_secret(self.settings.data_dir)
        return RedisOrigin(self.settings.redis_url, cluster_key(secret), self.settings.node_name,
                           self._on_edge_viewer)

    def _on_edge_viewer(self, event: ViewerEvent) -> None:
        """A room's viewer on an edge came or went: attendance as if local."""
        self.attendance.on_remote_viewer(event.session_id, event.invitation_id, event.resource,
                                         event.event, event.at)
        self.site_history.remote_viewer(event.session_id, event.invitation_id, event.resource,
                                        event.event, event.at)

    def _on_recorder_event(self, item_id: str, kind: str, detail: str) -> None:
        self.archive.on_recorder_event(item_id, kind, detail)

    async def close(self) -> None:
        """End every service built, in the reverse of the order they were built in."""
        await self._closing.aclose()

    # ------------------------------------------------------------ use cases

    def check_invitation(self, token: str, session_id: str | None,
                         now: float | None = None) -> dict[str, Any]:
        """The invitation row of a genuine, current room link (else
        NotAuthorized, Forbidden or Gone)."""
        return check_invitation(self.signer, self.catalog, token, session_id, now)

    async def disconnect_invitation(self, session_id: str, invitation_id: str) -> int:
        """Close every viewer that joined with this invitation, and its
        uplink; the discussion forgets the room. Returns how many viewers."""
        session = self.sessions.get(session_id)
        if session is None:
            return 0
        viewers = [v for v in session.broadcast.viewers.values() if v.tag == invitation_id]
        for viewer in viewers:
            await viewer.close()
        await session.broadcast.close_uplink(invitation_id)
        discussion = self.discussions.get(session_id)
        if discussion is not None:
            discussion.forget_room(invitation_id)
        return len(viewers)

    async def invite(self, session: Session, data: Mapping[str, Any],
                     scope: Scope | None = None) -> dict[str, Any]:
        """A new link for a site; the site's previous link of this session
        stops working and its room is disconnected."""
        # The site's current link, found by the validated site id (never by raw input).
        current = {item["site_id"]: item["id"] for item in self.catalog.invitations(session.id)}
        row = self.catalog.create_invitation(session.id, data, scope or Scope.city())
        previous = current.get(row["site_id"])
        if previous is not None:
            await self.disconnect_invitation(session.id, previous)
            self.cluster.invitation_revoked(session.id, previous)
        return row

    async def revoke(self, invitation_id: str, scope: Scope | None = None) -> dict[str, Any]:
        """Revoke a link and disconnect its room."""
        row = self.catalog.revoke_invitation(invitation_id, scope or Scope.city())
        await self.disconnect_invitation(row["session_id"], row["id"])
        self.cluster.invitation_revoked(row["session_id"], row["id"])
        return row

    async def delete_from_catalog(self, kind: str, row_id: int,
                                  scope: Scope | None = None) -> None:
        """Delete a unit, course or site; the invitations it takes with it
        stop working and their rooms are disconnected."""
        if kind not in CATALOG_KINDS:
            raise ValueError(kind)
        scoped = {"scope": scope or Scope.city()} if kind in ("sites", "courses") else {}
        removed = getattr(self.catalog, f"delete_{kind[:-1]}")(row_id, **scoped)
        for invitation in removed:
            await self.disconnect_invitation(invitation["session_id"], invitation["id"])
            # Edges and workers check the token by its signature: tell them.
            self.cluster.invitation_revoked(invitation["session_id"], invitation["id"])

    # ------------------------------------------------------------ learners

    def my_study(self, token: str) -> dict[str, Any]:
        """我的学习 of a personal link (NotAuthorized for a forged link, Gone
        for a revoked or replaced one)."""
        learner = self.learners.check_link(token)
        study = self.study.overview(learner, self.org.path(learner["org_node_id"]))
        study["surveys"] = self.surveys.for_learner(int(learner["id"]))
        return study

    def learner_media(self, token: str, item_id: str) -> Path:
        """The file of an item of the learner's units (Forbidden for another)."""
        learner = self.learners.check_link(token)
        self.study.assigned_item(int(learner["id"]), item_id)
        return Path(self.archive.media_path(item_id))

    def learner_reading(self, token: str, reading_id: int) -> tuple[Path, str]:
        """The file of a reading of one of the learner's units, and its type."""
        learner = self.learners.check_link(token)
        self.study.require_assigned_unit(int(learner["id"]), self.readings.unit_of(reading_id))
        return self.readings.file(reading_id)

    def mark_read(self, token: str, reading_id: int, read: bool) -> None:
        """A learner marks a reading of one of its units read (or not)."""
        learner = self.learners.check_link(token)
        self.study.require_assigned_unit(int(learner["id"]), self.readings.unit_of(reading_id))
        self.readings.mark_read(int(learner["id"]), reading_id, read)

    def submit_writeup(self, token: str, unit_id: int,
                       data: Mapping[str, Any]) -> dict[str, Any]:
        """A learner's write-up for one of its units, new or again."""
        learner = self.learners.check_link(token)
        self.study.require_assigned_unit(int(learner["id"]), unit_id)
        return self.writeups.submit(int(learner["id"]), unit_id, data)

    def answer_survey(self, token: str, survey_id: int, answers: object) -> list[Any]:
        """A learner's answer to a survey sent to it, new or changed while open."""
        learner = self.learners.check_link(token)
        return self.surveys.answer(int(learner["id"]), survey_id, answers)

    def writeup_staging(self, token: str, unit_id: int) -> tuple[int, Path]:
        """Where to receive the attachment of a learner's write-up."""
        learner = self.learners.check_link(token)
        self.study.require_assigned_unit(int(learner["id"]), unit_id)
        return self.writeups.staging_path(int(learner["id"]), unit_id)

    # ------------------------------------------------------------ scopes

    def scope_of(self, admin: Admin) -> Scope:
        """What an account may see and change, from its role and node."""
        if admin.role is AccountRole.CITY_ADMIN:
            return Scope.city(admin.id)
        tree = self.org.tree()
        node = admin.org_node_id if admin.org_node_id in tree else ROOT_NODE
        chain = tree.chain(node)
        return Scope(admin.role, node, frozenset(tree.subtree(node)), frozenset(chain[:-1]),
                     admin.id)

    def _organizer(self, data: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
        """The form with its organizer: the caller's node unless it names one
        of its subtree; a replay's lecture must be one the caller may read."""
        values = dict(data)
        organizer = values.get("organizer_id")
        if organizer in (None, ""):
            values["organizer_id"] = scope.node_id
        elif isinstance(organizer, int) and not isinstance(organizer, bool) \
                and organizer in self.org.tree():
            scope.require_covers(organizer, "organization node")
        else:
            raise Invalid({"organizer_id": "error.unknown_reference"})
        self._check_presenter(values, scope)
        self._check_course(values, scope)
        item_id = values.get("replay_item_id")
        if isinstance(item_id, str) and item_id:
            row = self.db.one("SELECT owner_id, state FROM archive_items WHERE id = ?",
                              (item_id,))
            if row is not None and not scope.reads_item(row):
                raise Forbidden("this lecture belongs to another part of the organization")
        return values

    def _check_course(self, data: Mapping[str, Any], scope: Scope) -> None:
        """A session's course: the city's or the caller's own (Forbidden else)."""
        course = data.get("course_id")
        # Beyond SQLite's integers no row exists: Fields says so (unknown_reference).
        if isinstance(course, int) and not isinstance(course, bool) and 0 < course < 2**63:
            row = self.db.one("SELECT owner_id FROM courses WHERE id = ?", (course,))
            if row is not None and not (scope.reads_course(row) or scope.is_city):
                raise Forbidden("this course belongs to another part of the organization")

    def _check_presenter(self, data: Mapping[str, Any], scope: Scope) -> None:
        presenter = data.get("presenter_id")
        if isinstance(presenter, int) and not isinstance(presenter, bool) \
                and 0 < presenter < 2**63:
            row = self.db.one("SELECT org_node_id FROM admins WHERE id = ?", (presenter,))
            if row is not None and not scope.covers(row["org_node_id"]):
                raise Forbidden("this presenter belongs to another part of the organization")

    def schedule_session(self, data: Mapping[str, Any], scope: Scope | None = None) -> Session:
        """A new session (live, or a replay of an archived lecture), organized
        by the caller's node (or a node of its subtree)."""
        values = self._organizer(data, scope or Scope.city())
        session = self.sessions.create(self.replays.prepare(values))
        self.replays.schedule(session.id)
        return session

    def reschedule_session(self, session: Session, data: Mapping[str, Any],
                           scope: Scope | None = None) -> Session:
        self._check_presenter(data, scope or Scope.city())
        self._check_course(data, scope or Scope.city())
        session = self.sessions.update(session, data)
        self.replays.schedule(session.id)  # the start time may have moved
        return session

    async def end_session(self, session: Session) -> None:
        """The lecture is over: its recording is finished, its replay stopped,
        every room disconnected."""
        if self.archive.recording_of(session.id) is not None:
            self.archive.stop_recording(session.id)
        await self.replays.stop(session.id)
        await self.sessions.end(session)
        self.cluster.session_ended(session.id)

    def discussion(self, session: Session) -> Discussion:
        """The discussion of a live session (made on first use)."""

        def name(invitation_id: str) -> str | None:
            return self.catalog.current_site_name(invitation_id, session.id)

        return self.discussions.of(session.id, session.broadcast, name)
