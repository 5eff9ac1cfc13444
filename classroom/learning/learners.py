"""The roster (学员名册): learners on org nodes, their CSV import, their units,
and the state of their personal links.

A learner hangs on a node of the organization tree and may name a site (its
room: the lecture it attends is its site's). Scopes are the sites' own: a
city admin manages every learner, a district admin those of its subtree, an
auditor reads its subtree; units stay the city's, and a district assigns its
own learners to them. Every write validates all fields first (``Invalid``
with message keys), so a refused request writes nothing.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from classroom.access.org import OrgTree
from classroom.access.roles import Scope
from classroom.catalog import Fields
from classroom.db import Database
from classroom.errors import Gone, Invalid, Missing, NotAuthorized
from classroom.learning.links import BadLink, LinkClaims, LinkSigner

MAX_LEARNER_NAME = 64
MAX_POSITION = 100
MAX_PHONE = 20
MAX_IMPORT_ROWS = 20_000
PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,18}[0-9]$")
CSV_HEADER = ("name", "org_path", "site", "position", "phone")

LEARNERS_SQL = ("SELECT l.id, l.name, l.org_node_id, l.site_id, s.name AS site_name, "
                "l.position, l.phone, l.link_generation, l.link_revoked_at, l.created_at "
                "FROM learners l LEFT JOIN sites s ON s.id = l.site_id")


class Learners:
    def __init__(self, db: Database, org: OrgTree, signer: LinkSigner,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.org = org
        self.signer = signer
        self._clock = clock

    # ------------------------------------------------------------ reading

    def _describe(self, row: dict[str, Any], units: Mapping[int, list[int]]) -> dict[str, Any]:
        learner = {k: row[k] for k in ("id", "name", "org_node_id", "site_id", "site_name",
                                       "position", "phone", "created_at")}
        learner["org_path"] = self.org.path(row["org_node_id"])
        learner["link_active"] = row["link_generation"] > 0 and row["link_revoked_at"] is None
        learner["unit_ids"] = units.get(row["id"], [])
        return learner

    def _units_of(self, ids: Iterable[int] | None) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        sql = "SELECT learner_id, unit_id FROM learner_units"
        rows = self.db.all(sql + " ORDER BY unit_id")
        wanted = None if ids is None else set(ids)
        for row in rows:
            if wanted is None or row["learner_id"] in wanted:
                found.setdefault(row["learner_id"], []).append(row["unit_id"])
        return found

    def _row(self, learner_id: int) -> dict[str, Any]:
        row = self.db.one(LEARNERS_SQL + " WHERE l.id = ?", (learner_id,))
        if row is None:
            raise Missing("no such learner")
        return row

    def learner(self, learner_id: int, scope: Scope) -> dict[str, Any]:
        row = self._row(learner_id)
        scope.require_covers(row["org_node_id"], "learner")
        return self._describe(row, self._units_of([learner_id]))

    def learners(self, scope: Scope, unit_id: int | None = None) -> list[dict[str, Any]]:
        """The learners in the caller's part of the tree (of one unit if given)."""
        sql = LEARNERS_SQL
        params: list[Any] = []
        if unit_id is not None:
            sql += " JOIN learner_units lu ON lu.learner_id = l.id AND lu.unit_id = ?"
            params.append(unit_id)
        rows = [r for r in self.db.all(sql + " ORDER BY l.id", params)
                if scope.covers(r["org_node_id"])]
        units = self._units_of(None)
        return [self._describe(r, units) for r in rows]

    # ------------------------------------------------------------ writing

    def _fields(self, data: Mapping[str, Any], scope: Scope, partial: bool) -> dict[str, Any]:
        fields = Fields(data, partial=partial)
        fields.text("name", required=True, max_length=MAX_LEARNER_NAME)
        fields.text("position", max_length=MAX_POSITION)
        fields.text("phone", max_length=MAX_PHONE)
        tree = self.org.tree()
        fields.reference("org_node_id", lambda n: n in tree)
        fields.reference("site_id", lambda n: self.db.one(
            "SELECT 1 FROM sites WHERE id = ?", (n,)) is not None)
        phone = fields.values.get("phone")
        if phone and not PHONE.match(phone):
            fields.errors["phone"] = "error.learner_phone"
        values = fields.check()
        site_id = values.get("site_id")
        if site_id is not None:
            site = self.db.one("SELECT org_node_id FROM sites WHERE id = ?", (site_id,))
            assert site is not None
            scope.require_covers(site["org_node_id"], "site")
            if values.get("org_node_id") is None and "org_node_id" not in data:
                values["org_node_id"] = site["org_node_id"]
        if not partial and values.get("org_node_id") is None:
            raise Invalid({"org_node_id": "error.required"})
        if values.get("org_node_id") is not None:
            scope.require_covers(values["org_node_id"], "organization node")
        elif "org_node_id" in values:
            raise Invalid({"org_node_id": "error.required"})
        return values

    def create(self, data: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
        values = self._fields(data, scope, partial=False)
        learner_id = self.db.execute(
            "INSERT INTO learners (name, org_node_id, site_id, position, phone, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (values["name"], values["org_node_id"], values.get("site_id"),
             values.get("position", ""), values.get("phone", ""), self._clock()))
        return self.learner(learner_id, scope)

    def update(self, learner_id: int, data: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
        row = self._row(learner_id)
        scope.require_covers(row["org_node_id"], "learner")
        values = self._fields(data, scope, partial=True)
        if values:
            assignments = ", ".join(f"{name} = ?" for name in values)
            self.db.execute(f"UPDATE learners SET {assignments} WHERE id = ?",
                            (*values.values(), learner_id))
        return self.learner(learner_id, scope)

    def delete(self, learner_id: int, scope: Scope) -> None:
        row = self._row(learner_id)
        scope.require_covers(row["org_node_id"], "learner")
        self.db.execute("DELETE FROM learners WHERE id = ?", (learner_id,))

    # ------------------------------------------------------------ import

    def import_csv(self, text: str, scope: Scope) -> list[dict[str, Any]]:
        """CSV with a header ``name,org_path,site,position,phone``: every row or none.

        ``org_path`` is an existing node's path (empty: the caller's own
        node), ``site`` a site's name on that node (or empty). Bad rows are
        422 naming each (``row N``: its message key), a path outside the
        caller's part of the tree is 403; nothing is written.
        """
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        try:
            fieldnames = [f.strip() for f in reader.fieldnames or []]
            records = [{(k or "").strip(): (v or "").strip() for k, v in raw.items()
                        if isinstance(v, str) or v is None} for raw in reader]
        except csv.Error as exc:
            raise Invalid({"file": "error.csv_malformed"}) from exc
        if "name" not in fieldnames:
            raise Invalid({"file": "error.learner_csv_header"})
        if not records:
            raise Invalid({"file": "error.csv_empty"})
        if len(records) > MAX_IMPORT_ROWS:
            raise Invalid({"file": "error.too_long"})
        errors: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        for number, record in enumerate(records, start=1):
            try:
                node = (self.org.resolve_path(record["org_path"], scope.node_id)
                        if record.get("org_path") else scope.node_id)
            except Invalid:
                errors[f"row {number}"] = "error.org_dangling"
                continue
            data: dict[str, Any] = {"name": record.get("name", ""), "org_node_id": node,
                                    "position": record.get("position", ""),
                                    "phone": record.get("phone", "")}
            if record.get("site"):
                site = self.db.one("SELECT id FROM sites WHERE name = ? AND org_node_id = ?",
                                   (record["site"], node))
                if site is None:
                    errors[f"row {number}"] = "error.learner_site"
                    continue
                data["site_id"] = site["id"]
            try:
                rows.append(self._fields(data, scope, partial=False))
            except Invalid as exc:
                errors[f"row {number}"] = next(iter(exc.errors.values()))
        if errors:
            raise Invalid(errors)
        now = self._clock()
        made: list[int] = []
        with self.db.transaction():
            for values in rows:
                made.append(self.db.execute(
                    "INSERT INTO learners (name, org_node_id, site_id, position, phone, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (values["name"], values["org_node_id"], values.get("site_id"),
                     values.get("position", ""), values.get("phone", ""), now)))
        units = self._units_of(made)
        return [self._describe(self._row(n), units) for n in made]

    # ------------------------------------------------------------ units

    def _unit(self, unit_id: int) -> None:
        if self.db.one("SELECT 1 FROM units WHERE id = ?", (unit_id,)) is None:
            raise Missing("no such unit")

    def chosen(self, data: Mapping[str, Any], scope: Scope) -> list[int]:
        """The learners a body names: ``learner_ids`` (a list), or every
        learner of ``org_node_id``'s subtree; all within the caller's scope."""
        ids, node = data.get("learner_ids"), data.get("org_node_id")
        if (ids is None) == (node is None):
            raise Invalid({"learner_ids": "error.learner_choose"})
        if node is not None:
            if isinstance(node, bool) or not isinstance(node, int) or node not in self.org.tree():
                raise Invalid({"org_node_id": "error.unknown_reference"})
            scope.require_covers(node, "organization node")
            subtree = self.org.subtree(node)
            return [r["id"] for r in self.db.all("SELECT id, org_node_id FROM learners")
                    if r["org_node_id"] in subtree]
        if not isinstance(ids, list) or not ids or len(ids) > MAX_IMPORT_ROWS or any(
                isinstance(i, bool) or not isinstance(i, int) for i in ids):
            raise Invalid({"learner_ids": "error.learner_choose"})
        chosen = sorted(set(ids))
        found = {r["id"]: r["org_node_id"] for r in self.db.all(
            "SELECT id, org_node_id FROM learners WHERE id IN (SELECT value FROM json_each(?))",
            (str(chosen).replace(" ", ""),))}
        if len(found) != len(chosen):
            raise Invalid({"learner_ids": "error.unknown_reference"})
        for node_id in found.values():
            scope.require_covers(node_id, "learner")
        return chosen

    def assign(self, unit_id: int, data: Mapping[str, Any], scope: Scope) -> int:
        """Assign learners to a unit; returns how many were newly assigned."""
        self._unit(unit_id)
        chosen = self.chosen(data, scope)
        now = self._clock()
        with self.db.transaction():
            before = self.db.one("SELECT COUNT(*) AS n FROM learner_units WHERE unit_id = ?",
                                 (unit_id,))
            for learner_id in chosen:
                self.db.execute("INSERT OR IGNORE INTO learner_units (learner_id, unit_id, "
                                "assigned_at) VALUES (?, ?, ?)", (learner_id, unit_id, now))
            after = self.db.one("SELECT COUNT(*) AS n FROM learner_units WHERE unit_id = ?",
                                (unit_id,))
        assert before is not None and after is not None
        return int(after["n"]) - int(before["n"])

    def unassign(self, unit_id: int, data: Mapping[str, Any], scope: Scope) -> int:
        self._unit(unit_id)
        chosen = self.chosen(data, scope)
        with self.db.transaction():
            removed = sum(self.db.execute(
                "DELETE FROM learner_units WHERE learner_id = ? AND unit_id = ?",
                (learner_id, unit_id)) for learner_id in chosen)
        return removed

    # ------------------------------------------------------------ links

    def issue_link(self, learner_id: int, scope: Scope) -> str:
        """A new personal link's token; the learner's earlier link stops working."""
        row = self._row(learner_id)
        scope.require_covers(row["org_node_id"], "learner")
        generation = int(row["link_generation"]) + 1
        self.db.execute("UPDATE learners SET link_generation = ?, link_revoked_at = NULL "
                        "WHERE id = ?", (generation, learner_id))
        return self.signer.sign(LinkClaims(learner_id, generation))

    def current_token(self, learner_id: int, scope: Scope) -> str:
        """The token of the learner's working link (Missing if none)."""
        row = self._row(learner_id)
        scope.require_covers(row["org_node_id"], "learner")
        if row["link_generation"] == 0 or row["link_revoked_at"] is not None:
            raise Missing("this learner has no working link")
        return self.signer.sign(LinkClaims(learner_id, int(row["link_generation"])))

    def revoke_link(self, learner_id: int, scope: Scope) -> None:
        """The learner's link stops working at its next request."""
        row = self._row(learner_id)
        scope.require_covers(row["org_node_id"], "learner")
        self.db.execute("UPDATE learners SET link_generation = link_generation + 1, "
                        "link_revoked_at = ? WHERE id = ?", (self._clock(), learner_id))

    def check_link(self, token: str) -> dict[str, Any]:
        """The learner of a genuine, current link: NotAuthorized for a token
        that is not ours, Gone for one revoked or replaced, or whose learner
        was deleted."""
        try:
            claims = self.signer.verify(token)
        except BadLink as exc:
            raise NotAuthorized("not a learner link") from exc
        row = self.db.one(LEARNERS_SQL + " WHERE l.id = ?", (claims.learner_id,))
        if row is None or row["link_generation"] != claims.generation \
                or row["link_revoked_at"] is not None:
            raise Gone("this learner link was revoked or replaced")
        return row
