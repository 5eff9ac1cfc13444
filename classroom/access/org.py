"""The organization tree (组织架构): the city, its districts and counties, their
towns and streets, villages and communities, and departments.

The city is the one root (``ROOT_NODE``, made by migration 7). A site (分课堂)
hangs on one node, and its ``org_path`` ('北仑区 / 新碶街道', the names below
the root) is kept equal to its node's path, so reports that match paths keep
working and a site moves with its node. An account is scoped to a node: what
it may touch is that node's subtree (``within`` below); anything outside it
is ``Forbidden`` and nothing is written.

The table is small (a city has hundreds of nodes, not millions): each call
reads it whole, which keeps the rules about cycles and subtrees plain.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from classroom.db import ROOT_NODE, Database
from classroom.errors import Forbidden, Invalid, Missing, StateConflict

KINDS = ("city", "district", "town", "village", "department")
MAX_NODE_NAME = 100
MAX_DEPTH = 8
SEPARATOR = " / "
# The kind a new node gets from its depth when none is given.
_KIND_BY_DEPTH = ("city", "district", "town")


@dataclass(frozen=True)
class Node:
    id: int
    parent_id: int | None
    name: str
    kind: str


class Tree:
    """One reading of the table: parents, children, paths."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.nodes = {int(r["id"]): Node(int(r["id"]), r["parent_id"], str(r["name"]),
                                         str(r["kind"])) for r in rows}
        self.children: dict[int, list[int]] = {}
        for node in self.nodes.values():
            if node.parent_id is not None:
                self.children.setdefault(node.parent_id, []).append(node.id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def chain(self, node_id: int) -> list[int]:
        """From the root down to ``node_id`` (both included)."""
        chain: list[int] = []
        current: int | None = node_id
        while current is not None and current not in chain:
            chain.append(current)
            current = self.nodes[current].parent_id
        return chain[::-1]

    def path(self, node_id: int) -> str:
        """The names below the root: '北仑区 / 新碶街道' ('' for the root)."""
        return SEPARATOR.join(self.nodes[n].name for n in self.chain(node_id)[1:])

    def depth(self, node_id: int) -> int:
        return len(self.chain(node_id)) - 1

    def subtree(self, node_id: int) -> set[int]:
        found = {node_id}
        stack = [node_id]
        while stack:
            for child in self.children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def child(self, parent_id: int, name: str) -> int | None:
        for child in self.children.get(parent_id, []):
            if self.nodes[child].name == name:
                return child
        return None

    def describe(self, node_id: int) -> dict[str, Any]:
        node = self.nodes[node_id]
        return {"id": node.id, "parent_id": node.parent_id, "name": node.name,
                "kind": node.kind, "path": self.path(node_id), "depth": self.depth(node_id)}


def split_path(path: str) -> list[str]:
    """'北仑区/ 新碶街道 ' → ['北仑区', '新碶街道'] (full-width slashes too)."""
    return [part.strip() for part in path.replace("／", "/").split("/") if part.strip()]


def _kind_for(depth: int) -> str:
    return _KIND_BY_DEPTH[depth] if depth < len(_KIND_BY_DEPTH) else "village"


def _name_error(value: Any) -> str | None:
    if not isinstance(value, str):
        return "error.not_text"
    value = value.strip()
    if not value:
        return "error.required"
    if len(value) > MAX_NODE_NAME:
        return "error.too_long"
    if "/" in value or "／" in value or any(ord(ch) < 32 for ch in value):
        return "error.org_bad_name"
    return None


class OrgTree:
    """The organization tree in the catalog database."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        # Every admin request reads the tree (its caller's scope): it is kept
        # until a write here (the generation) or by another connection (SQLite's
        # data_version) changes it. Callers never change a Tree they get.
        self._generation = 0
        self._cached: tuple[tuple[int, int], Tree] | None = None

    def tree(self) -> Tree:
        version = self.db.one("PRAGMA data_version")
        key = (self._generation, int(next(iter(version.values()))) if version else 0)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, Tree(self.db.all(
                "SELECT id, parent_id, name, kind FROM org_nodes")))
        return self._cached[1]

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        """A write to org_nodes; the cached tree is stale from now on."""
        try:
            return self.db.execute(sql, params)
        finally:
            self._generation += 1

    def node(self, node_id: int) -> dict[str, Any]:
        tree = self.tree()
        if node_id not in tree:
            raise Missing("no such organization node")
        return tree.describe(node_id)

    def nodes(self, within: int = ROOT_NODE) -> list[dict[str, Any]]:
        """The subtree of ``within``, each node with its path, in path order."""
        tree = self.tree()
        found = [tree.describe(n) for n in tree.subtree(within)]
        return sorted(found, key=lambda n: (n["path"], n["id"]))

    def subtree(self, node_id: int) -> frozenset[int]:
        return frozenset(self.tree().subtree(node_id))

    def path(self, node_id: int) -> str:
        return self.tree().path(node_id)

    # ------------------------------------------------------------ checks

    @staticmethod
    def _require_within(tree: Tree, node_id: int, within: int) -> None:
        if node_id not in tree.subtree(within):
            raise Forbidden("this organization node is outside your part of the tree")

    def _parent(self, tree: Tree, value: Any, errors: dict[str, str]) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int | str):
            errors["parent_id"] = "error.not_a_number"
            return None
        try:
            parent = int(value)
        except ValueError:
            errors["parent_id"] = "error.not_a_number"
            return None
        if parent not in tree:
            errors["parent_id"] = "error.org_dangling"
            return None
        return parent

    # ------------------------------------------------------------ changes

    def create(self, data: Mapping[str, Any], within: int = ROOT_NODE) -> dict[str, Any]:
        """A new node under ``parent_id`` (which must be in ``within``'s subtree)."""
        tree = self.tree()
        errors: dict[str, str] = {}
        name_error = _name_error(data.get("name"))
        if name_error:
            errors["name"] = name_error
        parent = None
        if data.get("parent_id") in (None, ""):
            errors["parent_id"] = "error.required"
        else:
            parent = self._parent(tree, data["parent_id"], errors)
        kind = data.get("kind")
        if kind is not None and kind not in KINDS[1:]:
            errors["kind"] = "error.bad_choice"
        if errors or parent is None:
            raise Invalid(errors)
        self._require_within(tree, parent, within)
        name = str(data["name"]).strip()
        if tree.child(parent, name) is not None:
            raise Invalid({"name": "error.org_duplicate"})
        if tree.depth(parent) + 1 > MAX_DEPTH:
            raise Invalid({"parent_id": "error.org_too_deep"})
        node_id = self._write(
            "INSERT INTO org_nodes (parent_id, name, kind, created_at) VALUES (?, ?, ?, ?)",
            (parent, name, kind or _kind_for(tree.depth(parent) + 1), self._clock()))
        return self.node(node_id)

    def update(self, node_id: int, data: Mapping[str, Any],
               within: int = ROOT_NODE) -> dict[str, Any]:
        """Rename, re-kind or move a node; its sites' paths follow.

        A scoped account may change nodes below its own, not its own node.
        Moving a node under itself or one of its descendants is a cycle (422).
        """
        tree = self.tree()
        if node_id not in tree:
            raise Missing("no such organization node")
        self._require_within(tree, node_id, within)
        if node_id == within and within != ROOT_NODE:
            raise Forbidden("your own organization node is managed above it")
        node = tree.nodes[node_id]
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        if "name" in data:
            name_error = _name_error(data["name"])
            if name_error:
                errors["name"] = name_error
            else:
                values["name"] = str(data["name"]).strip()
        if "kind" in data:
            allowed = KINDS[:1] if node.parent_id is None else KINDS[1:]
            if data["kind"] not in allowed:
                errors["kind"] = "error.bad_choice"
            else:
                values["kind"] = data["kind"]
        if "parent_id" in data:
            if node.parent_id is None:
                if data["parent_id"] is not None:
                    errors["parent_id"] = "error.org_root_fixed"
            elif data["parent_id"] in (None, ""):
                errors["parent_id"] = "error.required"
            else:
                parent = self._parent(tree, data["parent_id"], errors)
                if parent is not None:
                    if parent in tree.subtree(node_id):
                        errors["parent_id"] = "error.org_cycle"
                    else:
                        values["parent_id"] = parent
        if errors:
            raise Invalid(errors)
        if "parent_id" in values:
            self._require_within(tree, values["parent_id"], within)
        parent = values.get("parent_id", node.parent_id)
        name = values.get("name", node.name)
        if parent is not None:
            clash = tree.child(parent, name)
            if clash is not None and clash != node_id:
                raise Invalid({"name": "error.org_duplicate"})
            height = max(tree.depth(n) for n in tree.subtree(node_id)) - tree.depth(node_id)
            if tree.depth(parent) + 1 + height > MAX_DEPTH:
                raise Invalid({"parent_id": "error.org_too_deep"})
        if values:
            with self.db.transaction():
                assignments = ", ".join(f"{column} = ?" for column in values)
                self._write(f"UPDATE org_nodes SET {assignments} WHERE id = ?",
                                (*values.values(), node_id))
                self.sync_site_paths()
        return self.node(node_id)

    def delete(self, node_id: int, within: int = ROOT_NODE) -> None:
        """Delete an empty node (no child, site, session, account or archive item)."""
        tree = self.tree()
        if node_id not in tree:
            raise Missing("no such organization node")
        self._require_within(tree, node_id, within)
        if node_id == within or tree.nodes[node_id].parent_id is None:
            raise Forbidden("this organization node is managed above it")
        if tree.children.get(node_id):
            raise StateConflict("the node has nodes below it")
        for table, column, what in (("sites", "org_node_id", "sites"),
                                    ("sessions", "organizer_id", "sessions"),
                                    ("admins", "org_node_id", "accounts"),
                                    ("archive_items", "owner_id", "archive items"),
                                    ("courses", "owner_id", "courses")):
            if self.db.one(f"SELECT 1 FROM {table} WHERE {column} = ?", (node_id,)):
                raise StateConflict(f"the node still has {what}")
        self._write("DELETE FROM org_nodes WHERE id = ?", (node_id,))

    def sync_site_paths(self) -> None:
        """Every site's org_path from its node (called with the tree changed)."""
        tree = self.tree()
        for row in self.db.all("SELECT id, org_node_id, org_path FROM sites"):
            node = row["org_node_id"]
            path = tree.path(node) if node in tree else row["org_path"]
            if path != row["org_path"]:
                self.db.execute("UPDATE sites SET org_path = ? WHERE id = ?", (path, row["id"]))

    # ------------------------------------------------------------ paths

    def resolve_path(self, path: str, within: int = ROOT_NODE, *,
                     create: bool = False) -> int:
        """The node of an org path ('北仑区 / 新碶街道', '' for the city),
        made on the way when ``create``; the path must lie in ``within``'s
        subtree (Forbidden otherwise, before anything is written)."""
        node, missing, depth = self._walk(path, within)
        if not missing:
            return node
        if not create:
            raise Invalid({"org_path": "error.org_dangling"})
        for name in missing:
            depth += 1
            node = self._write(
                "INSERT INTO org_nodes (parent_id, name, kind, created_at) VALUES (?, ?, ?, ?)",
                (node, name, _kind_for(depth), self._clock()))
        return node

    def check_path(self, path: str, within: int = ROOT_NODE) -> None:
        """Invalid or Forbidden as ``resolve_path`` would be; writes nothing."""
        self._walk(path, within)

    def _walk(self, path: str, within: int) -> tuple[int, list[str], int]:
        """(the deepest existing node on the path, the names below it, its depth)."""
        tree = self.tree()
        parts = split_path(path)
        if len(parts) > MAX_DEPTH:
            raise Invalid({"org_path": "error.org_too_deep"})
        for part in parts:
            if _name_error(part):
                raise Invalid({"org_path": "error.org_bad_name"})
        scope_chain = tree.chain(within)
        node = ROOT_NODE
        depth = 0
        for name in parts:
            found = tree.child(node, name)
            if found is None:
                break
            node = found
            depth += 1
            if depth < len(scope_chain) and scope_chain[depth] != node:
                raise Forbidden("this organization path is outside your part of the tree")
        if depth < len(scope_chain) - 1:
            raise Forbidden("this organization path is outside your part of the tree")
        return node, parts[depth:], depth

    # ------------------------------------------------------------ import

    def import_csv(self, text: str, within: int = ROOT_NODE) -> list[dict[str, Any]]:
        """CSV with a header ``code,name,parent,kind``: every row or none.

        ``parent`` is another row's code, or an existing node's path ('北仑区';
        empty: ``within`` itself). A parent that is neither is dangling, rows
        that are each other's parents are a cycle: 422 naming the rows
        (``row N``), nothing written. A node that exists already (same name
        under the same parent) is kept, not doubled.
        """
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        try:
            fieldnames = [f.strip() for f in reader.fieldnames or []]
            records = [{(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                       for raw in reader]
        except csv.Error as exc:
            raise Invalid({"file": "error.csv_malformed"}) from exc
        if "name" not in fieldnames or "code" not in fieldnames:
            raise Invalid({"file": "error.org_csv_header"})
        if not records:
            raise Invalid({"file": "error.csv_empty"})
        tree = self.tree()
        errors: dict[str, str] = {}
        by_code: dict[str, int] = {}
        for number, record in enumerate(records, start=1):
            code = record.get("code", "")
            name_error = _name_error(record.get("name", ""))
            if not code:
                errors[f"row {number}"] = "error.required"
            elif code in by_code:
                errors[f"row {number}"] = "error.org_duplicate_code"
            elif name_error:
                errors[f"row {number}"] = name_error
            elif record.get("kind") and record["kind"] not in KINDS[1:]:
                errors[f"row {number}"] = "error.bad_choice"
            by_code.setdefault(code, number)
        # Each row's parent: a row (by code) or an existing node (by path).
        parents: dict[int, int | tuple[str, int]] = {}
        for number, record in enumerate(records, start=1):
            if f"row {number}" in errors:
                continue
            parent = record.get("parent", "")
            if parent and parent in by_code:
                parents[number] = ("row", by_code[parent])
                continue
            try:
                node = self.resolve_path(parent, within) if parent else within
            except Invalid:
                errors[f"row {number}"] = "error.org_dangling"
                continue
            parents[number] = node
        for number in parents:
            seen = {number}
            current: int | tuple[str, int] = parents[number]
            while isinstance(current, tuple):
                row = current[1]
                if row in seen:
                    errors[f"row {number}"] = "error.org_cycle"
                    break
                seen.add(row)
                if row not in parents:
                    break  # that row has its own error
                current = parents[row]
        if errors:
            raise Invalid(errors)
        made: list[int] = []
        placed: dict[int, int] = {}

        def place(number: int) -> int:
            if number in placed:
                return placed[number]
            target = parents[number]
            parent = place(target[1]) if isinstance(target, tuple) else target
            record = records[number - 1]
            name = record["name"]
            existing = current_tree.child(parent, name)
            if existing is None:
                depth = current_tree.depth(parent) + 1
                if depth > MAX_DEPTH:
                    raise Invalid({f"row {number}": "error.org_too_deep"})
                existing = self._write(
                    "INSERT INTO org_nodes (parent_id, name, kind, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (parent, name, record.get("kind") or _kind_for(depth), self._clock()))
                made.append(existing)
                current_tree.nodes[existing] = Node(existing, parent, name, "")
                current_tree.children.setdefault(parent, []).append(existing)
            placed[number] = existing
            return existing

        current_tree = Tree([{"id": n.id, "parent_id": n.parent_id, "name": n.name,
                              "kind": n.kind} for n in tree.nodes.values()])
        with self.db.transaction():
            for number in range(1, len(records) + 1):
                place(number)
        final = self.tree()
        return [final.describe(n) for n in made]
