"""The schedule: units (专题), courses (课程), sites (分课堂), sessions (场次)
and invitations, with the validation every form and API call shares.

Every write validates all fields first and raises :class:`Invalid` with
messages per field (message keys of the i18n catalog), so a failed submit
writes nothing.
"""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from classroom.access.org import OrgTree
from classroom.access.roles import Scope
from classroom.db import ROOT_NODE, Database
from classroom.errors import Forbidden, Invalid, Missing

MAX_NAME = 200
MAX_TEXT = 2000
MAX_BATCH = 50
VIDEO_CODECS = ("H264", "VP8")
DEFAULT_INVITATION_DAYS = 30


@dataclass
class Fields:
    """Collects validation errors while reading a submitted mapping."""

    data: Mapping[str, Any]
    partial: bool = False  # PATCH: absent fields are left alone

    def __post_init__(self) -> None:
        self.errors: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def text(self, name: str, *, required: bool = False, max_length: int = MAX_NAME) -> None:
        if name not in self.data:
            if required and not self.partial:
                self.errors[name] = "error.required"
            return
        value = self.data[name]
        if value is None and not required:
            self.values[name] = ""
            return
        if not isinstance(value, str):
            self.errors[name] = "error.not_text"
            return
        value = value.strip()
        if required and not value:
            self.errors[name] = "error.required"
        elif len(value) > max_length:
            self.errors[name] = "error.too_long"
        else:
            self.values[name] = value

    def reference(
        self, name: str, exists: Callable[[int], bool], *, required: bool = False
    ) -> None:
        if name not in self.data or self.data[name] in (None, ""):
            if required and not self.partial:
                self.errors[name] = "error.required"
            elif name in self.data:
                self.values[name] = None
            return
        value = self.data[name]
        # An id is an integer or its text (from a form); not 1.5, true or [1].
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.errors[name] = "error.not_a_number"
            return
        try:
            number = int(value)
        except ValueError:
            self.errors[name] = "error.not_a_number"
            return
        # Beyond SQLite's 64-bit integers no row exists (and the query would fail).
        if not 0 < number < 2**63 or not exists(number):
            self.errors[name] = "error.unknown_reference"
        else:
            self.values[name] = number

    def timestamp(self, name: str) -> None:
        if name not in self.data:
            return
        value = self.data[name]
        if value in (None, ""):
            self.values[name] = None
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.errors[name] = "error.not_a_time"
            return
        if not 946684800 <= value <= 4102444800:  # 2000 … 2100
            self.errors[name] = "error.not_a_time"
            return
        self.values[name] = float(value)

    def whole_number(self, name: str, low: int, high: int) -> None:
        """An integer from ``low`` to ``high`` (absent: left to the default)."""
        if name not in self.data:
            return
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.errors[name] = "error.not_a_whole_number"
        elif not low <= value <= high:
            self.errors[name] = "error.out_of_range"
        else:
            self.values[name] = value

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> None:
        if name not in self.data:
            if default is not None and not self.partial:
                self.values[name] = default
            return
        if self.data[name] not in choices:
            self.errors[name] = "error.bad_choice"
        else:
            self.values[name] = self.data[name]

    def check(self) -> dict[str, Any]:
        if self.errors:
            raise Invalid(self.errors)
        return self.values


CITY = Scope.city()
SESSIONS_SQL = ("SELECT s.*, c.title AS course_title, c.lecturer AS lecturer, "
                "u.name AS unit_name, o.name AS organizer_name, "
                "o.parent_id IS NULL AS organizer_is_city, p.username AS presenter_name "
                "FROM sessions s LEFT JOIN courses c ON c.id = s.course_id "
                "LEFT JOIN units u ON u.id = c.unit_id "
                "LEFT JOIN org_nodes o ON o.id = s.organizer_id "
                "LEFT JOIN admins p ON p.id = s.presenter_id")
INVITATIONS_SQL = ("SELECT i.*, s.name AS site_name, s.org_path AS org_path, "
                   "s.org_node_id AS org_node_id FROM invitations i "
                   "JOIN sites s ON s.id = i.site_id")


class Catalog:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self.org = OrgTree(db, clock)

    # ---------------------------------------------------------------- units
    def _exists(self, table: str) -> Callable[[int], bool]:
        return lambda row_id: self.db.one(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)) \
            is not None

    def create_unit(self, data: Mapping[str, Any]) -> dict[str, Any]:
        fields = Fields(data)
        fields.text("name", required=True)
        fields.text("description", max_length=MAX_TEXT)
        values = fields.check()
        row_id = self.db.execute(
            "INSERT INTO units (name, description, created_at) VALUES (?, ?, ?)",
            (values["name"], values.get("description", ""), self._clock()))
        return self.unit(row_id)

    def unit(self, unit_id: int) -> dict[str, Any]:
        return _found(self.db.one("SELECT * FROM units WHERE id = ?", (unit_id,)), "unit")

    def units(self) -> list[dict[str, Any]]:
        return self.db.all("SELECT * FROM units ORDER BY id")

    def update_unit(self, unit_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
        self.unit(unit_id)
        fields = Fields(data, partial=True)
        fields.text("name", required=True)
        fields.text("description", max_length=MAX_TEXT)
        self._update("units", unit_id, fields.check())
        return self.unit(unit_id)

    def delete_unit(self, unit_id: int) -> list[dict[str, Any]]:
        """Delete a unit (its courses stay, unassigned); no invitation goes."""
        self.unit(unit_id)
        self.db.execute("DELETE FROM units WHERE id = ?", (unit_id,))
        return []

    # -------------------------------------------------------------- courses
    def _course_fields(self, data: Mapping[str, Any], partial: bool) -> dict[str, Any]:
        fields = Fields(data, partial=partial)
        fields.text("title", required=True)
        fields.text("lecturer")
        fields.reference("unit_id", self._exists("units"))
        return fields.check()

    # A course belongs to the node that made it: the city's are every
    # district's to use, a district's (its own lecturers) its own.

    def create_course(self, data: Mapping[str, Any], scope: Scope = CITY) -> dict[str, Any]:
        values = self._course_fields(data, partial=False)
        row_id = self.db.execute(
            "INSERT INTO courses (title, lecturer, unit_id, created_at, owner_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (values["title"], values.get("lecturer", ""), values.get("unit_id"),
             self._clock(), scope.node_id))
        return self.course(row_id)

    def course(self, course_id: int, scope: Scope = CITY) -> dict[str, Any]:
        row = _found(self.db.one(
            "SELECT c.*, u.name AS unit_name FROM courses c "
            "LEFT JOIN units u ON u.id = c.unit_id WHERE c.id = ?", (course_id,)), "course")
        if not scope.reads_course(row):
            raise Forbidden("this course belongs to another part of the organization")
        return row

    def courses(self, scope: Scope = CITY) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT c.*, u.name AS unit_name FROM courses c "
                           "LEFT JOIN units u ON u.id = c.unit_id ORDER BY c.id")
        return [row for row in rows if scope.reads_course(row)]

    def _managed_course(self, course_id: int, scope: Scope) -> None:
        if not scope.manages_course(self.course(course_id, scope)):
            raise Forbidden("this course is the city's (or another district's)")

    def update_course(self, course_id: int, data: Mapping[str, Any],
                      scope: Scope = CITY) -> dict[str, Any]:
        self._managed_course(course_id, scope)
        self._update("courses", course_id, self._course_fields(data, partial=True))
        return self.course(course_id)

    def delete_course(self, course_id: int, scope: Scope = CITY) -> list[dict[str, Any]]:
        """Delete a course (its sessions stay, unassigned); no invitation goes."""
        self._managed_course(course_id, scope)
        self.db.execute("DELETE FROM courses WHERE id = ?", (course_id,))
        return []

    # ---------------------------------------------------------------- sites
    # A site hangs on an org node; its org_path is the node's path. A form
    # names the node (org_node_id) or the path (org_path, whose missing nodes
    # are made); either must lie in the caller's part of the tree.

    def _site_fields(self, data: Mapping[str, Any], partial: bool) -> dict[str, Any]:
        fields = Fields(data, partial=partial)
        fields.text("name", required=True)
        fields.text("org_path", max_length=MAX_TEXT)
        fields.reference("org_node_id", self._exists("org_nodes"))
        values = fields.check()
        if "org_path" in values:
            values["org_path"] = normalize_org_path(values["org_path"])
        if values.get("org_node_id") is None:
            values.pop("org_node_id", None)
        return values

    def _place_site(self, values: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Resolve the site's node from the checked values (in the scope)."""
        if "org_node_id" in values:
            scope.require_covers(values["org_node_id"], "organization node")
            values["org_path"] = self.org.path(values["org_node_id"])
        elif "org_path" in values:
            values["org_node_id"] = self.org.resolve_path(values["org_path"], scope.node_id,
                                                          create=True)
        return values

    def _site_node_allowed(self, values: Mapping[str, Any], scope: Scope) -> None:
        """Forbidden if the values name a node or path outside the scope."""
        if "org_node_id" in values:
            scope.require_covers(values["org_node_id"], "organization node")
        elif "org_path" in values:
            self.org.check_path(values["org_path"], scope.node_id)

    def create_site(self, data: Mapping[str, Any], scope: Scope = CITY) -> dict[str, Any]:
        values = self._site_fields(data, partial=False)
        if "org_node_id" not in values and "org_path" not in values:
            values["org_node_id"] = scope.node_id
        self._site_node_allowed(values, scope)
        if "org_node_id" in values:
            values["org_path"] = self.org.path(values["org_node_id"])
        if self._site_taken(values["name"], values.get("org_path", "")):
            raise Invalid({"name": "error.duplicate_site"})
        with self.db.transaction():
            self._place_site(values, scope)
            row_id = self.db.execute(
                "INSERT INTO sites (name, org_path, org_node_id, created_at) VALUES (?, ?, ?, ?)",
                (values["name"], values["org_path"], values["org_node_id"], self._clock()))
        return self.site(row_id)

    def _site_taken(self, name: str, org_path: str, other_than: int | None = None) -> bool:
        row = self.db.one("SELECT id FROM sites WHERE name = ? AND org_path = ?",
                          (name, org_path))
        return row is not None and row["id"] != other_than

    def site(self, site_id: int, scope: Scope = CITY) -> dict[str, Any]:
        row = _found(self.db.one("SELECT * FROM sites WHERE id = ?", (site_id,)), "site")
        scope.require_covers(row["org_node_id"], "site")
        return row

    def sites(self, scope: Scope = CITY) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT * FROM sites ORDER BY org_path, name")
        return [row for row in rows if scope.covers(row["org_node_id"])]

    def update_site(self, site_id: int, data: Mapping[str, Any],
                    scope: Scope = CITY) -> dict[str, Any]:
        current = self.site(site_id, scope)
        values = self._site_fields(data, partial=True)
        self._site_node_allowed(values, scope)
        path = (self.org.path(values["org_node_id"]) if "org_node_id" in values
                else values.get("org_path", current["org_path"]))
        if self._site_taken(values.get("name", current["name"]), path, other_than=site_id):
            raise Invalid({"name": "error.duplicate_site"})
        with self.db.transaction():
            self._update("sites", site_id, self._place_site(values, scope))
        return self.site(site_id)

    def delete_site(self, site_id: int, scope: Scope = CITY) -> list[dict[str, Any]]:
        """Delete a site and its invitations; returns the invitations removed
        (so rooms still connected through them can be disconnected)."""
        self.site(site_id, scope)
        removed = self.db.all("SELECT id, session_id FROM invitations WHERE site_id = ?",
                              (site_id,))
        self.db.execute("DELETE FROM sites WHERE id = ?", (site_id,))
        return removed

    def import_sites(self, text: str, scope: Scope = CITY) -> list[dict[str, Any]]:
        """CSV with a header row: name,org_path. All rows or none.

        Raises :class:`Invalid` with keys ``row N`` (1-based data rows) for
        every bad row, and :class:`Forbidden` for a path outside the scope;
        nothing is written then. An empty path puts the site on the scope's
        own node.
        """
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        try:
            fieldnames = reader.fieldnames
            records = list(reader)
        except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
            raise Invalid({"file": "error.csv_malformed"}) from exc
        if not fieldnames or "name" not in [f.strip() for f in fieldnames]:
            raise Invalid({"file": "error.csv_header"})
        rows: list[dict[str, Any]] = []
        errors: dict[str, str] = {}
        seen: set[tuple[str, str]] = set()
        outside = False
        own_path = self.org.path(scope.node_id)
        for number, raw in enumerate(records, start=1):
            record = {(k or "").strip(): (v or "") for k, v in raw.items()}
            record.pop("org_node_id", None)
            try:
                values = self._site_fields(record, partial=False)
                if not values.get("org_path"):
                    values["org_path"] = own_path
                self._site_node_allowed(values, scope)
            except Invalid as exc:
                errors[f"row {number}"] = next(iter(exc.errors.values()))
                continue
            except Forbidden:
                outside = True
                continue
            key = (values["name"], values.get("org_path", ""))
            if key in seen or self._site_taken(*key):
                errors[f"row {number}"] = "error.duplicate_site"
                continue
            seen.add(key)
            rows.append(values)
        if outside:
            raise Forbidden("a row names an organization path outside your part of the tree")
        if not rows and not errors:
            raise Invalid({"file": "error.csv_empty"})
        if errors:
            raise Invalid(errors)
        created = []
        with self.db.transaction():
            for values in rows:
                self._place_site(values, scope)
                row_id = self.db.execute(
                    "INSERT INTO sites (name, org_path, org_node_id, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (values["name"], values["org_path"], values["org_node_id"], self._clock()))
                created.append(row_id)
        return [self.site(row_id) for row_id in created]

    # ------------------------------------------------------------- sessions
    def _session_fields(self, data: Mapping[str, Any], partial: bool) -> dict[str, Any]:
        fields = Fields(data, partial=partial)
        fields.text("title", required=True)
        fields.text("batch", max_length=MAX_BATCH)
        fields.reference("course_id", self._exists("courses"))
        fields.timestamp("scheduled_start")
        fields.timestamp("scheduled_end")
        # A room attended if connected for at least this percent of the session.
        fields.whole_number("attendance_threshold", 1, 100)
        fields.reference("presenter_id", lambda account: self.db.one(
            "SELECT 1 FROM admins WHERE id = ? AND role = 'presenter'", (account,)) is not None)
        if not partial:
            fields.reference("organizer_id", self._exists("org_nodes"))
            fields.choice("video_codec", VIDEO_CODECS, default="H264")
            fields.text("replay_item_id", max_length=16)
        else:
            for fixed in ("video_codec", "replay_item_id", "organizer_id"):
                if fixed in data:
                    fields.errors[fixed] = "error.fixed_once_created"
        values = fields.check()
        start, end = values.get("scheduled_start"), values.get("scheduled_end")
        if start is not None and end is not None and end <= start:
            raise Invalid({"scheduled_end": "error.end_before_start"})
        return values

    def create_session(self, data: Mapping[str, Any], publish_token: str,
                       view_token: str) -> dict[str, Any]:
        values = self._session_fields(data, partial=False)
        session_id = secrets.token_urlsafe(8)
        replay = values.get("replay_item_id") or None
        self.db.execute(
            "INSERT INTO sessions (id, title, course_id, batch, scheduled_start, scheduled_end,"
            " video_codec, publish_token, view_token, created_at, replay_item_id, replay_state,"
            " attendance_threshold, organizer_id, presenter_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, values["title"], values.get("course_id"), values.get("batch", ""),
             values.get("scheduled_start"), values.get("scheduled_end"),
             values["video_codec"], publish_token, view_token, self._clock(), replay,
             "waiting" if replay else None, values.get("attendance_threshold", 80),
             values.get("organizer_id") or ROOT_NODE, values.get("presenter_id")))
        return self.session(session_id)

    def session(self, session_id: str) -> dict[str, Any]:
        return _found(self.db.one(
            SESSIONS_SQL + " WHERE s.id = ?", (session_id,)), "session")

    def sessions(self) -> list[dict[str, Any]]:
        return self.db.all(
            SESSIONS_SQL + " ORDER BY COALESCE(s.scheduled_start, s.created_at) DESC")

    def update_session(self, session_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        current = self.session(session_id)
        values = self._session_fields(data, partial=True)
        start = values.get("scheduled_start", current["scheduled_start"])
        end = values.get("scheduled_end", current["scheduled_end"])
        if start is not None and end is not None and end <= start:
            raise Invalid({"scheduled_end": "error.end_before_start"})
        self._update("sessions", session_id, values)
        return self.session(session_id)

    def set_session_state(self, session_id: str, state: str) -> dict[str, Any]:
        column = {"live": "started_at", "ended": "ended_at"}[state]
        self.db.execute(
            f"UPDATE sessions SET state = ?, {column} = COALESCE({column}, ?) WHERE id = ?",
            (state, self._clock(), session_id))
        return self.session(session_id)

    # ---------------------------------------------------------- invitations
    def create_invitation(self, session_id: str, data: Mapping[str, Any],
                          scope: Scope = CITY) -> dict[str, Any]:
        """A site's link; the site must be the caller's and lie under the
        session's organizer (a city session invites every district's rooms,
        a district's session its own)."""
        session = self.session(session_id)
        if not scope.manages_session(session):
            raise Forbidden("this session belongs to another part of the organization")
        fields = Fields(data)
        fields.reference("site_id", self._exists("sites"), required=True)
        fields.timestamp("expires_at")
        values = fields.check()
        site = self.site(values["site_id"], scope)
        if site["org_node_id"] not in self.org.subtree(session["organizer_id"] or ROOT_NODE):
            raise Invalid({"site_id": "error.site_outside_organizer"})
        expires_at = values.get("expires_at")
        if expires_at is None:
            base = session["scheduled_end"] or self._clock()
            expires_at = base + DEFAULT_INVITATION_DAYS * 86400
        elif expires_at <= self._clock():
            raise Invalid({"expires_at": "error.in_the_past"})
        existing = self.db.one(
            "SELECT id FROM invitations WHERE session_id = ? AND site_id = ?",
            (session_id, values["site_id"]))
        with self.db.transaction():
            if existing is not None:
                # Inviting a site again replaces its link (the old one stops).
                self.db.execute("DELETE FROM invitations WHERE id = ?", (existing["id"],))
            invitation_id = secrets.token_urlsafe(9)
            self.db.execute(
                "INSERT INTO invitations (id, session_id, site_id, expires_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (invitation_id, session_id, values["site_id"], expires_at, self._clock()))
        return self.invitation(invitation_id)

    def current_site_name(self, invitation_id: str, session_id: str) -> str | None:
        """The site's name of a link of this session that is not revoked."""
        row = self.db.one("SELECT s.name AS name FROM invitations i JOIN sites s "
                          "ON s.id = i.site_id WHERE i.id = ? AND i.session_id = ? "
                          "AND i.revoked_at IS NULL", (invitation_id, session_id))
        return None if row is None else str(row["name"])

    def invitation(self, invitation_id: str) -> dict[str, Any]:
        return _found(self.db.one(INVITATIONS_SQL + " WHERE i.id = ?", (invitation_id,)),
                      "invitation")

    def invitations(self, session_id: str, scope: Scope = CITY) -> list[dict[str, Any]]:
        """The session's links; a scoped caller sees its own sites' only."""
        rows = self.db.all(INVITATIONS_SQL + " WHERE i.session_id = ? "
                           "ORDER BY s.org_path, s.name", (session_id,))
        return [row for row in rows if scope.covers(row["org_node_id"])]

    def revoke_invitation(self, invitation_id: str, scope: Scope = CITY) -> dict[str, Any]:
        """Revoke a link: the caller must manage its session (or, in a
        session from above, the link's site)."""
        row = self.invitation(invitation_id)
        session = self.session(row["session_id"])
        if not scope.manages_session(session):
            raise Forbidden("this link belongs to a session of another part of the "
                            "organization")
        self.db.execute("UPDATE invitations SET revoked_at = COALESCE(revoked_at, ?) "
                        "WHERE id = ?", (self._clock(), invitation_id))
        return self.invitation(invitation_id)

    def report_headcount(self, invitation_id: str, count: int) -> None:
        self.db.execute("UPDATE invitations SET headcount = ?, headcount_at = ? WHERE id = ?",
                        (count, self._clock(), invitation_id))

    # ---------------------------------------------------------------- admin
    def _update(self, table: str, row_id: int | str, values: Mapping[str, Any]) -> None:
        if not values:
            return
        # Column names come from the validated field lists, never from input.
        assignments = ", ".join(f"{column} = ?" for column in values)
        self.db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?",
                        (*values.values(), row_id))


def normalize_org_path(path: str) -> str:
    """'北仑区/ 新碶街道 ' → '北仑区 / 新碶街道' (a prefix match finds the district)."""
    parts = [part.strip() for part in path.replace("／", "/").split("/")]
    return " / ".join(part for part in parts if part)


def _found(row: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if row is None:
        raise Missing(f"no such {what}")
    return row
