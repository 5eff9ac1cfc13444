"""The catalog database: one SQLite file in the data folder, migrated forward.

SQLite calls are short and local, so they run on the event loop; the
connection is in WAL mode so a reader never waits for a writer. Migrations are
numbered SQL scripts applied in order inside one transaction each, recorded in
``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A migration is a SQL script, or a function of the connection for a step
# that SQL alone cannot do (splitting the sites' org paths into a tree).
Migration = str | Callable[[sqlite3.Connection], None]

ROOT_NODE = 1  # the city: the org tree's one root, made by migration 7


def _org_tree(conn: sqlite3.Connection) -> None:
    """Migration 7: the organization tree, accounts' roles, organizers, the audit log.

    Every site's org path ('北仑区 / 新碶街道') becomes a chain of nodes under
    the city (depth 1 a district, 2 a town or street, deeper a village or
    community); today's admins become city admins; today's sessions and
    archive items and courses belong to the city.
    """
    for statement in _statements(_ORG_TREE_SQL):
        conn.execute(statement)
    now = conn.execute("SELECT COALESCE(MIN(created_at), 0) FROM admins").fetchone()[0]
    conn.execute("INSERT INTO org_nodes (id, parent_id, name, kind, created_at) "
                 "VALUES (?, NULL, '全市', 'city', ?)", (ROOT_NODE, now))
    kinds = ("district", "town")
    known: dict[tuple[int, str], int] = {}
    for site_id, org_path, created_at in conn.execute(
            "SELECT id, org_path, created_at FROM sites ORDER BY id").fetchall():
        node = ROOT_NODE
        for depth, name in enumerate(p.strip() for p in str(org_path).split("/")):
            if not name:
                continue
            key = (node, name)
            if key not in known:
                kind = kinds[depth] if depth < len(kinds) else "village"
                known[key] = int(conn.execute(
                    "INSERT INTO org_nodes (parent_id, name, kind, created_at) "
                    "VALUES (?, ?, ?, ?)", (node, name, kind, created_at)).lastrowid or 0)
            node = known[key]
        conn.execute("UPDATE sites SET org_node_id = ? WHERE id = ?", (node, site_id))
    for table, column in (("admins", "org_node_id"), ("sessions", "organizer_id"),
                          ("archive_items", "owner_id"), ("courses", "owner_id")):
        conn.execute(f"UPDATE {table} SET {column} = ?", (ROOT_NODE,))


_ORG_TREE_SQL = """
CREATE TABLE org_nodes (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER REFERENCES org_nodes(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('city', 'district', 'town', 'village', 'department')),
    created_at REAL NOT NULL,
    UNIQUE (parent_id, name)
);
CREATE INDEX org_nodes_by_parent ON org_nodes (parent_id);
ALTER TABLE sites ADD COLUMN org_node_id INTEGER REFERENCES org_nodes(id);
CREATE INDEX sites_by_node ON sites (org_node_id);
ALTER TABLE sessions ADD COLUMN organizer_id INTEGER REFERENCES org_nodes(id);
ALTER TABLE sessions ADD COLUMN presenter_id INTEGER REFERENCES admins(id) ON DELETE SET NULL;
CREATE INDEX sessions_by_organizer ON sessions (organizer_id);
ALTER TABLE archive_items ADD COLUMN owner_id INTEGER REFERENCES org_nodes(id);
ALTER TABLE courses ADD COLUMN owner_id INTEGER REFERENCES org_nodes(id);
ALTER TABLE admins ADD COLUMN role TEXT NOT NULL DEFAULT 'city_admin'
    CHECK (role IN ('city_admin', 'district_admin', 'presenter', 'auditor'));
ALTER TABLE admins ADD COLUMN org_node_id INTEGER REFERENCES org_nodes(id);
ALTER TABLE admins ADD COLUMN disabled_at REAL;
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    account_id INTEGER,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_time ON audit_log (at)
"""

MIGRATIONS: Sequence[Migration] = (
    # 1: the schedule (units, courses, sites, sessions, invitations) and admins
    """
    CREATE TABLE units (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE TABLE courses (
        id INTEGER PRIMARY KEY,
        unit_id INTEGER REFERENCES units(id) ON DELETE SET NULL,
        title TEXT NOT NULL,
        lecturer TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE TABLE sites (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        org_path TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        UNIQUE (org_path, name)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        course_id INTEGER REFERENCES courses(id) ON DELETE SET NULL,
        batch TEXT NOT NULL DEFAULT '',
        scheduled_start REAL,
        scheduled_end REAL,
        video_codec TEXT NOT NULL,
        publish_token TEXT NOT NULL,
        view_token TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'scheduled'
            CHECK (state IN ('scheduled', 'live', 'ended')),
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL
    );
    CREATE TABLE invitations (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        expires_at REAL NOT NULL,
        revoked_at REAL,
        headcount INTEGER,
        headcount_at REAL,
        created_at REAL NOT NULL,
        UNIQUE (session_id, site_id)
    );
    CREATE INDEX invitations_by_session ON invitations (session_id);
    CREATE TABLE admins (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE login_sessions (
        id_digest BLOB PRIMARY KEY,
        admin_id INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 2: the lecture archive (课程录像) and library links for cadres
    """
    CREATE TABLE archive_items (
        id TEXT PRIMARY KEY,
        session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
        course_id INTEGER REFERENCES courses(id) ON DELETE SET NULL,
        title TEXT NOT NULL,
        lecturer TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        recorded_at REAL NOT NULL,
        origin TEXT NOT NULL DEFAULT 'recording' CHECK (origin IN ('recording', 'import')),
        state TEXT NOT NULL DEFAULT 'recording'
            CHECK (state IN ('recording', 'finishing', 'ready', 'failed')),
        failure TEXT,
        progress REAL NOT NULL DEFAULT 0,
        duration REAL,
        size INTEGER,
        video_codec TEXT,
        audio_codec TEXT,
        width INTEGER,
        height INTEGER,
        media_file TEXT,
        has_poster INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX archive_by_course ON archive_items (course_id);
    CREATE INDEX archive_by_session ON archive_items (session_id);
    CREATE TABLE library_links (
        id TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        token_digest BLOB NOT NULL UNIQUE,
        expires_at REAL,
        revoked_at REAL,
        created_at REAL NOT NULL
    );
    """,
    # 3: sessions that replay an archive item (重播) instead of a live publisher
    """
    ALTER TABLE sessions ADD COLUMN replay_item_id TEXT
        REFERENCES archive_items(id) ON DELETE SET NULL;
    ALTER TABLE sessions ADD COLUMN replay_state TEXT
        CHECK (replay_state IN ('waiting', 'playing', 'paused', 'ended', 'failed'));
    ALTER TABLE sessions ADD COLUMN replay_position REAL NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN replay_error TEXT;
    CREATE INDEX sessions_by_replay_item ON sessions (replay_item_id);
    """,
    # 4: attendance (出勤): each site's connections to a session, its headcount
    # reports (corrections stay visible), the per-session threshold, and the
    # last moment the server was known alive (open intervals end there after a
    # crash). Keyed by site, not invitation: a site invited anew keeps its time.
    """
    ALTER TABLE sessions ADD COLUMN attendance_threshold INTEGER NOT NULL DEFAULT 80;
    CREATE TABLE attendance_intervals (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        invitation_id TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        connected_at REAL NOT NULL,
        disconnected_at REAL,
        ended_by TEXT CHECK (ended_by IN ('left', 'restart'))
    );
    CREATE INDEX attendance_by_session ON attendance_intervals
        (session_id, site_id, connected_at);
    CREATE INDEX attendance_by_resource ON attendance_intervals (resource_id);
    CREATE TABLE headcount_reports (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        invitation_id TEXT NOT NULL,
        count INTEGER NOT NULL,
        reported_at REAL NOT NULL
    );
    CREATE INDEX headcounts_by_site ON headcount_reports (session_id, site_id, reported_at);
    CREATE TABLE server_alive (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        alive_at REAL NOT NULL
    );
    """,
    # 5: the stage (研讨) in the archive: the file with the rooms' pictures
    # and the list of their turns (JSON: at, offset, duration, site name).
    """
    ALTER TABLE archive_items ADD COLUMN stage_file TEXT;
    ALTER TABLE archive_items ADD COLUMN stage_turns TEXT NOT NULL DEFAULT '[]';
    """,
    # 6: the SHA-256 and CRC-32 of an item's files, computed where they were
    # made (JSON: {file name: {size, mtime_ns, sha256, crc32}}), so a course
    # package copies a lecture without reading it twice.
    """
    ALTER TABLE archive_items ADD COLUMN file_digests TEXT NOT NULL DEFAULT '{}';
    """,
    # 7: the organization tree, roles, organizers and the audit log (_org_tree)
    _org_tree,
    # 8: learners (学员) on org nodes (and optionally a site, their room), their
    # personal links (a generation: a new link or a revocation moves it on),
    # their units, each unit's self-study videos, and what each learner has
    # played of each item (the union of the ranges, JSON [[start, end], ...]);
    # each unit's reading list (研读书目, an optional PDF/EPUB in the data
    # folder's learning/readings/) and what each learner marked read; each
    # learner's write-up (学用成果总结) per unit and its review; needs surveys
    # (需求调研: questions as JSON), their recipients and one answer each.
    """
    CREATE TABLE learners (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        org_node_id INTEGER NOT NULL REFERENCES org_nodes(id),
        site_id INTEGER REFERENCES sites(id) ON DELETE SET NULL,
        position TEXT NOT NULL DEFAULT '',
        phone TEXT NOT NULL DEFAULT '',
        link_generation INTEGER NOT NULL DEFAULT 0,
        link_revoked_at REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX learners_by_node ON learners (org_node_id);
    CREATE INDEX learners_by_site ON learners (site_id);
    CREATE TABLE learner_units (
        learner_id INTEGER NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        unit_id INTEGER NOT NULL REFERENCES units(id) ON DELETE CASCADE,
        assigned_at REAL NOT NULL,
        PRIMARY KEY (learner_id, unit_id)
    );
    CREATE INDEX learner_units_by_unit ON learner_units (unit_id);
    CREATE TABLE unit_videos (
        unit_id INTEGER NOT NULL REFERENCES units(id) ON DELETE CASCADE,
        item_id TEXT NOT NULL REFERENCES archive_items(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        PRIMARY KEY (unit_id, item_id)
    );
    CREATE TABLE video_progress (
        learner_id INTEGER NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        item_id TEXT NOT NULL REFERENCES archive_items(id) ON DELETE CASCADE,
        ranges TEXT NOT NULL DEFAULT '[]',
        played REAL NOT NULL DEFAULT 0,
        duration REAL NOT NULL,
        position REAL NOT NULL DEFAULT 0,
        completed_at REAL,
        reported_at REAL NOT NULL,
        PRIMARY KEY (learner_id, item_id)
    );
    CREATE TABLE reading_items (
        id INTEGER PRIMARY KEY,
        unit_id INTEGER NOT NULL REFERENCES units(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        file_type TEXT CHECK (file_type IN ('pdf', 'epub')),
        file_size INTEGER,
        created_at REAL NOT NULL
    );
    CREATE INDEX reading_items_by_unit ON reading_items (unit_id);
    CREATE TABLE reading_marks (
        learner_id INTEGER NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        reading_id INTEGER NOT NULL REFERENCES reading_items(id) ON DELETE CASCADE,
        read_at REAL NOT NULL,
        PRIMARY KEY (learner_id, reading_id)
    );
    CREATE INDEX reading_marks_by_item ON reading_marks (reading_id);
    CREATE TABLE writeups (
        id INTEGER PRIMARY KEY,
        learner_id INTEGER NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        unit_id INTEGER NOT NULL REFERENCES units(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        attachment_type TEXT CHECK (attachment_type IN ('pdf', 'docx', 'jpeg', 'png')),
        attachment_size INTEGER,
        state TEXT NOT NULL CHECK (state IN ('submitted', 'accepted', 'returned')),
        comment TEXT NOT NULL DEFAULT '',
        submitted_at REAL NOT NULL,
        reviewed_at REAL,
        reviewed_by TEXT,
        UNIQUE (learner_id, unit_id)
    );
    CREATE INDEX writeups_by_unit ON writeups (unit_id, state);
    CREATE TABLE surveys (
        id INTEGER PRIMARY KEY,
        unit_id INTEGER REFERENCES units(id) ON DELETE SET NULL,
        title TEXT NOT NULL,
        questions TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
        created_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE TABLE survey_recipients (
        survey_id INTEGER NOT NULL REFERENCES surveys(id) ON DELETE CASCADE,
        learner_id INTEGER NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        PRIMARY KEY (survey_id, learner_id)
    );
    CREATE INDEX survey_recipients_by_learner ON survey_recipients (learner_id);
    CREATE TABLE survey_answers (
        survey_id INTEGER NOT NULL REFERENCES surveys(id) ON DELETE CASCADE,
        learner_id INTEGER NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        answers TEXT NOT NULL,
        answered_at REAL NOT NULL,
        PRIMARY KEY (survey_id, learner_id)
    );
    """,
)


class Database:
    """A thin wrapper: rows as dicts, transactions as context managers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a
        # commit on the event loop never waits for the disk (a crash of the
        # process loses nothing; a power cut may lose the last commits).
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA busy_timeout = 5000")

    @property
    def version(self) -> int:
        row = self._conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def migrate(self) -> int:
        """Apply every migration not applied yet; returns the new version."""
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= self.version:
                continue
            with self.transaction():
                if callable(script):
                    script(self._conn)
                else:
                    for statement in _statements(script):
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {number}")
        return self.version

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing: a failed form submit writes nothing."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run a write; returns the last row id (for INSERT) or the row count."""
        cursor = self._conn.execute(sql, params)
        return cursor.lastrowid if sql.lstrip().upper().startswith("INSERT") and \
            cursor.lastrowid is not None else cursor.rowcount

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        row = self._conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self._conn.execute(sql, params).fetchall()]

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection for a long read (a streamed export) that
        may run in a worker thread; WAL lets it read while this one writes.
        The caller closes it."""
        conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    def close(self) -> None:
        self._conn.close()


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (none of ours has ';' inside a string)."""
    for statement in script.split(";"):
        if statement.strip():
            yield statement
